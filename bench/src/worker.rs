//! The worker: runs as the benchmark's service uid (or one of section 3's
//! tenant uids) and removes what the orchestrator names, the ways a service
//! would, timing each.
//!
//! Commands, one per stdin line, each answered with one line of
//! nanoseconds: `ping`, `rtt`, `bare PATH`, `bare-process PATH`, `lib PATH`,
//! `cli PATH`, `sudo PATH`, `many-lib N FILE`, `many-sudo N FILE` (FILE
//! lists paths; N concurrent clients).

use std::io::{BufRead, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use vmrm::{Client, ClientOptions, Outcome};

pub fn run(socket: &Path, vmrm_bin: &Path) {
    let mut client = Client::with_options(ClientOptions::with_socket(socket));
    let mut echo = Echo::start();
    let mut bare = BareHelper::start();
    // Started at its first use: most workers (section 3's tenants) never
    // need one.
    let mut bare_process: Option<(BareHelper, Child)> = None;
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        let started = Instant::now();
        let ok = match words.as_slice() {
            ["ping"] => client.ping().is_ok(),
            ["rtt"] => echo.as_mut().is_some_and(Echo::round_trip),
            ["bare", path] => bare.as_mut().is_some_and(|b| b.remove(path)),
            ["bare-process", path] => {
                if bare_process.is_none() {
                    bare_process = BareHelper::start_process();
                }
                bare_process.as_mut().is_some_and(|(b, _)| b.remove(path))
            }
            ["lib", path] => matches!(client.remove(Path::new(path)), Ok(Outcome::Removed(_))),
            ["cli", path] => status(
                Command::new(vmrm_bin)
                    .arg("--socket")
                    .arg(socket)
                    .args(["rm", path]),
            ),
            ["sudo", path] => status(Command::new("sudo").args(["-n", "/usr/bin/rm", "-rf", path])),
            ["many-lib", n, file] => many(n, file, |path| {
                thread_local! {
                    static CLIENT: std::cell::RefCell<Option<Client>> = const { std::cell::RefCell::new(None) };
                }
                CLIENT.with(|c| {
                    let mut c = c.borrow_mut();
                    let client = c.get_or_insert_with(|| {
                        Client::with_options(ClientOptions::with_socket(socket))
                    });
                    matches!(client.remove(path), Ok(Outcome::Removed(_)))
                })
            }),
            ["many-sudo", n, file] => many(n, file, |path| {
                status(
                    Command::new("sudo")
                        .args(["-n", "/usr/bin/rm", "-rf"])
                        .arg(path),
                )
            }),
            ["quit"] => break,
            _ => false,
        };
        let ns = started.elapsed().as_nanos();
        let reply = if ok {
            format!("{ns}\n")
        } else {
            format!("error {line}\n")
        };
        if out
            .write_all(reply.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            break;
        }
    }
    // Closing its socket ends the bare helper process; reap it.
    if let Some((helper, mut child)) = bare_process {
        drop(helper);
        let _ = child.wait();
    }
}

/// The least any helper in another thread or process costs a request on
/// this machine: one byte to a thread asleep in `read` on a Unix socket, and
/// back. No runtime, no framing, no work: the two wake-ups alone.
struct Echo {
    near: UnixStream,
}

impl Echo {
    fn start() -> Option<Echo> {
        let (near, mut far) = UnixStream::pair().ok()?;
        std::thread::spawn(move || {
            let mut byte = [0u8; 1];
            while far.read_exact(&mut byte).is_ok() && far.write_all(&byte).is_ok() {}
        });
        Some(Echo { near })
    }

    fn round_trip(&mut self) -> bool {
        let mut byte = [7u8; 1];
        self.near.write_all(&byte).is_ok() && self.near.read_exact(&mut byte).is_ok()
    }
}

/// The least any helper that removes a workdir costs on this machine: a
/// thread asleep in `read` on a Unix socket is sent the path, removes the
/// tree with `std::fs::remove_dir_all` (no checks, no sandbox, no log) and
/// answers one byte. The removal runs on a thread just woken, as a helper's
/// does, which costs more than on the busy thread of the in-process floor.
struct BareHelper {
    near: UnixStream,
}

impl BareHelper {
    fn start() -> Option<BareHelper> {
        let (near, far) = UnixStream::pair().ok()?;
        std::thread::spawn(move || serve_paths(std::io::BufReader::new(&far), &far));
        Some(BareHelper { near })
    }

    /// The same bare helper in a process of its own (this binary's
    /// `bare-helper`), its stdin and stdout one end of a Unix socket pair.
    /// A helper that holds what the service does not (vmrmd's
    /// CAP_DAC_OVERRIDE) must be another process: each request then also
    /// switches address spaces, which a thread of the service does not.
    fn start_process() -> Option<(BareHelper, Child)> {
        let (near, far) = UnixStream::pair().ok()?;
        let out = far.try_clone().ok()?;
        let child = Command::new(std::env::current_exe().ok()?)
            .arg("bare-helper")
            .stdin(Stdio::from(OwnedFd::from(far)))
            .stdout(Stdio::from(OwnedFd::from(out)))
            .spawn()
            .ok()?;
        Some((BareHelper { near }, child))
    }

    fn remove(&mut self, path: &str) -> bool {
        let mut answer = [0u8; 1];
        self.near.write_all(format!("{path}\n").as_bytes()).is_ok()
            && self.near.read_exact(&mut answer).is_ok()
            && answer[0] == 1
    }
}

/// The bare helper's loop: a path a line in, `remove_dir_all`, one byte out
/// (1 when removed). Ends when the other side closes.
pub fn serve_paths(mut lines: impl BufRead, mut answers: impl Write) {
    let mut path = String::new();
    loop {
        path.clear();
        if !matches!(lines.read_line(&mut path), Ok(n) if n > 0) {
            break;
        }
        let ok = std::fs::remove_dir_all(path.trim_end_matches('\n')).is_ok();
        if answers
            .write_all(&[u8::from(ok)])
            .and_then(|()| answers.flush())
            .is_err()
        {
            break;
        }
    }
}

fn status(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `n` threads take paths from `file` until none are left.
fn many(n: &str, file: &str, remove: impl Fn(&Path) -> bool + Sync) -> bool {
    let n: usize = n.parse().unwrap_or(1);
    // A list this uid cannot read is an error, not nothing to do: a run
    // that removed nothing must not pass for a fast one.
    let Ok(list) = std::fs::read_to_string(file) else {
        return false;
    };
    let paths: Vec<PathBuf> = list.lines().map(PathBuf::from).collect();
    let next = AtomicUsize::new(0);
    let failures = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..n {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(p) = paths.get(i) else { break };
                if !remove(p) {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    failures.load(Ordering::Relaxed) == 0
}
