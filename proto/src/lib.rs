//! Wire protocol between `vmrm` clients and the `vmrmd` helper.
//!
//! Every message travels in one frame: a big-endian `u32` length followed by
//! that many bytes of [postcard]-encoded payload. A connection starts with a
//! [`ClientMessage::Hello`] carrying [`PROTOCOL_VERSION`]; the helper answers
//! [`ServerMessage::Hello`] or a [`ServerMessage::Error`] and closes. After
//! that the client sends [`ClientMessage::Request`]s, each with an id that the
//! matching [`ServerMessage::Response`] repeats with its [`Answer`], so one persistent connection
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
    Answer, Cause, ClientMessage, DenyReason, FailedOp, Failure, Limit, Outcome, ProtocolErrorKind,
    RemovalStats, Request, RequestId, ServerMessage, Stats, Verdict, VerdictCounts,
    MAX_REPORTED_FAILURES, MAX_REPORTED_PATH_LEN,
};

/// The protocol version this build speaks. Bumped on any incompatible change
/// to the messages below; both sides refuse a version they do not know.
///
/// 2: responses carry an [`Answer`] (a removal's [`Outcome`], or the answer
/// to ping or stats) instead of one enum for all; a [`Failure`] has a
/// [`Cause`] (errno or named [`Limit`]) instead of an errno that was 0 or
/// made up for the helper's own limits; [`Outcome::Unavailable`].
pub const PROTOCOL_VERSION: u16 = 2;

/// Where the helper listens and clients connect unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/vmrmd/vmrmd.sock";
