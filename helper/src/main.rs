//! The `vmrmd` binary.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = vmrmd::Cli::parse();
    vmrmd::init_logging();
    match vmrmd::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                let text = s.to_string();
                if !message.contains(&text) {
                    message.push_str(": ");
                    message.push_str(&text);
                }
                source = s.source();
            }
            eprintln!("vmrmd: error: {message}");
            ExitCode::FAILURE
        }
    }
}
