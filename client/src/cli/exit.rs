//! Exit statuses, documented in README.md. When several paths end
//! differently, the most severe wins, in the order of the variants below.

use std::process::ExitCode;

use vmrm::ClientError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Every path removed (or absent, with `-f`).
    Success,
    /// A path did not exist (without `-f`).
    NotFound,
    /// vmrmd ran a removal but parts of the tree remain.
    Failed,
    /// vmrmd refused a path (policy): nothing was touched.
    Denied,
    /// vmrmd is at a connection limit: nothing was asked; retry later.
    Busy,
    /// vmrmd could not take the request on (shutting down, or an internal
    /// fault): nothing was touched; retry later.
    Unavailable,
    /// vmrmd could not be reached or broke the protocol.
    Unreachable,
}

impl Status {
    pub fn code(self) -> u8 {
        match self {
            Status::Success => 0,
            Status::Failed => 1,
            // 2 is clap's usage error.
            Status::Denied => 3,
            Status::NotFound => 4,
            Status::Unreachable => 5,
            Status::Busy => 6,
            Status::Unavailable => 7,
        }
    }
}

impl From<Status> for ExitCode {
    fn from(s: Status) -> ExitCode {
        ExitCode::from(s.code())
    }
}

impl Status {
    /// The status for a request that never got an answer.
    pub fn of_error(e: &ClientError) -> Status {
        match e {
            ClientError::Busy { .. } => Status::Busy,
            _ => Status::Unreachable,
        }
    }
}
