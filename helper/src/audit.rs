//! The audit log: one JSON line per request (through the JSON tracing
//! subscriber), with the peer's kernel credentials and the path escaped so a
//! path with newlines or terminal escapes cannot forge or split a line.

use std::time::Duration;

use vmrm_policy::PeerCredentials;
use vmrm_proto::Outcome;

/// Target of audit events, so operators can filter them (`RUST_LOG`).
pub const TARGET: &str = "vmrmd::audit";

/// The verdict's stable name in the log.
pub fn verdict(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Removed(_) => "removed",
        Outcome::Emptied(_) => "emptied",
        Outcome::NotFound => "not_found",
        Outcome::Denied { .. } => "denied",
        Outcome::Failed { .. } => "failed",
        Outcome::BadRequest { .. } => "bad_request",
        Outcome::Pong { .. } => "pong",
        Outcome::Stats(_) => "stats",
    }
}

/// Log one remove request (from a peer or from the sweeper).
pub fn removal(
    source: &str,
    peer: &PeerCredentials,
    path: &[u8],
    outcome: &Outcome,
    took: Duration,
) {
    // escape_ascii leaves only printable ASCII: \n, \x1b, \xff and the like
    // are spelled out, so the line stays one line and says exactly which
    // bytes were asked for.
    let path = path.escape_ascii().to_string();
    let (entries, bytes, failures, reason, first_failure) = match outcome {
        Outcome::Removed(s) | Outcome::Emptied(s) => (s.entries, s.bytes, 0, None, None),
        Outcome::Failed {
            stats,
            failures,
            omitted,
        } => (
            stats.entries,
            stats.bytes,
            failures.len() as u64 + omitted,
            None,
            failures.first().map(|f| {
                format!(
                    "{} {}: {}",
                    f.op.as_str(),
                    f.path.escape_ascii(),
                    std::io::Error::from_raw_os_error(f.errno)
                )
            }),
        ),
        Outcome::Denied { reason, .. } => (0, 0, 0, Some(reason.as_str()), None),
        _ => (0, 0, 0, None, None),
    };
    tracing::info!(
        target: TARGET,
        source,
        peer_uid = peer.uid.0,
        peer_gid = peer.gid.0,
        peer_pid = peer.pid.unwrap_or(0),
        path,
        verdict = verdict(outcome),
        reason,
        entries,
        bytes,
        failures,
        first_failure,
        duration_us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
        "remove"
    );
}
