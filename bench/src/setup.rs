//! What the benchmark sets up as root and takes down again: a service user
//! for `sudo` (sudo needs a passwd entry), its NOPASSWD rule, a tmpfs, the
//! directories, and vmrmd processes.

use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::ops::Range;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

pub const SERVICE_USER: &str = "vmrmbench";
pub const HELPER_UID: u32 = 61_000;
pub const QEMU_UID: u32 = 61_003;
/// Section 3's tenants, a worker process each: bare uids with no passwd
/// entry, as many service uids are (vmrmd and the client need none).
pub const TENANT_UIDS: Range<u32> = 61_200..61_216;
const SUDOERS: &str = "/etc/sudoers.d/vmrm-bench";

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

pub struct Env {
    pub base: PathBuf,
    pub sticky: PathBuf,
    pub tmpfs: PathBuf,
    pub ext4: PathBuf,
    pub uid: u32,
    created_user: bool,
}

impl Env {
    pub fn new() -> Result<Env, String> {
        let base = PathBuf::from(format!("/tmp/vmrm-bench-{}", std::process::id()));
        let sticky = base.join("sticky");
        let tmpfs = base.join("tmpfs");
        let ext4 = base.join("disk");
        // From here on a failure drops `env`, whose Drop undoes what was done
        // so far: a run that cannot start leaves no mount, user or sudoers rule.
        let mut env = Env {
            base,
            sticky,
            tmpfs,
            ext4,
            uid: 0,
            created_user: false,
        };
        for (dir, mode) in [
            (&env.base, 0o755),
            (&env.sticky, 0o1777),
            (&env.tmpfs, 0o1777),
            (&env.ext4, 0o1777),
        ] {
            fs::create_dir_all(dir).map_err(|e| format!("{dir:?}: {e}"))?;
            fs::set_permissions(dir, fs::Permissions::from_mode(mode))
                .map_err(|e| e.to_string())?;
        }
        mount(
            Some("tmpfs"),
            &env.tmpfs,
            Some("tmpfs"),
            MsFlags::empty(),
            Some("mode=1777,size=16g,nr_inodes=4m"),
        )
        .map_err(|e| format!("mount tmpfs: {e}"))?;
        env.created_user = nix::unistd::User::from_name(SERVICE_USER)
            .ok()
            .flatten()
            .is_none();
        if env.created_user {
            run(Command::new("useradd").args([
                "--system",
                "--user-group",
                "--no-create-home",
                SERVICE_USER,
            ]))?;
        }
        env.uid = nix::unistd::User::from_name(SERVICE_USER)
            .ok()
            .flatten()
            .map(|u| u.uid.as_raw())
            .ok_or("no service user")?;
        // The rule a service has today: rm -rf of its workdirs as root.
        let rule = format!(
            "{SERVICE_USER} ALL=(root) NOPASSWD: /usr/bin/rm -rf {}/vm-*, /usr/bin/rm -rf {}/vm-*\n",
            env.sticky.display(),
            env.tmpfs.display()
        );
        fs::write(SUDOERS, rule).map_err(|e| {
            format!("{SUDOERS}: {e} (is sudo installed? scripts/bench.sh installs it)")
        })?;
        fs::set_permissions(SUDOERS, fs::Permissions::from_mode(0o440))
            .map_err(|e| e.to_string())?;
        Ok(env)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = fs::remove_file(SUDOERS);
        let _ = umount2(&self.tmpfs, MntFlags::MNT_DETACH);
        let _ = fs::remove_dir_all(&self.base);
        if self.created_user {
            let _ = Command::new("userdel").arg(SERVICE_USER).status();
        }
    }
}

/// A vmrmd started as a service manager would (setpriv, CAP_DAC_OVERRIDE).
pub struct Daemon {
    child: Child,
    pub socket: PathBuf,
}

impl Daemon {
    pub fn start(env: &Env, name: &str, extra: &[&str]) -> Result<Daemon, String> {
        let bin = sibling("vmrmd");
        let socket = env.base.join(format!("{name}.sock"));
        let h = HELPER_UID.to_string();
        let child = Command::new("setpriv")
            .args([
                &format!("--reuid={h}"),
                &format!("--regid={h}"),
                "--clear-groups",
                "--inh-caps=-all,+dac_override",
                "--ambient-caps=-all,+dac_override",
                "--bounding-set=-all,+dac_override",
                "--",
            ])
            .arg(&bin)
            .args(["--config", "/dev/null", "--socket"])
            .arg(&socket)
            .args(["--prefix"])
            .arg(&env.sticky)
            .args(["--prefix"])
            .arg(&env.tmpfs)
            .args(["--prefix"])
            .arg(&env.ext4)
            .args(extra)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start vmrmd: {e}"))?;
        // Let the helper's uid create its socket.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut d = Daemon { child, socket };
        while vmrm::Client::with_options(vmrm::ClientOptions::with_socket(&d.socket))
            .ping()
            .is_err()
        {
            if Instant::now() > deadline || matches!(d.child.try_wait(), Ok(Some(_))) {
                return Err("vmrmd did not start".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(d)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// (current RSS, peak RSS) in KiB and open fds.
    pub fn resources(&self) -> (u64, u64, usize) {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let kib = |field: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        let fds = fs::read_dir(format!("/proc/{}/fd", self.pid())).map_or(0, |d| d.count());
        (kib("VmRSS:"), kib("VmHWM:"), fds)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

/// A binary next to this one (target/release/...).
pub fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}

/// The `vmrm` command to measure: `$VMRM_BENCH_CLI` when set
/// (`scripts/bench.sh` sets it to the statically linked one that ships), else
/// the one built beside this binary.
pub fn cli() -> PathBuf {
    std::env::var_os("VMRM_BENCH_CLI").map_or_else(|| sibling("vmrm"), PathBuf::from)
}

/// A worker process, running as the service user (or, in section 3, as a
/// tenant uid): it reads one command a line (`lib PATH`, `quit`, ...) and
/// answers with the nanoseconds it took. The Rust library and the Python
/// package each have one; only how it is spawned differs.
pub struct Worker {
    /// Labels its errors: which worker of many said what.
    name: String,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Worker {
    /// This binary's own `worker` subcommand (the Rust library).
    pub fn start(env: &Env, socket: &Path) -> Result<Worker, String> {
        let me = std::env::current_exe().map_err(|e| e.to_string())?;
        Worker::spawn("worker", env, &[me.as_os_str()], &[], socket)
    }

    /// This binary's own `worker` subcommand as `uid`, a tenant of its own.
    pub fn start_as(uid: u32, socket: &Path) -> Result<Worker, String> {
        let me = std::env::current_exe().map_err(|e| e.to_string())?;
        Worker::launch(format!("tenant {uid}"), uid, &[me.as_os_str()], &[], socket)
    }

    /// `program` (the executable and its leading arguments) with `vars` set,
    /// as the service user, given `worker SOCKET VMRM`; `name` labels its
    /// errors.
    pub fn spawn(
        name: &'static str,
        env: &Env,
        program: &[&OsStr],
        vars: &[(&str, &OsStr)],
        socket: &Path,
    ) -> Result<Worker, String> {
        Worker::launch(name.to_owned(), env.uid, program, vars, socket)
    }

    fn launch(
        name: String,
        uid: u32,
        program: &[&OsStr],
        vars: &[(&str, &OsStr)],
        socket: &Path,
    ) -> Result<Worker, String> {
        let mut child = Command::new("setpriv")
            .args([
                &format!("--reuid={uid}"),
                &format!("--regid={uid}"),
                "--clear-groups",
                "--",
            ])
            .args(program)
            .arg("worker")
            .arg(socket)
            .arg(cli())
            .envs(vars.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("start {name}: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        Ok(Worker {
            name,
            child,
            stdin,
            stdout,
        })
    }

    /// Send one command; returns the time the worker measured.
    pub fn time(&mut self, command: &str) -> Result<Duration, String> {
        self.send(command)?;
        self.receive()
    }

    /// Send one command without waiting for its answer, so that several
    /// workers can be set going at once.
    pub fn send(&mut self, command: &str) -> Result<(), String> {
        // One write, so that commands to many workers go out back to back.
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .map_err(|e| format!("{}: {e}", self.name))
    }

    /// The answer to the oldest command not yet answered: the time the
    /// worker measured.
    pub fn receive(&mut self) -> Result<Duration, String> {
        let mut line = String::new();
        let read = self
            .stdout
            .read_line(&mut line)
            .map_err(|e| format!("{}: {e}", self.name))?;
        if read == 0 {
            return Err(format!("{}: exited without answering", self.name));
        }
        line.trim()
            .parse::<u64>()
            .map(Duration::from_nanos)
            .map_err(|_| format!("{}: {}", self.name, line.trim()))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.child.wait();
    }
}
