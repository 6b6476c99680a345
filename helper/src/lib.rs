//! vmrmd: the helper daemon that removes tenants' VM working directories
//! race-safely, holding CAP_DAC_OVERRIDE and nothing else.
//!
//! The library exists for the `vmrmd` binary, whose command line it also
//! hands to xtask for the man page; every module is private to the crate.
//! Its folders are its concerns: `startup/`, `serving/`, `removal/` (with
//! the engine) and `sandbox/`; `unsafe` lives only in `sys.rs`.
#![deny(unsafe_code)]

pub(crate) mod deadline;
pub(crate) mod removal;
pub(crate) mod sandbox;
pub(crate) mod serving;
pub(crate) mod startup;
pub(crate) mod sys;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;

/// The command line; xtask renders its man page from it.
pub use startup::cli::Cli;
/// Start-up and serving until shutdown, and why start-up failed.
pub use startup::daemon::{run, StartError};
/// The log subscriber the daemon writes its journal and audit lines with.
pub use startup::logging::init as init_logging;
