//! Counters for `vcom-server admin stats`: cheap atomics bumped on the hot paths.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Live counters since the server started.
#[derive(Debug)]
pub(crate) struct Stats {
    pub(crate) connections: AtomicU64,
    pub(crate) logins: AtomicU64,
    pub(crate) denials: AtomicU64,
    /// Refusals by 258 code (0 to 7).
    pub(crate) denials_by_code: [AtomicU64; 8],
    /// Bytes of the bodies of messages accepted.
    pub(crate) message_bytes: AtomicU64,
    /// Seconds from a message handed to the store to its commit.
    pub(crate) commit_seconds: prometheus_client::metrics::histogram::Histogram,
    pub(crate) violations: AtomicU64,
    pub(crate) messages: AtomicU64,
    pub(crate) broadcasts: AtomicU64,
    pub(crate) transfers_completed: AtomicU64,
    pub(crate) transfers_aborted: AtomicU64,
    pub(crate) file_bytes_relayed: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            connections: AtomicU64::new(0),
            logins: AtomicU64::new(0),
            denials: AtomicU64::new(0),
            denials_by_code: Default::default(),
            message_bytes: AtomicU64::new(0),
            // 100 µs to about 6.5 s, doubling.
            commit_seconds: prometheus_client::metrics::histogram::Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 17),
            ),
            violations: AtomicU64::new(0),
            messages: AtomicU64::new(0),
            broadcasts: AtomicU64::new(0),
            transfers_completed: AtomicU64::new(0),
            transfers_aborted: AtomicU64::new(0),
            file_bytes_relayed: AtomicU64::new(0),
        }
    }
}

impl Stats {
    /// A refusal with this 258 code.
    pub(crate) fn denied(&self, code: u8) {
        Self::bump(&self.denials);
        if let Some(counter) = self.denials_by_code.get(usize::from(code)) {
            Self::bump(counter);
        }
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            connections: get(&self.connections),
            logins: get(&self.logins),
            denials: get(&self.denials),
            violations: get(&self.violations),
            messages: get(&self.messages),
            broadcasts: get(&self.broadcasts),
            transfers_completed: get(&self.transfers_completed),
            transfers_aborted: get(&self.transfers_aborted),
            file_bytes_relayed: get(&self.file_bytes_relayed),
        }
    }
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    /// TCP connections accepted.
    pub connections: u64,
    /// Successful logins.
    pub logins: u64,
    /// Logins refused with 258.
    pub denials: u64,
    /// Connections closed for a protocol violation.
    pub violations: u64,
    /// Messages accepted (direct and group).
    pub messages: u64,
    /// Broadcasts sent.
    pub broadcasts: u64,
    /// File transfers completed.
    pub transfers_completed: u64,
    /// File transfers aborted.
    pub transfers_aborted: u64,
    /// File bytes relayed.
    pub file_bytes_relayed: u64,
}
