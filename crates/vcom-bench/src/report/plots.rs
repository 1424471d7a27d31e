//! The report's SVG plots, drawn with `plotters` (SVG backend, no font files: text is
//! written as SVG `<text>` elements for the viewer to render).
//!
//! - `throughput.svg`: one panel per throughput figure that was measured (direct `max`
//!   msgs/s, group deliveries/s, logins/s), a bar per target at its median with a
//!   min–max whisker.
//! - `latency.svg`: latency against percentile on a "nines" axis (50, 90, 99, 99.9,
//!   max) with a log latency axis, a line per target: the median run bold, the other
//!   runs thin.
//!
//! A plot with nothing to show is not written. Writes only into the directory it is
//! given; never panics on odd figures (NaN, zero, negative, a single target).

use std::ops::Range;
use std::path::Path;

use anyhow::{Context, anyhow};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, KeyPointWeight};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::fmt;
use super::stats::{Case, Summary};
use crate::results::{Outcome, Results, Row, metric};

/// The file name of the throughput plot.
pub(super) const THROUGHPUT: &str = "throughput.svg";
/// The file name of the latency plot.
pub(super) const LATENCY: &str = "latency.svg";

/// The direct case whose latency distribution is plotted, when present.
const LATENCY_CASE: &str = "10000/s";
/// The lowest latency the log axis shows, ms (a zero would have no place on it).
const MIN_MS: f64 = 1e-3;
/// The lowest percentile plotted.
const MIN_PERCENTILE: f64 = 50.0;

/// Writes the plots into `dir` (created) and returns the names of the files written.
pub(super) fn write(results: &Results, dir: &Path) -> anyhow::Result<Vec<String>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let summary = Summary::new(results);
    let mut written = Vec::new();
    let plots = [
        (THROUGHPUT, throughput_svg(&summary)?),
        (LATENCY, latency_svg(&summary)?),
    ];
    for (name, svg) in plots {
        if let Some(svg) = svg {
            let path = dir.join(name);
            std::fs::write(&path, svg).with_context(|| format!("writing {}", path.display()))?;
            written.push(name.to_owned());
        }
    }
    Ok(written)
}

/// A plotters error as an [`anyhow::Error`].
fn plot_error(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing a plot: {e}")
}

/// The colour of the `index`th target (vcom blue, relay grey, then peers).
fn colour(target: &str, index: usize) -> RGBColor {
    const PEERS: [RGBColor; 8] = [
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    match target {
        "vcom" => RGBColor(31, 119, 180),
        "relay" => RGBColor(127, 127, 127),
        _ => PEERS[index % PEERS.len()],
    }
}

/// How an axis spaces its values.
#[derive(Debug, Clone, Copy)]
enum Warp {
    /// Evenly.
    Linear,
    /// By "nines" of a percentile: 90 → 1, 99 → 2, 99.9 → 3; 100 (the maximum) at
    /// `max_at`.
    Nines {
        /// Where the maximum sits.
        max_at: f64,
    },
}

impl Warp {
    /// The position of `v` along the axis, before scaling to pixels.
    fn apply(self, v: f64) -> f64 {
        match self {
            Warp::Linear => v,
            Warp::Nines { max_at } => {
                if v >= 100.0 {
                    max_at
                } else {
                    nines(v)
                }
            }
        }
    }
}

/// `-log10(1 - p/100)`: the number of nines of percentile `p` (0 for p ≤ 0).
fn nines(p: f64) -> f64 {
    if p <= 0.0 {
        0.0
    } else {
        -(1.0 - p / 100.0).log10()
    }
}

/// An axis with exactly the ticks it is given: categories (targets) or percentiles.
#[derive(Debug, Clone)]
struct TickedAxis {
    /// The lowest value shown.
    lo: f64,
    /// The highest value shown.
    hi: f64,
    /// The ticks, labelled by the chart's formatter.
    ticks: Vec<f64>,
    /// How values are spaced.
    warp: Warp,
}

impl Ranged for TickedAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let (a, b) = (self.warp.apply(self.lo), self.warp.apply(self.hi));
        let t = (self.warp.apply(*value) - a) / (b - a);
        let t = if t.is_finite() {
            t.clamp(-1.0, 2.0)
        } else {
            0.5
        };
        limit.0 + (f64::from(limit.1 - limit.0) * t).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        match hint.weight() {
            KeyPointWeight::Bold if hint.max_num_points() > 0 => self.ticks.clone(),
            _ => Vec::new(),
        }
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
}

/// One throughput panel: a title and (target, median, min, max) bars.
struct Panel {
    /// The panel's title.
    title: String,
    /// The figure on the y axis.
    unit: String,
    /// (target, median, min, max), in target order.
    bars: Vec<(String, f64, f64, f64)>,
}

/// The panels for which some target measured the figure.
fn panels(summary: &Summary<'_>) -> Vec<Panel> {
    let wanted = [
        ("direct", Some("max"), metric::DELIVERED_PER_S),
        ("group", None, metric::DELIVERED_PER_S),
        ("connections", Some("N=1000"), metric::LOGINS_PER_S),
    ];
    wanted
        .iter()
        .filter_map(|&(workload, preferred, name)| {
            let (w, case) = summary.find_case(workload, preferred, name, false)?;
            let label = w.spec(name).map_or(name, |s| s.label.as_str());
            let bars: Vec<(String, f64, f64, f64)> = case
                .cells
                .iter()
                .filter_map(|cell| {
                    let s = cell.metrics.get(name)?;
                    Some((cell.target.to_owned(), s.median, s.min, s.max))
                })
                .collect();
            (!bars.is_empty()).then(|| Panel {
                title: format!("{workload} {}: {label}", case.name),
                unit: label.to_owned(),
                bars,
            })
        })
        .collect()
}

/// The throughput plot, or `None` when nothing was measured.
fn throughput_svg(summary: &Summary<'_>) -> anyhow::Result<Option<String>> {
    let panels = panels(summary);
    if panels.is_empty() {
        return Ok(None);
    }
    let width = 440 * u32::try_from(panels.len()).unwrap_or(1);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, 380)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let areas = root.split_evenly((1, panels.len()));
        for (panel, area) in panels.iter().zip(areas.iter()) {
            draw_panel(summary, panel, area)?;
        }
        root.present().map_err(plot_error)?;
    }
    Ok(Some(svg))
}

/// Draws one throughput panel into `area`.
fn draw_panel(
    summary: &Summary<'_>,
    panel: &Panel,
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
) -> anyhow::Result<()> {
    let top = panel
        .bars
        .iter()
        .flat_map(|&(_, median, _, max)| [median, max])
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    let top = if top > 0.0 { top * 1.15 } else { 1.0 };
    let n = panel.bars.len();
    let x = TickedAxis {
        lo: -0.6,
        hi: n as f64 - 0.4,
        ticks: (0..n).map(|i| i as f64).collect(),
        warp: Warp::Linear,
    };
    let names: Vec<&str> = panel.bars.iter().map(|b| b.0.as_str()).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(84)
        .build_cartesian_2d(x, 0.0..top)
        .map_err(plot_error)?;
    let x_label = |v: &f64| {
        let i = v.round();
        if i >= 0.0 && (i as usize) < names.len() && (v - i).abs() < 1e-9 {
            names[i as usize].to_owned()
        } else {
            String::new()
        }
    };
    let y_label = |v: &f64| fmt::axis(*v);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&x_label)
        .y_label_formatter(&y_label)
        .y_desc(panel.unit.as_str())
        .draw()
        .map_err(plot_error)?;
    for (i, (target, median, min, max)) in panel.bars.iter().enumerate() {
        let index = summary
            .targets
            .iter()
            .position(|t| t == target)
            .unwrap_or(i);
        let c = colour(target, index);
        let at = i as f64;
        let clamp = |v: f64| {
            if v.is_finite() {
                v.clamp(0.0, top)
            } else {
                0.0
            }
        };
        let (median, min, max) = (clamp(*median), clamp(*min), clamp(*max));
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(at - 0.3, 0.0), (at + 0.3, median)],
                c.filled(),
            )))
            .map_err(plot_error)?;
        let whisker = [
            vec![(at, min), (at, max)],
            vec![(at - 0.1, min), (at + 0.1, min)],
            vec![(at - 0.1, max), (at + 0.1, max)],
        ];
        chart
            .draw_series(
                whisker
                    .into_iter()
                    .map(|points| PathElement::new(points, BLACK.stroke_width(1))),
            )
            .map_err(plot_error)?;
        let label_style =
            TextStyle::from(("sans-serif", 12)).pos(Pos::new(HPos::Center, VPos::Bottom));
        chart
            .draw_series(std::iter::once(Text::new(
                fmt::number(median),
                (at, max.max(median) + top * 0.01),
                label_style,
            )))
            .map_err(plot_error)?;
    }
    Ok(())
}

/// A run's latency points: (percentile, ms) from 50 up, sorted, from its distribution
/// or else from its percentile metrics.
fn points(row: &Row) -> Vec<(f64, f64)> {
    let Outcome::Measured { metrics, latency } = &row.outcome else {
        return Vec::new();
    };
    let mut points: Vec<(f64, f64)> = if latency.is_empty() {
        [
            (50.0, metric::P50_MS),
            (90.0, metric::P90_MS),
            (99.0, metric::P99_MS),
            (99.9, metric::P999_MS),
            (100.0, metric::MAX_MS),
        ]
        .iter()
        .filter_map(|&(p, name)| Some((p, *metrics.get(name)?)))
        .collect()
    } else {
        latency.clone()
    };
    points.retain(|&(p, ms)| p.is_finite() && ms.is_finite() && p >= MIN_PERCENTILE);
    for point in &mut points {
        point.0 = point.0.min(100.0);
        point.1 = point.1.max(MIN_MS);
    }
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    points
}

/// One target's lines on the latency plot.
struct Curve<'a> {
    /// The target.
    target: &'a str,
    /// Its colour.
    colour: RGBColor,
    /// The median run's (percentile, ms) points, drawn bold.
    median: Vec<(f64, f64)>,
    /// The other runs' points, drawn thin.
    others: Vec<Vec<(f64, f64)>>,
}

/// The latency plot, or `None` when no direct case has latency figures.
fn latency_svg(summary: &Summary<'_>) -> anyhow::Result<Option<String>> {
    let Some(direct) = summary.workload("direct") else {
        return Ok(None);
    };
    let has_points = |case: &&Case<'_>| {
        case.cells
            .iter()
            .any(|c| c.measured.iter().any(|r| !points(r).is_empty()))
    };
    let case = direct
        .case(LATENCY_CASE)
        .filter(has_points)
        .or_else(|| direct.cases.iter().find(has_points));
    let Some(case) = case else {
        return Ok(None);
    };
    let mut lines: Vec<Curve<'_>> = Vec::new();
    for cell in &case.cells {
        let mut runs: Vec<(f64, Vec<(f64, f64)>)> = cell
            .measured
            .iter()
            .map(|r| points(r))
            .filter(|p| !p.is_empty())
            .map(|p| (p99_of(&p), p))
            .collect();
        if runs.is_empty() {
            continue;
        }
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let median = runs.remove((runs.len() - 1) / 2).1;
        let index = summary
            .targets
            .iter()
            .position(|t| *t == cell.target)
            .unwrap_or(0);
        let others = runs.into_iter().map(|(_, p)| p).collect();
        lines.push(Curve {
            target: cell.target,
            colour: colour(cell.target, index),
            median,
            others,
        });
    }
    let all = || {
        lines
            .iter()
            .flat_map(|c| c.median.iter().chain(c.others.iter().flatten()))
    };
    let top_finite = all()
        .filter(|p| p.0 < 100.0)
        .map(|p| nines(p.0))
        .fold(3.0_f64, f64::max)
        .min(7.0);
    let max_at = top_finite.ceil() + 1.0;
    let mut ticks = vec![50.0, 90.0, 99.0, 99.9];
    let mut decimal = 99.99;
    while nines(decimal) <= top_finite.ceil() + 1e-9 {
        ticks.push(decimal);
        decimal = 100.0 - (100.0 - decimal) / 10.0;
    }
    ticks.push(100.0);
    let x = TickedAxis {
        lo: MIN_PERCENTILE,
        hi: 100.0,
        ticks,
        warp: Warp::Nines { max_at },
    };
    let (lo, hi) = all().fold((f64::INFINITY, 0.0_f64), |(lo, hi), p| {
        (lo.min(p.1), hi.max(p.1))
    });
    let (lo, hi) = if lo.is_finite() && lo > 0.0 && hi >= lo {
        (lo / 1.5, hi * 1.5)
    } else {
        (MIN_MS, 1.0_f64.max(hi * 2.0))
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 460)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("direct {}: latency by percentile", case.name),
                ("sans-serif", 18),
            )
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(x, (lo..hi).log_scale())
            .map_err(plot_error)?;
        let x_label = |p: &f64| {
            if *p >= 100.0 {
                "max".to_owned()
            } else {
                let text = format!("{p:.6}");
                text.trim_end_matches('0').trim_end_matches('.').to_owned()
            }
        };
        let y_label = |v: &f64| fmt::axis(*v);
        chart
            .configure_mesh()
            .x_label_formatter(&x_label)
            .y_label_formatter(&y_label)
            .x_desc("percentile")
            .y_desc("latency, ms (log)")
            .draw()
            .map_err(plot_error)?;
        for curve in &lines {
            let c = curve.colour;
            for run in &curve.others {
                chart
                    .draw_series(LineSeries::new(run.iter().copied(), c.mix(0.35)))
                    .map_err(plot_error)?;
            }
            chart
                .draw_series(LineSeries::new(
                    curve.median.iter().copied(),
                    c.stroke_width(2),
                ))
                .map_err(plot_error)?
                .label(curve.target)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                });
            chart
                .draw_series(
                    curve
                        .median
                        .iter()
                        .map(|&point| Circle::new(point, 3, c.filled())),
                )
                .map_err(plot_error)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(Some(svg))
}

/// The latency at the point nearest the 99th percentile: what orders runs to find the
/// median one.
fn p99_of(points: &[(f64, f64)]) -> f64 {
    points
        .iter()
        .min_by(|a, b| (a.0 - 99.0).abs().total_cmp(&(b.0 - 99.0).abs()))
        .map_or(0.0, |p| p.1)
}
