//! The code of the `vcom` client program; `src/bin/vcom.rs` only calls [`client::main`].
//!
//! # Layout
//! - [`client`]: the command line (clap), connecting with the options every command
//!   shares, and one module per command group (`messages`, `listen`, `history`,
//!   `lists`, `files`, `identity`), plus `format` for the human and JSON renderings.
//! - [`chat`]: the interactive terminal UI of `vcom chat`: the UI state (`App`, no IO),
//!   its rendering (`ui`, no IO), the terminal guard and the event loop that joins
//!   keys and server events.
//!
//! **API boundary.** Everything here talks to the server through the `vcom-client`
//! SDK; nothing here speaks the wire protocol. Only this crate prints.

pub mod chat;
pub mod client;
