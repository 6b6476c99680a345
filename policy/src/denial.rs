//! A policy refusal: a stable reason code and a sentence for the operator.

use std::fmt;

use vmrm_proto::DenyReason;

/// Why a request is refused. Returned as the `Err` of every policy verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a denial must be reported to the peer"]
pub struct Denial {
    /// The stable code sent to the client.
    pub reason: DenyReason,
    /// A sentence for the operator saying what was refused and why.
    pub message: String,
}

impl Denial {
    /// A denial with this code and sentence.
    pub fn new(reason: DenyReason, message: impl Into<String>) -> Self {
        Denial {
            reason,
            message: message.into(),
        }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.reason.as_str())
    }
}

impl std::error::Error for Denial {}
