//! Medians, percentiles and formatting of durations.

use std::time::Duration;

/// The `q` quantile (0..=1) of `samples`, nearest rank.
pub fn quantile(samples: &[Duration], q: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

pub fn median(samples: &[Duration]) -> Duration {
    quantile(samples, 0.5)
}

/// The median of ratios `a[i]/b[i]`, pair by pair (same iteration, same
/// moment of machine noise).
pub fn median_ratio(a: &[Duration], b: &[Duration]) -> f64 {
    middle(
        a.iter()
            .zip(b)
            .filter(|(_, b)| !b.is_zero())
            .map(|(a, b)| a.as_secs_f64() / b.as_secs_f64())
            .collect(),
    )
}

/// The median of differences `a[i] - b[i]`, pair by pair, in seconds (may
/// be negative; NaN without pairs), for [`show_signed`].
pub fn median_difference(a: &[Duration], b: &[Duration]) -> f64 {
    middle(
        a.iter()
            .zip(b)
            .map(|(a, b)| a.as_secs_f64() - b.as_secs_f64())
            .collect(),
    )
}

/// The middle value of `values` (NaN when there is none).
fn middle(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A signed duration in seconds, as [`show`] writes durations.
pub fn show_signed(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "n/a".into();
    }
    let sign = if seconds < 0.0 { "-" } else { "" };
    format!("{sign}{}", show(Duration::from_secs_f64(seconds.abs())))
}

/// A difference in seconds as "… more" or "… less".
pub fn show_more(seconds: f64) -> String {
    if seconds < 0.0 {
        format!("{} less", show_signed(-seconds))
    } else {
        format!("{} more", show_signed(seconds))
    }
}

/// A duration in the unit that reads best.
pub fn show(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{:.0} µs", s * 1e6)
    }
}
