//! How results are shown: one line per problem on stderr, JSON on request,
//! and the stats as text or Prometheus.

use std::fmt::Write;
use std::path::Path;

use serde_json::json;
use vmrm::{Cause, ClientError, Limit, Outcome, Stats};

/// A path as shown to people: control characters and non-UTF-8 bytes
/// escaped, so a hostile name cannot drive the terminal.
pub fn shown(path: &Path) -> String {
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
    format!("'{}'", bytes.escape_ascii())
}

/// One sentence for a non-success outcome.
pub fn outcome_line(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Failed { .. } => format!("{} parts could not be removed", outcome.failure_count()),
        other => other.to_string(),
    }
}

/// The stderr lines for one path that did not succeed.
pub fn error_lines(path: &Path, outcome: &Outcome) -> Vec<String> {
    let Outcome::Failed {
        failures, omitted, ..
    } = outcome
    else {
        return vec![format!(
            "cannot remove {}: {}",
            shown(path),
            outcome_line(outcome)
        )];
    };
    let mut lines: Vec<String> = failures
        .iter()
        .map(|f| {
            let mut full = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()).to_vec();
            if !f.path.is_empty() {
                full.push(b'/');
                if f.path_truncated {
                    full.extend_from_slice(b".../");
                }
                full.extend_from_slice(&f.path);
            }
            let why = match f.cause {
                Cause::Limit(limit) => limit.as_str(),
                _ => f.op.as_str(),
            };
            format!(
                "cannot remove '{}': {} ({why})",
                full.escape_ascii(),
                f.cause
            )
        })
        .collect();
    if *omitted > 0 {
        lines.push(format!(
            "cannot remove {}: and {omitted} more failures",
            shown(path)
        ));
    }
    lines
}

fn path_json(path: &Path) -> String {
    std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str())
        .escape_ascii()
        .to_string()
}

/// One JSON object for one path. `allocated_bytes` is storage freed, as
/// st_blocks * 512 of the inodes whose last link the removal took: not
/// apparent sizes (a sparse qcow2 overlay counts what it really holds) and
/// nothing for files still linked elsewhere.
pub fn json(path: &Path, outcome: &Outcome) -> String {
    let value = match outcome {
        // The client finishes an emptied top, so both are "removed".
        Outcome::Removed(s) | Outcome::Emptied(s) => json!({
            "path": path_json(path), "result": "removed", "entries": s.entries, "allocated_bytes": s.bytes,
        }),
        Outcome::NotFound => json!({"path": path_json(path), "result": "not_found"}),
        Outcome::Denied { reason, message } => json!({
            "path": path_json(path), "result": "denied", "reason": reason.as_str(), "message": message,
        }),
        Outcome::BadRequest { message } | Outcome::Unavailable { message } => json!({
            "path": path_json(path), "result": outcome.verdict().as_str(), "message": message,
        }),
        Outcome::Failed {
            stats,
            failures,
            omitted,
        } => json!({
            "path": path_json(path), "result": "failed",
            "entries": stats.entries, "allocated_bytes": stats.bytes,
            "failures": failures.iter().map(|f| json!({
                "path": f.path.escape_ascii().to_string(),
                "path_truncated": f.path_truncated,
                "op": f.op.as_str(),
                "errno": f.cause.errno(),
                "limit": f.cause.limit().map(Limit::as_str),
                "error": f.cause.to_string(),
                "owner": match f.cause {
                    Cause::Limit(Limit::ForeignOwner { owner }) => Some(owner),
                    _ => None,
                },
            })).collect::<Vec<_>>(),
            "omitted": omitted,
        }),
        other => json!({"path": path_json(path), "result": other.verdict().as_str()}),
    };
    value.to_string()
}

pub fn json_error(path: &Path, error: &ClientError) -> String {
    let result = match error {
        ClientError::Busy { .. } => "busy",
        _ => "unreachable",
    };
    json!({"path": path_json(path), "result": result, "message": error.to_string()}).to_string()
}

pub fn stats(s: &Stats) -> String {
    let v = &s.verdicts;
    let [p50, p90, p99, max] = s.latency_us;
    let mut out = String::new();
    let _ = writeln!(out, "uptime             {}s", s.uptime_secs);
    let _ = write!(out, "requests          ");
    for (verdict, n) in v.by_verdict() {
        let _ = write!(out, " {} {n}", verdict.as_str());
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "entries removed    {}", s.entries_removed);
    let _ = writeln!(out, "allocated bytes    {} freed", s.bytes_freed);
    let _ = writeln!(out, "errors             {}", s.errors);
    let _ = writeln!(
        out,
        "connections        accepted {} refused {}",
        s.connections_accepted, s.connections_refused
    );
    let _ = writeln!(
        out,
        "latency (us)       p50 {p50} p90 {p90} p99 {p99} max {max}"
    );
    out
}

/// The Prometheus text exposition format.
pub fn prometheus(s: &Stats) -> String {
    let labels = s
        .verdicts
        .by_verdict()
        .map(|(v, n)| (format!("{{verdict=\"{}\"}}", v.as_str()), n));
    let verdicts: Vec<(&str, u64)> = labels.iter().map(|(l, n)| (l.as_str(), *n)).collect();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        let _ = writeln!(out, "# HELP vmrm_{name} {help}");
        let _ = writeln!(out, "# TYPE vmrm_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "vmrm_{name}{labels} {value}");
        }
    };
    metric(
        "uptime_seconds",
        "gauge",
        "Seconds since vmrmd started.",
        &[("", s.uptime_secs)],
    );
    metric(
        "requests_total",
        "counter",
        "Remove requests by verdict.",
        &verdicts,
    );
    metric(
        "entries_removed_total",
        "counter",
        "Directory entries removed.",
        &[("", s.entries_removed)],
    );
    metric(
        "bytes_freed_total",
        "counter",
        "Allocated bytes (st_blocks * 512) freed: inodes whose last link was removed.",
        &[("", s.bytes_freed)],
    );
    metric(
        "errors_total",
        "counter",
        "Individual removal failures.",
        &[("", s.errors)],
    );
    metric(
        "connections_total",
        "counter",
        "Client connections by fate.",
        &[
            ("{state=\"accepted\"}", s.connections_accepted),
            ("{state=\"refused\"}", s.connections_refused),
        ],
    );
    let [p50, p90, p99, max] = s.latency_us;
    metric(
        "removal_latency_microseconds",
        "gauge",
        "Removal latency quantiles since start.",
        &[
            ("{quantile=\"0.5\"}", p50),
            ("{quantile=\"0.9\"}", p90),
            ("{quantile=\"0.99\"}", p99),
            ("{quantile=\"1\"}", max),
        ],
    );
    out
}
