//! The audit log: JSON lines (through the JSON tracing subscriber). A
//! removal that really starts gets a `remove_start` line and, when it ends,
//! a `remove` line with the same `removal` number, so a removal cut short
//! (vmrmd killed mid-way) shows as a start with no end. Every line carries
//! who asked (the peer's kernel credentials, or the sweeper and the owner it
//! acted on), and every client-controlled field is escaped and bounded, so a
//! path can neither forge or split a line nor inflate the log.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use vmrm_policy::{PeerCredentials, Uid};
use vmrm_proto::{Outcome, RequestId};

/// Target of audit events, so operators can filter them (`RUST_LOG`).
pub const TARGET: &str = "vmrmd::audit";

/// Bytes a logged path takes in the JSON line, at most (escapes counted as
/// written: `\xff` is five bytes once JSON doubles the backslash); the rest
/// is counted, not written (attack: 200 requests of 256 KiB paths of 0xff
/// grew the log by 250 MiB). A path of the grammar is far shorter.
pub const MAX_LOGGED_PATH: usize = 4096;

/// Escaped bytes of a failure's relative path in the log, at most.
const MAX_LOGGED_FAILURE_PATH: usize = 1024;

/// Who a removal was for.
#[derive(Debug, Clone, Copy)]
pub enum Actor<'a> {
    /// A client, by its kernel credentials.
    Peer(&'a PeerCredentials, RequestId),
    /// The orphan sweeper, acting on a directory owned by `owner`.
    Sweep { owner: Uid },
}

impl Actor<'_> {
    fn source(&self) -> &'static str {
        match self {
            Actor::Peer(..) => "request",
            Actor::Sweep { .. } => "sweep",
        }
    }

    /// (peer uid, peer gid, peer pid, request id, owner uid): only what is
    /// known, nothing invented.
    fn fields(&self) -> ActorFields {
        match self {
            Actor::Peer(p, id) => (
                Some(p.uid.0),
                Some(p.gid.0),
                p.pid.map(|p| p.0),
                Some(*id),
                None,
            ),
            Actor::Sweep { owner } => (None, None, None, None, Some(owner.0)),
        }
    }
}

/// (peer uid, peer gid, peer pid, request id, owner uid), each logged only
/// when known.
type ActorFields = (
    Option<u32>,
    Option<u32>,
    Option<i32>,
    Option<u64>,
    Option<u32>,
);

/// Pairs a `remove_start` line with its `remove` line; unique within one
/// run of vmrmd (the lines also carry vmrmd's pid, through `run`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemovalId(u64);

static NEXT_REMOVAL: AtomicU64 = AtomicU64::new(1);

/// vmrmd's pid, read once: it never forks, and `getpid` is a system call
/// on every audit line otherwise.
fn run() -> u32 {
    static RUN: OnceLock<u32> = OnceLock::new();
    *RUN.get_or_init(std::process::id)
}

/// `bytes` escaped to printable ASCII (`\n`, `\x1b`, `\xff` spelled out, so
/// the line stays one line and says exactly which bytes were asked for),
/// cut where it would take more than `max` bytes in the JSON line, with a
/// marker saying how many bytes were left.
pub fn bounded(bytes: &[u8], max: usize) -> String {
    let mut out = String::with_capacity(max.min(bytes.len() * 4) + 32);
    let mut cost = 0;
    for (i, b) in bytes.iter().enumerate() {
        let escaped = b.escape_ascii();
        // JSON escapes `\` and `"` once more.
        let json_len = escaped.len()
            + escaped
                .clone()
                .filter(|c| matches!(c, b'\\' | b'"'))
                .count();
        if cost + json_len > max {
            out.push_str(&format!("...[{} more bytes]", bytes.len() - i));
            return out;
        }
        cost += json_len;
        out.extend(escaped.map(char::from));
    }
    out
}

/// Log that a removal of `path` starts now; pass the id to [`removal`].
pub fn started(actor: Actor<'_>, path: &[u8]) -> RemovalId {
    let id = RemovalId(NEXT_REMOVAL.fetch_add(1, Ordering::Relaxed));
    let (peer_uid, peer_gid, peer_pid, request_id, owner_uid) = actor.fields();
    tracing::info!(
        target: TARGET,
        source = actor.source(),
        removal = id.0,
        run = run(),
        peer_uid,
        peer_gid,
        peer_pid,
        request_id,
        owner_uid,
        path = bounded(path, MAX_LOGGED_PATH),
        "remove_start"
    );
    id
}

/// Log how one remove request (from a peer or from the sweeper) ended.
/// `removal` is the id from [`started`], if the removal got that far.
pub fn removal(
    actor: Actor<'_>,
    removal: Option<RemovalId>,
    path: &[u8],
    outcome: &Outcome,
    took: Duration,
) {
    let path = bounded(path, MAX_LOGGED_PATH);
    let stats = outcome.removal_stats().unwrap_or_default();
    let (reason, first_failure) = match outcome {
        Outcome::Failed { failures, .. } => (
            None,
            failures.first().map(|f| {
                format!(
                    "{} {}: {}",
                    f.op.as_str(),
                    bounded(&f.path, MAX_LOGGED_FAILURE_PATH),
                    f.cause
                )
            }),
        ),
        Outcome::Denied { reason, .. } => (Some(reason.as_str()), None),
        _ => (None, None),
    };
    let (peer_uid, peer_gid, peer_pid, request_id, owner_uid) = actor.fields();
    tracing::info!(
        target: TARGET,
        source = actor.source(),
        removal = removal.map(|r| r.0),
        run = run(),
        peer_uid,
        peer_gid,
        peer_pid,
        request_id,
        owner_uid,
        path,
        verdict = outcome.verdict().as_str(),
        reason,
        entries = stats.entries,
        bytes = stats.bytes,
        failures = outcome.failure_count(),
        first_failure,
        duration_us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
        "remove"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_escapes_and_cuts_with_a_marker() {
        assert_eq!(bounded(b"/tmp/vm-a\n", 100), "/tmp/vm-a\\n");
        let huge = vec![0xffu8; 256 * 1024];
        let out = bounded(&huge, MAX_LOGGED_PATH);
        let json = serde_json::to_string(&out).unwrap();
        assert!(json.len() <= MAX_LOGGED_PATH + 32, "{}", json.len());
        assert!(out.ends_with(&format!("...[{} more bytes]", 256 * 1024 - 819)));
    }
}
