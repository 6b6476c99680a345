//! What the blocking and async clients share: options, the handshake and
//! response checks, and finishing a removal the helper could only empty.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use vmrm_proto::{
    Answer, Cause, ClientMessage, DenyReason, FailedOp, Failure, Outcome, ProtocolErrorKind,
    RemovalStats, Request, RequestId, ServerMessage, Stats, PROTOCOL_VERSION,
};

use crate::ClientError;

/// Environment variable naming the helper's socket.
pub const SOCKET_ENV: &str = "VMRM_SOCKET";

/// `$VMRM_SOCKET`, else the helper's default socket path.
pub fn default_socket() -> PathBuf {
    default_socket_and_origin().0
}

fn default_socket_and_origin() -> (PathBuf, SocketOrigin) {
    match std::env::var_os(SOCKET_ENV).filter(|s| !s.is_empty()) {
        Some(s) => (PathBuf::from(s), SocketOrigin::Env),
        None => (
            PathBuf::from(vmrm_proto::DEFAULT_SOCKET),
            SocketOrigin::Default,
        ),
    }
}

/// Where the socket path came from, so that "cannot connect" can say which
/// setting to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketOrigin {
    /// Given by the caller (`--socket`, [`ClientOptions::with_socket`]).
    Explicit,
    /// From `$VMRM_SOCKET`.
    Env,
    /// The built-in default, [`vmrm_proto::DEFAULT_SOCKET`].
    Default,
}

impl std::fmt::Display for SocketOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SocketOrigin::Explicit => "given with --socket",
            SocketOrigin::Env => "from $VMRM_SOCKET",
            SocketOrigin::Default => {
                "the built-in default; --socket or $VMRM_SOCKET choose another"
            }
        })
    }
}

/// How a client reaches the helper and how long it waits.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The helper's socket.
    pub socket: PathBuf,
    /// Where `socket` came from; named when the helper cannot be reached.
    pub socket_origin: SocketOrigin,
    /// Longest wait for one answer. A removal of a large tree takes as long
    /// as it takes (the helper bounds it by its own deadline), so the
    /// default is generous.
    pub response_timeout: Duration,
    /// Longest wait to hand a request to the helper.
    pub send_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        let (socket, socket_origin) = default_socket_and_origin();
        ClientOptions {
            socket,
            socket_origin,
            response_timeout: Duration::from_secs(660),
            send_timeout: Duration::from_secs(10),
        }
    }
}

impl ClientOptions {
    /// The defaults, with this socket.
    pub fn with_socket(socket: impl Into<PathBuf>) -> Self {
        ClientOptions {
            socket: socket.into(),
            socket_origin: SocketOrigin::Explicit,
            ..ClientOptions::default()
        }
    }
}

/// How many times a removal is asked again when the emptied top directory
/// was refilled before its owner could remove it.
pub(crate) const FINISH_ATTEMPTS: u32 = 3;

pub(crate) fn hello() -> ClientMessage {
    ClientMessage::Hello {
        version: PROTOCOL_VERSION,
    }
}

pub(crate) fn request(id: RequestId, request: Request) -> ClientMessage {
    ClientMessage::Request { id, request }
}

/// Check the helper's answer to our hello.
pub(crate) fn check_hello(socket: &Path, msg: ServerMessage) -> Result<(), ClientError> {
    match msg {
        ServerMessage::Hello { version, .. } if version == PROTOCOL_VERSION => Ok(()),
        ServerMessage::Hello { version, server } => Err(ClientError::Unexpected {
            socket: socket.to_owned(),
            what: format!("{server} answered with protocol {version}, we speak {PROTOCOL_VERSION}"),
        }),
        other => unexpected_or_refused(socket, other),
    }
}

/// Check a response is the answer to request `id`.
pub(crate) fn check_response(
    socket: &Path,
    id: RequestId,
    msg: ServerMessage,
) -> Result<Answer, ClientError> {
    match msg {
        ServerMessage::Response { id: got, answer } if got == id => Ok(answer),
        ServerMessage::Response { id: got, .. } => Err(ClientError::Unexpected {
            socket: socket.to_owned(),
            what: format!("response to request {got} while waiting for {id}"),
        }),
        other => unexpected_or_refused(socket, other),
    }
}

fn unexpected_or_refused<T>(socket: &Path, msg: ServerMessage) -> Result<T, ClientError> {
    Err(match msg {
        ServerMessage::Error {
            kind: ProtocolErrorKind::Busy,
            message,
        } => ClientError::Busy {
            socket: socket.to_owned(),
            message,
        },
        ServerMessage::Error { kind, message } => ClientError::Refused {
            socket: socket.to_owned(),
            kind,
            message,
        },
        other => ClientError::Unexpected {
            socket: socket.to_owned(),
            what: format!("{other:?}"),
        },
    })
}

/// Whether a failed write of the hello means the helper already hung up,
/// most likely after sending a refusal (busy) that is still there to read.
pub(crate) fn peer_hung_up(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
    )
}

/// The error for a failed connect(2), naming the socket, where its path
/// came from, and what to check.
pub(crate) fn connect_error(options: &ClientOptions, error: io::Error) -> ClientError {
    ClientError::Connect {
        socket: options.socket.clone(),
        origin: options.socket_origin,
        error,
    }
}

/// The path as bytes for the wire.
pub(crate) fn path_bytes(path: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str().as_bytes().to_vec()
}

/// An answer of another kind than the request asked for.
pub(crate) fn wrong_answer(socket: &Path, asked: &str, answer: Answer) -> ClientError {
    ClientError::Unexpected {
        socket: socket.to_owned(),
        what: format!("{answer:?} in answer to {asked}"),
    }
}

/// The answer to ping: the helper's version string.
pub(crate) fn pong(socket: &Path, answer: Answer) -> Result<String, ClientError> {
    match answer {
        Answer::Pong { server } => Ok(server),
        other => Err(wrong_answer(socket, "ping", other)),
    }
}

/// The answer to stats: the counters, or the helper's refusal.
pub(crate) fn stats(socket: &Path, answer: Answer) -> Result<Result<Stats, Denied>, ClientError> {
    match answer {
        Answer::Stats(s) => Ok(Ok(s)),
        Answer::Denied { reason, message } => Ok(Err(Denied { reason, message })),
        other => Err(wrong_answer(socket, "stats", other)),
    }
}

/// The helper refused a request other than a removal (policy).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("denied: {message} ({})", reason.as_str())]
pub struct Denied {
    /// The stable code.
    pub reason: DenyReason,
    /// What was refused and why, for people.
    pub message: String,
}

/// One removal as the client sees it: ask the helper, and when it could
/// only empty the top (a sticky prefix), remove the empty top as its owner;
/// ask again, a bounded number of times, when the top was refilled before
/// that. Both clients run this, each with its own I/O:
///
/// ```text
/// let mut removal = Removal::new(path);
/// loop {
///     let answer = call(removal.request())?;
///     if let Some(outcome) = removal.answer(socket, answer)? { return Ok(outcome) }
/// }
/// ```
#[derive(Debug)]
pub(crate) struct Removal {
    path: PathBuf,
    bytes: Vec<u8>,
    attempt: u32,
    /// What earlier rounds removed, added to the final count.
    earlier: RemovalStats,
}

impl Removal {
    pub(crate) fn new(path: &Path) -> Removal {
        Removal {
            path: path.to_owned(),
            bytes: path_bytes(path),
            attempt: 1,
            earlier: RemovalStats::default(),
        }
    }

    /// The request to send (again).
    pub(crate) fn request(&self) -> Request {
        Request::Remove {
            path: self.bytes.clone(),
        }
    }

    /// Take the helper's answer: the final outcome, or `None` to send
    /// [`Removal::request`] again.
    pub(crate) fn answer(
        &mut self,
        socket: &Path,
        answer: Answer,
    ) -> Result<Option<Outcome>, ClientError> {
        let outcome = match answer {
            Answer::Removal(outcome) => with_earlier(outcome, self.earlier),
            other => return Err(wrong_answer(socket, "a removal", other)),
        };
        let Outcome::Emptied(mut stats) = outcome else {
            return Ok(Some(outcome));
        };
        // We own the top directory and the helper has emptied it, so
        // removing it is ours to do (the helper would need CAP_FOWNER in a
        // sticky prefix).
        match std::fs::remove_dir(&self.path) {
            Ok(()) => {
                stats.entries += 1;
                Ok(Some(Outcome::Removed(stats)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Some(Outcome::Removed(stats))),
            Err(e)
                if e.kind() == io::ErrorKind::DirectoryNotEmpty
                    && self.attempt < FINISH_ATTEMPTS =>
            {
                self.earlier = stats;
                self.attempt += 1;
                Ok(None)
            }
            Err(e) => match e.raw_os_error() {
                Some(errno) => Ok(Some(Outcome::Failed {
                    stats,
                    failures: vec![Failure {
                        path: Vec::new(),
                        path_truncated: false,
                        op: FailedOp::Rmdir,
                        cause: Cause::Errno(errno),
                    }],
                    omitted: 0,
                })),
                None => Err(ClientError::Local {
                    path: self.path.clone(),
                    error: e,
                }),
            },
        }
    }
}

/// Add what earlier rounds removed to an outcome's counts.
fn with_earlier(outcome: Outcome, earlier: RemovalStats) -> Outcome {
    let add = |s: RemovalStats| RemovalStats {
        entries: s.entries + earlier.entries,
        bytes: s.bytes + earlier.bytes,
    };
    match outcome {
        Outcome::Removed(s) => Outcome::Removed(add(s)),
        Outcome::Emptied(s) => Outcome::Emptied(add(s)),
        Outcome::Failed {
            stats,
            failures,
            omitted,
        } => Outcome::Failed {
            stats: add(stats),
            failures,
            omitted,
        },
        other => other,
    }
}
