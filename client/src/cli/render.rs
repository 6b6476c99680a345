//! How results are shown: one line per problem on stderr, JSON on request,
//! and the stats as text or Prometheus.

use std::fmt::Write;
use std::path::Path;

use serde_json::json;
use vmrm::{ClientError, Outcome, Stats};

/// A path as shown to people: control characters and non-UTF-8 bytes
/// escaped, so a hostile name cannot drive the terminal.
pub fn shown(path: &Path) -> String {
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
    format!("'{}'", bytes.escape_ascii())
}

fn errno_text(errno: i32) -> String {
    std::io::Error::from_raw_os_error(errno).to_string()
}

/// Why one part failed, for people: the errno's text, or for the helper's
/// own refusals and limits (errno 0) what they mean.
fn failure_text(f: &vmrm::Failure) -> String {
    match f.op {
        vmrm::FailedOp::ForeignOwner { owner } => format!(
            "a directory owned by uid {owner}, neither yours nor a VM runner's, left untouched"
        ),
        vmrm::FailedOp::NoProgress => "nothing could be removed for too long".into(),
        _ if f.errno == 0 => "stopped by the helper's limits".into(),
        _ => errno_text(f.errno),
    }
}

/// One sentence for a non-success outcome.
pub fn outcome_line(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Removed(_) => "removed".into(),
        Outcome::Emptied(_) => "emptied".into(),
        Outcome::NotFound => "No such file or directory".into(),
        Outcome::Denied { reason, message } => format!("denied: {message} ({})", reason.as_str()),
        Outcome::BadRequest { message } => format!("bad request: {message}"),
        Outcome::Failed {
            failures, omitted, ..
        } => format!(
            "{} parts could not be removed",
            failures.len() as u64 + omitted
        ),
        Outcome::Pong { server } => format!("pong from {server}"),
        Outcome::Stats(_) => "stats".into(),
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
            format!(
                "cannot remove '{}': {} ({})",
                full.escape_ascii(),
                failure_text(f),
                f.op.as_str()
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
        Outcome::Removed(s) | Outcome::Emptied(s) => json!({
            "path": path_json(path), "result": "removed", "entries": s.entries, "allocated_bytes": s.bytes,
        }),
        Outcome::NotFound => json!({"path": path_json(path), "result": "not_found"}),
        Outcome::Denied { reason, message } => json!({
            "path": path_json(path), "result": "denied", "reason": reason.as_str(), "message": message,
        }),
        Outcome::BadRequest { message } => json!({
            "path": path_json(path), "result": "bad_request", "message": message,
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
                "errno": f.errno,
                "error": failure_text(f),
                "owner": match f.op {
                    vmrm::FailedOp::ForeignOwner { owner } => Some(owner),
                    _ => None,
                },
            })).collect::<Vec<_>>(),
            "omitted": omitted,
        }),
        Outcome::Pong { .. } | Outcome::Stats(_) => {
            json!({"path": path_json(path), "result": "unexpected"})
        }
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
    let _ = writeln!(
        out,
        "requests           removed {} emptied {} not_found {} denied {} failed {} bad_request {}",
        v.removed, v.emptied, v.not_found, v.denied, v.failed, v.bad_request
    );
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
    let v = &s.verdicts;
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
        &[
            ("{verdict=\"removed\"}", v.removed),
            ("{verdict=\"emptied\"}", v.emptied),
            ("{verdict=\"not_found\"}", v.not_found),
            ("{verdict=\"denied\"}", v.denied),
            ("{verdict=\"failed\"}", v.failed),
            ("{verdict=\"bad_request\"}", v.bad_request),
        ],
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
