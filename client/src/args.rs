//! The `vmrm` command line's definition, public so that the man page can be
//! generated from it (`cargo run -p xtask -- man`).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The exit statuses, shown in `--help` and the man page.
pub const EXIT_STATUS: &str = "\
Exit status:
  0  every path removed (or absent, with -f)
  1  failed: the helper ran the removal but parts of the tree remain
  2  usage error
  3  denied: the helper refused a path; nothing of it was touched
  4  not found (without -f)
  5  the helper is unreachable, or broke the protocol
  6  busy: the helper is at a connection limit; nothing was asked, retry later
  7  unavailable: the helper could not take the request on (shutting down);
     nothing was touched, retry later
With several paths, the most severe status wins: 5, 7, 6, 3, 1, then 4.";

/// Remove VM working directories through the vmrmd helper.
#[derive(Debug, Parser)]
#[command(
    name = "vmrm",
    version,
    about = "Remove VM working directories through the vmrmd helper, instead of sudo rm -rf",
    after_help = EXIT_STATUS
)]
pub struct Cli {
    /// vmrmd's socket [default: $VMRM_SOCKET, else /run/vmrmd/vmrmd.sock]
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Remove directory trees, like `rm -rf`, through vmrmd.
    #[command(after_help = EXIT_STATUS)]
    Rm {
        /// Treat a path that does not exist as removed (like `rm -f`).
        #[arg(short, long)]
        force: bool,
        /// Accepted (also as -R) for drop-in use as `rm -rf`: removal is
        /// always recursive, with or without it.
        #[arg(short = 'r', short_alias = 'R', long = "recursive")]
        recursive: bool,
        /// One JSON object per path on stdout.
        #[arg(long)]
        json: bool,
        /// Directories to remove: `<prefix>/vm-...`.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Check that vmrmd answers.
    Ping,
    /// Show vmrmd's counters and latencies since it started.
    Stats {
        /// Prometheus text format (for node-exporter's textfile collector).
        #[arg(long)]
        prometheus: bool,
    },
}
