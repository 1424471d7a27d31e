//! Shared test helpers: a store of either backend on a place of its own (a temporary
//! directory, or a PostgreSQL database created for the test), identifiers, message
//! builders, and [`on_both_backends!`], which runs one test body on each backend.

// Helpers outside `#[test]` functions: failing loudly is their job.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tempfile::TempDir;
use vcom_protocol::{DeviceId, MessageKind, Timestamp, UserId};
use vcom_store::{
    MessageId, NewMessage, OnCommit, PostgresStore, SqliteStore, Store, StoreConfig, WriteStats,
};

/// The server the PostgreSQL tests create their databases on.
pub(crate) const POSTGRES_URL_ENV: &str = "VCOM_TEST_POSTGRES_URL";

/// Used when [`POSTGRES_URL_ENV`] is not set.
const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// What a test needs of a backend beyond [`Store`]: a fresh place to keep data, opening
/// it again, closing, and the writer's counters.
pub(crate) trait Backend: Store + Sized {
    /// Where the data lives for one test; dropping it removes everything.
    type Place: Send + Sync;
    /// Whether every write goes through the group-commit writer (SQLite), or only
    /// messages do (PostgreSQL, where other writes are transactions of their own).
    const EVERY_WRITE_BATCHED: bool;
    /// A new, empty place.
    async fn place() -> Self::Place;
    /// Opens the store kept at `place`.
    async fn open(place: &Self::Place, config: StoreConfig) -> Self;
    /// Closes the store (see `SqliteStore::close`, `PostgresStore::close`).
    async fn close(&self);
    /// The writer's batches and requests.
    fn write_stats(&self) -> WriteStats;
    /// The backend's own consistency check, where it has one (`"ok"` when sound).
    async fn integrity_check(&self) -> Option<String>;
}

impl Backend for SqliteStore {
    type Place = TempDir;
    const EVERY_WRITE_BATCHED: bool = true;

    async fn place() -> TempDir {
        tempfile::tempdir().expect("temp dir")
    }

    async fn open(place: &TempDir, config: StoreConfig) -> Self {
        open_at(&db_path(place.path()), config)
    }

    async fn close(&self) {
        SqliteStore::close(self).await;
    }

    fn write_stats(&self) -> WriteStats {
        SqliteStore::write_stats(self)
    }

    async fn integrity_check(&self) -> Option<String> {
        Some(SqliteStore::integrity_check(self).await.unwrap())
    }
}

impl Backend for PostgresStore {
    type Place = TestDatabase;
    const EVERY_WRITE_BATCHED: bool = false;

    async fn place() -> TestDatabase {
        TestDatabase::create().await
    }

    async fn open(place: &TestDatabase, config: StoreConfig) -> Self {
        PostgresStore::connect(&place.url, config)
            .await
            .expect("connect to the test database")
    }

    async fn close(&self) {
        PostgresStore::close(self).await;
    }

    fn write_stats(&self) -> WriteStats {
        PostgresStore::write_stats(self)
    }

    async fn integrity_check(&self) -> Option<String> {
        None
    }
}

/// A PostgreSQL database created for one test on the server named by
/// [`POSTGRES_URL_ENV`], dropped (with every connection to it) when this is dropped.
pub(crate) struct TestDatabase {
    /// The URL of the server's database the test database was created from.
    admin_url: String,
    /// The test database's name.
    pub(crate) name: String,
    /// The URL to connect to the test database.
    pub(crate) url: String,
}

impl TestDatabase {
    /// Creates a database with a name no other test uses.
    pub(crate) async fn create() -> TestDatabase {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let admin_url =
            std::env::var(POSTGRES_URL_ENV).unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
        let admin = admin_client(&admin_url).await;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros();
        let name = format!(
            "vcom_test_{}_{}_{stamp}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot create a test database on {admin_url} ({e}): its user needs CREATEDB"
                )
            });
        let url = with_database(&admin_url, &name);
        TestDatabase {
            admin_url,
            name,
            url,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot be blocked on: the database
        // is dropped from a thread with a runtime of its own.
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                admin_client(&admin_url)
                    .await
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("cannot drop the test database {}: {e}", self.name);
        }
    }
}

/// A connection to the server's administrative database, or a panic saying plainly
/// that these tests need PostgreSQL and how to point them at one.
async fn admin_client(url: &str) -> tokio_postgres::Client {
    match tokio_postgres::connect(url, tokio_postgres::NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            client
        }
        Err(e) => {
            let cause = std::error::Error::source(&e).map_or(String::new(), |c| format!(": {c}"));
            panic!(
                "the PostgreSQL store tests need a PostgreSQL server, and none answered at \
                 {} ({e}{cause}). Start one, or set {POSTGRES_URL_ENV} to the URL of a \
                 database on a server whose user may CREATE DATABASE, e.g. \
                 {POSTGRES_URL_ENV}=postgres://postgres@127.0.0.1:5432/test",
                without_password(url)
            )
        }
    }
}

/// `url` with its password, if any, replaced by `***` (for messages).
fn without_password(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let Some(at) = url[start..].find('@').map(|i| start + i) else {
        return url.to_owned();
    };
    match url[start..at].find(':') {
        Some(colon) => format!("{}:***{}", &url[..start + colon], &url[at..]),
        None => url.to_owned(),
    }
}

/// `url` with its database name replaced by `name`
/// (`postgres://user@host:port/old?options` to `postgres://user@host:port/name?options`).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

/// A store of backend `S` on a place of its own (removed on drop).
pub(crate) struct TestStore<S: Backend> {
    // Declared first, so it is dropped before its place.
    pub(crate) store: S,
    pub(crate) place: S::Place,
}

impl<S: Backend> TestStore<S> {
    /// Closes the store and opens the same place again.
    pub(crate) async fn reopen(self, config: StoreConfig) -> TestStore<S> {
        self.store.close().await;
        let store = S::open(&self.place, config).await;
        TestStore {
            store,
            place: self.place,
        }
    }
}

impl TestStore<SqliteStore> {
    /// The temporary directory.
    pub(crate) fn dir(&self) -> &Path {
        self.place.path()
    }

    /// The database file.
    pub(crate) fn path(&self) -> PathBuf {
        db_path(self.dir())
    }
}

/// Runs each named generic test (`async fn name<S: Backend>()`) once per backend, as
/// `sqlite::name` and `postgres::name`. Tests under `multi_thread` run on a runtime
/// with four worker threads.
#[macro_export]
macro_rules! on_both_backends {
    (tests: [$($name:ident),* $(,)?] $(, multi_thread: [$($multi:ident),* $(,)?])? $(,)?) => {
        $crate::on_both_backends!(@backend sqlite, vcom_store::SqliteStore,
            [$($name),*], [$($($multi),*)?]);
        $crate::on_both_backends!(@backend postgres, vcom_store::PostgresStore,
            [$($name),*], [$($($multi),*)?]);
    };
    (@backend $module:ident, $store:ty, [$($name:ident),*], [$($multi:ident),*]) => {
        mod $module {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name::<$store>().await
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $multi() {
                    super::$multi::<$store>().await
                }
            )*
        }
    };
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
pub(crate) async fn store<S: Backend>() -> TestStore<S> {
    store_with(StoreConfig::default()).await
}

/// A fresh store with `config`.
pub(crate) async fn store_with<S: Backend>(config: StoreConfig) -> TestStore<S> {
    let place = S::place().await;
    let store = S::open(&place, config).await;
    TestStore { store, place }
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
pub(crate) async fn user_with_device(store: &impl Store, name: &str) -> DeviceId {
    store.register_user(&uid(name), None, ts(1)).await.unwrap();
    store.issue_device(&uid(name), ts(1)).await.unwrap()
}

/// Issues `user` one more device (which, in these tests, receives nothing).
pub(crate) async fn another_device(store: &impl Store, user: &str) -> DeviceId {
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
    store: &impl Store,
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
    store: &impl Store,
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
