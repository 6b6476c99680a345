//! A real `vmrmd` process for one test.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::{binaries, ids, Fixture};

/// The message of the sweeper's debug line after each pass.
const SWEEP_DONE: &str = "sweep pass finished";

/// A `RUST_LOG` that keeps the default level and adds the sweeper's
/// per-pass line that [`Daemon::sweeps`] counts.
pub const SWEEP_LOG: &str = "info,vmrmd::sweeper=debug";

/// How to start the daemon.
#[derive(Debug, Clone, Default)]
pub struct DaemonOptions {
    /// Start as root with every capability (vmrmd drops to `ids::HELPER`
    /// itself) instead of through `setpriv` as `ids::HELPER` holding only
    /// CAP_DAC_OVERRIDE.
    pub as_root: bool,
    /// RLIMIT_NOFILE for the daemon.
    pub nofile: Option<u64>,
    /// More vmrmd arguments.
    pub args: Vec<String>,
    /// Replace the default prefixes (sticky and plain).
    pub prefixes: Option<Vec<PathBuf>>,
    /// Started by `systemd-socket-activate`, as a service manager would.
    pub activate: bool,
    /// A config file instead of none (`/dev/null`).
    pub config: Option<PathBuf>,
    /// Extra environment, such as NOTIFY_SOCKET.
    pub env: Vec<(String, String)>,
    /// Through `setpriv` as `ids::HELPER` but with no capability at all.
    pub no_caps: bool,
    /// `--sandbox` mode; default `required`, so that every end-to-end test
    /// runs under the full self-sandbox and a syscall or path it forgot
    /// shows up as a failure.
    pub sandbox: Option<&'static str>,
    /// `--runner-user` uids; default `[ids::QEMU_VM]`, as deployed with
    /// `runner_users = ["qemu-vm"]`. `Some(vec![])`: none.
    pub runners: Option<Vec<u32>>,
}

pub struct Daemon {
    child: Child,
    pub socket: PathBuf,
    log: PathBuf,
}

/// The `setpriv` words that give a command `uid` and `gid`, no groups, and
/// nothing else.
pub fn as_user(uid: u32) -> Vec<String> {
    vec![
        "setpriv".into(),
        format!("--reuid={uid}"),
        format!("--regid={uid}"),
        "--clear-groups".into(),
        "--".into(),
    ]
}

impl Daemon {
    pub fn start(f: &Fixture, options: DaemonOptions) -> Daemon {
        // Build the client too, now: on a fresh clone the first build takes
        // a while, and must not count against a test's timing bounds.
        let _ = binaries::vmrm();
        let mut words: Vec<String> = Vec::new();
        if options.activate {
            words.extend([
                "systemd-socket-activate".into(),
                "--listen".into(),
                f.socket.display().to_string(),
            ]);
            // It passes its child only the environment it is told to.
            for (k, v) in &options.env {
                words.push(format!("--setenv={k}={v}"));
            }
            words.push("--".into());
        }
        if let Some(n) = options.nofile {
            words.extend(["prlimit".into(), format!("--nofile={n}:{n}"), "--".into()]);
        }
        if options.no_caps {
            words.extend(as_user(ids::HELPER));
        } else if !options.as_root {
            // As a service manager with AmbientCapabilities would start it.
            let h = ids::HELPER;
            words.extend([
                "setpriv".into(),
                format!("--reuid={h}"),
                format!("--regid={h}"),
                "--clear-groups".into(),
                "--inh-caps=-all,+dac_override".into(),
                "--ambient-caps=-all,+dac_override".into(),
                "--bounding-set=-all,+dac_override".into(),
                "--".into(),
            ]);
        }
        words.push(binaries::vmrmd().display().to_string());
        words.extend([
            "--config".into(),
            options
                .config
                .as_ref()
                .map_or("/dev/null".into(), |p| p.display().to_string()),
            "--socket".into(),
            f.socket.display().to_string(),
            "--user".into(),
            ids::HELPER.to_string(),
            "--sandbox".into(),
            options.sandbox.unwrap_or("required").into(),
        ]);
        let prefixes = options
            .prefixes
            .clone()
            .unwrap_or_else(|| vec![f.sticky.clone(), f.plain.clone()]);
        for p in prefixes {
            words.extend(["--prefix".into(), p.display().to_string()]);
        }
        for uid in options
            .runners
            .clone()
            .unwrap_or_else(|| vec![ids::QEMU_VM])
        {
            words.extend(["--runner-user".into(), uid.to_string()]);
        }
        words.extend(options.args.iter().cloned());

        let log = f.base().join(format!("vmrmd-{}.log", std::process::id()));
        let log_file = fs::File::create(&log).unwrap();
        let child = Command::new(&words[0])
            .args(&words[1..])
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {words:?}: {e}"));
        let mut daemon = Daemon {
            child,
            socket: f.socket.clone(),
            log,
        };
        daemon.wait_ready(options.activate);
        daemon
    }

    fn wait_ready(&mut self, activated: bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        if activated {
            // The activator creates the socket with its umask; let the
            // tenants' uids connect, as SocketMode=0660 plus a group would.
            while !self.socket.exists() {
                assert!(
                    Instant::now() < deadline,
                    "no socket from systemd-socket-activate"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            fs::set_permissions(
                &self.socket,
                std::os::unix::fs::PermissionsExt::from_mode(0o666),
            )
            .unwrap();
        }
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("vmrmd exited during start-up ({status}):\n{}", self.log());
            }
            if self.client().ping().is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "vmrmd not ready:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A library client in the test process (peer uid 0).
    pub fn client(&self) -> vmrm::Client {
        let mut options = vmrm::ClientOptions::with_socket(&self.socket);
        options.response_timeout = Duration::from_secs(660);
        vmrm::Client::with_options(options)
    }

    /// Peak and current resident memory (VmHWM, VmRSS) in KiB.
    pub fn memory_kib(&self) -> (u64, u64) {
        let kib = |field: &str| {
            self.status_field(field)
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .unwrap()
        };
        (kib("VmHWM"), kib("VmRSS"))
    }

    /// Open fds right now.
    pub fn open_fds(&self) -> usize {
        fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Client connections vmrmd holds open right now: its socket fds that
    /// /proc/net/unix lists as connected (state 03) with an address, i.e.
    /// accepted from its listener (its own socket pairs have none).
    pub fn open_connections(&self) -> usize {
        let Ok(fds) = fs::read_dir(format!("/proc/{}/fd", self.pid())) else {
            return 0;
        };
        let inodes: Vec<String> = fds
            .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
            .filter_map(|target| {
                let target = target.to_string_lossy().into_owned();
                Some(
                    target
                        .strip_prefix("socket:[")?
                        .strip_suffix(']')?
                        .to_owned(),
                )
            })
            .collect();
        fs::read_to_string("/proc/net/unix")
            .unwrap()
            .lines()
            .skip(1)
            .map(|line| line.split_whitespace().collect::<Vec<_>>())
            .filter(|f| f.len() >= 8 && f[5] == "03" && inodes.iter().any(|i| i == f[6]))
            .count()
    }

    /// Wait (polling, 20 s at most) until vmrmd holds no client connection,
    /// e.g. until the readiness probe's connection has given its slot back.
    pub fn wait_connections_closed(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.open_connections() > 0 {
            assert!(
                Instant::now() < deadline,
                "vmrmd still holds {} connections:\n{}",
                self.open_connections(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sweeper passes finished so far, counted from the log (the sweeper
    /// logs each at debug level: start the daemon with
    /// `RUST_LOG=info,vmrmd::sweeper=debug`).
    pub fn sweeps(&self) -> usize {
        self.log().matches(SWEEP_DONE).count()
    }

    /// Wait (polling, 30 s at most) until `n` more sweeper passes than
    /// `base` have finished.
    pub fn wait_sweeps(&self, base: usize, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.sweeps() < base + n {
            assert!(
                Instant::now() < deadline,
                "fewer than {n} sweeps after {base}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Everything vmrmd wrote to stderr.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Everything vmrmd wrote to stderr, once nothing more came for 50 ms
    /// (2 s at most): a removal's end line follows its answer by a few µs
    /// (vmrmd writes it once the answer is sent), so a test that just got
    /// the answer reads the log through this.
    pub fn settled_log(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut seen = self.log();
        loop {
            std::thread::sleep(Duration::from_millis(50));
            let now = self.log();
            if now.len() == seen.len() || Instant::now() > deadline {
                return now;
            }
            seen = now;
        }
    }

    /// The audit lines, parsed (from [`Daemon::settled_log`]).
    pub fn audit(&self) -> Vec<serde_json::Value> {
        self.settled_log()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["target"] == "vmrmd::audit")
            .collect()
    }

    /// A field of `/proc/<pid>/status`, such as `CapEff`.
    pub fn status_field(&self, field: &str) -> String {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .unwrap_or_else(|| panic!("no {field} in status"))
            .trim()
            .to_owned()
    }

    /// Run `vmrm --socket S <args>` as `uid`, bounded in time.
    pub fn vmrm_as(&self, uid: u32, args: &[&OsStr]) -> Output {
        let mut words: Vec<String> = vec!["timeout".into(), "60".into()];
        words.extend(as_user(uid));
        let mut cmd = Command::new(&words[0]);
        cmd.args(&words[1..])
            .arg(binaries::vmrm())
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null());
        cmd.output().unwrap()
    }

    /// `vmrm rm <path>` as `uid`; returns the exit code and stderr.
    pub fn rm_as(&self, uid: u32, path: &Path) -> (i32, String) {
        let out = self.vmrm_as(uid, &[OsStr::new("rm"), path.as_os_str()]);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn signal(&self, signal: Signal) {
        let pid = i32::try_from(self.pid()).unwrap();
        kill(Pid::from_raw(pid), signal).unwrap();
    }

    /// SIGTERM, then wait; returns whether it exited cleanly.
    pub fn stop(&mut self) -> bool {
        let _ = kill(Pid::from_raw(self.pid() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.alive() {
            self.stop();
        }
    }
}
