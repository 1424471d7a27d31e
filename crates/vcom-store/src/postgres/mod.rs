//! [`PostgresStore`]: the [`Store`] on a PostgreSQL database that several nodes share.
//!
//! Every node opens its own `PostgresStore` on the same database. A bounded pool of
//! connections serves reads and most writes, each write in its own transaction; messages
//! go through one writer task per node that commits them in batches (group commit) and
//! assigns their ids under a lock held until the commit, so ids grow in commit order
//! across all nodes. Row locks (never a process-wide lock) keep each user's counts and
//! cursors exact when two nodes write for the same user. Nothing here blocks the async
//! runtime: tokio-postgres is async throughout.
//!
//! # Layout
//! - `schema`: tables, indexes, versioned migrations (`schema_version`).
//! - `writer`: the message writer task with group commit.
//! - `statements`: running SQL through each connection's prepared-statement cache.
//! - `users`, `devices`, `lists`, `groups`, `messages`, `policy`, `transfers`,
//!   `retention`: the SQL of each part of the [`Store`] trait, as plain async functions
//!   on a connection or transaction.

mod devices;
mod groups;
mod lists;
mod messages;
mod policy;
mod retention;
mod schema;
mod statements;
mod transfers;
mod users;
mod writer;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use deadpool_postgres::{
    Client, Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime,
};
use tokio_postgres::IsolationLevel;
use tokio_postgres::NoTls;
use vcom_protocol::{DeviceId, GroupId, Timestamp, UserId};

use crate::{
    BackupReport, DeviceRecord, Directory, Group, Invite, InviteHash, KeyFingerprint, ListKind,
    LoginRecord, MessageId, NewMessage, OnCommit, PendingMessage, Policy, PolicyEntry, PolicyList,
    PruneReport, Store, StoreConfig, StoreError, StoreResult, StoreStats, Stored, Synchronous,
    TransferRecord, UserLists, UserRecord, WriteStats,
};
use writer::Writer;

/// The PostgreSQL-backed [`Store`]. Cheap to clone: clones share one pool and one
/// message writer.
///
/// **Durability:** a write method returns only after its transaction committed; with
/// [`Synchronous::Full`] (the default) that is once the server has flushed it to disk
/// (the server's `synchronous_commit`). [`Synchronous::Normal`] turns
/// `synchronous_commit` off for the store's sessions: faster, and a crash of the
/// database server may lose the last commits (it stays consistent).
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    writer: Writer,
    config: StoreConfig,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// A PostgreSQL error with its causes, on one line: `error connecting to server:
/// Connection refused`, `db error: ERROR: ...`.
pub(crate) fn describe(error: &tokio_postgres::Error) -> String {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

/// A connection from the pool, with the pool's errors as the store's.
async fn client(pool: &Pool) -> StoreResult<Client> {
    pool.get().await.map_err(|e| match e {
        PoolError::Closed => StoreError::Closed,
        PoolError::Backend(e) => StoreError::Postgres(e),
        other => StoreError::Connection(other.to_string()),
    })
}

/// Runs `$body` (an expression using the transaction `$tx`) in a read-committed
/// transaction of its own on a pooled connection, and commits.
macro_rules! in_transaction {
    ($pool:expr, |$tx:ident| $body:expr) => {
        async move {
            let mut client = client(&$pool).await?;
            let $tx = client.transaction().await?;
            let value = $body.await?;
            $tx.commit().await?;
            Ok(value)
        }
    };
}

/// Runs `$body` in one read-only snapshot (a repeatable-read transaction), for reads
/// of several statements that must agree with each other.
macro_rules! in_snapshot {
    ($pool:expr, |$tx:ident| $body:expr) => {
        async move {
            let mut client = client(&$pool).await?;
            let $tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await?;
            let value = $body.await?;
            $tx.commit().await?;
            Ok(value)
        }
    };
}

/// Runs `$body` (one statement) on a pooled connection, committing on its own.
macro_rules! on_connection {
    ($pool:expr, |$c:ident| $body:expr) => {
        async move {
            let $c = client(&$pool).await?;
            $body.await
        }
    };
}

impl PostgresStore {
    /// The newest schema version this program reads and writes.
    pub const SCHEMA_VERSION: usize = schema::SCHEMA_VERSION;

    /// Connects to the database at `url` (`postgres://user[:password]@host[:port]/db`),
    /// applies pending schema migrations and starts the message writer task (on the
    /// current tokio runtime).
    ///
    /// Fails with [`StoreError::NewerSchema`] for a database written by a newer version,
    /// without changing it. Of `config`, the retention rules, quotas, the device cap,
    /// `synchronous`, `max_batch` and `busy_timeout` (how long to wait for a connection)
    /// apply; the pool holds `readers + 1` connections.
    pub async fn connect(url: &str, config: StoreConfig) -> StoreResult<PostgresStore> {
        let mut pg: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Connection(format!("invalid PostgreSQL URL: {e}")))?;
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(config.busy_timeout);
        }
        if pg.get_application_name().is_none() {
            pg.application_name("vcom-server");
        }
        if config.synchronous == Synchronous::Normal {
            let options = match pg.get_options() {
                Some(options) => format!("{options} -c synchronous_commit=off"),
                None => "-c synchronous_commit=off".to_owned(),
            };
            pg.options(&options);
        }
        let manager = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.readers.max(1) + 1)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(config.busy_timeout))
            .create_timeout(Some(config.busy_timeout))
            .build()
            .map_err(|e| StoreError::Connection(e.to_string()))?;
        schema::migrate(&mut client(&pool).await?).await?;
        let quotas = crate::quota::Quotas::of(&config);
        let writer = Writer::start(pool.clone(), config.max_batch, quotas);
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                pool,
                writer,
                config,
            }),
        })
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// How many message transactions and messages this node's writer has run.
    pub fn write_stats(&self) -> WriteStats {
        self.inner.writer.stats()
    }

    /// Commits every message already queued, stops the writer task and closes the
    /// pool's connections; every later call fails with [`StoreError::Closed`].
    /// Idempotent. Dropping every handle without `close` loses nothing acknowledged.
    pub async fn close(&self) {
        self.inner.writer.close().await;
        self.inner.pool.close();
    }

    fn pool(&self) -> Pool {
        self.inner.pool.clone()
    }
}

impl Store for PostgresStore {
    fn user(&self, user: &UserId) -> impl Future<Output = StoreResult<Option<UserRecord>>> + Send {
        let (pool, user) = (self.pool(), user.clone());
        on_connection!(pool, |c| users::get(&c, &user))
    }

    fn register_user(
        &self,
        user: &UserId,
        key: Option<KeyFingerprint>,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<UserRecord>> + Send {
        let (pool, user) = (self.pool(), user.clone());
        in_transaction!(pool, |tx| users::register(&tx, &user, key, now))
    }

    fn bind_key(
        &self,
        user: &UserId,
        key: KeyFingerprint,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        let (pool, user) = (self.pool(), user.clone());
        in_transaction!(pool, |tx| users::bind_key(&tx, &user, key))
    }

    fn record_login(
        &self,
        user: &UserId,
        key: Option<KeyFingerprint>,
        device: DeviceId,
        now: Timestamp,
        invite: Option<InviteHash>,
    ) -> impl Future<Output = StoreResult<LoginRecord>> + Send {
        let (pool, user) = (self.pool(), user.clone());
        let cap = self.inner.config.devices_per_user;
        in_transaction!(pool, |tx| users::record_login(
            &tx, &user, key, device, now, cap, invite
        ))
    }

    fn create_invite(
        &self,
        invite: InviteHash,
        uses: u32,
        expires_at: Option<Timestamp>,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        let pool = self.pool();
        on_connection!(pool, |c| users::create_invite(
            &c, invite, uses, expires_at, now
        ))
    }

    fn invites(&self, now: Timestamp) -> impl Future<Output = StoreResult<Vec<Invite>>> + Send {
        let pool = self.pool();
        on_connection!(pool, |c| users::invites(&c, now))
    }

    fn reset_key(
        &self,
        user: &UserId,
        key: Option<KeyFingerprint>,
    ) -> impl Future<Output = StoreResult<bool>> + Send {
        let (pool, user) = (self.pool(), user.clone());
        on_connection!(pool, |c| users::reset_key(&c, &user, key))
    }

    fn users(&self) -> impl Future<Output = StoreResult<Vec<UserRecord>>> + Send {
        let pool = self.pool();
        on_connection!(pool, |c| users::all(&c))
    }

    fn remove_user(&self, user: &UserId) -> impl Future<Output = StoreResult<bool>> + Send {
        let (pool, user) = (self.pool(), user.clone());
        in_transaction!(pool, |tx| users::remove(&tx, &user))
    }

    fn issue_device(
        &self,
        user: &UserId,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<DeviceId>> + Send {
        let (pool, user) = (self.pool(), user.clone());
        in_transaction!(pool, |tx| devices::issue(&tx, &user, now))
    }

    fn device_owner(
        &self,
        device: DeviceId,
    ) -> impl Future<Output = StoreResult<Option<UserId>>> + Send {
        let pool = self.pool();
        on_connection!(pool, |c| devices::owner(&c, device))
    }

    fn touch_device(
        &self,
        device: DeviceId,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        let pool = self.pool();
        on_connection!(pool, |c| devices::touch(&c, device, now))
    }

    fn devices(
        &self,
        user: &UserId,
    ) -> impl Future<Output = StoreResult<Vec<DeviceRecord>>> + Send {
        let (pool, user) = (self.pool(), user.clone());
        on_connection!(pool, |c| devices::of_user(&c, &user))
    }

    fn lists(&self, user: &UserId) -> impl Future<Output = StoreResult<UserLists>> + Send {
        let (pool, user) = (self.pool(), user.clone());
        in_snapshot!(pool, |tx| lists::both(&tx, &user))
    }

    fn replace_list(
        &self,
        user: &UserId,
        kind: ListKind,
        entries: Vec<UserId>,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<Timestamp>> + Send {
        let (pool, user) = (self.pool(), user.clone());
        in_transaction!(pool, |tx| lists::replace(&tx, &user, kind, &entries, now))
    }

    fn directory(&self) -> impl Future<Output = StoreResult<Directory>> + Send {
        let pool = self.pool();
        in_snapshot!(pool, |tx| lists::directory(&tx))
    }

    fn is_blocked(
        &self,
        owner: &UserId,
        other: &UserId,
    ) -> impl Future<Output = StoreResult<bool>> + Send {
        let (pool, owner, other) = (self.pool(), owner.clone(), other.clone());
        on_connection!(pool, |c| lists::is_blocked(&c, &owner, &other))
    }

    fn create_group(
        &self,
        name: &str,
        members: &[UserId],
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<GroupId>> + Send {
        let (pool, name, members) = (self.pool(), name.to_owned(), members.to_vec());
        in_transaction!(pool, |tx| groups::create(&tx, None, &name, &members, now))
    }

    fn create_owned_group(
        &self,
        owner: &UserId,
        name: &str,
        members: &[UserId],
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<GroupId>> + Send {
        let (pool, owner, name, members) = (
            self.pool(),
            owner.clone(),
            name.to_owned(),
            members.to_vec(),
        );
        in_transaction!(pool, |tx| groups::create(
            &tx,
            Some(&owner),
            &name,
            &members,
            now
        ))
    }

    fn rename_group(
        &self,
        group: GroupId,
        name: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        let (pool, name) = (self.pool(), name.to_owned());
        in_transaction!(pool, |tx| groups::rename(&tx, group, &name))
    }

    fn set_group_owner(
        &self,
        group: GroupId,
        owner: &UserId,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        let (pool, owner) = (self.pool(), owner.clone());
        in_transaction!(pool, |tx| groups::set_owner(&tx, group, &owner))
    }

    fn delete_group(&self, group: GroupId) -> impl Future<Output = StoreResult<bool>> + Send {
        let pool = self.pool();
        in_transaction!(pool, |tx| groups::delete(&tx, group))
    }

    fn add_group_member(
        &self,
        group: GroupId,
        user: &UserId,
    ) -> impl Future<Output = StoreResult<bool>> + Send {
        let (pool, user) = (self.pool(), user.clone());
        in_transaction!(pool, |tx| groups::add_member(&tx, group, &user))
    }

    fn remove_group_member(
        &self,
        group: GroupId,
        user: &UserId,
    ) -> impl Future<Output = StoreResult<bool>> + Send {
        let (pool, user) = (self.pool(), user.clone());
        in_transaction!(pool, |tx| groups::remove_member(&tx, group, &user))
    }

    fn group(&self, group: GroupId) -> impl Future<Output = StoreResult<Option<Group>>> + Send {
        let pool = self.pool();
        on_connection!(pool, |c| groups::get(&c, group))
    }

    fn groups(&self) -> impl Future<Output = StoreResult<Vec<Group>>> + Send {
        let pool = self.pool();
        on_connection!(pool, |c| groups::all(&c))
    }

    fn store_message(
        &self,
        message: NewMessage,
        on_commit: OnCommit,
    ) -> impl Future<Output = StoreResult<Stored>> + Send + 'static {
        // Queued now, by this call: messages commit in the order of the calls.
        self.inner.writer.store(message, on_commit)
    }

    fn advance_cursor(
        &self,
        device: DeviceId,
        through: MessageId,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        let pool = self.pool();
        let per_sender = self.inner.config.pending_per_sender;
        in_transaction!(pool, |tx| messages::advance(
            &tx, device, through, per_sender
        ))
    }

    fn pending(
        &self,
        user: &UserId,
        device: DeviceId,
        after: Option<MessageId>,
        limit: usize,
        max_bytes: usize,
    ) -> impl Future<Output = StoreResult<Vec<PendingMessage>>> + Send {
        let (pool, user) = (self.pool(), user.clone());
        in_snapshot!(pool, |tx| messages::pending(
            &tx, &user, device, after, limit, max_bytes
        ))
    }

    fn policy(&self) -> impl Future<Output = StoreResult<Policy>> + Send {
        let pool = self.pool();
        on_connection!(pool, |c| policy::all(&c))
    }

    fn add_policy(
        &self,
        list: PolicyList,
        entry: PolicyEntry,
    ) -> impl Future<Output = StoreResult<bool>> + Send {
        let pool = self.pool();
        on_connection!(pool, |c| policy::add(&c, list, &entry))
    }

    fn remove_policy(
        &self,
        list: PolicyList,
        entry: PolicyEntry,
    ) -> impl Future<Output = StoreResult<bool>> + Send {
        let pool = self.pool();
        on_connection!(pool, |c| policy::remove(&c, list, &entry))
    }

    fn log_transfer(&self, record: TransferRecord) -> impl Future<Output = StoreResult<()>> + Send {
        let pool = self.pool();
        on_connection!(pool, |c| transfers::log(&c, &record))
    }

    fn max_transfer_id(&self) -> impl Future<Output = StoreResult<i32>> + Send {
        let pool = self.pool();
        on_connection!(pool, |c| transfers::max_id(&c))
    }

    fn transfers(
        &self,
        limit: usize,
    ) -> impl Future<Output = StoreResult<Vec<TransferRecord>>> + Send {
        let pool = self.pool();
        on_connection!(pool, |c| transfers::recent(&c, limit))
    }

    fn prune(&self, now: Timestamp) -> impl Future<Output = StoreResult<PruneReport>> + Send {
        let (pool, config) = (self.pool(), self.inner.config.clone());
        in_transaction!(pool, |tx| retention::prune(&tx, &config, now))
    }

    fn stats(&self) -> impl Future<Output = StoreResult<StoreStats>> + Send {
        let pool = self.pool();
        on_connection!(pool, |c| retention::stats(&c))
    }

    /// Not done by vCom for PostgreSQL: the database is backed up with its own tools.
    async fn backup(&self, to: PathBuf) -> StoreResult<BackupReport> {
        Err(StoreError::Backup(format!(
            "not written to {}: a PostgreSQL store is backed up with the database's own \
             tools (pg_dump, or continuous archiving), not by vcom-server",
            to.display()
        )))
    }
}
