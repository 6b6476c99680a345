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
//!
//! # Example
//!
//! README's library example (`tests/readme.rs` keeps the two the same):
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let vm_id = "3f2a9c1e";
//! use vmrm::{Client, Outcome, WorkDir};
//!
//! // The per-VM working directory: <tmp>/vm-<id8>-XXXXXXXX, mode 0700,
//! // socket paths checked against the 108-byte sun_path limit at creation.
//! let mut wd = WorkDir::builder(vm_id).uses_helper(true).create()?;
//! let overlay = wd.overlay_image();      // overlay.qcow2
//! let qmp = wd.qmp_socket();             // also cmd/event/gvproxy sockets, console.log
//! // ... QEMU runs as qemu-vm and fills the directory ...
//! wd.cleanup()?;                         // or wd.cleanup_async().await? with tokio
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "cli")]
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
