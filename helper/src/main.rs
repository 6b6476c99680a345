//! The `vmrmd` binary.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = vmrmd::Cli::parse();
    vmrmd::init_logging();
    match vmrmd::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The message carries its cause (no `source()` chain to walk).
            eprintln!("vmrmd: error: {e}");
            ExitCode::FAILURE
        }
    }
}
