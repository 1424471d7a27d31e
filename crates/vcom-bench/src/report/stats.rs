//! The figures behind every view of the report: rows grouped by workload, case and target
//! (in the order they first appear), the median and range of each metric over the runs,
//! which metric each workload shows and how it reads, and the ratios between targets.
//!
//! Pure functions of [`Results`]: nothing here formats, writes or panics. Non-finite
//! figures (NaN, infinities) are dropped as if not measured.

use std::collections::BTreeMap;

use crate::results::{Outcome, Results, Row, metric};

/// The subject of the suite.
pub(super) const SUBJECT: &str = "vcom";
/// The no-store relay, the limit the subject is held against.
pub(super) const LIMIT: &str = "relay";

/// Median, lowest and highest of a metric over the runs that measured it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Stats {
    /// How many runs gave a finite figure.
    pub(super) n: usize,
    /// The median (of an even count, the mean of the middle two).
    pub(super) median: f64,
    /// The lowest figure.
    pub(super) min: f64,
    /// The highest figure.
    pub(super) max: f64,
}

impl Stats {
    /// The statistics of the finite `values`, or `None` when there are none.
    pub(super) fn of(values: &[f64]) -> Option<Stats> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let (&min, &max) = (sorted.first()?, sorted.last()?);
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Some(Stats {
            n,
            median,
            min,
            max,
        })
    }
}

/// Which way a metric is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Better {
    /// Throughput-like: more is better.
    Higher,
    /// Latency, memory, CPU, losses: less is better.
    Lower,
    /// A count that only describes the run (messages sent).
    Neither,
}

/// How a metric's figures are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// A measured quantity: three significant digits.
    Measure,
    /// A count: exact integer.
    Count,
}

/// How one metric is shown.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct MetricSpec {
    /// The name in [`metric`].
    pub(super) name: String,
    /// The column heading, with its unit.
    pub(super) label: String,
    /// Which way is better.
    pub(super) better: Better,
    /// How figures are written.
    pub(super) kind: Kind,
    /// Shown in the terminal table too (the markdown shows every metric).
    pub(super) main: bool,
}

impl MetricSpec {
    /// A spec from static parts.
    fn new(name: &str, label: &str, better: Better, kind: Kind, main: bool) -> MetricSpec {
        MetricSpec {
            name: name.to_owned(),
            label: label.to_owned(),
            better,
            kind,
            main,
        }
    }

    /// A metric no workload spec names: read what its name says.
    fn guess(name: &str) -> MetricSpec {
        let (better, kind) = if name.ends_with("_per_s") {
            (Better::Higher, Kind::Measure)
        } else if name.ends_with("_ms") || name.ends_with("_kib") || name.ends_with("_mib") {
            (Better::Lower, Kind::Measure)
        } else {
            (Better::Neither, Kind::Measure)
        };
        MetricSpec::new(name, name, better, kind, false)
    }
}

/// The metrics a workload reports, in column order (present or not).
fn known_metrics(workload: &str) -> Vec<MetricSpec> {
    use Better::{Higher, Lower, Neither};
    use Kind::{Count, Measure};
    let latency = |main_p50: bool| {
        vec![
            MetricSpec::new(metric::SENT, "sent", Neither, Measure, false),
            MetricSpec::new(metric::LOST, "lost", Lower, Count, true),
            MetricSpec::new(metric::REORDERED, "out of order", Lower, Count, false),
            MetricSpec::new(metric::P50_MS, "p50 ms", Lower, Measure, main_p50),
            MetricSpec::new(metric::P90_MS, "p90 ms", Lower, Measure, false),
            MetricSpec::new(metric::P99_MS, "p99 ms", Lower, Measure, true),
            MetricSpec::new(metric::P999_MS, "p99.9 ms", Lower, Measure, false),
            MetricSpec::new(metric::MAX_MS, "max ms", Lower, Measure, false),
            MetricSpec::new(
                metric::SERVER_CPU_US_PER_MSG,
                "server CPU µs/msg",
                Lower,
                Measure,
                false,
            ),
            MetricSpec::new(metric::RSS_MIB, "RSS MiB", Lower, Measure, false),
        ]
    };
    match workload {
        "connections" => vec![
            MetricSpec::new(metric::CONNECTED, "connected", Higher, Count, true),
            MetricSpec::new(metric::LOGINS_PER_S, "logins/s", Higher, Measure, true),
            MetricSpec::new(metric::LOGIN_P50_MS, "login p50 ms", Lower, Measure, false),
            MetricSpec::new(metric::LOGIN_P99_MS, "login p99 ms", Lower, Measure, true),
            MetricSpec::new(
                metric::RSS_PER_CONN_KIB,
                "RSS/conn KiB",
                Lower,
                Measure,
                true,
            ),
        ],
        "direct" => {
            let mut specs = vec![MetricSpec::new(
                metric::DELIVERED_PER_S,
                "msgs/s",
                Higher,
                Measure,
                true,
            )];
            specs.extend(latency(true));
            specs
        }
        "group" => {
            let mut specs = vec![MetricSpec::new(
                metric::DELIVERED_PER_S,
                "deliveries/s",
                Higher,
                Measure,
                true,
            )];
            specs.extend(latency(false));
            specs
        }
        "backlog" => vec![
            MetricSpec::new(metric::STORED_PER_S, "stored/s", Higher, Measure, true),
            MetricSpec::new(
                metric::DELIVERED_PER_S,
                "delivered/s",
                Higher,
                Measure,
                true,
            ),
            MetricSpec::new(metric::LOST, "lost", Lower, Count, true),
            MetricSpec::new(metric::REORDERED, "out of order", Lower, Count, false),
            MetricSpec::new(metric::RSS_MIB, "RSS MiB", Lower, Measure, false),
        ],
        "files" => vec![
            MetricSpec::new(metric::MB_PER_S, "MB/s", Higher, Measure, true),
            MetricSpec::new(metric::RSS_MIB, "RSS MiB", Lower, Measure, false),
        ],
        _ => Vec::new(),
    }
}

/// The metric a case's ratios compare, when the workload is known: throughput, except
/// for fixed-rate direct cases (where every target delivers the offered rate) which
/// compare p99 latency.
fn primary_metric(workload: &str, case: &str) -> Option<&'static str> {
    match workload {
        "connections" => Some(metric::LOGINS_PER_S),
        "direct" if case.ends_with("/s") => Some(metric::P99_MS),
        "direct" | "group" | "backlog" => Some(metric::DELIVERED_PER_S),
        "files" => Some(metric::MB_PER_S),
        _ => None,
    }
}

/// What one target gave for one case, over its runs.
#[derive(Debug, Clone)]
pub(super) struct Cell<'a> {
    /// The target.
    pub(super) target: &'a str,
    /// Statistics by metric name, over the measured runs.
    pub(super) metrics: BTreeMap<&'a str, Stats>,
    /// The measured rows, in run order.
    pub(super) measured: Vec<&'a Row>,
    /// Distinct reasons it is unsupported, in first-appearance order.
    pub(super) unsupported: Vec<&'a str>,
    /// Failed runs: (run number, reason).
    pub(super) failed: Vec<(usize, &'a str)>,
}

impl Cell<'_> {
    /// The median of `metric`, when measured.
    pub(super) fn median(&self, metric: &str) -> Option<f64> {
        self.metrics.get(metric).map(|s| s.median)
    }
}

/// One case of a workload: a cell per target that has rows for it, in target order.
#[derive(Debug, Clone)]
pub(super) struct Case<'a> {
    /// The case name.
    pub(super) name: &'a str,
    /// The metric this case's ratios compare.
    pub(super) primary: Option<MetricSpec>,
    /// One cell per target, in [`Summary::targets`] order.
    pub(super) cells: Vec<Cell<'a>>,
}

impl<'a> Case<'a> {
    /// The cell of `target`, if it ran this case.
    pub(super) fn cell(&self, target: &str) -> Option<&Cell<'a>> {
        self.cells.iter().find(|c| c.target == target)
    }

    /// `target`'s median over the relay's, on this case's primary metric.
    pub(super) fn ratio_to_limit(&self, target: &str) -> Option<f64> {
        self.ratio(target, LIMIT)
    }

    /// vcom's median over `peer`'s, on this case's primary metric.
    pub(super) fn subject_over(&self, peer: &str) -> Option<f64> {
        self.ratio(SUBJECT, peer)
    }

    /// `num`'s median over `den`'s on the primary metric: `None` unless both are
    /// measured, the quotient is finite and the denominator is not zero.
    pub(super) fn ratio(&self, num: &str, den: &str) -> Option<f64> {
        let metric = self.primary.as_ref()?.name.as_str();
        ratio_of(
            self.cell(num)?.median(metric)?,
            self.cell(den)?.median(metric)?,
        )
    }
}

/// `a / b` when finite and `b` is not zero.
pub(super) fn ratio_of(a: f64, b: f64) -> Option<f64> {
    let r = a / b;
    (b != 0.0 && r.is_finite()).then_some(r)
}

/// One workload: its metrics (columns) and cases (in first-appearance order).
#[derive(Debug, Clone)]
pub(super) struct Workload<'a> {
    /// The workload name.
    pub(super) name: &'a str,
    /// Every metric measured in it, known ones in spec order, then others by name.
    pub(super) metrics: Vec<MetricSpec>,
    /// Its cases.
    pub(super) cases: Vec<Case<'a>>,
}

impl<'a> Workload<'a> {
    /// The case named `name`.
    pub(super) fn case(&self, name: &str) -> Option<&Case<'a>> {
        self.cases.iter().find(|c| c.name == name)
    }

    /// The spec of `metric`, if any case measured it.
    pub(super) fn spec(&self, metric: &str) -> Option<&MetricSpec> {
        self.metrics.iter().find(|m| m.name == metric)
    }

    /// Which metric each case's ratios compare: (metric label, case names), grouped in
    /// case order.
    pub(super) fn ratio_metrics(&self) -> Vec<(&str, Vec<&'a str>)> {
        let mut groups: Vec<(&str, Vec<&'a str>)> = Vec::new();
        for case in &self.cases {
            let Some(primary) = &case.primary else {
                continue;
            };
            match groups.iter_mut().find(|(l, _)| *l == primary.label) {
                Some((_, cases)) => cases.push(case.name),
                None => groups.push((primary.label.as_str(), vec![case.name])),
            }
        }
        groups
    }
}

/// The whole run, grouped.
#[derive(Debug, Clone)]
pub(super) struct Summary<'a> {
    /// Workloads in first-appearance order.
    pub(super) workloads: Vec<Workload<'a>>,
    /// Targets: vcom, relay, then the peers in first-appearance order.
    pub(super) targets: Vec<&'a str>,
}

/// The role a target plays.
pub(super) fn is_peer(target: &str) -> bool {
    target != SUBJECT && target != LIMIT
}

/// `items` deduplicated, in first-appearance order.
fn first_appearance<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen: Vec<&'a str> = Vec::new();
    for item in items {
        if !seen.contains(&item) {
            seen.push(item);
        }
    }
    seen
}

impl<'a> Summary<'a> {
    /// Groups `results.rows`.
    pub(super) fn new(results: &'a Results) -> Summary<'a> {
        let rows = &results.rows;
        let mut targets = first_appearance(rows.iter().map(|r| r.target.as_str()));
        // vcom first, the relay second, peers as they came.
        targets.sort_by_key(|t| match *t {
            SUBJECT => 0,
            LIMIT => 1,
            _ => 2,
        });
        let workloads = first_appearance(rows.iter().map(|r| r.workload.as_str()))
            .into_iter()
            .map(|workload| {
                let of_workload: Vec<&Row> =
                    rows.iter().filter(|r| r.workload == workload).collect();
                let metrics = workload_metrics(workload, &of_workload);
                let cases = first_appearance(of_workload.iter().map(|r| r.case.as_str()))
                    .into_iter()
                    .map(|case| {
                        let of_case: Vec<&Row> = of_workload
                            .iter()
                            .copied()
                            .filter(|r| r.case == case)
                            .collect();
                        let cells = targets.iter().filter_map(|t| cell(t, &of_case)).collect();
                        let primary = primary_metric(workload, case)
                            .and_then(|m| metrics.iter().find(|s| s.name == m))
                            .cloned();
                        Case {
                            name: case,
                            primary,
                            cells,
                        }
                    })
                    .collect();
                Workload {
                    name: workload,
                    metrics,
                    cases,
                }
            })
            .collect();
        Summary { workloads, targets }
    }

    /// The workload named `name`.
    pub(super) fn workload(&self, name: &str) -> Option<&Workload<'a>> {
        self.workloads.iter().find(|w| w.name == name)
    }

    /// The case of `workload` named `preferred`, else the first (or, with
    /// `last`, the last) case in which some target measured `metric`.
    pub(super) fn find_case(
        &self,
        workload: &str,
        preferred: Option<&str>,
        metric: &str,
        last: bool,
    ) -> Option<(&Workload<'a>, &Case<'a>)> {
        let w = self.workload(workload)?;
        let measured = |c: &&Case<'a>| c.cells.iter().any(|cell| cell.median(metric).is_some());
        let by_name = preferred.and_then(|p| w.case(p)).filter(measured);
        let case = match by_name {
            Some(c) => Some(c),
            None if last => w.cases.iter().rev().find(measured),
            None => w.cases.iter().find(measured),
        }?;
        Some((w, case))
    }
}

/// The metrics of a workload's rows, known ones in spec order, then any others by name.
fn workload_metrics(workload: &str, rows: &[&Row]) -> Vec<MetricSpec> {
    let present: Vec<&str> = {
        let mut names: Vec<&str> = rows
            .iter()
            .filter_map(|r| r.outcome.metrics())
            .flat_map(|m| m.keys().map(String::as_str))
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    };
    let known = known_metrics(workload);
    let mut specs: Vec<MetricSpec> = known
        .iter()
        .filter(|s| present.contains(&s.name.as_str()))
        .cloned()
        .collect();
    let unknown = present
        .iter()
        .filter(|n| !known.iter().any(|s| s.name == **n))
        .map(|n| MetricSpec::guess(n));
    specs.extend(unknown);
    specs
}

/// The cell of `target` among a case's rows, if it has any.
fn cell<'a>(target: &'a str, rows: &[&'a Row]) -> Option<Cell<'a>> {
    let mine: Vec<&'a Row> = {
        let mut mine: Vec<&'a Row> = rows
            .iter()
            .copied()
            .filter(|r| r.target == target)
            .collect();
        mine.sort_by_key(|r| r.run);
        mine
    };
    if mine.is_empty() {
        return None;
    }
    let mut cell = Cell {
        target,
        metrics: BTreeMap::new(),
        measured: Vec::new(),
        unsupported: Vec::new(),
        failed: Vec::new(),
    };
    let mut values: BTreeMap<&'a str, Vec<f64>> = BTreeMap::new();
    for row in mine {
        match &row.outcome {
            Outcome::Measured { metrics, .. } => {
                cell.measured.push(row);
                for (name, value) in metrics {
                    values.entry(name.as_str()).or_default().push(*value);
                }
            }
            Outcome::Unsupported(reason) => {
                if !cell.unsupported.contains(&reason.as_str()) {
                    cell.unsupported.push(reason);
                }
            }
            Outcome::Failed(reason) => cell.failed.push((row.run, reason)),
        }
    }
    cell.metrics = values
        .into_iter()
        .filter_map(|(name, v)| Some((name, Stats::of(&v)?)))
        .collect();
    Some(cell)
}
