//! The `vmrmd` binary.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = vmrmd::cli::Cli::parse();
    vmrmd::logging::init();
    match vmrmd::daemon::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The message carries its cause (no `source()` chain to walk).
            eprintln!("vmrmd: error: {e}");
            ExitCode::FAILURE
        }
    }
}
