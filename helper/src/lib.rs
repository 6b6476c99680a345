//! vmrmd: the helper daemon that removes tenants' VM working directories
//! race-safely, holding CAP_DAC_OVERRIDE and nothing else.
//!
//! The library exists for the `vmrmd` binary, whose command line it also
//! hands to xtask for the man page; every module is private to the crate.
//! `unsafe` lives only in `sys.rs`.
#![deny(unsafe_code)]

pub(crate) mod accounting;
pub(crate) mod admission;
pub(crate) mod audit;
pub(crate) mod cli;
pub(crate) mod connection;
pub(crate) mod daemon;
pub(crate) mod engine;
pub(crate) mod fair_queue;
pub(crate) mod listener;
pub(crate) mod logging;
pub(crate) mod notify;
pub(crate) mod privileges;
pub(crate) mod removal;
pub(crate) mod sandbox;
pub(crate) mod server;
pub(crate) mod service;
pub(crate) mod stats;
pub(crate) mod sweeper;
pub(crate) mod sys;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;
pub(crate) mod trusted;
pub(crate) mod user_database;

/// The command line; xtask renders its man page from it.
pub use cli::Cli;
/// Start-up and serving until shutdown, and why start-up failed.
pub use daemon::{run, StartError};
/// The log subscriber the daemon writes its journal and audit lines with.
pub use logging::init as init_logging;
