//! Errors talking to vmrmd. Policy refusals and failed removals are not
//! errors here: they are [`crate::Outcome`]s the helper answered with.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use vmrm_proto::{FrameError, ProtocolErrorKind};

use crate::session::SocketOrigin;

/// vmrmd could not be reached, or did not answer as the protocol says.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// connect(2) to the socket failed: vmrmd is not running, or the socket
    /// does not admit this user.
    #[error(
        "cannot connect to vmrmd at {socket:?} ({origin}): {error}; {hint}",
        hint = connect_hint(error)
    )]
    Connect {
        /// The socket's path.
        socket: PathBuf,
        /// Where the path came from.
        origin: SocketOrigin,
        /// What the kernel answered.
        error: io::Error,
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
    #[error("connection to vmrmd at {socket:?} failed: {error}")]
    Io {
        /// The socket's path.
        socket: PathBuf,
        /// What the kernel answered.
        error: io::Error,
    },
    /// A wait ran out (see [`crate::ClientOptions`]).
    #[error("vmrmd at {socket:?} did not {waiting} within {after:?}")]
    Timeout {
        /// The socket's path.
        socket: PathBuf,
        /// Which wait ran out.
        waiting: Waiting,
        /// How long it was ([`crate::ClientOptions`]' `send_timeout` or
        /// `response_timeout`).
        after: Duration,
    },
    /// vmrmd closed the connection before answering.
    #[error("vmrmd at {socket:?} closed the connection")]
    Closed {
        /// The socket's path.
        socket: PathBuf,
    },
    /// vmrmd sent a frame that does not decode.
    #[error("bad frame from vmrmd at {socket:?}: {error}")]
    Frame {
        /// The socket's path.
        socket: PathBuf,
        /// Why it was refused.
        error: FrameError,
    },
    /// vmrmd sent a protocol error and closed the connection: at the hello
    /// (for example an unsupported version) or later (idle too long).
    #[error("vmrmd at {socket:?} ended the connection ({kind:?}): {message}")]
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
    /// vmrmd emptied the directory, but removing the empty top directory
    /// (ours to do, as its owner) failed before reaching the kernel.
    #[error("cannot remove the emptied directory {path:?}: {error}")]
    Local {
        /// The emptied directory.
        path: PathBuf,
        /// What the kernel answered.
        error: io::Error,
    },
}

/// Which wait of a request ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// Handing the request (or the hello) to vmrmd.
    Send,
    /// vmrmd's answer.
    Answer,
}

impl std::fmt::Display for Waiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Waiting::Send => "take our request",
            Waiting::Answer => "answer",
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_names_the_wait_that_ran_out_and_its_length() {
        let send = ClientError::Timeout {
            socket: "/s".into(),
            waiting: Waiting::Send,
            after: Duration::from_secs(10),
        };
        assert_eq!(
            send.to_string(),
            "vmrmd at \"/s\" did not take our request within 10s"
        );
        let answer = ClientError::Timeout {
            socket: "/s".into(),
            waiting: Waiting::Answer,
            after: Duration::from_secs(660),
        };
        assert_eq!(
            answer.to_string(),
            "vmrmd at \"/s\" did not answer within 660s"
        );
    }
}
