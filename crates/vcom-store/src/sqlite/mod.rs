//! [`SqliteStore`]: the [`Store`] on an embedded SQLite file.
//!
//! One writer thread owns the only read-write connection and commits queued requests in
//! batches (group commit); reads run on a small pool of read-only connections beside it.
//! Nothing here blocks the async runtime: every database call runs on the writer thread
//! or on a `spawn_blocking` thread.
//!
//! # Layout
//! - `config`: [`StoreConfig`] and [`Synchronous`].
//! - `schema`: tables, indexes (each with its reason), migrations, connection set-up.
//! - `writer`: the writer thread, optimistic batches replayed with a savepoint per
//!   request when one fails, one commit per batch.
//! - `checkpoint`: the thread that copies the write-ahead log into the database, so
//!   the writer never does.
//! - `readers`: the read-only connection pool.
//! - `users`, `devices`, `lists`, `groups`, `messages`, `policy`, `transfers`,
//!   `retention`: the SQL of each part of the [`Store`] trait, as plain functions on a
//!   connection.
//! - `records`: column values back into records.

mod backup;
mod checkpoint;
mod config;
mod devices;
mod groups;
mod lists;
mod messages;
mod policy;
mod readers;
pub(crate) mod records;
mod retention;
mod schema;
mod transfers;
mod users;
mod writer;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::Connection;
use vcom_protocol::{DeviceId, GroupId, Timestamp, UserId};

pub use backup::{BackupReport, check as check_backup, restore};
pub use config::{StoreConfig, Synchronous};
use readers::Readers;
pub(crate) use schema::TAG_MAX_AGE;
pub use writer::WriteStats;
use writer::Writer;

use crate::{
    DeviceRecord, Group, KeyFingerprint, ListKind, MessageId, NewMessage, PendingMessage, Policy,
    PolicyEntry, PolicyList, PruneReport, Store, StoreResult, StoreStats, TransferRecord,
    UserLists, UserRecord,
};

/// The SQLite-backed [`Store`]. Cheap to clone: clones share one writer and one pool.
///
/// **Durability:** with [`Synchronous::Full`] (the default) a write method returns only
/// after the transaction holding its change was committed and synced to disk.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// The database file.
    path: PathBuf,
    writer: Writer,
    checkpointer: std::sync::Mutex<checkpoint::Checkpointer>,
    readers: Arc<Readers>,
    config: StoreConfig,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// The newest schema version this program reads and writes.
    pub const SCHEMA_VERSION: usize = schema::SCHEMA_VERSION;

    /// Opens (creating if needed) the database at `path`, applies pending schema
    /// migrations and starts the writer thread.
    ///
    /// Blocking: call it at startup, before serving (or from `spawn_blocking`).
    /// Fails with [`crate::StoreError::NewerSchema`] for a file written by a newer version,
    /// without changing it.
    pub fn open(path: &Path, config: StoreConfig) -> StoreResult<SqliteStore> {
        let conn = schema::open_writer(
            path,
            config.synchronous,
            config.busy_timeout,
            config.writer_cache_kib(),
        )?;
        let writer = Writer::start(conn, config.max_batch)?;
        let checkpointer = checkpoint::Checkpointer::start(path, config.busy_timeout)?;
        let readers = Arc::new(Readers::new(
            path.to_path_buf(),
            config.readers,
            config.busy_timeout,
            config.reader_cache_kib(),
        ));
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                writer,
                checkpointer: std::sync::Mutex::new(checkpointer),
                readers,
                config,
            }),
        })
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// How many write transactions and requests the writer has run since `open`.
    pub fn write_stats(&self) -> WriteStats {
        self.inner.writer.stats()
    }

    /// Commits every write already queued, stops the writer thread and closes the
    /// connections; every later call fails with [`crate::StoreError::Closed`]. Call it on
    /// shutdown after the last write was issued. Idempotent.
    ///
    /// Dropping every handle without `close` loses nothing either (the writer finishes
    /// what was queued, and an acknowledged write is already on disk); `close` only adds
    /// waiting for it.
    pub async fn close(&self) {
        self.inner.writer.close().await;
        // The log's last commits go into the database file (blocking: off the runtime).
        let inner = Arc::clone(&self.inner);
        let _ = tokio::task::spawn_blocking(move || {
            inner
                .checkpointer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .stop();
        })
        .await;
        self.inner.readers.close();
    }

    /// Runs SQLite's `PRAGMA integrity_check`: `"ok"` for a sound file, else the
    /// problems found, one per line.
    pub async fn integrity_check(&self) -> StoreResult<String> {
        self.read(|c| {
            let mut stmt = c.prepare("PRAGMA integrity_check")?;
            let lines = stmt
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(lines.join("\n"))
        })
        .await
    }

    fn read<T, F>(&self, op: F) -> impl Future<Output = StoreResult<T>> + Send + 'static
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let readers = Arc::clone(&self.inner.readers);
        async move { readers.read(op).await }
    }

    fn write<T, F>(&self, op: F) -> impl Future<Output = StoreResult<T>> + Send + 'static
    where
        T: Send + 'static,
        // `Fn`: the writer may run it twice (see `writer`), so it must not consume what
        // it captured.
        F: Fn(&Connection, &StoreConfig) -> StoreResult<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        async move {
            let config = inner.config.clone();
            inner.writer.write(move |c| op(c, &config)).await
        }
    }
}

impl Store for SqliteStore {
    fn user(&self, user: &UserId) -> impl Future<Output = StoreResult<Option<UserRecord>>> + Send {
        let user = user.clone();
        self.read(move |c| users::get(c, &user))
    }

    fn register_user(
        &self,
        user: &UserId,
        key: Option<KeyFingerprint>,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<UserRecord>> + Send {
        let user = user.clone();
        self.write(move |c, _| users::register(c, &user, key, now))
    }

    fn bind_key(
        &self,
        user: &UserId,
        key: KeyFingerprint,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        let user = user.clone();
        self.write(move |c, _| users::bind_key(c, &user, key))
    }

    fn record_login(
        &self,
        user: &UserId,
        key: Option<KeyFingerprint>,
        device: DeviceId,
        now: Timestamp,
        invite: Option<crate::InviteHash>,
    ) -> impl Future<Output = StoreResult<crate::LoginRecord>> + Send {
        let user = user.clone();
        let cap = self.inner.config.devices_per_user;
        self.write(move |c, _| users::record_login(c, &user, key, device, now, cap, invite))
    }

    fn reset_key(
        &self,
        user: &UserId,
        key: Option<KeyFingerprint>,
    ) -> impl Future<Output = StoreResult<bool>> + Send {
        let user = user.clone();
        self.write(move |c, _| users::reset_key(c, &user, key))
    }

    fn users(&self) -> impl Future<Output = StoreResult<Vec<UserRecord>>> + Send {
        self.read(users::all)
    }

    fn create_invite(
        &self,
        invite: crate::InviteHash,
        uses: u32,
        expires_at: Option<Timestamp>,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        self.write(move |c, _| users::create_invite(c, invite, uses, expires_at, now))
    }

    fn invites(
        &self,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<Vec<crate::Invite>>> + Send {
        self.read(move |c| users::invites(c, now))
    }

    fn remove_user(&self, user: &UserId) -> impl Future<Output = StoreResult<bool>> + Send {
        let user = user.clone();
        self.write(move |c, _| users::remove(c, &user))
    }

    fn issue_device(
        &self,
        user: &UserId,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<DeviceId>> + Send {
        let user = user.clone();
        self.write(move |c, _| devices::issue(c, &user, now))
    }

    fn device_owner(
        &self,
        device: DeviceId,
    ) -> impl Future<Output = StoreResult<Option<UserId>>> + Send {
        self.read(move |c| devices::owner(c, device))
    }

    fn touch_device(
        &self,
        device: DeviceId,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        self.write(move |c, _| devices::touch(c, device, now))
    }

    fn devices(
        &self,
        user: &UserId,
    ) -> impl Future<Output = StoreResult<Vec<DeviceRecord>>> + Send {
        let user = user.clone();
        self.read(move |c| devices::of_user(c, &user))
    }

    fn lists(&self, user: &UserId) -> impl Future<Output = StoreResult<UserLists>> + Send {
        let user = user.clone();
        self.read(move |c| lists::both(c, &user))
    }

    fn replace_list(
        &self,
        user: &UserId,
        kind: ListKind,
        entries: Vec<UserId>,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<Timestamp>> + Send {
        let user = user.clone();
        self.write(move |c, _| lists::replace(c, &user, kind, &entries, now))
    }

    fn directory(&self) -> impl Future<Output = StoreResult<crate::Directory>> + Send {
        self.read(lists::directory)
    }

    fn is_blocked(
        &self,
        owner: &UserId,
        other: &UserId,
    ) -> impl Future<Output = StoreResult<bool>> + Send {
        let (owner, other) = (owner.clone(), other.clone());
        self.read(move |c| lists::is_blocked(c, &owner, &other))
    }

    fn create_group(
        &self,
        name: &str,
        members: &[UserId],
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<GroupId>> + Send {
        let (name, members) = (name.to_owned(), members.to_vec());
        self.write(move |c, _| groups::create(c, None, &name, &members, now))
    }

    fn create_owned_group(
        &self,
        owner: &UserId,
        name: &str,
        members: &[UserId],
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<GroupId>> + Send {
        let (owner, name, members) = (owner.clone(), name.to_owned(), members.to_vec());
        self.write(move |c, _| groups::create(c, Some(&owner), &name, &members, now))
    }

    fn rename_group(
        &self,
        group: GroupId,
        name: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        let name = name.to_owned();
        self.write(move |c, _| groups::rename(c, group, &name))
    }

    fn set_group_owner(
        &self,
        group: GroupId,
        owner: &UserId,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        let owner = owner.clone();
        self.write(move |c, _| groups::set_owner(c, group, &owner))
    }

    fn delete_group(&self, group: GroupId) -> impl Future<Output = StoreResult<bool>> + Send {
        self.write(move |c, _| groups::delete(c, group))
    }

    fn add_group_member(
        &self,
        group: GroupId,
        user: &UserId,
    ) -> impl Future<Output = StoreResult<bool>> + Send {
        let user = user.clone();
        self.write(move |c, _| groups::add_member(c, group, &user))
    }

    fn remove_group_member(
        &self,
        group: GroupId,
        user: &UserId,
    ) -> impl Future<Output = StoreResult<bool>> + Send {
        let user = user.clone();
        self.write(move |c, _| groups::remove_member(c, group, &user))
    }

    fn group(&self, group: GroupId) -> impl Future<Output = StoreResult<Option<Group>>> + Send {
        self.read(move |c| groups::get(c, group))
    }

    fn groups(&self) -> impl Future<Output = StoreResult<Vec<Group>>> + Send {
        self.read(groups::all)
    }

    fn store_message(
        &self,
        message: NewMessage,
        on_commit: crate::OnCommit,
    ) -> impl Future<Output = StoreResult<crate::Stored>> + Send + 'static {
        // Queued now, by this call: messages commit in the order of the calls.
        let quotas = crate::quota::Quotas::of(&self.inner.config);
        self.inner.writer.write_then(
            move |c| messages::store(c, &message, quotas),
            Some(on_commit),
        )
    }

    fn advance_cursor(
        &self,
        device: DeviceId,
        through: MessageId,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        let per_sender = self.inner.config.pending_per_sender;
        self.write(move |c, _| messages::advance(c, device, through, per_sender))
    }

    fn pending(
        &self,
        user: &UserId,
        device: DeviceId,
        after: Option<MessageId>,
        limit: usize,
        max_bytes: usize,
    ) -> impl Future<Output = StoreResult<Vec<PendingMessage>>> + Send {
        let user = user.clone();
        self.read(move |c| messages::pending(c, &user, device, after, limit, max_bytes))
    }

    fn policy(&self) -> impl Future<Output = StoreResult<Policy>> + Send {
        self.read(policy::all)
    }

    fn add_policy(
        &self,
        list: PolicyList,
        entry: PolicyEntry,
    ) -> impl Future<Output = StoreResult<bool>> + Send {
        self.write(move |c, _| policy::add(c, list, &entry))
    }

    fn remove_policy(
        &self,
        list: PolicyList,
        entry: PolicyEntry,
    ) -> impl Future<Output = StoreResult<bool>> + Send {
        self.write(move |c, _| policy::remove(c, list, &entry))
    }

    fn log_transfer(&self, record: TransferRecord) -> impl Future<Output = StoreResult<()>> + Send {
        self.write(move |c, _| transfers::log(c, &record))
    }

    fn max_transfer_id(&self) -> impl Future<Output = StoreResult<i32>> + Send {
        self.read(transfers::max_id)
    }

    fn transfers(
        &self,
        limit: usize,
    ) -> impl Future<Output = StoreResult<Vec<TransferRecord>>> + Send {
        self.read(move |c| transfers::recent(c, limit))
    }

    fn prune(&self, now: Timestamp) -> impl Future<Output = StoreResult<PruneReport>> + Send {
        self.write(move |c, config| retention::prune(c, config, now))
    }

    fn stats(&self) -> impl Future<Output = StoreResult<StoreStats>> + Send {
        self.read(retention::stats)
    }

    fn backup(&self, to: PathBuf) -> impl Future<Output = StoreResult<BackupReport>> + Send {
        let (from, busy) = (self.inner.path.clone(), self.inner.config.busy_timeout);
        async move {
            tokio::task::spawn_blocking(move || backup::backup(&from, busy, &to))
                .await
                .map_err(|_| crate::StoreError::Closed)?
        }
    }
}
