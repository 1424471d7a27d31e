//! Test support: a real vCom server in this process, SDK clients for it, and bounded
//! waits for events. A failed expectation here is a failed test, so it panics.
#![allow(clippy::expect_used, clippy::unwrap_used, dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use vcom_client::{
    Client, ClientConfig, ClientError, DisconnectReason, Event, EventStream, FileOffer, GroupId,
    Message, Profile, TransferHandle, TransferId, TransferOutcome, Trust, UserId,
};
use vcom_server::admin::{AdminReply, GroupAction};
use vcom_server::{AdminHandle, AdminRequest, Server, ServerConfig, ShutdownHandle};
use vcom_store::SqliteStore;

/// The bound on every wait: generous, so a busy machine does not fail tests.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// A server running in this process on 127.0.0.1 with a free port.
pub struct TestServer {
    pub addr: SocketAddr,
    pub cert_sha256: String,
    pub admin: AdminHandle<SqliteStore>,
    shutdown: ShutdownHandle,
    task: tokio::task::JoinHandle<Result<(), vcom_server::ServerError>>,
}

impl TestServer {
    pub async fn start(data_dir: &Path) -> TestServer {
        Self::start_with(data_dir, |_| {}).await
    }

    /// Starts a server in a fresh temporary directory, its data in `server/` there; the
    /// directory also holds the test's profiles and files, and goes when the guard drops.
    pub async fn start_temp() -> (tempfile::TempDir, TestServer) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let server = Self::start(&dir.path().join("server")).await;
        (dir, server)
    }

    /// Starts a server with the defaults changed by `configure`.
    pub async fn start_with(
        data_dir: &Path,
        configure: impl FnOnce(&mut ServerConfig),
    ) -> TestServer {
        let mut config = ServerConfig::new(data_dir);
        configure(&mut config);
        let server = Server::bind(config).await.expect("the test server starts");
        TestServer {
            addr: server.local_addr(),
            cert_sha256: server.cert_sha256().to_owned(),
            admin: server.admin(),
            shutdown: server.shutdown_handle(),
            task: tokio::spawn(server.run()),
        }
    }

    /// A client configuration for `user` with `profile`, trusting on first use.
    pub fn config(&self, user: &str, profile: &Path) -> ClientConfig {
        ClientConfig::new(self.addr.to_string(), uid(user), profile)
            .with_trust(Trust::TrustOnFirstUse)
    }

    /// Connects `user` with `profile`, failing the test on error.
    pub async fn connect(&self, user: &str, profile: &Path) -> (Client, EventStream) {
        self.try_connect(self.config(user, profile))
            .await
            .unwrap_or_else(|e| panic!("{user} could not connect: {e}"))
    }

    /// Connects `user` with a profile named after it under `root` (`root/<user>`).
    pub async fn connect_in(&self, root: &Path, user: &str) -> (Client, EventStream) {
        self.connect(user, &root.join(user)).await
    }

    pub async fn try_connect(
        &self,
        config: ClientConfig,
    ) -> Result<(Client, EventStream), ClientError> {
        tokio::time::timeout(TIMEOUT, Client::connect(config))
            .await
            .expect("connecting finishes in time")
    }

    pub async fn create_group(&self, members: &[&str]) -> GroupId {
        let out = self
            .admin
            .execute(AdminRequest::Group {
                action: GroupAction::Create {
                    name: "team".into(),
                    members: members.iter().map(|m| m.to_string()).collect(),
                },
            })
            .await
            .expect("the group is created");
        match out {
            AdminReply::GroupCreated { id } => GroupId(id),
            other => panic!("group create answered {other:?}"),
        }
    }

    /// Shuts the server down and waits until it has stopped cleanly.
    pub async fn stop(self) {
        self.shutdown.shutdown();
        tokio::time::timeout(TIMEOUT, self.task)
            .await
            .expect("the server stops in time")
            .expect("the server task does not panic")
            .expect("the server stops cleanly");
    }
}

pub fn uid(s: &str) -> UserId {
    UserId::new(s).expect("a valid user id")
}

/// A fresh directory for one profile.
pub fn profile_dir(root: &Path, name: &str) -> PathBuf {
    root.join(name)
}

/// Waits for the first event `pick` accepts, skipping others; fails after [`TIMEOUT`].
pub async fn wait_for<T>(
    events: &mut EventStream,
    what: &str,
    mut pick: impl FnMut(Event) -> Option<T>,
) -> T {
    let found = tokio::time::timeout(TIMEOUT, async {
        while let Some(event) = events.next().await {
            if let Event::Disconnected { reason } = &event {
                panic!("disconnected while waiting for {what}: {reason:?}");
            }
            if let Some(found) = pick(event) {
                return Some(found);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(found)) => found,
        Ok(None) => panic!("the event stream ended while waiting for {what}"),
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// Waits until the predicate over the client holds, re-checking after each event.
pub async fn wait_until(
    client: &Client,
    events: &mut EventStream,
    what: &str,
    holds: impl Fn(&Client) -> bool,
) {
    if holds(client) {
        return;
    }
    wait_for(events, what, |_| holds(client).then_some(())).await;
}

/// Waits for the next direct message, skipping other events; fails after [`TIMEOUT`].
pub async fn next_message(events: &mut EventStream, what: &str) -> Message {
    wait_for(events, what, |e| match e {
        Event::Message(m) => Some(m),
        _ => None,
    })
    .await
}

/// Waits for the next group message, skipping other events; fails after [`TIMEOUT`].
pub async fn next_group_message(events: &mut EventStream, what: &str) -> Message {
    wait_for(events, what, |e| match e {
        Event::GroupMessage(m) => Some(m),
        _ => None,
    })
    .await
}

/// Waits for the next file offer, skipping other events; fails after [`TIMEOUT`].
pub async fn next_offer(events: &mut EventStream) -> FileOffer {
    wait_for(events, "the offer", |e| match e {
        Event::FileOffer(offer) => Some(offer),
        _ => None,
    })
    .await
}

/// Waits for the next `TransferFinished`, skipping other events (progress among them);
/// fails after [`TIMEOUT`].
pub async fn next_transfer_end(events: &mut EventStream) -> (TransferId, TransferOutcome) {
    wait_for(events, "the end of the transfer", |e| match e {
        Event::TransferFinished { transfer, outcome } => Some((transfer, outcome)),
        _ => None,
    })
    .await
}

/// Waits (at most [`TIMEOUT`]) until an outgoing transfer ends, and returns its outcome.
pub async fn finished(handle: TransferHandle) -> TransferOutcome {
    tokio::time::timeout(TIMEOUT, handle.finish())
        .await
        .expect("the transfer ends in time")
        .expect("the client is still open")
}

/// Gives the profile `to` the identity (key and certificate) of the profile `from`, by
/// exporting it to the PEM file `via` and importing that, as a user moving devices does.
pub fn copy_identity(from: &Path, to: &Path, via: &Path) {
    Profile::open(from)
        .expect("the source profile opens")
        .export_identity(via)
        .expect("the identity is exported");
    Profile::open(to)
        .expect("the target profile opens")
        .import_identity(via)
        .expect("the identity is imported");
}

/// Waits (at most [`TIMEOUT`]) for the `Disconnected` event, skipping every other event,
/// and returns its reason; fails if the stream ends without one.
pub async fn wait_for_disconnect(events: &mut EventStream) -> DisconnectReason {
    let wait = async {
        while let Some(event) = events.next().await {
            if let Event::Disconnected { reason } = event {
                return Some(reason);
            }
        }
        None
    };
    tokio::time::timeout(TIMEOUT, wait)
        .await
        .expect("the stream ends in time")
        .expect("a Disconnected event")
}
