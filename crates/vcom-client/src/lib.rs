//! The vCom client SDK: an async API for talking to a vCom server.
//!
//! [`Client::connect`] verifies the server over TLS 1.3, logs in with the user's key, and
//! returns a cheap-to-clone [`Client`] handle plus an [`EventStream`] of everything the
//! server sends (messages, broadcasts, list changes, file offers), in order. Every
//! received message is written to the local [`History`] before it becomes an event, and
//! every message sent is written there once it is queued, so the history holds both
//! sides of each conversation.
//!
//! ```no_run
//! # async fn demo() -> Result<(), vcom_client::ClientError> {
//! use vcom_client::{Client, ClientConfig, Event, UserId};
//!
//! let me = UserId::new("alice").map_err(|e| vcom_client::ClientError::Config(e.to_string()))?;
//! let (client, mut events) = Client::connect(ClientConfig::new("127.0.0.1:7420", me, "profile")).await?;
//! while let Some(event) = events.next().await {
//!     if let Event::Message(m) = event {
//!         println!("{}: {}", m.sender, m.text().unwrap_or("<image>"));
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`client`](Client): the handle; methods send packets (and record the messages
//!   sent in the history) or ask the session.
//! - `login`: profile, TCP, TLS, pinning, and the 256/257 exchange.
//! - `session`: the connection task; owns the read side and all per-connection state,
//!   applies backpressure, routes transfers, records received messages.
//! - [`event`](Event): the events and [`EventStream`].
//! - [`tls`](Trust): trust modes, the pinning verifier, fingerprints.
//! - [`identity`](Identity): the user's key and self-signed certificate.
//! - [`profile`](Profile): the profile directory (layout in its documentation).
//! - [`history`](History): the SQLite message history (both directions, migrated in
//!   place) on its own thread.
//! - `sync`: the friend and block list sync decisions, as pure functions.
//! - [`groups`](Group): client-side groups (extended mode): what this device knows of
//!   its user's groups, kept in the profile, and the requests waiting for an answer.
//! - `transfer`: sending files, offer handles, placing received files.
//! - [`file_name`]: making offered file names safe.
//!
//! **Invariants.** Nothing the server sends makes the SDK panic; a protocol violation
//! ends the connection with [`ClientError::Protocol`]. Every queue is bounded. No
//! blocking call runs on the async runtime (files, SQLite and key generation run on
//! blocking threads).

mod client;
mod config;
mod error;
mod event;
pub mod file_name;
mod groups;
mod history;
mod identity;
mod login;
mod outgoing;
mod profile;
mod session;
mod sync;
mod tls;
mod transfer;

pub use client::Client;
pub use config::ClientConfig;
pub use error::{ClientError, ProtocolError};
pub use event::{DisconnectReason, Event, EventStream, Message, TransferOutcome};
pub use groups::Group;
pub use history::{
    ConversationSummary, DeliveryState, Direction, History, HistoryEntry, HistoryQuery, NewEntry,
    Recipient, SentEntry,
};
pub use identity::Identity;
pub use outgoing::{Delivery, Outgoing};
pub use profile::{Profile, ProfileError, ProfileState};
pub use sync::{ListKind, Lists, UserList};
pub use tls::Trust;
pub use transfer::{FileOffer, Progress, TransferHandle};
pub use vcom_protocol::{
    AbortReason, DenyCode, DeviceId, GroupExit, GroupId, GroupName, GroupOutcome, Limits,
    MessageKind, SendOutcome, Timestamp, TransferId, UserId,
};

/// The current time as a protocol timestamp (milliseconds since the Unix epoch).
pub(crate) fn now() -> Timestamp {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Timestamp(millis)
}
