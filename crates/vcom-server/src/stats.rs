//! Counters for `vcom-server admin stats`: cheap atomics bumped on the hot paths.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Live counters since the server started.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) connections: AtomicU64,
    pub(crate) logins: AtomicU64,
    pub(crate) denials: AtomicU64,
    pub(crate) violations: AtomicU64,
    pub(crate) messages: AtomicU64,
    pub(crate) broadcasts: AtomicU64,
    pub(crate) transfers_completed: AtomicU64,
    pub(crate) transfers_aborted: AtomicU64,
    pub(crate) file_bytes_relayed: AtomicU64,
}

impl Stats {
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
