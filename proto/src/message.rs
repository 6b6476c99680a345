//! The messages: what a client asks, what the helper answers.

use serde::{Deserialize, Serialize};

/// Chosen by the client, echoed in the response, unique per connection.
pub type RequestId = u64;

/// At most this many failures are listed in one [`Outcome::Failed`]; the rest
/// are only counted, so a tree of a million unremovable files cannot make a
/// response (or the helper's memory) grow with it.
pub const MAX_REPORTED_FAILURES: usize = 64;

/// A failure's relative path is cut to this many bytes (and marked cut).
pub const MAX_REPORTED_PATH_LEN: usize = 1024;

/// From client to helper.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientMessage {
    /// First message on every connection. It stays first, with the same
    /// encoding, in every protocol version, so that the helper can answer
    /// any client's version with [`ProtocolErrorKind::UnsupportedVersion`].
    Hello {
        /// The protocol version the client speaks ([`crate::PROTOCOL_VERSION`]).
        version: u16,
    },
    /// Any number of these after a successful hello.
    Request {
        /// Repeated in the matching response.
        id: RequestId,
        /// What is asked.
        request: Request,
    },
}

/// What a client may ask for. Not `non_exhaustive`: the helper must answer
/// every request there is, and a new one is a new protocol version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Remove the directory tree at this absolute path. Linux paths are bytes,
    /// not necessarily UTF-8, so they travel as bytes.
    Remove {
        /// The directory's absolute path.
        #[serde(with = "serde_bytes")]
        path: Vec<u8>,
    },
    /// Is the helper there and serving?
    Ping,
    /// Counters and latencies since the helper started.
    Stats,
}

/// From helper to client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerMessage {
    /// The helper speaks `version` and is ready for requests.
    Hello {
        /// The protocol version the helper speaks.
        version: u16,
        /// The helper's name and version, for people.
        server: String,
    },
    /// The answer to the request with this id.
    Response {
        /// The request's id.
        id: RequestId,
        /// What came of it.
        answer: Answer,
    },
    /// The connection is unusable (bad frame, unknown version, helper busy);
    /// the helper closes it after sending this. Its place and encoding stay
    /// the same in every protocol version, so a client of any version can
    /// read why its hello was refused.
    Error {
        /// The error's code.
        kind: ProtocolErrorKind,
        /// What went wrong, for people.
        message: String,
    },
}

/// Why a connection was refused or ended. Variant order is the encoding:
/// new kinds go last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ProtocolErrorKind {
    /// The hello named a protocol version the helper does not speak.
    UnsupportedVersion,
    /// A frame did not decode as a message.
    MalformedFrame,
    /// A frame declared a length over [`crate::MAX_FRAME_LEN`].
    FrameTooLarge,
    /// A request came before the hello, or a second hello.
    UnexpectedMessage,
    /// Too many connections; try again later.
    Busy,
    /// The connection sat idle, or a frame arrived too slowly.
    Timeout,
}

/// The answer to one [`Request`], of the kind the request asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Answer {
    /// Answer to [`Request::Remove`].
    Removal(Outcome),
    /// Answer to [`Request::Ping`].
    Pong {
        /// The helper's name and version.
        server: String,
    },
    /// Answer to [`Request::Stats`].
    Stats(Stats),
    /// A request other than a removal refused by policy (the peer is not on
    /// the allow-lists).
    Denied {
        /// The stable code.
        reason: DenyReason,
        /// What was refused and why, for people.
        message: String,
    },
}

/// Counts of what a removal did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovalStats {
    /// Directory entries removed (files, links, special files, directories).
    pub entries: u64,
    /// Bytes of storage freed: allocated blocks of removed inodes whose last
    /// link went away.
    pub bytes: u64,
}

/// The result of one removal: exactly one of these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Outcome {
    /// The whole tree, its top directory included, is gone.
    Removed(RemovalStats),
    /// Everything inside is gone, but the helper may not unlink the top
    /// directory itself (a sticky prefix such as `/tmp`, where that needs
    /// CAP_FOWNER). Its owner, the caller, removes the empty directory.
    Emptied(RemovalStats),
    /// Nothing exists at that path.
    NotFound,
    /// Policy refused the request; nothing was touched.
    Denied {
        /// The stable code.
        reason: DenyReason,
        /// What was refused and why, for people.
        message: String,
    },
    /// The removal ran but parts of the tree remain.
    Failed {
        /// What was removed nonetheless.
        stats: RemovalStats,
        /// The first [`MAX_REPORTED_FAILURES`] failures.
        failures: Vec<Failure>,
        /// How many further failures were not listed.
        omitted: u64,
    },
    /// The request itself was malformed (for example a path over PATH_MAX).
    BadRequest {
        /// What was wrong with it.
        message: String,
    },
    /// vmrmd could not take the request on, for a reason of its own (it is
    /// shutting down, or its table of prefixes is out of date); nothing was
    /// touched, and asking again later may succeed.
    Unavailable {
        /// Why, for people.
        message: String,
    },
}

impl std::fmt::Display for Outcome {
    /// One sentence for people; the first failure stands for the rest.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Removed(s) => write!(f, "removed ({} entries)", s.entries),
            Outcome::Emptied(s) => write!(
                f,
                "emptied ({} entries); the empty top is left to its owner",
                s.entries
            ),
            Outcome::NotFound => f.write_str("No such file or directory"),
            Outcome::Denied { reason, message } => {
                write!(f, "denied: {message} ({})", reason.as_str())
            }
            Outcome::Failed { failures, .. } => {
                write!(f, "{} parts could not be removed", self.failure_count())?;
                if let Some(first) = failures.first() {
                    write!(
                        f,
                        "; first: {} '{}': {}",
                        first.op.as_str(),
                        first.path.escape_ascii(),
                        first.cause
                    )?;
                }
                Ok(())
            }
            Outcome::BadRequest { message } => write!(f, "bad request: {message}"),
            Outcome::Unavailable { message } => {
                write!(f, "vmrmd cannot serve it now: {message}")
            }
        }
    }
}

/// An [`Outcome`] without its details: what audit, stats and exit codes
/// count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Verdict {
    /// [`Outcome::Removed`].
    Removed,
    /// [`Outcome::Emptied`].
    Emptied,
    /// [`Outcome::NotFound`].
    NotFound,
    /// [`Outcome::Denied`].
    Denied,
    /// [`Outcome::Failed`].
    Failed,
    /// [`Outcome::BadRequest`].
    BadRequest,
    /// [`Outcome::Unavailable`].
    Unavailable,
}

impl Verdict {
    /// A stable snake_case name, used in logs, JSON output and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Removed => "removed",
            Verdict::Emptied => "emptied",
            Verdict::NotFound => "not_found",
            Verdict::Denied => "denied",
            Verdict::Failed => "failed",
            Verdict::BadRequest => "bad_request",
            Verdict::Unavailable => "unavailable",
        }
    }
}

impl Outcome {
    /// Which kind of outcome this is.
    #[must_use]
    pub fn verdict(&self) -> Verdict {
        match self {
            Outcome::Removed(_) => Verdict::Removed,
            Outcome::Emptied(_) => Verdict::Emptied,
            Outcome::NotFound => Verdict::NotFound,
            Outcome::Denied { .. } => Verdict::Denied,
            Outcome::Failed { .. } => Verdict::Failed,
            Outcome::BadRequest { .. } => Verdict::BadRequest,
            Outcome::Unavailable { .. } => Verdict::Unavailable,
        }
    }

    /// Failures of the removal, listed or only counted; 0 unless `Failed`.
    #[must_use]
    pub fn failure_count(&self) -> u64 {
        match self {
            Outcome::Failed {
                failures, omitted, ..
            } => failures.len() as u64 + omitted,
            _ => 0,
        }
    }

    /// What the removal removed, when it ran.
    #[must_use]
    pub fn removal_stats(&self) -> Option<RemovalStats> {
        match self {
            Outcome::Removed(s) | Outcome::Emptied(s) | Outcome::Failed { stats: s, .. } => {
                Some(*s)
            }
            _ => None,
        }
    }
}

/// Why policy refused a request. Stable codes for programs; the message
/// beside it is for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum DenyReason {
    /// The peer's uid or groups are not on the helper's allow-lists.
    PeerNotAllowed,
    /// The peer's uid is the overflow uid (an unmapped id from another user
    /// namespace); it never owns anything.
    OverflowUid,
    /// The path is not `<prefix>/<name>` for a configured prefix.
    OutsidePrefixes,
    /// The last component does not follow the name grammar.
    BadName,
    /// The directory is owned by someone other than the peer.
    NotOwner,
    /// The path names something other than a directory (a symlink, a file).
    NotDirectory,
    /// The path is a mount point; the helper never crosses or removes one.
    MountPoint,
}

impl DenyReason {
    /// A stable snake_case name, used in logs and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::PeerNotAllowed => "peer_not_allowed",
            DenyReason::OverflowUid => "overflow_uid",
            DenyReason::OutsidePrefixes => "outside_prefixes",
            DenyReason::BadName => "bad_name",
            DenyReason::NotOwner => "not_owner",
            DenyReason::NotDirectory => "not_directory",
            DenyReason::MountPoint => "mount_point",
        }
    }
}

/// One part of a tree that could not be removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// Path relative to the top directory (empty for the top itself), cut to
    /// [`MAX_REPORTED_PATH_LEN`] bytes.
    #[serde(with = "serde_bytes")]
    pub path: Vec<u8>,
    /// Whether `path` was cut.
    pub path_truncated: bool,
    /// What the helper was doing.
    pub op: FailedOp,
    /// Why it failed or stopped there.
    pub cause: Cause,
}

/// What the helper was doing when a part failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum FailedOp {
    /// Opening a directory to descend into it.
    Open,
    /// Listing a directory.
    ReadDir,
    /// Unlinking a non-directory.
    Unlink,
    /// Removing an emptied directory.
    Rmdir,
    /// Going back up to a parent directory whose fd was closed (the fd ring
    /// of a deep tree): re-opened through `..` and checked to be the same
    /// directory as before.
    Reopen,
}

impl FailedOp {
    /// A stable snake_case name, used in logs and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            FailedOp::Open => "open",
            FailedOp::ReadDir => "read_dir",
            FailedOp::Unlink => "unlink",
            FailedOp::Rmdir => "rmdir",
            FailedOp::Reopen => "reopen",
        }
    }
}

/// Why a part failed: the kernel said no, or the helper stopped by one of
/// its own rules. Never an errno the kernel did not return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Cause {
    /// The errno a system call returned.
    Errno(i32),
    /// One of the helper's rules or bounds.
    Limit(Limit),
}

impl Cause {
    /// The errno, when the kernel gave one.
    pub fn errno(self) -> Option<i32> {
        match self {
            Cause::Errno(e) => Some(e),
            Cause::Limit(_) => None,
        }
    }

    /// The limit, when one of the helper's rules stopped it.
    pub fn limit(self) -> Option<Limit> {
        match self {
            Cause::Limit(l) => Some(l),
            Cause::Errno(_) => None,
        }
    }
}

/// The helper's own rules and bounds that leave part of a tree in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Limit {
    /// The removal reached its deadline (`removal_deadline`).
    Deadline,
    /// The tree is deeper than `max_depth`; what lies below is left.
    Depth,
    /// A directory was moved while being removed (its parent is no longer
    /// the directory it was); the helper stopped rather than follow it
    /// (see CVE-2002-0435).
    Moved,
    /// The tree kept growing; the helper gave up after bounded passes.
    KeptGrowing,
    /// The removal removed nothing for `no_progress`; the helper gave up
    /// rather than spin.
    NoProgress,
    /// A directory below the top owned by neither the peer nor a configured
    /// runner user (one moved in from elsewhere): left untouched, with all
    /// it holds, since the peer could not have emptied it itself.
    ForeignOwner {
        /// The directory's owner uid, per `fstat` on the fd the helper opened.
        owner: u32,
    },
    /// A mount point inside the tree (the kernel refused to cross it, or to
    /// unlink what is mounted on): never crossed, left in place.
    MountPoint,
}

impl Limit {
    /// A stable snake_case name, used in logs and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Deadline => "deadline",
            Limit::Depth => "depth",
            Limit::Moved => "moved",
            Limit::KeptGrowing => "kept_growing",
            Limit::NoProgress => "no_progress",
            Limit::ForeignOwner { .. } => "foreign_owner",
            Limit::MountPoint => "mount_point",
        }
    }
}

impl std::fmt::Display for Cause {
    /// The errno's text (as `strerror` gives it), or what the limit means.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Cause::Errno(e) => write!(f, "{}", std::io::Error::from_raw_os_error(e)),
            Cause::Limit(l) => f.write_str(match l {
                Limit::Deadline => "stopped at the removal deadline",
                Limit::Depth => "deeper than the depth limit",
                Limit::Moved => "moved while being removed; not followed",
                Limit::KeptGrowing => "kept growing while being removed",
                Limit::NoProgress => "nothing could be removed for too long",
                Limit::ForeignOwner { owner } => {
                    return write!(
                        f,
                        "owned by uid {owner}, neither the caller nor a runner user; left untouched"
                    )
                }
                Limit::MountPoint => "a mount point; never crossed",
            }),
        }
    }
}

/// Requests by verdict since the helper started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictCounts {
    /// Answered [`Outcome::Removed`].
    pub removed: u64,
    /// Answered [`Outcome::Emptied`].
    pub emptied: u64,
    /// Answered [`Outcome::NotFound`].
    pub not_found: u64,
    /// Answered [`Outcome::Denied`].
    pub denied: u64,
    /// Answered [`Outcome::Failed`].
    pub failed: u64,
    /// Answered [`Outcome::BadRequest`].
    pub bad_request: u64,
    /// Answered [`Outcome::Unavailable`].
    pub unavailable: u64,
}

impl VerdictCounts {
    /// Every count with its verdict, in a fixed order (for text and metrics).
    pub fn by_verdict(&self) -> [(Verdict, u64); 7] {
        [
            (Verdict::Removed, self.removed),
            (Verdict::Emptied, self.emptied),
            (Verdict::NotFound, self.not_found),
            (Verdict::Denied, self.denied),
            (Verdict::Failed, self.failed),
            (Verdict::BadRequest, self.bad_request),
            (Verdict::Unavailable, self.unavailable),
        ]
    }
}

/// The helper's counters since it started.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Stats {
    /// Seconds since the helper started.
    pub uptime_secs: u64,
    /// Removal requests by verdict.
    pub verdicts: VerdictCounts,
    /// Directory entries removed, over all removals.
    pub entries_removed: u64,
    /// Bytes of storage freed, over all removals (0 unless `count_bytes`).
    pub bytes_freed: u64,
    /// Individual failures (unlink, rmdir, open errors) across all removals.
    pub errors: u64,
    /// Connections served.
    pub connections_accepted: u64,
    /// Connections turned away at a limit.
    pub connections_refused: u64,
    /// Removal latency percentiles in microseconds: p50, p90, p99, max.
    pub latency_us: [u64; 4],
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes a version-1 client sends first and must be able to read back:
    /// the hello and the refusal keep their encoding across versions.
    #[test]
    fn hello_and_refusal_keep_their_version_1_encoding() {
        let hello: ClientMessage = crate::decode(&[0, 1]).unwrap();
        assert_eq!(hello, ClientMessage::Hello { version: 1 });
        let refusal = ServerMessage::Error {
            kind: ProtocolErrorKind::UnsupportedVersion,
            message: "v".into(),
        };
        assert_eq!(crate::encode_payload(&refusal).unwrap(), [2, 0, 1, b'v']);
    }

    #[test]
    fn a_limit_is_no_errno() {
        let f = Cause::Limit(Limit::Deadline);
        assert_eq!(f.errno(), None);
        assert_eq!(f.to_string(), "stopped at the removal deadline");
        assert_eq!(Cause::Errno(13).errno(), Some(13));
    }

    #[test]
    fn verdict_and_failure_count() {
        let failed = Outcome::Failed {
            stats: RemovalStats::default(),
            failures: vec![Failure {
                path: b"a".to_vec(),
                path_truncated: false,
                op: FailedOp::Unlink,
                cause: Cause::Errno(1),
            }],
            omitted: 2,
        };
        assert_eq!(failed.verdict(), Verdict::Failed);
        assert_eq!(failed.failure_count(), 3);
        assert_eq!(Outcome::NotFound.failure_count(), 0);
        let unavailable = Outcome::Unavailable {
            message: String::new(),
        };
        assert_eq!(unavailable.verdict().as_str(), "unavailable");
    }
}
