//! The vCom server core: TLS, login, sessions, delivery, list sync, file transfers and
//! administration, as a library that the `vcom-server` program, the tests and the xtask
//! all start the same way.
//!
//! ```no_run
//! # async fn demo() -> Result<(), vcom_server::ServerError> {
//! let server = vcom_server::Server::bind(vcom_server::ServerConfig::new("./vcom-data")).await?;
//! println!("listening on {} cert {}", server.local_addr(), server.cert_sha256());
//! let shutdown = server.shutdown_handle();
//! tokio::spawn(async move {
//!     let _ = tokio::signal::ctrl_c().await;
//!     shutdown.shutdown();
//! });
//! server.run().await
//! # }
//! ```
//!
//! # Layout
//! - [`config`]: `vcom.toml` keys, defaults and validation, in layers (file, environment).
//! - [`check`]: `vcom-server check`: the TLS files, data directory and database, before a start.
//! - [`tls`]: the certificate (generated or configured) and client keys.
//! - `server`: [`Server`]: binding, the accept loop, shutdown.
//! - `connection`: one task per connection: TLS, login, then a reader and a writer.
//! - `login`: the checks that answer 256 with 257 or 258, in `docs/protocol.md`'s order.
//! - `session`: the registry of online sessions and their bounded outbound queues.
//! - `delivery`: direct and group messages, stored first, then relayed.
//! - `cluster`: several nodes on one PostgreSQL database: NATS notices and wake-ups,
//!   and the sweep that makes a lost notice a delay, never a loss.
//! - `directory`: users, block lists and groups in memory, so the
//!   message path never waits on a store read.
//! - `sync`: friend and block list sync (259-262).
//! - `groups`: client-side groups (518-526): the rules, pure, and their carrying out.
//! - `transfer`: file transfers (268-274), relayed with backpressure.
//! - `pending`: connections still logging in, counted per address.
//! - `policy`: blacklist and whitelist, compiled for login.
//! - `throttle`: wrong server passwords slowed per address.
//! - [`admin`]: the administrator's commands, in process and over `admin.sock`.
//! - [`tap`]: the test-only packet counter behind `cargo xtask e2e`'s coverage table.
//!
//! **Architecture invariant:** the server never prints to stdout (only `vcom-cli` does)
//! and never speaks SQL (only `vcom-store` does).

pub mod admin;
pub mod check;
mod cluster;
pub mod config;
mod connection;
mod delivery;
mod directory;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod groups;
mod inbound;
mod login;
mod metrics;
mod pending;
mod policy;
mod server;
mod session;
mod stats;
mod sync;
pub mod tap;
mod throttle;
pub mod tls;
mod transfer;

pub use admin::{AdminError, AdminHandle, AdminRequest, AdminResponse};
pub use cluster::ClusterStatus;
pub use config::{AuthMode, ClusterConfig, ConfigError, Registration, ServerConfig, StoreBackend};
pub use server::{ConfiguredServer, Server, ServerError, ShutdownHandle};
pub use stats::StatsSnapshot;

/// The current time as a protocol timestamp.
pub(crate) fn now() -> vcom_protocol::Timestamp {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    vcom_protocol::Timestamp(millis)
}
