//! Shared test helpers: a store in a temporary directory, identifiers, message builders.

// Helpers outside `#[test]` functions: failing loudly is their job.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use bytes::Bytes;
use tempfile::TempDir;
use vcom_protocol::{DeviceId, MessageKind, Timestamp, UserId};
use vcom_store::{MessageId, NewMessage, OnCommit, SqliteStore, Store, StoreConfig};

/// A store on a file in its own temporary directory (removed on drop).
pub(crate) struct TestStore {
    pub(crate) store: SqliteStore,
    pub(crate) dir: TempDir,
}

impl TestStore {
    /// The database file.
    pub(crate) fn path(&self) -> PathBuf {
        db_path(self.dir.path())
    }

    /// Closes the store and opens the same file again.
    pub(crate) async fn reopen(self, config: StoreConfig) -> TestStore {
        self.store.close().await;
        let store = open_at(&self.path(), config);
        TestStore {
            store,
            dir: self.dir,
        }
    }
}

/// The database file inside `dir`.
pub(crate) fn db_path(dir: &Path) -> PathBuf {
    dir.join("vcom.sqlite3")
}

/// Opens the store at `path` (test helper: panics on error).
pub(crate) fn open_at(path: &Path, config: StoreConfig) -> SqliteStore {
    SqliteStore::open(path, config).expect("open store")
}

/// A fresh store with the default configuration.
pub(crate) fn store() -> TestStore {
    store_with(StoreConfig::default())
}

/// A fresh store with `config`.
pub(crate) fn store_with(config: StoreConfig) -> TestStore {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_at(&db_path(dir.path()), config);
    TestStore { store, dir }
}

/// A user identifier.
pub(crate) fn uid(name: &str) -> UserId {
    UserId::new(name).expect("valid user id")
}

/// A timestamp.
pub(crate) fn ts(ms: i64) -> Timestamp {
    Timestamp(ms)
}

/// Registers `name` and issues one device; returns the device.
pub(crate) async fn user_with_device(store: &SqliteStore, name: &str) -> DeviceId {
    store.register_user(&uid(name), None, ts(1)).await.unwrap();
    store.issue_device(&uid(name), ts(1)).await.unwrap()
}

/// Issues `user` one more device (which, in these tests, receives nothing).
pub(crate) async fn another_device(store: &SqliteStore, user: &str) -> DeviceId {
    store.issue_device(&uid(user), ts(1)).await.unwrap()
}

/// A text message from `sender` (on `origin`) to `recipients`.
pub(crate) fn text(sender: &str, origin: DeviceId, recipients: &[&str], body: &str) -> NewMessage {
    NewMessage {
        sender: uid(sender),
        origin_device: origin,
        group: None,
        recipients: recipients.iter().map(|r| uid(r)).collect(),
        tag: None,
        sent_at: ts(1_000),
        received_at: ts(2_000),
        kind: MessageKind::Text,
        data: Bytes::copy_from_slice(body.as_bytes()),
    }
}

/// The bodies of the messages `device` of `user` should still receive, as text.
pub(crate) async fn pending_bodies(
    store: &SqliteStore,
    user: &str,
    device: DeviceId,
) -> Vec<String> {
    store
        .pending(&uid(user), device, None, usize::MAX, usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .map(|m| String::from_utf8(m.data.to_vec()).unwrap())
        .collect()
}

/// Stores a text message from alice (on `origin`) received by the server at `received_ms`.
pub(crate) async fn message_at(
    store: &SqliteStore,
    origin: DeviceId,
    to: &[&str],
    body: &str,
    received_ms: i64,
) -> MessageId {
    let mut message = text("alice", origin, to, body);
    message.received_at = ts(received_ms);
    store
        .store_message(message, no_hook())
        .await
        .unwrap()
        .id
        .expect("stored")
}

/// A commit hook that does nothing (for calls that only care about the result).
pub(crate) fn no_hook() -> OnCommit {
    Box::new(|_| {})
}
