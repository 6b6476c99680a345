//! The common command line, `vmrm [--socket S] rm [-rf] [--json] PATH...`,
//! read without clap: clap builds the whole command tree (every subcommand,
//! every argument) before it parses anything, a few percent of a `vmrm rm`
//! that should cost what `rm -rf` does. Anything else, help, errors and
//! every doubt included, is left to clap, so clap stays the definition
//! (tests check that both read each line the same).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use vmrm::args::{Cli, Command};

/// The arguments (without the program name) as clap would read them, or
/// `None` to let clap read them.
pub fn parse(args: &[OsString]) -> Option<Cli> {
    let mut socket: Option<PathBuf> = None;
    let (mut force, mut recursive, mut json) = (false, false, false);
    let mut seen_rm = false;
    let mut paths = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let bytes = arg.as_bytes();
        if bytes.is_empty() {
            // clap refuses an empty path.
            return None;
        }
        if !bytes.starts_with(b"-") || bytes == b"-" {
            if seen_rm {
                paths.push(PathBuf::from(arg));
            } else if bytes == b"rm" {
                seen_rm = true;
            } else {
                return None;
            }
            continue;
        }
        match bytes {
            // Given twice, clap refuses: so must we, by leaving it to clap.
            b"--socket" if socket.is_none() => {
                socket = Some(PathBuf::from(socket_value(rest.next()?)?));
            }
            b"--" if seen_rm => {
                paths.extend(rest.by_ref().map(PathBuf::from));
            }
            b"--force" if seen_rm => set(&mut force)?,
            b"--recursive" if seen_rm => set(&mut recursive)?,
            b"--json" if seen_rm => set(&mut json)?,
            [b'-', cluster @ ..] if seen_rm && !cluster.is_empty() && cluster[0] != b'-' => {
                for flag in cluster {
                    match flag {
                        b'f' => set(&mut force)?,
                        b'r' | b'R' => set(&mut recursive)?,
                        _ => return None,
                    }
                }
            }
            _ => return None,
        }
    }
    if !seen_rm || paths.is_empty() {
        return None;
    }
    Some(Cli {
        socket,
        command: Command::Rm {
            force,
            recursive,
            json,
            paths,
        },
    })
}

/// `--socket`'s value: clap takes the next argument unless it looks like
/// a flag (then it is an error, which clap reports).
fn socket_value(value: &OsStr) -> Option<&OsStr> {
    match value.as_bytes() {
        [] | [b'-', ..] => None,
        _ => Some(value),
    }
}

/// Set a flag once; a second time is clap's error to report.
fn set(flag: &mut bool) -> Option<()> {
    if *flag {
        return None;
    }
    *flag = true;
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(line: &[&str]) -> Vec<OsString> {
        line.iter().map(OsString::from).collect()
    }

    /// Whatever the fast path reads, clap reads the same way.
    fn agrees(line: &[&str]) -> bool {
        let fast = parse(&args(line));
        let full = Cli::try_parse_from(std::iter::once("vmrm").chain(line.iter().copied()));
        if let Some(fast) = &fast {
            match &full {
                Ok(full) => assert_eq!(format!("{fast:?}"), format!("{full:?}"), "{line:?}"),
                Err(e) => panic!("{line:?}: read fast, but clap refuses: {e}"),
            }
        }
        fast.is_some()
    }

    #[test]
    fn the_common_lines_are_read_fast_and_as_clap_reads_them() {
        for line in [
            &["rm", "/tmp/vm-a"][..],
            &["rm", "-rf", "/tmp/vm-a"],
            &["rm", "-fr", "/tmp/vm-a", "/tmp/vm-b/"],
            &["rm", "-R", "-f", "--json", "/tmp/vm-a"],
            &["rm", "--force", "--recursive", "rel/vm-a"],
            &["--socket", "/run/x.sock", "rm", "-f", "/tmp/vm-a"],
            &["rm", "-f", "--socket", "/run/x.sock", "/tmp/vm-a"],
            &["rm", "-f", "--", "-rf", "--json"],
            &["rm", "-", "/tmp/vm-a"],
        ] {
            assert!(agrees(line), "{line:?} went to clap");
        }
    }

    #[test]
    fn everything_else_is_left_to_clap() {
        for line in [
            &[][..],
            &["rm"],
            &["rm", "-f"],
            &["rm", "--help"],
            &["rm", "-h", "/tmp/vm-a"],
            &["--version"],
            &["-V"],
            &["ping"],
            &["stats", "--prometheus"],
            &["help", "rm"],
            &["rm", "-f", "-f", "/tmp/vm-a"],
            &["rm", "-rR", "/tmp/vm-a"],
            &["rm", "-rfx", "/tmp/vm-a"],
            &["rm", "--force=true", "/tmp/vm-a"],
            &["rm", "--jso", "/tmp/vm-a"],
            &["--socket", "rm", "/tmp/vm-a"],
            &["--socket", "-f", "rm", "/tmp/vm-a"],
            &["--socket", "/a", "--socket", "/b", "rm", "/tmp/vm-a"],
            &["--socket"],
            &["rm", "/tmp/vm-a", "--socket"],
            &["-f", "rm", "/tmp/vm-a"],
            &["--", "rm", "/tmp/vm-a"],
            &["rmx", "/tmp/vm-a"],
            &["rm", ""],
            &["rm", "/tmp/vm-a", ""],
            &["--socket", "", "rm", "/tmp/vm-a"],
        ] {
            assert!(!agrees(line), "{line:?} was read fast");
        }
    }

    #[test]
    fn paths_that_are_not_utf8_are_read_fast() {
        let line = vec![
            OsString::from("rm"),
            OsString::from(OsStr::from_bytes(b"/tmp/vm-\xff")),
        ];
        let fast = parse(&line).expect("read fast");
        let full = Cli::try_parse_from(std::iter::once(OsString::from("vmrm")).chain(line))
            .expect("clap reads it");
        assert_eq!(format!("{fast:?}"), format!("{full:?}"));
    }
}
