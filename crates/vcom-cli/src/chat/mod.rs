//! `vcom chat`: the interactive terminal UI.

use std::path::Path;

use crate::client::Global;

/// Runs the chat UI until the user quits.
pub async fn run(_global: &Global, _dir: &Path) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
