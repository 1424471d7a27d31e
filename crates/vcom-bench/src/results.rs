//! The measurements of a suite run, as written to `results.json` and read back by the
//! report: one [`Row`] per (workload, case, target, run).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Metric names, shared by the workloads that measure and the report that renders.
pub mod metric {
    /// Messages (or deliveries) received per second.
    pub const DELIVERED_PER_S: &str = "delivered_per_s";
    /// Messages sent.
    pub const SENT: &str = "sent";
    /// Messages sent and never received within the drain time.
    pub const LOST: &str = "lost";
    /// Messages that arrived before an earlier one of the same sender (must be 0).
    pub const REORDERED: &str = "reordered";
    /// Latency percentiles from the sender's write to the receiver's read, ms.
    pub const P50_MS: &str = "p50_ms";
    /// See [`P50_MS`].
    pub const P90_MS: &str = "p90_ms";
    /// See [`P50_MS`].
    pub const P99_MS: &str = "p99_ms";
    /// See [`P50_MS`].
    pub const P999_MS: &str = "p999_ms";
    /// See [`P50_MS`].
    pub const MAX_MS: &str = "max_ms";
    /// Clients logged in.
    pub const CONNECTED: &str = "connected";
    /// Logins completed per second, all started at once.
    pub const LOGINS_PER_S: &str = "logins_per_s";
    /// Login latency (connect, TLS, 256 → 257), ms.
    pub const LOGIN_P50_MS: &str = "login_p50_ms";
    /// See [`LOGIN_P50_MS`].
    pub const LOGIN_P99_MS: &str = "login_p99_ms";
    /// Server resident memory per idle logged-in connection, KiB.
    pub const RSS_PER_CONN_KIB: &str = "rss_per_conn_kib";
    /// Server resident memory at the end of the workload, MiB.
    pub const RSS_MIB: &str = "rss_mib";
    /// Messages stored per second for an offline user (until the last barrier).
    pub const STORED_PER_S: &str = "stored_per_s";
    /// File bytes relayed per second, in MB (10^6 bytes).
    pub const MB_PER_S: &str = "mb_per_s";
    /// Server CPU time (user + system) per message received, µs.
    pub const SERVER_CPU_US_PER_MSG: &str = "server_cpu_us_per_msg";
}

/// The whole run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    /// What ran it.
    pub machine: Machine,
    /// The command, as typed.
    pub command: String,
    /// When it started (UTC, RFC 3339).
    pub started: String,
    /// How many times each (workload, case, target) ran.
    pub runs: usize,
    /// A `--smoke` run: every workload tiny, figures meaningless.
    pub smoke: bool,
    /// Every measurement, in the order taken.
    pub rows: Vec<Row>,
    /// Per target, the settings that bear on fairness.
    pub settings: BTreeMap<String, String>,
}

/// The machine the suite ran on.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Machine {
    /// Logical CPUs.
    pub cpus: usize,
    /// The CPU model as `/proc/cpuinfo` names it.
    pub cpu_model: String,
    /// Total memory, GiB.
    pub memory_gib: f64,
    /// `uname -sr`.
    pub kernel: String,
    /// Open files allowed per process.
    pub open_files: u64,
}

/// One measurement.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// The workload (`connections`, `direct`, `group`, `backlog`, `files`).
    pub workload: String,
    /// Its case (`N=1000`, `max`, `10000/s`, `1x256MiB`, ...).
    pub case: String,
    /// The target (`vcom`, `relay`, `mosquitto-qos0`, ...).
    pub target: String,
    /// 1-based run number.
    pub run: usize,
    /// What came out.
    pub outcome: Outcome,
}

/// What one measurement gave.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Figures by [`metric`] name, and the latency distribution when measured.
    Measured {
        /// Figures by metric name.
        metrics: BTreeMap<String, f64>,
        /// (percentile 0-100, latency ms) points for the distribution plot.
        #[serde(default)]
        latency: Vec<(f64, f64)>,
    },
    /// The target cannot run this workload, and why.
    Unsupported(String),
    /// The run failed, and how.
    Failed(String),
}

impl Outcome {
    /// The figures, when measured.
    pub fn metrics(&self) -> Option<&BTreeMap<String, f64>> {
        match self {
            Outcome::Measured { metrics, .. } => Some(metrics),
            _ => None,
        }
    }
}
