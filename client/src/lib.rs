//! vmrm: remove per-VM working directories through the `vmrmd` helper
//! instead of `sudo rm -rf`.
//!
//! - [`Client`] (blocking) and [`AsyncClient`] (tokio) speak to vmrmd over
//!   one persistent connection that reconnects when it must.
//!   [`Client::remove`] is the whole operation: when the helper can only
//!   empty a directory in a sticky prefix such as `/tmp`, the client removes
//!   the empty top itself, as its owner.
//! - [`WorkDir`] creates a VM's `vm-<id8>-XXXXXXXX` directory (mode 0700),
//!   names its files, and cleans it up idempotently.
#![forbid(unsafe_code)]

pub mod args;
mod blocking;
mod error;
mod session;
#[cfg(feature = "tokio")]
mod tokio_client;
mod workdir;

pub use blocking::{Client, PendingRemoval};
pub use error::{ClientError, Waiting};
pub use session::{default_socket, ClientOptions, Denied, SocketOrigin, SOCKET_ENV};
#[cfg(feature = "tokio")]
pub use tokio_client::AsyncClient;
pub use vmrm_proto::{
    Answer, Cause, DenyReason, FailedOp, Failure, Limit, Outcome, RemovalStats, Stats, Verdict,
};
pub use workdir::{CleanupError, WorkDir, WorkDirBuilder, WorkDirError, SUN_PATH_MAX};
