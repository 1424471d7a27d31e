//! The report of a suite run, from its [`Results`]: the table printed to the terminal,
//! the generated section of `docs/benchmarks.md` (and putting it between its markers),
//! and the SVG plots.
//!
//! Every figure is the median over the runs of a (workload, case, target), with the
//! lowest and highest run beside it; ratios are medians over medians of the same run set:
//! each target over the relay (the no-store bound), and vcom over each peer. Workloads,
//! cases and peers appear in the order the suite measured them (vcom and the relay
//! first).
//!
//! It never measures, never reads `results.json` itself (the caller hands it the
//! [`Results`]), writes only the plot directory and the document it is given, and never
//! panics: empty results, unsupported or failed targets and non-finite figures all render.
//! The text is deterministic (no clock but `results.started`), so a re-run changes only
//! figures in the document.

mod fmt;
mod plots;
mod stats;

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, bail};

use crate::results::{Results, metric};
use stats::{Better, Case, Cell, LIMIT, MetricSpec, SUBJECT, Summary, Workload, is_peer};

/// The line before the generated section in a document.
pub const BEGIN_MARKER: &str = "<!-- vcom-bench:begin -->";
/// The line after the generated section in a document.
pub const END_MARKER: &str = "<!-- vcom-bench:end -->";

/// The terminal table: per workload, per case, one line per target with the median and
/// `[min-max]` of its main metrics, `x0.31 of relay` for every target but the relay, and
/// vcom's ratio to each peer on the peer's line. Unsupported and failed targets show the
/// reason.
pub fn terminal(results: &Results) -> String {
    let summary = Summary::new(results);
    let mut out = String::new();
    let smoke = if results.smoke {
        " (smoke run: figures meaningless)"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "vcom-bench, started {}, {} runs per case and target{smoke}",
        results.started, results.runs
    );
    let _ = writeln!(
        out,
        "median [min-max] over the runs; \"x0.31 of relay\": target median / relay median; \
         \"vcom x1.80\": vcom median / that target's median"
    );
    if summary.workloads.is_empty() {
        out.push_str("\nno measurements\n");
        return out;
    }
    for workload in &summary.workloads {
        out.push('\n');
        out.push_str(workload.name);
        if let Some(metrics) = ratio_metrics_sentence(workload, "") {
            let _ = write!(out, " (ratios: {metrics})");
        }
        out.push('\n');
        let main: Vec<&MetricSpec> = workload.metrics.iter().filter(|m| m.main).collect();
        let mut lines = vec![Line {
            cells: ["case", "target"]
                .into_iter()
                .map(str::to_owned)
                .chain(main.iter().map(|m| m.label.clone()))
                .chain(["vs relay".to_owned(), "vcom vs".to_owned()])
                .collect(),
            tail: None,
        }];
        for case in &workload.cases {
            for (i, cell) in case.cells.iter().enumerate() {
                let first = if i == 0 { case.name } else { "" };
                lines.push(terminal_line(first, case, cell, &main));
            }
        }
        out.push_str(&align(&lines, "  "));
    }
    out
}

/// One line of an aligned table: cells, then text that no column is widened for.
struct Line {
    /// The aligned cells.
    cells: Vec<String>,
    /// Text after the last cell.
    tail: Option<String>,
}

/// `lines` with each column padded to its widest cell, every line indented by `indent`,
/// trailing spaces removed.
fn align(lines: &[Line], indent: &str) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for line in lines {
        for (i, cell) in line.cells.iter().enumerate() {
            let w = cell.chars().count();
            match widths.get_mut(i) {
                Some(width) => *width = (*width).max(w),
                None => widths.push(w),
            }
        }
    }
    let mut out = String::new();
    for line in lines {
        let mut text = indent.to_owned();
        for (i, cell) in line.cells.iter().enumerate() {
            text.push_str(cell);
            let pad = widths
                .get(i)
                .copied()
                .unwrap_or(0)
                .saturating_sub(cell.chars().count());
            text.extend(std::iter::repeat_n(' ', pad + 2));
        }
        if let Some(tail) = &line.tail {
            text.push_str(tail);
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

/// A terminal line for `cell` of `case`, with the case name `first` (empty after the
/// first target).
fn terminal_line(first: &str, case: &Case<'_>, cell: &Cell<'_>, main: &[&MetricSpec]) -> Line {
    let mut cells = vec![first.to_owned(), cell.target.to_owned()];
    if cell.measured.is_empty() {
        return Line {
            cells,
            tail: Some(fmt::one_line(&status(cell))),
        };
    }
    cells.extend(main.iter().map(|m| {
        cell.metrics.get(m.name.as_str()).map_or_else(
            || "-".to_owned(),
            |s| fmt::with_range(s, m.kind, " [", "-", "]"),
        )
    }));
    let to_relay = (cell.target != LIMIT)
        .then(|| case.ratio_to_limit(cell.target))
        .flatten()
        .map(|r| format!("x{} of relay", fmt::ratio(r)));
    let subject_over = is_peer(cell.target)
        .then(|| case.subject_over(cell.target))
        .flatten()
        .map(|r| format!("vcom x{}", fmt::ratio(r)));
    cells.push(to_relay.unwrap_or_default());
    cells.push(subject_over.unwrap_or_default());
    Line {
        cells,
        tail: partial_note(cell).map(|n| fmt::one_line(&n)),
    }
}

/// Why a cell has no figures: `unsupported: ...` or `failed: ...` with the reasons.
fn status(cell: &Cell<'_>) -> String {
    if !cell.unsupported.is_empty() {
        format!("unsupported: {}", cell.unsupported.join("; "))
    } else if !cell.failed.is_empty() {
        format!("failed: {}", failed_reasons(cell))
    } else {
        "no figures".to_owned()
    }
}

/// The distinct reasons of a cell's failed runs, each with its runs.
fn failed_reasons(cell: &Cell<'_>) -> String {
    let mut reasons: Vec<(&str, Vec<usize>)> = Vec::new();
    for &(run, reason) in &cell.failed {
        match reasons.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, runs)) => runs.push(run),
            None => reasons.push((reason, vec![run])),
        }
    }
    reasons
        .iter()
        .map(|(reason, runs)| {
            let runs: Vec<String> = runs.iter().map(ToString::to_string).collect();
            let s = if runs.len() == 1 { "" } else { "s" };
            format!("{reason} (run{s} {})", runs.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// For a cell with figures from only some runs: which runs failed and why.
fn partial_note(cell: &Cell<'_>) -> Option<String> {
    let mut notes = Vec::new();
    if !cell.failed.is_empty() {
        notes.push(format!(
            "over {} run{}; failed: {}",
            cell.measured.len(),
            if cell.measured.len() == 1 { "" } else { "s" },
            failed_reasons(cell)
        ));
    }
    if !cell.unsupported.is_empty() {
        notes.push(format!("unsupported: {}", cell.unsupported.join("; ")));
    }
    (!notes.is_empty()).then(|| notes.join("; "))
}

/// "msgs/s for `max`; p99 ms for `5000/s`, `10000/s`": which metric the ratios of each
/// case compare, with case names in `quote`; the metric alone when it is the same for
/// every case. `None` when no case has one.
fn ratio_metrics_sentence(workload: &Workload<'_>, quote: &str) -> Option<String> {
    let groups = workload.ratio_metrics();
    match groups.as_slice() {
        [] => None,
        [(label, _)] => Some((*label).to_owned()),
        _ => Some(
            groups
                .iter()
                .map(|(label, cases)| {
                    let cases: Vec<String> =
                        cases.iter().map(|c| format!("{quote}{c}{quote}")).collect();
                    format!("{label} for {}", cases.join(", "))
                })
                .collect::<Vec<_>>()
                .join("; "),
        ),
    }
}

/// Writes the SVG plots into `dir` (created) and returns their file names: the
/// throughput against peers (`throughput.svg`: direct `max` msgs/s, group deliveries/s,
/// logins/s, as panels with a min–max whisker per target) and the latency distribution
/// (`latency.svg`: percentile on a nines axis against latency on a log axis, a line per
/// target, for direct `10000/s` or else the first direct case with latency figures). A
/// plot with nothing to show is not written.
pub fn write_plots(results: &Results, dir: &Path) -> anyhow::Result<Vec<String>> {
    plots::write(results, dir)
}

/// One row of the headline table.
struct Headline {
    /// The workload.
    workload: &'static str,
    /// The case wanted (else the first, or with `last` the last, that measured it).
    case: Option<&'static str>,
    /// The metric.
    metric: &'static str,
    /// Take the last case rather than the first when `case` is absent.
    last: bool,
}

/// The headline figures, in table order.
const HEADLINES: [Headline; 8] = [
    Headline {
        workload: "direct",
        case: Some("max"),
        metric: metric::DELIVERED_PER_S,
        last: false,
    },
    Headline {
        workload: "direct",
        case: Some("10000/s"),
        metric: metric::P99_MS,
        last: false,
    },
    Headline {
        workload: "connections",
        case: Some("N=1000"),
        metric: metric::LOGINS_PER_S,
        last: false,
    },
    Headline {
        workload: "connections",
        case: None,
        metric: metric::RSS_PER_CONN_KIB,
        last: true,
    },
    Headline {
        workload: "group",
        case: None,
        metric: metric::DELIVERED_PER_S,
        last: false,
    },
    Headline {
        workload: "backlog",
        case: None,
        metric: metric::DELIVERED_PER_S,
        last: false,
    },
    // The last backlog case: one sender alone.
    Headline {
        workload: "backlog",
        case: None,
        metric: metric::STORED_PER_S,
        last: true,
    },
    Headline {
        workload: "files",
        case: Some("1x256MiB"),
        metric: metric::MB_PER_S,
        last: false,
    },
];

/// The best peer of `case` on `spec`: (peer, median).
fn best_peer<'a>(case: &Case<'a>, spec: &MetricSpec) -> Option<(&'a str, f64)> {
    let mut best: Option<(&'a str, f64)> = None;
    for cell in case.cells.iter().filter(|c| is_peer(c.target)) {
        let Some(v) = cell.median(&spec.name) else {
            continue;
        };
        let better = match (best, spec.better) {
            (None, _) => true,
            (Some((_, b)), Better::Higher) => v > b,
            (Some((_, b)), Better::Lower) => v < b,
            (Some(_), Better::Neither) => false,
        };
        if better {
            best = Some((cell.target, v));
        }
    }
    best
}

/// The markdown headline table, or `None` when no headline figure was measured.
fn headline_table(summary: &Summary<'_>) -> Option<String> {
    let mut rows = Vec::new();
    for h in &HEADLINES {
        let Some((workload, case)) = summary.find_case(h.workload, h.case, h.metric, h.last) else {
            continue;
        };
        let Some(spec) = workload.spec(h.metric) else {
            continue;
        };
        let median = |target: &str| case.cell(target).and_then(|c| c.median(h.metric));
        let show = |v: Option<f64>| v.map_or_else(String::new, |v| fmt::figure(v, spec.kind));
        let ratio = |a: Option<f64>, b: Option<f64>| {
            a.zip(b)
                .and_then(|(a, b)| stats::ratio_of(a, b))
                .map_or_else(String::new, fmt::ratio)
        };
        let (subject, limit) = (median(SUBJECT), median(LIMIT));
        let best = best_peer(case, spec);
        let best_text = best.map_or_else(String::new, |(peer, v)| {
            format!("{} ({})", fmt::figure(v, spec.kind), fmt::cell(peer))
        });
        rows.push(format!(
            "| {} {} | `{}` | {} | {} | {} | {} | {} |",
            workload.name,
            spec.label,
            fmt::cell(case.name),
            show(subject),
            show(limit),
            best_text,
            ratio(subject, limit),
            ratio(subject, best.map(|b| b.1)),
        ));
    }
    if rows.is_empty() {
        return None;
    }
    let mut out = String::from(
        "| figure | case | vcom | relay | best peer | vcom ÷ relay | vcom ÷ best peer |\n\
         | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for row in rows {
        out.push_str(&row);
        out.push('\n');
    }
    Some(out)
}

/// The machine as one sentence.
fn machine_sentence(results: &Results) -> String {
    let m = &results.machine;
    let model = if m.cpu_model.trim().is_empty() {
        String::new()
    } else {
        format!(" ({})", m.cpu_model.trim())
    };
    let kernel = if m.kernel.trim().is_empty() {
        "kernel unknown".to_owned()
    } else {
        m.kernel.trim().to_owned()
    };
    format!(
        "Machine: {} logical CPUs{model}, {} GiB memory, {kernel}, {} open files per process.",
        m.cpus,
        fmt::number(m.memory_gib),
        fmt::count(m.open_files as f64),
    )
}

/// The markdown table of one workload, followed by notes on partly failed cells.
fn workload_table(workload: &Workload<'_>) -> String {
    let mut out = String::new();
    let mut header = vec!["case".to_owned(), "target".to_owned()];
    header.extend(workload.metrics.iter().map(|m| fmt::cell(&m.label)));
    header.extend(["target ÷ relay".to_owned(), "vcom ÷ target".to_owned()]);
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "|{}", " --- |".repeat(header.len()));
    let mut notes = Vec::new();
    for case in &workload.cases {
        for cell in &case.cells {
            let mut cells = vec![
                format!("`{}`", fmt::cell(case.name)),
                fmt::cell(cell.target),
            ];
            if cell.measured.is_empty() {
                cells.push(format!("*{}*", fmt::cell(&status(cell))));
                cells.extend(std::iter::repeat_n(String::new(), header.len() - 3));
            } else {
                cells.extend(workload.metrics.iter().map(|m| {
                    cell.metrics
                        .get(m.name.as_str())
                        .map_or_else(String::new, |s| fmt::with_range(s, m.kind, " (", "–", ")"))
                }));
                let to_relay = (cell.target != LIMIT)
                    .then(|| case.ratio_to_limit(cell.target))
                    .flatten();
                let subject_over = is_peer(cell.target)
                    .then(|| case.subject_over(cell.target))
                    .flatten();
                cells.push(to_relay.map_or_else(String::new, fmt::ratio));
                cells.push(subject_over.map_or_else(String::new, fmt::ratio));
                if let Some(note) = partial_note(cell) {
                    notes.push(format!(
                        "- `{}`, {}: {}",
                        fmt::cell(case.name),
                        fmt::cell(cell.target),
                        fmt::cell(&note)
                    ));
                }
            }
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
    }
    if !notes.is_empty() {
        out.push('\n');
        for note in notes {
            out.push_str(&note);
            out.push('\n');
        }
    }
    out
}

/// The settings table, in target order (then any other keys), or `None` when empty.
fn settings_table(results: &Results, summary: &Summary<'_>) -> Option<String> {
    if results.settings.is_empty() {
        return None;
    }
    let mut keys: Vec<&str> = summary
        .targets
        .iter()
        .copied()
        .filter(|t| results.settings.contains_key(*t))
        .collect();
    keys.extend(
        results
            .settings
            .keys()
            .map(String::as_str)
            .filter(|k| !summary.targets.contains(k)),
    );
    let mut out = String::from("| target | settings |\n| --- | --- |\n");
    for key in keys {
        let value = results.settings.get(key).map_or("", String::as_str);
        let _ = writeln!(out, "| {} | {} |", fmt::cell(key), fmt::cell(value));
    }
    Some(out)
}

/// The alt text of a plot file.
fn plot_alt(name: &str) -> &str {
    match name {
        plots::THROUGHPUT => "Throughput against peers: median per target, whiskers min–max",
        plots::LATENCY => "Latency by percentile, one line per target (median run bold)",
        other => other,
    }
}

/// The generated markdown section: machine, command, date and runs; a headline table
/// (vcom, relay, best peer); per workload a table of every metric as `median (min–max)`
/// with the ratio to the relay and vcom's ratio to each peer (unsupported and failed
/// targets with their reason); the settings that bear on fairness; links to `plots`
/// under `plot_dir_rel` (e.g. `benchmarks/`).
pub fn markdown(results: &Results, plot_dir_rel: &str, plots: &[String]) -> String {
    let summary = Summary::new(results);
    let mut out = String::from("## vcom against the relay and peers\n\n");
    out.push_str(
        "Generated by `vcom-bench` from its `results.json`: rerun the suite rather than \
         editing this section.\n\n",
    );
    if results.smoke {
        out.push_str("**Smoke run**: every workload tiny, the figures mean nothing.\n\n");
    }
    let _ = writeln!(out, "{}\n", machine_sentence(results));
    let _ = writeln!(out, "Command:\n\n```\n{}\n```\n", results.command.trim());
    let _ = writeln!(
        out,
        "Started {}; each case ran {} times per target, targets alternating.\n",
        results.started.trim(),
        results.runs
    );
    out.push_str(
        "Each figure is the median over the runs, with the lowest and highest run in \
         brackets. Ratios are target / relay medians of the same run set (\"target ÷ \
         relay\"), for throughput (higher is better) as for latency and memory (lower is \
         better); \"vcom ÷ target\" is vcom's median over that peer's. `relay` relays \
         without storing anything, the bound vcom can approach; targets other than vcom \
         and the relay are peers.\n\n",
    );
    if summary.workloads.is_empty() {
        out.push_str("No measurements.\n");
    }
    if let Some(table) = headline_table(&summary) {
        let _ = writeln!(out, "### Headline\n\n{table}");
    }
    for workload in &summary.workloads {
        let _ = writeln!(out, "### {}\n", fmt::cell(workload.name));
        if let Some(metrics) = ratio_metrics_sentence(workload, "`") {
            let _ = writeln!(out, "Ratios compare {metrics}.\n");
        }
        let _ = writeln!(out, "{}", workload_table(workload));
    }
    if let Some(table) = settings_table(results, &summary) {
        let _ = writeln!(out, "### Settings that bear on fairness\n\n{table}");
    }
    if !plots.is_empty() {
        out.push_str("### Plots\n\n");
        let dir = if plot_dir_rel.is_empty() || plot_dir_rel.ends_with('/') {
            plot_dir_rel.to_owned()
        } else {
            format!("{plot_dir_rel}/")
        };
        for name in plots {
            let _ = writeln!(out, "![{}]({dir}{name})\n", plot_alt(name));
        }
    }
    let trimmed = out.trim_end().len();
    out.truncate(trimmed);
    out.push('\n');
    out
}

/// Replaces the lines between `<!-- vcom-bench:begin -->` and `<!-- vcom-bench:end -->`
/// in the file at `doc` with `section`, keeping the marker lines. Without the markers,
/// inserts them around `section` after the file's first heading and the blank line after
/// it. Leaves the file untouched when nothing changes; fails if the file does not exist
/// or has only one of the markers.
pub fn update_doc(doc: &Path, section: &str) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(doc).with_context(|| format!("reading {}", doc.display()))?;
    let updated = with_section(&text, section)
        .with_context(|| format!("updating the generated section of {}", doc.display()))?;
    if updated != text {
        std::fs::write(doc, updated).with_context(|| format!("writing {}", doc.display()))?;
    }
    Ok(())
}

/// `text` with `section` between its markers (see [`update_doc`]).
fn with_section(text: &str, section: &str) -> anyhow::Result<String> {
    let body = section.trim_end_matches(['\n', '\r']);
    let body = if body.is_empty() {
        String::new()
    } else {
        format!("{body}\n")
    };
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let is = |line: &str, marker: &str| line.trim() == marker;
    let begin = lines.iter().position(|l| is(l, BEGIN_MARKER));
    let end = lines.iter().position(|l| is(l, END_MARKER));
    let mut out = String::with_capacity(text.len() + body.len());
    match (begin, end) {
        (Some(begin), Some(end)) if begin < end => {
            lines[..=begin].iter().for_each(|l| out.push_str(l));
            out.push_str(&body);
            lines[end..].iter().for_each(|l| out.push_str(l));
        }
        (None, None) => {
            let heading = lines.iter().position(|l| l.trim_start().starts_with('#'));
            let split = match heading {
                Some(h) if lines.get(h + 1).is_some_and(|l| l.trim().is_empty()) => h + 2,
                Some(h) => h + 1,
                None => 0,
            };
            lines[..split].iter().for_each(|l| out.push_str(l));
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            if heading.is_some_and(|h| split == h + 1) {
                out.push('\n');
            }
            let _ = write!(out, "{BEGIN_MARKER}\n{body}{END_MARKER}\n");
            if split < lines.len() {
                out.push('\n');
            }
            lines[split..].iter().for_each(|l| out.push_str(l));
        }
        _ => bail!("the markers {BEGIN_MARKER} and {END_MARKER} must both be there, in order"),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::results::{Machine, Outcome, Row};

    /// A measured outcome from (metric, value) pairs and latency points.
    fn measured(metrics: &[(&str, f64)], latency: &[(f64, f64)]) -> Outcome {
        Outcome::Measured {
            metrics: metrics.iter().map(|&(k, v)| (k.to_owned(), v)).collect(),
            latency: latency.to_vec(),
        }
    }

    /// Runs 1..=3 of `targets` on one case, alternating targets as the suite does;
    /// `outcome(target, run)` gives each.
    fn runs(
        rows: &mut Vec<Row>,
        workload: &str,
        case: &str,
        targets: &[&str],
        outcome: impl Fn(&str, usize) -> Outcome,
    ) {
        for run in 1..=3 {
            for target in targets {
                rows.push(Row {
                    workload: workload.to_owned(),
                    case: case.to_owned(),
                    target: (*target).to_owned(),
                    run,
                    outcome: outcome(target, run),
                });
            }
        }
    }

    /// vcom, the relay and one peer (mosquitto-qos0), three runs each, with an
    /// unsupported row (the relay stores no backlog), a failed run (mosquitto's backlog
    /// run 2) and a peer that cannot do groups.
    fn sample() -> Results {
        let targets = ["vcom", "relay", "mosquitto-qos0"];
        let mut rows = Vec::new();
        // Per-run spread: run 1 low, run 2 mid, run 3 high (vcom), shuffled for others.
        let spread = |target: &str, run: usize| -> f64 {
            match (target, run) {
                ("vcom", 1) | ("relay", 3) | ("mosquitto-qos0", 2) => 0.97,
                ("vcom", 2) | ("relay", 1) | ("mosquitto-qos0", 3) => 1.0,
                _ => 1.02,
            }
        };
        let base = |target: &str, vcom: f64, relay: f64, peer: f64| match target {
            "vcom" => vcom,
            "relay" => relay,
            _ => peer,
        };
        runs(&mut rows, "connections", "N=1000", &targets, |t, r| {
            let k = spread(t, r);
            measured(
                &[
                    (metric::CONNECTED, 1000.0),
                    (metric::LOGINS_PER_S, base(t, 4100.0, 9800.0, 21000.0) * k),
                    (metric::LOGIN_P50_MS, base(t, 61.0, 30.5, 12.0) / k),
                    (metric::LOGIN_P99_MS, base(t, 180.0, 95.0, 40.0) / k),
                    (metric::RSS_PER_CONN_KIB, base(t, 52.3, 38.1, 9.6) / k),
                ],
                &[],
            )
        });
        runs(&mut rows, "direct", "max", &targets, |t, r| {
            let k = spread(t, r);
            let rate = base(t, 309_000.0, 1_010_000.0, 121_000.0) * k;
            measured(
                &[
                    (metric::DELIVERED_PER_S, rate),
                    (metric::SENT, (rate * 10.0).round()),
                    (metric::LOST, 0.0),
                    (metric::P50_MS, base(t, 12.0, 3.1, 40.0) / k),
                    (metric::P99_MS, base(t, 48.0, 9.9, 130.0) / k),
                    (metric::SERVER_CPU_US_PER_MSG, base(t, 6.2, 1.9, 14.0) / k),
                    (metric::RSS_MIB, base(t, 212.0, 48.0, 35.0)),
                ],
                &[],
            )
        });
        runs(&mut rows, "direct", "10000/s", &targets, |t, r| {
            let k = spread(t, r);
            let p = |ms: f64| ms * base(t, 1.0, 0.4, 2.5) / k;
            let latency = [
                (50.0, p(0.31)),
                (90.0, p(0.52)),
                (99.0, p(1.4)),
                (99.9, p(4.2)),
                (100.0, p(11.0)),
            ];
            measured(
                &[
                    (metric::DELIVERED_PER_S, 10_000.0),
                    (metric::SENT, 100_000.0),
                    (
                        metric::LOST,
                        if t == "mosquitto-qos0" && r == 3 {
                            12.0
                        } else {
                            0.0
                        },
                    ),
                    (metric::P50_MS, p(0.31)),
                    (metric::P90_MS, p(0.52)),
                    (metric::P99_MS, p(1.4)),
                    (metric::P999_MS, p(4.2)),
                    (metric::MAX_MS, p(11.0)),
                ],
                &latency,
            )
        });
        runs(&mut rows, "group", "1000 members", &targets, |t, r| {
            if t == "mosquitto-qos0" {
                return Outcome::Unsupported("no groups | topics only".to_owned());
            }
            let k = spread(t, r);
            measured(
                &[
                    (
                        metric::DELIVERED_PER_S,
                        base(t, 880_000.0, 2_400_000.0, 0.0) * k,
                    ),
                    (metric::LOST, 0.0),
                    (metric::P99_MS, base(t, 75.0, 21.0, 0.0) / k),
                ],
                &[],
            )
        });
        runs(
            &mut rows,
            "backlog",
            "1000000 msgs",
            &targets,
            |t, r| match (t, r) {
                ("relay", _) => Outcome::Unsupported("stores nothing".to_owned()),
                ("mosquitto-qos0", 2) => Outcome::Failed("timed out after 60 s".to_owned()),
                _ => {
                    let k = spread(t, r);
                    measured(
                        &[
                            (metric::STORED_PER_S, base(t, 151_000.0, 0.0, 64_000.0) * k),
                            (
                                metric::DELIVERED_PER_S,
                                base(t, 402_000.0, 0.0, 90_500.0) * k,
                            ),
                        ],
                        &[],
                    )
                }
            },
        );
        runs(&mut rows, "files", "1x256MiB", &targets, |t, r| {
            if t == "mosquitto-qos0" {
                return Outcome::Failed("broker closed the connection".to_owned());
            }
            measured(
                &[(metric::MB_PER_S, base(t, 310.0, 905.0, 0.0) * spread(t, r))],
                &[],
            )
        });
        Results {
            machine: Machine {
                cpus: 2,
                cpu_model: "AMD EPYC 7B13".to_owned(),
                memory_gib: 23.4,
                kernel: "Linux 6.8.0".to_owned(),
                open_files: 1_048_576,
            },
            command: "cargo xtask bench --runs 3".to_owned(),
            started: "2026-05-01T10:00:00Z".to_owned(),
            runs: 3,
            smoke: false,
            rows,
            settings: BTreeMap::from([
                (
                    "mosquitto-qos0".to_owned(),
                    "QoS 0, persistence false, max_queued_messages 0".to_owned(),
                ),
                ("relay".to_owned(), "TLS 1.3, no store".to_owned()),
                (
                    "vcom".to_owned(),
                    "TLS 1.3, SQLite synchronous=FULL, group commit".to_owned(),
                ),
            ]),
        }
    }

    /// Results with nothing measured.
    fn empty() -> Results {
        Results {
            machine: Machine::default(),
            command: String::new(),
            started: String::new(),
            runs: 0,
            smoke: true,
            rows: Vec::new(),
            settings: BTreeMap::new(),
        }
    }

    #[test]
    fn stats_median_min_max() {
        let s = stats::Stats::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.n, s.median, s.min, s.max), (3, 2.0, 1.0, 3.0));
        let s = stats::Stats::of(&[4.0, 1.0, 2.0, 10.0]).unwrap();
        assert_eq!((s.n, s.median, s.min, s.max), (4, 3.0, 1.0, 10.0));
        let s = stats::Stats::of(&[f64::NAN, 5.0, f64::INFINITY]).unwrap();
        assert_eq!((s.n, s.median, s.min, s.max), (1, 5.0, 5.0, 5.0));
        assert!(stats::Stats::of(&[]).is_none());
        assert!(stats::Stats::of(&[f64::NAN]).is_none());
    }

    #[test]
    fn numbers_are_human_and_stable() {
        assert_eq!(fmt::number(309_123.0), "309 000");
        assert_eq!(fmt::number(1_010_000.0), "1 010 000");
        assert_eq!(fmt::number(4412.0), "4 410");
        assert_eq!(fmt::number(123.4), "123");
        assert_eq!(fmt::number(12.34), "12.3");
        assert_eq!(fmt::number(1.234), "1.23");
        assert_eq!(fmt::number(0.04123), "0.0412");
        assert_eq!(fmt::number(9.996), "10.0");
        assert_eq!(fmt::number(999.7), "1 000");
        assert_eq!(fmt::number(0.0), "0");
        assert_eq!(fmt::number(-2.5), "-2.50");
        assert_eq!(fmt::number(f64::NAN), "n/a");
        assert_eq!(fmt::count(18_999.0), "18 999");
        assert_eq!(fmt::ratio(0.0612), "0.06");
        assert_eq!(fmt::ratio(1.8), "1.80");
        assert_eq!(fmt::ratio(12.34), "12.3");
        assert_eq!(fmt::ratio(0.0041), "0.00410");
        assert_eq!(fmt::ratio(f64::INFINITY), "n/a");
    }

    #[test]
    fn ratios_are_medians_over_medians() {
        let results = sample();
        let summary = Summary::new(&results);
        let case = summary.workload("direct").unwrap().case("max").unwrap();
        let r = case.ratio_to_limit("vcom").unwrap();
        assert!((r - 309_000.0 / 1_010_000.0).abs() < 1e-12, "{r}");
        let r = case.subject_over("mosquitto-qos0").unwrap();
        assert!((r - 309_000.0 / 121_000.0).abs() < 1e-12, "{r}");
        // Fixed-rate direct cases compare p99 latency.
        let case = summary.workload("direct").unwrap().case("10000/s").unwrap();
        assert_eq!(case.primary.as_ref().unwrap().name, metric::P99_MS);
        assert!((case.ratio_to_limit("vcom").unwrap() - 2.5).abs() < 1e-9);
        // Two measured runs of three: the mean of the two.
        let backlog = summary.workload("backlog").unwrap();
        let cell = backlog.cases[0].cell("mosquitto-qos0").unwrap();
        let s = cell.metrics[metric::STORED_PER_S];
        assert_eq!(s.n, 2);
        assert!((s.median - 64_000.0 * (1.02 + 1.0) / 2.0).abs() < 1e-6);
        // No relay figure, no ratio.
        assert!(backlog.cases[0].ratio_to_limit("vcom").is_none());
        assert_eq!(summary.targets, ["vcom", "relay", "mosquitto-qos0"]);
    }

    #[test]
    fn terminal_table() {
        let text = terminal(&sample());
        assert!(text.contains("x0.31 of relay"), "{text}");
        assert!(text.contains("unsupported: stores nothing"), "{text}");
        assert!(
            text.contains("failed: broker closed the connection"),
            "{text}"
        );
        insta::assert_snapshot!(text);
    }

    #[test]
    fn markdown_section() {
        let plots = vec![plots::THROUGHPUT.to_owned(), plots::LATENCY.to_owned()];
        let text = markdown(&sample(), "benchmarks", &plots);
        assert!(text.contains("![Throughput"), "{text}");
        assert!(text.contains("(benchmarks/latency.svg)"), "{text}");
        assert!(text.contains("no groups \\| topics only"), "{text}");
        insta::assert_snapshot!(text);
    }

    #[test]
    fn nothing_measured_renders() {
        let results = empty();
        assert!(terminal(&results).contains("no measurements"));
        let text = markdown(&results, "", &[]);
        assert!(text.contains("No measurements."), "{text}");
        let dir = tempfile::tempdir().unwrap();
        assert!(write_plots(&results, dir.path()).unwrap().is_empty());
    }

    #[test]
    fn all_unsupported_or_nan_renders() {
        let mut results = empty();
        runs(
            &mut results.rows,
            "direct",
            "max",
            &["vcom", "relay"],
            |t, _| {
                if t == "vcom" {
                    Outcome::Unsupported("not built".to_owned())
                } else {
                    measured(
                        &[(metric::DELIVERED_PER_S, f64::NAN), (metric::P99_MS, 0.0)],
                        &[(50.0, f64::NAN), (100.0, 0.0), (f64::NAN, 1.0)],
                    )
                }
            },
        );
        let text = terminal(&results);
        assert!(text.contains("unsupported: not built"), "{text}");
        let text = markdown(&results, "plots/", &[]);
        assert!(text.contains("*unsupported: not built*"), "{text}");
        let dir = tempfile::tempdir().unwrap();
        let written = write_plots(&results, dir.path()).unwrap();
        // A zero latency is drawn at the floor of the log axis; NaN throughput has no bar.
        assert_eq!(written, [plots::LATENCY]);
    }

    /// The trimmed contents of the `<text>` elements of `svg`.
    fn texts(svg: &str) -> Vec<&str> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| Some(t.split_once('>')?.1.split_once("</text>")?.0.trim()))
            .collect()
    }

    #[test]
    fn plots_are_svg_with_the_targets() {
        let dir = tempfile::tempdir().unwrap();
        let plot_dir = dir.path().join("benchmarks");
        let written = write_plots(&sample(), &plot_dir).unwrap();
        assert_eq!(written, [plots::THROUGHPUT, plots::LATENCY]);
        for name in &written {
            let svg = std::fs::read_to_string(plot_dir.join(name)).unwrap();
            assert!(svg.trim_start().starts_with("<svg"), "{name}");
            assert!(svg.trim_end().ends_with("</svg>"), "{name}");
            assert_eq!(svg.matches("<svg").count(), svg.matches("</svg>").count());
            assert!(svg.contains("<text"), "{name}");
            let texts = texts(&svg);
            for target in ["vcom", "relay", "mosquitto-qos0"] {
                assert!(texts.contains(&target), "{name} lacks {target}: {texts:?}");
            }
        }
        let latency = std::fs::read_to_string(plot_dir.join(plots::LATENCY)).unwrap();
        let texts_of_latency = texts(&latency);
        for tick in [
            "50",
            "90",
            "99",
            "99.9",
            "max",
            "direct 10000/s: latency by percentile",
        ] {
            assert!(
                texts_of_latency.contains(&tick),
                "latency plot lacks {tick}: {texts_of_latency:?}"
            );
        }
        let throughput = std::fs::read_to_string(plot_dir.join(plots::THROUGHPUT)).unwrap();
        let texts_of_throughput = texts(&throughput);
        for title in [
            "direct max: msgs/s",
            "group 1000 members: deliveries/s",
            "connections N=1000: logins/s",
            "309 000",
        ] {
            assert!(
                texts_of_throughput.contains(&title),
                "throughput plot lacks {title}: {texts_of_throughput:?}"
            );
        }
    }

    #[test]
    fn update_doc_replaces_only_between_markers() {
        let dir = tempfile::tempdir().unwrap();
        let doc = dir.path().join("benchmarks.md");
        let before = format!(
            "# Benchmarks\n\nIntro.\n\n{BEGIN_MARKER}\nold figures\nmore\n{END_MARKER}\n\n## Store\n\nKept.\n"
        );
        std::fs::write(&doc, &before).unwrap();
        update_doc(&doc, "## New\n\nfigures\n").unwrap();
        let after = std::fs::read_to_string(&doc).unwrap();
        assert_eq!(
            after,
            format!(
                "# Benchmarks\n\nIntro.\n\n{BEGIN_MARKER}\n## New\n\nfigures\n{END_MARKER}\n\n## Store\n\nKept.\n"
            )
        );
        update_doc(&doc, "## New\n\nfigures").unwrap();
        assert_eq!(std::fs::read_to_string(&doc).unwrap(), after, "idempotent");
    }

    #[test]
    fn update_doc_inserts_markers_after_the_first_heading() {
        let dir = tempfile::tempdir().unwrap();
        let doc = dir.path().join("benchmarks.md");
        std::fs::write(&doc, "# Benchmarks\n\n## Store\n\nKept.\n").unwrap();
        update_doc(&doc, "figures\n").unwrap();
        let after = std::fs::read_to_string(&doc).unwrap();
        assert_eq!(
            after,
            format!("# Benchmarks\n\n{BEGIN_MARKER}\nfigures\n{END_MARKER}\n\n## Store\n\nKept.\n")
        );
        update_doc(&doc, "figures\n").unwrap();
        assert_eq!(std::fs::read_to_string(&doc).unwrap(), after, "idempotent");
        update_doc(&doc, "new figures\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&doc).unwrap(),
            format!(
                "# Benchmarks\n\n{BEGIN_MARKER}\nnew figures\n{END_MARKER}\n\n## Store\n\nKept.\n"
            )
        );
    }

    #[test]
    fn update_doc_edge_cases() {
        let dir = tempfile::tempdir().unwrap();
        assert!(update_doc(&dir.path().join("missing.md"), "x").is_err());
        assert!(!dir.path().join("missing.md").exists(), "creates nothing");
        // A heading with no blank line after it, and no newline at the end.
        assert_eq!(
            with_section("# T\ntext", "s").unwrap(),
            format!("# T\n\n{BEGIN_MARKER}\ns\n{END_MARKER}\n\ntext")
        );
        assert_eq!(
            with_section("# T", "s").unwrap(),
            format!("# T\n\n{BEGIN_MARKER}\ns\n{END_MARKER}\n")
        );
        assert_eq!(
            with_section("", "s").unwrap(),
            format!("{BEGIN_MARKER}\ns\n{END_MARKER}\n")
        );
        assert!(with_section(&format!("# T\n{BEGIN_MARKER}\n"), "s").is_err());
        assert!(with_section(&format!("{END_MARKER}\n{BEGIN_MARKER}\n"), "s").is_err());
        // An empty section leaves the markers adjacent.
        assert_eq!(
            with_section(&format!("{BEGIN_MARKER}\nx\n{END_MARKER}\n"), "").unwrap(),
            format!("{BEGIN_MARKER}\n{END_MARKER}\n")
        );
    }
}
