//! [`StoreConfig`]: retention, the pending cap, durability and the writer's batching.

use std::time::Duration;

/// How hard SQLite works to make a commit survive a power cut (`PRAGMA synchronous`).
///
/// The database always runs in write-ahead-log mode; a crash of the *process* never
/// loses a committed transaction in either mode. They differ on a crash of the *machine*.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// `FULL`: every commit waits for the log to reach the disk (`fsync`), so a write
    /// method returns only once its change survives a power cut. Group commit shares one
    /// `fsync` between every request of a batch, which keeps this affordable. The default.
    #[default]
    Full,
    /// `NORMAL`: commits are not synced; the log is synced at checkpoints. Faster, but a
    /// power cut or kernel crash may lose the most recent commits (the database stays
    /// consistent). Breaks the store's durability promise; for tests and throwaway data.
    Normal,
}

impl Synchronous {
    pub(crate) fn pragma_value(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

/// How a [`super::SqliteStore`] (or a [`crate::PostgresStore`]) keeps and writes data.
///
/// The retention rules, quotas, the device cap and `max_batch` mean the same on both
/// backends. On PostgreSQL, `synchronous` sets `synchronous_commit` (on for `Full`, off
/// for `Normal`), `readers + 1` is the size of the connection pool, and `busy_timeout`
/// is how long a call waits for a pooled connection (and a new one to connect);
/// `cache_bytes` is SQLite's alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// `prune` deletes delivered messages received longer ago than this. `None` keeps
    /// them regardless of age. Default: 30 days.
    pub delivered_max_age: Option<Duration>,
    /// `prune` keeps at most this many delivered messages, deleting the oldest. `None`:
    /// no limit. Default: none.
    pub delivered_max_count: Option<u64>,
    /// The most messages kept waiting for one user; a message for a user at the cap is
    /// refused for that user ([`crate::Stored::refused`], logged as a warning), and
    /// nothing already waiting is dropped. `None`: no cap. Default: 100 000.
    pub pending_cap_per_user: Option<u64>,
    /// Of the messages waiting for one user, the most that may come from one sender: a
    /// message past it is refused for that user like one to a full inbox, so one
    /// sender cannot fill another's inbox alone. `None`: no quota. Default: 10 000.
    pub pending_per_sender: Option<u64>,
    /// The most devices one user keeps. A login that issues a device beyond it retires
    /// the user's least recently seen other devices ([`crate::LoginRecord::Recorded`]
    /// names them): their identifiers are refused from then on (258 code 5). `None`: no
    /// cap. Default: 100.
    pub devices_per_user: Option<u64>,
    /// Durability of a commit; see [`Synchronous`]. Default: [`Synchronous::Full`].
    pub synchronous: Synchronous,
    /// The most write requests committed in one transaction (group commit). 1 commits
    /// every request on its own (for comparison in benchmarks). Default: 4 096.
    pub max_batch: usize,
    /// Read-only connections used at once (reads run beside the writer). Default: 4.
    pub readers: usize,
    /// How long a connection waits for a lock held by another process before failing.
    /// Default: 5 s.
    pub busy_timeout: Duration,
    /// `prune` keeps at most this many transfer-log rows, deleting the oldest (every
    /// file offer writes one, refused or not). `None`: keep all. Default: 100 000.
    pub transfer_log_max: Option<u64>,
    /// SQLite's page cache for the whole store, in bytes: half for the writer (the hot
    /// pages every commit touches), the rest shared by the readers. One budget, so the
    /// process's memory levels off at a known size. Default: 32 MiB.
    pub cache_bytes: usize,
}

impl StoreConfig {
    /// The writer's page cache, in KiB.
    pub(crate) fn writer_cache_kib(&self) -> i64 {
        i64::try_from(self.cache_bytes / 2 / 1024)
            .unwrap_or(i64::MAX)
            .max(64)
    }

    /// Each reader's page cache, in KiB.
    pub(crate) fn reader_cache_kib(&self) -> i64 {
        let share = self.cache_bytes / 2 / self.readers.max(1) / 1024;
        i64::try_from(share).unwrap_or(i64::MAX).max(64)
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            delivered_max_age: Some(Duration::from_secs(30 * 24 * 60 * 60)),
            delivered_max_count: None,
            pending_cap_per_user: Some(100_000),
            pending_per_sender: Some(10_000),
            devices_per_user: Some(100),
            synchronous: Synchronous::Full,
            max_batch: 4096,
            readers: 4,
            busy_timeout: Duration::from_secs(5),
            cache_bytes: 32 << 20,
            transfer_log_max: Some(100_000),
        }
    }
}
