//! Errors talking to vmrmd. Policy refusals and failed removals are not
//! errors here: they are [`crate::Outcome`]s the helper answered with.

use std::io;
use std::path::PathBuf;

use vmrm_proto::{FrameError, ProtocolErrorKind};

use crate::session::SocketOrigin;

/// vmrmd could not be reached, or did not answer as the protocol says.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// connect(2) to the socket failed: vmrmd is not running, or the socket
    /// does not admit this user.
    #[error(
        "cannot connect to vmrmd at {socket:?} ({origin}): {source}; {hint}",
        hint = connect_hint(source)
    )]
    Connect {
        /// The socket's path.
        socket: PathBuf,
        /// Where the path came from.
        origin: SocketOrigin,
        /// What the kernel answered.
        #[source]
        source: io::Error,
    },
    /// The helper is at a connection limit and said which; a later attempt
    /// may succeed.
    #[error("vmrmd at {socket:?} is busy: {message}; retry later")]
    Busy {
        /// The socket's path.
        socket: PathBuf,
        /// vmrmd's explanation.
        message: String,
    },
    /// Reading from or writing to the connection failed.
    #[error("connection to vmrmd at {socket:?} failed: {source}")]
    Io {
        /// The socket's path.
        socket: PathBuf,
        /// What the kernel answered.
        #[source]
        source: io::Error,
    },
    /// A wait ran out (see [`crate::ClientOptions`]).
    #[error("no answer from vmrmd at {socket:?} within {secs}s")]
    Timeout {
        /// The socket's path.
        socket: PathBuf,
        /// How long the wait was, in seconds.
        secs: u64,
    },
    /// vmrmd closed the connection before answering.
    #[error("vmrmd at {socket:?} closed the connection")]
    Closed {
        /// The socket's path.
        socket: PathBuf,
    },
    /// vmrmd sent a frame that does not decode.
    #[error("bad frame from vmrmd at {socket:?}: {source}")]
    Frame {
        /// The socket's path.
        socket: PathBuf,
        /// Why it was refused.
        #[source]
        source: FrameError,
    },
    /// vmrmd ended the connection with a protocol error (a version it does
    /// not speak, an idle timeout, a frame it refused).
    #[error("vmrmd at {socket:?} refused the connection ({kind:?}): {message}")]
    Refused {
        /// The socket's path.
        socket: PathBuf,
        /// The error's code.
        kind: ProtocolErrorKind,
        /// vmrmd's explanation.
        message: String,
    },
    /// vmrmd answered with a message that does not fit the request.
    #[error("vmrmd at {socket:?} sent an unexpected message: {what}")]
    Unexpected {
        /// The socket's path.
        socket: PathBuf,
        /// What arrived.
        what: String,
    },
}

impl ClientError {
    /// Whether a fresh connection might succeed where this one failed: the
    /// helper restarted or dropped an idle connection.
    pub(crate) fn is_retryable(&self) -> bool {
        matches!(
            self,
            ClientError::Io { .. }
                | ClientError::Closed { .. }
                | ClientError::Refused {
                    kind: ProtocolErrorKind::Timeout,
                    ..
                }
        )
    }
}

/// What to check when connect(2) failed, by its errno.
fn connect_hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::PermissionDenied => {
            "the socket admits its group only (vmrm by default): check `ls -l` on it and `id`"
        }
        _ => "is vmrmd running? check `systemctl status vmrmd.socket`",
    }
}
