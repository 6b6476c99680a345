//! Wire protocol between `vmrm` clients and the `vmrmd` helper.
//!
//! Every message travels in one frame: a big-endian `u32` length followed by
//! that many bytes of [postcard]-encoded payload. A connection starts with a
//! [`ClientMessage::Hello`] carrying [`PROTOCOL_VERSION`]; the helper answers
//! [`ServerMessage::Hello`] or a [`ServerMessage::Error`] and closes. After
//! that the client sends [`ClientMessage::Request`]s, each with an id that the
//! matching [`ServerMessage::Response`] repeats, so one persistent connection
//! carries many requests.
//!
//! This crate holds types and framing only; it decides nothing.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod frame;
mod message;

#[cfg(feature = "tokio-codec")]
pub use frame::codec;
pub use frame::{
    decode, encode, encode_payload, read_frame, write_frame, FrameError, LENGTH_PREFIX_LEN,
    MAX_FRAME_LEN,
};
pub use message::{
    ClientMessage, DenyReason, FailedOp, Failure, Outcome, ProtocolErrorKind, RemovalStats,
    Request, RequestId, ServerMessage, Stats, VerdictCounts, MAX_REPORTED_FAILURES,
    MAX_REPORTED_PATH_LEN,
};

/// The protocol version this build speaks. Bumped on any incompatible change
/// to the messages below; both sides refuse a version they do not know.
pub const PROTOCOL_VERSION: u16 = 1;

/// Where the helper listens and clients connect unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/vmrmd/vmrmd.sock";
