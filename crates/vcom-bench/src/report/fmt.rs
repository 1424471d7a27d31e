//! Number and text formatting shared by the terminal table, the markdown and the plots:
//! three significant digits with digits grouped by a space (`309 000`, `1.23`,
//! `0.0412`), exact counts, ratios (`0.06`, `1.80`), median with range, and escaping for
//! markdown table cells. Deterministic: the same figures always give the same text.

use super::stats::{Kind, Stats};

/// Written for a figure that is not a finite number.
pub(super) const NOT_A_NUMBER: &str = "n/a";

/// `digits` (ASCII digits only) grouped in threes from the right by a space, when there
/// are four or more.
fn group(digits: &str) -> String {
    if digits.len() < 4 {
        return digits.to_owned();
    }
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// `s` (as `format!` writes a non-negative fixed-point number) with its integer part
/// grouped.
fn group_fixed(s: &str) -> String {
    match s.split_once('.') {
        Some((int, frac)) => format!("{}.{frac}", group(int)),
        None => group(s),
    }
}

/// A measured figure to three significant digits: `309 000`, `123`, `12.3`, `1.23`,
/// `0.0412`. Tiny figures go to scientific notation; non-finite ones to `n/a`.
pub(super) fn number(v: f64) -> String {
    if !v.is_finite() {
        return NOT_A_NUMBER.to_owned();
    }
    if v == 0.0 {
        return "0".to_owned();
    }
    let sign = if v < 0.0 { "-" } else { "" };
    let a = v.abs();
    if a < 1e-6 {
        return format!("{sign}{a:.2e}");
    }
    // Round to three significant digits first, so that 9.996 is written as 10.0.
    let unit = 10f64.powf(a.log10().floor() - 2.0);
    let rounded = (a / unit).round() * unit;
    let decimals = (2.0 - rounded.log10().floor()).clamp(0.0, 8.0) as usize;
    let text = format!("{rounded:.decimals$}");
    format!("{sign}{}", group_fixed(&text))
}

/// An axis label: as [`number`], without trailing zeros after the point (`0.1`, `10`).
pub(super) fn axis(v: f64) -> String {
    let text = number(v);
    if text.contains('.') && !text.contains('e') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// A count, exactly (rounded to an integer): `19 000`, `0`.
pub(super) fn count(v: f64) -> String {
    if !v.is_finite() {
        return NOT_A_NUMBER.to_owned();
    }
    let sign = if v < 0.0 { "-" } else { "" };
    format!("{sign}{}", group(&format!("{:.0}", v.abs().round())))
}

/// A figure of `kind`.
pub(super) fn figure(v: f64, kind: Kind) -> String {
    match kind {
        Kind::Measure => number(v),
        Kind::Count => count(v),
    }
}

/// A ratio: two decimals below 10 (`0.06`, `1.80`), one below 100 (`12.3`), else as
/// [`number`]; three significant digits below 0.01 so small ratios don't read as zero.
pub(super) fn ratio(r: f64) -> String {
    if !r.is_finite() {
        NOT_A_NUMBER.to_owned()
    } else if r.abs() < 0.01 {
        number(r)
    } else if r.abs() < 10.0 {
        format!("{r:.2}")
    } else if r.abs() < 100.0 {
        format!("{r:.1}")
    } else {
        number(r)
    }
}

/// The median with the range, as `median<open>min<dash>max<close>`; the median alone when
/// one run measured it or all runs wrote the same.
pub(super) fn with_range(s: &Stats, kind: Kind, open: &str, dash: &str, close: &str) -> String {
    let (median, min, max) = (
        figure(s.median, kind),
        figure(s.min, kind),
        figure(s.max, kind),
    );
    if s.n < 2 || (min == median && max == median) {
        median
    } else {
        format!("{median}{open}{min}{dash}{max}{close}")
    }
}

/// `text` made safe for one markdown table cell: pipes escaped, line breaks as spaces.
pub(super) fn cell(text: &str) -> String {
    text.replace('|', "\\|")
        .replace("\r\n", " ")
        .replace(['\n', '\r'], " ")
}

/// `text` on one line (for the terminal): line breaks as spaces.
pub(super) fn one_line(text: &str) -> String {
    text.replace("\r\n", " ").replace(['\n', '\r'], " ")
}
