//! Owning the terminal: raw mode and the alternate screen while the chat runs, and the
//! terminal restored on every way out (return, error, panic).
//!
//! `ratatui::try_init` installs a panic hook that restores the terminal before the panic
//! message is printed; the guard's `Drop` covers returns and errors.

use anyhow::Context;
use ratatui::DefaultTerminal;

/// The terminal in raw mode on the alternate screen; restored when dropped.
pub(crate) struct TerminalGuard {
    pub(crate) terminal: DefaultTerminal,
}

impl TerminalGuard {
    /// Switches the terminal to raw mode and the alternate screen.
    pub(crate) fn enter() -> anyhow::Result<TerminalGuard> {
        match ratatui::try_init() {
            Ok(terminal) => Ok(TerminalGuard { terminal }),
            Err(e) => {
                // Part of the setup may have happened.
                let _ = ratatui::try_restore();
                Err(e).context("cannot set up the terminal")
            }
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        let _ = self.terminal.show_cursor();
        ratatui::restore();
    }
}
