//! `vcom-bench soak` (behind `cargo xtask soak --minutes N`): vcom-server under a steady
//! direct-message load for a long time, with periodic reconnects, checked for two
//! things: every message sent arrives, and the server's memory stays flat.
//!
//! The run is a sequence of phases ([`workloads::steady_phase`]): every user logs in
//! (the same device each time, so every phase after the first is a reconnect of
//! everyone), sends at the steady rate for `reconnect_every`, stops, and waits for every
//! message to arrive; meanwhile a few more users log in and out all the time. The
//! server's resident memory (`VmRSS`) is read once a second. After a warm-up (the page
//! cache of SQLite fills as the database grows, up to its budget), memory is flat when
//! the end of the run is within the allowed growth of the level after the warm-up.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::target::{Running, TargetKind};
use crate::vcom::Identities;
use crate::wire::Workload;
use crate::workloads::{self, PhaseCounts};

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The vcom-server program.
    pub server_bin: PathBuf,
    /// How long the load runs.
    pub duration: Duration,
    /// Users sending to each other.
    pub users: usize,
    /// Messages a second, in all.
    pub rate: u64,
    /// How often every user reconnects (the length of a phase).
    pub reconnect_every: Duration,
    /// Users that only log in and out, all the time.
    pub churn: usize,
    /// Memory before this is not judged; `None`: a fifth of the run, from 1 to 5 min.
    pub warm_up: Option<Duration>,
    /// Growth allowed after the warm-up, in MiB (or 10% of the level after the warm-up,
    /// if more).
    pub max_growth_mib: f64,
    /// Where the server's log goes.
    pub out_dir: PathBuf,
}

/// What a soak found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The options it ran with.
    pub options: Options,
    /// How long the load ran.
    pub ran: Duration,
    /// Phases run (every user logged in once per phase).
    pub phases: usize,
    /// The counts of every phase together.
    pub counts: PhaseCounts,
    /// The server's memory over time.
    pub memory: Memory,
    /// Warnings and errors in the server's log.
    pub log_warnings: usize,
    /// Whether the server's log shows a panic.
    pub panicked: bool,
}

impl Report {
    /// Messages sent that never arrived.
    pub fn lost(&self) -> u64 {
        self.counts.sent.saturating_sub(self.counts.received)
    }

    /// Why the soak failed, if it did.
    pub fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        if self.lost() > 0 {
            failures.push(format!("{} messages lost", self.lost()));
        }
        if self.counts.reordered > 0 {
            failures.push(format!(
                "{} messages out of their sender's order",
                self.counts.reordered
            ));
        }
        if self.memory.grew() {
            failures.push(format!(
                "memory kept growing: +{:.1} MiB after the warm-up (limit {:.1} MiB)",
                self.memory.growth_mib(),
                self.memory.limit_mib
            ));
        }
        if self.panicked {
            failures.push("the server panicked (see its log)".to_owned());
        }
        failures
    }

    /// The summary printed at the end.
    pub fn summary(&self) -> String {
        let o = &self.options;
        let m = &self.memory;
        let c = &self.counts;
        let failures = self.failures();
        let verdict = if failures.is_empty() {
            "PASSED".to_owned()
        } else {
            format!("FAILED: {}", failures.join("; "))
        };
        format!(
            "soak: {:.1} min of load, {} users at {} msg/s, everyone reconnecting every {} s \
             ({} phases), {} more users logging in and out\n\
             messages: sent {}, received {}, lost {}, out of order {}\n\
             logins: {}\n\
             server RSS: start {:.1} MiB, after warm-up ({} s) {:.1} MiB, end {:.1} MiB, \
             peak {:.1} MiB; slope after warm-up {:+.2} MiB/min; growth {:+.1} MiB \
             (limit {:.1} MiB); {} samples\n\
             server log: {} warnings or errors ({})\n\
             soak: {verdict}",
            self.ran.as_secs_f64() / 60.0,
            o.users,
            o.rate,
            o.reconnect_every.as_secs(),
            self.phases,
            o.churn,
            c.sent,
            c.received,
            self.lost(),
            c.reordered,
            c.logins,
            m.start_mib,
            m.warm_up.as_secs(),
            m.warm_mib,
            m.end_mib,
            m.peak_mib,
            m.slope_mib_per_min,
            m.growth_mib(),
            m.limit_mib,
            m.samples,
            self.log_warnings,
            o.out_dir.join("vcom-server.log").display(),
        )
    }
}

/// The server's resident memory over a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Memory {
    /// The first reading, MiB.
    pub start_mib: f64,
    /// The level just after the warm-up (the median of the first tenth of what
    /// follows it, at least 5 readings), MiB.
    pub warm_mib: f64,
    /// The level at the end (the median of the last tenth, at least 5 readings), MiB.
    pub end_mib: f64,
    /// The highest reading, MiB.
    pub peak_mib: f64,
    /// The least-squares slope after the warm-up, MiB per minute.
    pub slope_mib_per_min: f64,
    /// The warm-up.
    pub warm_up: Duration,
    /// The growth allowed after it, MiB.
    pub limit_mib: f64,
    /// Readings.
    pub samples: usize,
}

impl Memory {
    /// Judges `samples` (seconds since the start, KiB).
    pub fn from_samples(samples: &[(f64, f64)], warm_up: Duration, max_growth_mib: f64) -> Memory {
        let mib: Vec<(f64, f64)> = samples.iter().map(|(t, k)| (*t, k / 1024.0)).collect();
        let after: Vec<(f64, f64)> = mib
            .iter()
            .copied()
            .filter(|(t, _)| *t >= warm_up.as_secs_f64())
            .collect();
        // Too short a run to have an "after": judge the second half.
        let after = if after.len() >= 10 {
            after
        } else {
            mib[mib.len() / 2..].to_vec()
        };
        let tenth = (after.len() / 10).max(5).min(after.len());
        let warm_mib = median(after.iter().take(tenth).map(|(_, m)| *m));
        let end_mib = median(after.iter().rev().take(tenth).map(|(_, m)| *m));
        Memory {
            start_mib: mib.first().map_or(0.0, |(_, m)| *m),
            warm_mib,
            end_mib,
            peak_mib: mib.iter().map(|(_, m)| *m).fold(0.0, f64::max),
            slope_mib_per_min: slope(&after) * 60.0,
            warm_up,
            limit_mib: max_growth_mib.max(warm_mib / 10.0),
            samples: samples.len(),
        }
    }

    /// End level minus the level after the warm-up, MiB.
    pub fn growth_mib(&self) -> f64 {
        self.end_mib - self.warm_mib
    }

    /// Whether memory grew beyond the limit after the warm-up.
    pub fn grew(&self) -> bool {
        self.growth_mib() > self.limit_mib
    }
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Least-squares slope of `(x, y)` points; 0 for fewer than two distinct `x`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mean_x = points.iter().map(|(x, _)| x).sum::<f64>() / n;
    let mean_y = points.iter().map(|(_, y)| y).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|(x, _)| (x - mean_x).powi(2)).sum();
    if sxx == 0.0 {
        return 0.0;
    }
    let sxy: f64 = points
        .iter()
        .map(|(x, y)| (x - mean_x) * (y - mean_y))
        .sum();
    sxy / sxx
}

/// The default warm-up: a fifth of the run, at least 1 min and at most 5 min (at the
/// default rate SQLite's page cache takes about two minutes to fill).
fn default_warm_up(duration: Duration) -> Duration {
    (duration / 5).clamp(Duration::from_secs(60), Duration::from_secs(300))
}

/// Starts vcom-server, runs the phases for the whole duration while reading the
/// server's memory, stops the server, and reports.
pub async fn run(options: Options) -> anyhow::Result<Report> {
    std::fs::create_dir_all(&options.out_dir)
        .with_context(|| format!("cannot create {}", options.out_dir.display()))?;
    let log = options.out_dir.join("vcom-server.log");
    let _ = std::fs::remove_file(&log);
    let users = options.users.max(2);
    eprintln!(
        "soak: generating {} client keys, then {:.1} min of load (the report follows)",
        users + options.churn,
        options.duration.as_secs_f64() / 60.0
    );
    let identities = Identities::generate(users + options.churn).await?;
    let server = Running::start(
        &TargetKind::Vcom(options.server_bin.clone()),
        &identities,
        users,
        Workload::Direct,
        &options.out_dir,
    )
    .await?;
    let process = server.process;

    let samples = Arc::new(Mutex::new(Vec::new()));
    let stop_sampling = CancellationToken::new();
    let started = Instant::now();
    let sampler = {
        let samples = samples.clone();
        let stop = stop_sampling.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = ticks.tick() => {}
                }
                if let (Some(kib), Ok(mut samples)) = (process.rss_kib(), samples.lock()) {
                    samples.push((started.elapsed().as_secs_f64(), kib));
                }
            }
        })
    };

    let mut counts = PhaseCounts::default();
    let mut phases = 0;
    let result = async {
        while started.elapsed() < options.duration {
            let left = options.duration.saturating_sub(started.elapsed());
            let window = options
                .reconnect_every
                .min(left)
                .max(Duration::from_secs(1));
            let phase = workloads::steady_phase(
                server.protocol.clone(),
                users,
                options.churn,
                Duration::from_secs(1),
                options.rate,
                window,
            )
            .await
            .with_context(|| format!("phase {}", phases + 1))?;
            phases += 1;
            counts.sent += phase.sent;
            counts.received += phase.received;
            counts.reordered += phase.reordered;
            counts.logins += phase.logins;
            eprintln!(
                "soak: {:>4.0} s  phase {phases}: sent {} received {}; server RSS {:.1} MiB",
                started.elapsed().as_secs_f64(),
                phase.sent,
                phase.received,
                process.rss_kib().unwrap_or(0.0) / 1024.0
            );
        }
        anyhow::Ok(())
    }
    .await;
    let ran = started.elapsed();
    stop_sampling.cancel();
    let _ = sampler.await;
    server.stop().await?;
    result?;

    let samples = samples
        .lock()
        .map_err(|_| anyhow::anyhow!("the memory sampler panicked"))?
        .clone();
    anyhow::ensure!(
        !samples.is_empty(),
        "could not read the server's memory (/proc/PID/status)"
    );
    let warm_up = options
        .warm_up
        .unwrap_or_else(|| default_warm_up(options.duration));
    let memory = Memory::from_samples(&samples, warm_up, options.max_growth_mib);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let log_warnings = text
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .count();
    Ok(Report {
        options,
        ran,
        phases,
        counts,
        memory,
        log_warnings,
        panicked: text.contains("panicked"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One reading a second for `secs` seconds, KiB from `f(t)`.
    fn readings(secs: usize, f: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
        (0..secs).map(|t| (t as f64, f(t as f64))).collect()
    }

    const MIB: f64 = 1024.0;

    #[test]
    fn memory_that_fills_a_cache_during_the_warm_up_then_stays_is_flat() {
        let samples = readings(600, |t| (10.0 + 30.0 * (t / 60.0).min(1.0)) * MIB);
        let m = Memory::from_samples(&samples, Duration::from_secs(120), 16.0);
        assert!(!m.grew(), "{m:?}");
        assert!((m.warm_mib - 40.0).abs() < 0.01 && (m.end_mib - 40.0).abs() < 0.01);
        assert!(m.slope_mib_per_min.abs() < 0.01, "{m:?}");
        assert_eq!(m.start_mib, 10.0);
    }

    #[test]
    fn memory_that_keeps_growing_after_the_warm_up_fails() {
        // 1 MiB a minute for 30 minutes.
        let samples = readings(1800, |t| (40.0 + t / 60.0) * MIB);
        let m = Memory::from_samples(&samples, Duration::from_secs(300), 16.0);
        assert!(m.grew(), "{m:?}");
        assert!((m.slope_mib_per_min - 1.0).abs() < 0.01, "{m:?}");
    }

    #[test]
    fn noise_and_a_passing_spike_are_not_growth() {
        let samples = readings(600, |t| {
            let spike = if (300.0..305.0).contains(&t) {
                50.0
            } else {
                0.0
            };
            (40.0 + (t * 7.0).sin() + spike) * MIB
        });
        let m = Memory::from_samples(&samples, Duration::from_secs(60), 16.0);
        assert!(!m.grew(), "{m:?}");
        assert!(m.peak_mib > 80.0);
    }

    #[test]
    fn the_limit_is_a_tenth_of_a_large_level() {
        let samples = readings(600, |_| 500.0 * MIB);
        let m = Memory::from_samples(&samples, Duration::from_secs(60), 16.0);
        assert_eq!(m.limit_mib, 50.0);
    }

    #[test]
    fn the_default_warm_up_is_a_fifth_between_1_and_5_min() {
        assert_eq!(
            default_warm_up(Duration::from_secs(120)),
            Duration::from_secs(60)
        );
        assert_eq!(
            default_warm_up(Duration::from_secs(600)),
            Duration::from_secs(120)
        );
        assert_eq!(
            default_warm_up(Duration::from_secs(1800)),
            Duration::from_secs(300)
        );
    }

    #[test]
    fn a_report_fails_on_a_lost_message() {
        let memory = Memory::from_samples(&readings(60, |_| MIB), Duration::from_secs(1), 16.0);
        let report = Report {
            options: Options {
                server_bin: PathBuf::new(),
                duration: Duration::from_secs(60),
                users: 2,
                rate: 1,
                reconnect_every: Duration::from_secs(30),
                churn: 0,
                warm_up: None,
                max_growth_mib: 16.0,
                out_dir: PathBuf::new(),
            },
            ran: Duration::from_secs(60),
            phases: 2,
            counts: PhaseCounts {
                sent: 10,
                received: 9,
                reordered: 0,
                logins: 4,
            },
            memory,
            log_warnings: 0,
            panicked: false,
        };
        assert_eq!(report.failures(), ["1 messages lost"]);
        assert!(report.summary().contains("lost 1"));
    }
}
