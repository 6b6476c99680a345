//! The `vmrm` command line: arguments, dispatch, exit status.

mod exit;
mod render;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use vmrm::args::{Cli, Command};
use vmrm::{Client, ClientOptions, Outcome, Verdict};

pub use exit::Status;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let options = match cli.socket {
        Some(socket) => ClientOptions::with_socket(socket),
        None => ClientOptions::default(),
    };
    let mut client = Client::with_options(options);
    let status = match cli.command {
        Command::Rm {
            force, json, paths, ..
        } => rm(&mut client, &paths, force, json),
        Command::Ping => match client.ping() {
            Ok(server) => {
                println!("{server} at {}", client.socket().display());
                Status::Success
            }
            Err(e) => {
                eprintln!("vmrm: {e}");
                Status::of_error(&e)
            }
        },
        Command::Stats { prometheus } => match client.stats() {
            Ok(Ok(stats)) => {
                if prometheus {
                    print!("{}", render::prometheus(&stats));
                } else {
                    print!("{}", render::stats(&stats));
                }
                Status::Success
            }
            Ok(Err(denied)) => {
                eprintln!("vmrm: stats: {denied}");
                Status::Denied
            }
            Err(e) => {
                eprintln!("vmrm: {e}");
                Status::of_error(&e)
            }
        },
    };
    status.into()
}

fn rm(client: &mut Client, paths: &[PathBuf], force: bool, json: bool) -> Status {
    let mut worst = Status::Success;
    for path in paths {
        let path = absolute(path);
        let status = match client.remove(&path) {
            Ok(outcome) => {
                let status = Status::of(&outcome, force);
                if json {
                    println!("{}", render::json(&path, &outcome));
                }
                if status != Status::Success {
                    for line in render::error_lines(&path, &outcome) {
                        eprintln!("vmrm: {line}");
                    }
                }
                status
            }
            Err(e) => {
                if json {
                    println!("{}", render::json_error(&path, &e));
                }
                eprintln!("vmrm: cannot remove {}: {e}", render::shown(&path));
                Status::of_error(&e)
            }
        };
        worst = worst.max(status);
    }
    worst
}

/// A relative path is taken from the current directory; trailing slashes
/// are dropped (`rm -rf /tmp/vm-x/` means the directory). Nothing else is
/// normalized: `..` and `.` reach vmrmd as written, and are refused there.
fn absolute(path: &Path) -> PathBuf {
    let joined = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(joined.as_os_str());
    let mut end = bytes.len();
    while end > 1 && bytes[end - 1] == b'/' {
        end -= 1;
    }
    PathBuf::from(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&bytes[..end]))
}

impl Status {
    fn of(outcome: &Outcome, force: bool) -> Status {
        match outcome.verdict() {
            Verdict::Removed | Verdict::Emptied => Status::Success,
            Verdict::NotFound if force => Status::Success,
            Verdict::NotFound => Status::NotFound,
            Verdict::Denied | Verdict::BadRequest => Status::Denied,
            Verdict::Failed => Status::Failed,
            Verdict::Unavailable => Status::Unavailable,
            // A verdict newer than this build: not understood.
            _ => Status::Unreachable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_is_neither_denied_nor_unreachable() {
        let unavailable = Outcome::Unavailable {
            message: "vmrmd is shutting down".into(),
        };
        let status = Status::of(&unavailable, false);
        assert_eq!(status, Status::Unavailable);
        assert_eq!(status.code(), 7);
        let bad = Outcome::BadRequest {
            message: String::new(),
        };
        assert_eq!(Status::of(&bad, false).code(), 3);
    }
}
