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
    /// First message on every connection.
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

/// What a client may ask for.
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
        outcome: Outcome,
    },
    /// The connection is unusable (bad frame, unknown version, helper busy);
    /// the helper closes it after sending this.
    Error {
        /// The error's code.
        kind: ProtocolErrorKind,
        /// What went wrong, for people.
        message: String,
    },
}

/// Why a connection was refused or ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

/// Counts of what a removal did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovalStats {
    /// Directory entries removed (files, links, special files, directories).
    pub entries: u64,
    /// Bytes of storage freed: allocated blocks of removed inodes whose last
    /// link went away.
    pub bytes: u64,
}

/// The result of one request. Removals end in exactly one of `Removed`,
/// `Emptied`, `NotFound`, `Denied`, `Failed` or `BadRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Answer to [`Request::Ping`].
    Pong {
        /// The helper's name and version.
        server: String,
    },
    /// Answer to [`Request::Stats`].
    Stats(Stats),
}

/// Why policy refused a request. Stable codes for programs; the message
/// beside it is for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    /// The errno the kernel returned; 0 where none applies (the helper's
    /// own limits: [`FailedOp::NoProgress`], [`FailedOp::ForeignOwner`]).
    pub errno: i32,
}

/// What failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailedOp {
    /// Opening a directory to descend into it.
    Open,
    /// Listing a directory.
    ReadDir,
    /// Unlinking a non-directory.
    Unlink,
    /// Removing an emptied directory.
    Rmdir,
    /// A mount point inside the tree; not crossed, left in place.
    MountPoint,
    /// A directory was moved while being removed; the helper stopped rather
    /// than follow it (see CVE-2002-0435).
    Moved,
    /// The tree kept growing; the helper gave up after bounded retries.
    KeptGrowing,
    /// The helper's own limits (for example its deadline) ended the removal.
    Limit,
    // New variants go last: postcard encodes the variant index, so older
    // ones keep their encoding.
    /// A directory below the top owned by neither the peer nor a configured
    /// runner user (one moved in from elsewhere): left untouched, with all
    /// it holds, since the peer could not have emptied it itself.
    ForeignOwner {
        /// The directory's owner uid, per `fstat` on the fd the helper opened.
        owner: u32,
    },
    /// The removal made no progress (removed nothing) for the configured
    /// time; the helper gave up rather than spin.
    NoProgress,
}

impl FailedOp {
    /// A stable snake_case name, used in logs and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            FailedOp::Open => "open",
            FailedOp::ReadDir => "read_dir",
            FailedOp::Unlink => "unlink",
            FailedOp::Rmdir => "rmdir",
            FailedOp::MountPoint => "mount_point",
            FailedOp::Moved => "moved",
            FailedOp::KeptGrowing => "kept_growing",
            FailedOp::Limit => "limit",
            FailedOp::ForeignOwner { .. } => "foreign_owner",
            FailedOp::NoProgress => "no_progress",
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
