//! Trusted start-up: nothing by path as root at start-up (socket
//! directory, socket mode, config file), a dedicated non-dumpable account,
//! config trust, and prefix validation. Each test is named after the attack.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use vmrm_tests::daemon::as_user;
use vmrm_tests::{binaries, ids, require_root, tree, Daemon, DaemonOptions, Fixture};

/// Run vmrmd (as root) with `args` for at most `wait`; returns whether it
/// exited with failure, and its stderr. A vmrmd still running after `wait`
/// is stopped and counts as "started".
fn run_vmrmd(words: &[String], wait: Duration) -> (bool, String) {
    let log = tempfile::NamedTempFile::new().unwrap();
    // A process group of its own: when `words` is a wrapper (strace), the
    // vmrmd under it is killed with it, not left running after the test.
    let mut child = Command::new(&words[0])
        .args(&words[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .process_group(0)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + wait;
    let failed = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break !status.success();
        }
        if Instant::now() > deadline {
            let group = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::killpg(group, Signal::SIGKILL);
            let _ = child.wait();
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (failed, fs::read_to_string(log.path()).unwrap())
}

/// vmrmd's words as root with `--user HELPER`, the given socket, config and
/// prefixes, and `extra`.
fn vmrmd_words(socket: &Path, config: &Path, prefixes: &[&Path], extra: &[&str]) -> Vec<String> {
    let mut w = vec![
        binaries::vmrmd().display().to_string(),
        "--config".into(),
        config.display().to_string(),
        "--socket".into(),
        socket.display().to_string(),
        "--user".into(),
        ids::HELPER.to_string(),
        "--sandbox".into(),
        "required".into(),
    ];
    for p in prefixes {
        w.extend(["--prefix".into(), p.display().to_string()]);
    }
    w.extend(extra.iter().map(|s| s.to_string()));
    w
}

fn mkdir(path: &Path, mode: u32, owner: u32) {
    fs::create_dir_all(path).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    std::os::unix::fs::chown(path, Some(owner), Some(owner)).unwrap();
}

fn refused(words: &[String], expected: &str) -> String {
    let (failed, log) = run_vmrmd(words, Duration::from_secs(15));
    assert!(failed, "vmrmd started, but should have refused:\n{log}");
    assert!(log.contains(expected), "expected {expected:?} in:\n{log}");
    log
}

// ---- 1. Nothing by path as root ------------------------------------------

#[test]
#[ignore = "needs root"]
fn socket_dir_precreated_by_a_tenant_is_refused() {
    require_root();
    let f = Fixture::new();
    // A /tmp-like place where anyone may create directories.
    let open = f.base().join("open");
    mkdir(&open, 0o1777, 0);
    // The tenant got there first and owns the would-be socket directory.
    let run = open.join("vmrmd");
    mkdir(&run, 0o755, ids::TENANT_A);
    let socket = run.join("vmrmd.sock");
    let words = vmrmd_words(&socket, Path::new("/dev/null"), &[&f.plain], &[]);
    refused(&words, "owned by uid 61001");
    assert!(!socket.exists(), "vmrmd bound in a tenant's directory");

    // Root-owned but world-writable (even sticky): others can plant the
    // socket's name.
    fs::remove_dir(&run).unwrap();
    mkdir(&run, 0o1777, 0);
    refused(&words, "must not be writable by its group or by others");

    // An ancestor owned by a tenant: it could rename the directory away.
    let tenant_home = f.base().join("tenant");
    mkdir(&tenant_home, 0o755, ids::TENANT_A);
    let inner = tenant_home.join("run");
    mkdir(&inner, 0o755, 0);
    let words = vmrmd_words(
        &inner.join("vmrmd.sock"),
        Path::new("/dev/null"),
        &[&f.plain],
        &[],
    );
    refused(&words, "owned by uid 61001");

    // A symlink in the socket's directory path.
    let link = f.base().join("link");
    std::os::unix::fs::symlink(&inner, &link).unwrap();
    let words = vmrmd_words(
        &link.join("vmrmd.sock"),
        Path::new("/dev/null"),
        &[&f.plain],
        &[],
    );
    refused(&words, "symbolic link");
}

#[test]
#[ignore = "needs root"]
fn socket_dir_is_created_by_vmrmd_and_socket_mode_and_group_are_set_at_bind() {
    require_root();
    let mut f = Fixture::new();
    f.socket = f.base().join("fresh/vmrmd/vmrmd.sock");
    let group = ids::TENANT_B.to_string();
    let d = Daemon::start(
        &f,
        DaemonOptions {
            as_root: true,
            args: vec![
                "--socket-mode".into(),
                "660".into(),
                "--socket-group".into(),
                group,
            ],
            ..DaemonOptions::default()
        },
    );
    let dir = fs::metadata(f.base().join("fresh/vmrmd")).unwrap();
    assert_eq!(dir.uid(), 0);
    assert_eq!(dir.mode() & 0o7777, 0o755);
    let sock = fs::symlink_metadata(&f.socket).unwrap();
    assert_eq!(sock.mode() & 0o7777, 0o660);
    assert_eq!(sock.gid(), ids::TENANT_B);
    drop(d);
    assert!(!f.socket.exists(), "socket left after stop");
    assert!(
        !f.base().join("fresh/vmrmd").exists(),
        "the runtime directory vmrmd created is left after stop"
    );
}

/// Every chmod/chown-family syscall vmrmd makes at start, traced: none may
/// take a path (the attack swapped the socket for a symlink between bind
/// and a chmod by path).
#[test]
#[ignore = "needs root"]
fn no_chmod_or_chown_by_path_at_start() {
    require_root();
    let f = Fixture::new();
    let trace = f.base().join("strace.out");
    let mut words: Vec<String> = vec![
        "strace".into(),
        "-f".into(),
        "-qq".into(),
        "-o".into(),
        trace.display().to_string(),
        "-e".into(),
        "trace=chmod,fchmodat,chown,lchown,fchownat,fchmod,fchown".into(),
    ];
    words.extend(vmrmd_words(
        &f.socket,
        Path::new("/dev/null"),
        &[&f.plain],
        &["--socket-mode", "660", "--socket-group", "61002"],
    ));
    let (failed, log) = run_vmrmd(&words, Duration::from_secs(8));
    assert!(!failed, "vmrmd did not start:\n{log}");
    let trace = fs::read_to_string(&trace).unwrap();
    let by_path: Vec<&str> = trace
        .lines()
        .filter(|l| {
            [
                "chmod(",
                "fchmodat(",
                "fchmodat2(",
                "chown(",
                "lchown(",
                "fchownat(",
            ]
            .iter()
            .any(|s| l.contains(s))
        })
        .collect();
    assert!(by_path.is_empty(), "path-based chmod/chown: {by_path:?}");
    let sock = fs::symlink_metadata(&f.socket);
    // Stopped by kill: the socket may remain; if it does, it has the mode.
    if let Ok(sock) = sock {
        assert_eq!(sock.mode() & 0o777, 0o660);
    }
}

// ---- 2. A dedicated, non-dumpable account ---------------------------------

#[test]
#[ignore = "needs root"]
fn started_as_root_without_a_vmrmd_account_it_refuses_naming_the_options() {
    require_root();
    let f = Fixture::new();
    let exists = Command::new("getent")
        .args(["passwd", "vmrmd"])
        .output()
        .unwrap()
        .status
        .success();
    let mut words = vmrmd_words(&f.socket, Path::new("/dev/null"), &[&f.plain], &[]);
    // No --user: the default, vmrmd.
    let at = words.iter().position(|w| w == "--user").unwrap();
    words.drain(at..at + 2);
    if exists {
        let (failed, log) = run_vmrmd(&words, Duration::from_secs(5));
        assert!(!failed, "{log}");
        return;
    }
    let log = refused(&words, "useradd --system");
    assert!(log.contains("--user nobody"), "{log}");
}

#[test]
#[ignore = "needs root"]
fn a_shared_account_is_accepted_with_a_loud_warning() {
    require_root();
    let f = Fixture::new();
    let mut words = vmrmd_words(&f.socket, Path::new("/dev/null"), &[&f.plain], &[]);
    let at = words.iter().position(|w| w == "--user").unwrap();
    words[at + 1] = "65534".into();
    let (failed, log) = run_vmrmd(&words, Duration::from_secs(5));
    assert!(!failed, "{log}");
    assert!(log.contains("SHARED ACCOUNT"), "{log}");
}

fn run_as(uid: u32, cmd: &[&str]) -> std::process::Output {
    let mut words = as_user(uid);
    words.extend(cmd.iter().map(|s| s.to_string()));
    Command::new(&words[0])
        .args(&words[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The attack: any process of vmrmd's uid (nobody, shared with other
/// daemons) could ptrace it or read its memory; any other uid sharing
/// nothing must not be able to stop or prlimit it.
#[test]
#[ignore = "needs root"]
fn same_uid_cannot_ptrace_and_other_uids_cannot_signal_or_prlimit() {
    require_root();
    let f = Fixture::new();
    let d = Daemon::start(&f, DaemonOptions::default());
    let pid = d.pid().to_string();
    // Same uid: /proc/<pid>/environ and mem are ptrace-guarded.
    for file in ["environ", "mem"] {
        let out = run_as(ids::HELPER, &["cat", &format!("/proc/{pid}/{file}")]);
        assert!(
            !out.status.success(),
            "uid {} read /proc/{pid}/{file}",
            ids::HELPER
        );
    }
    // Another uid: no signal, no prlimit.
    let out = run_as(ids::TENANT_A, &["kill", "-STOP", &pid]);
    assert!(!out.status.success(), "a tenant stopped vmrmd");
    let out = run_as(ids::TENANT_A, &["prlimit", "--pid", &pid, "--nofile=3:3"]);
    assert!(!out.status.success(), "a tenant prlimited vmrmd");
    assert!(d.client().ping().is_ok());
    assert!(d.log().contains("dumpable=false"), "{}", d.log());
}

// ---- 3. Config trust -------------------------------------------------------

fn write_config(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
}

/// A vmrmd reading the config file `vmrmd.toml` (root's, 0644, empty) in
/// `f`'s directory, for a test that rewrites and reloads it.
fn daemon_with_config(f: &Fixture) -> (Daemon, PathBuf) {
    let config = f.base().join("vmrmd.toml");
    write_config(&config, "");
    let d = Daemon::start(
        f,
        DaemonOptions {
            config: Some(config.clone()),
            ..DaemonOptions::default()
        },
    );
    (d, config)
}

/// SIGHUP `d`, then wait (10 s at most) until its log says `line`.
fn reload_until(d: &Daemon, line: &str) {
    d.signal(Signal::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.log().contains(line) {
        assert!(Instant::now() < deadline, "no {line:?}:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[ignore = "needs root"]
fn tenant_owned_or_writable_config_is_refused_at_start() {
    require_root();
    let f = Fixture::new();
    let config = f.base().join("vmrmd.toml");
    write_config(&config, "name_prefix = \"vm-\"\n");
    std::os::unix::fs::chown(&config, Some(ids::TENANT_A), None).unwrap();
    let words = vmrmd_words(&f.socket, &config, &[&f.plain], &[]);
    refused(&words, "owned by uid 61001");

    std::os::unix::fs::chown(&config, Some(0), None).unwrap();
    fs::set_permissions(&config, fs::Permissions::from_mode(0o666)).unwrap();
    refused(&words, "must not be writable");

    // Its directory group-writable: a group member could replace it.
    fs::set_permissions(&config, fs::Permissions::from_mode(0o644)).unwrap();
    let dir = f.base().join("etc");
    mkdir(&dir, 0o775, 0);
    let inner = dir.join("vmrmd.toml");
    write_config(&inner, "");
    let words = vmrmd_words(&f.socket, &inner, &[&f.plain], &[]);
    refused(&words, "must not be writable by its group");
}

#[test]
#[ignore = "needs root"]
fn config_symlinked_to_a_secret_is_refused_and_never_echoed() {
    require_root();
    let f = Fixture::new();
    let secret = f.outside.join("shadow");
    write_config(
        &secret,
        "root:$y$SECRETSALT$SECRETHASH:19000:0:99999:7:::\n",
    );
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    let link = f.base().join("vmrmd.toml");
    std::os::unix::fs::symlink(&secret, &link).unwrap();
    let words = vmrmd_words(&f.socket, &link, &[&f.plain], &[]);
    let log = refused(&words, "symbolic link");
    assert!(!log.contains("SECRET"), "{log}");

    // Given directly (a trusted, root-owned file that is not TOML): the
    // error names line and column, never the content.
    let words = vmrmd_words(&f.socket, &secret, &[&f.plain], &[]);
    let log = refused(&words, "line 1, column");
    assert!(!log.contains("SECRET"), "{log}");
}

#[test]
#[ignore = "needs root"]
fn tenant_writable_config_on_reload_is_refused_and_the_old_policy_kept() {
    require_root();
    let f = Fixture::new();
    let (d, config) = daemon_with_config(&f);
    // The tenant takes the file over and narrows the names to its liking.
    write_config(&config, "name_prefix = \"zz-\"\n");
    std::os::unix::fs::chown(&config, Some(ids::TENANT_A), None).unwrap();
    reload_until(&d, "KEEPING THE PREVIOUS CONFIGURATION");
    assert!(d.log().contains("owned by uid 61001"), "{}", d.log());
    // The old policy (vm- names) still serves.
    let wd = tree::vm_workdir(&f.plain, ids::TENANT_A);
    let (code, err) = d.rm_as(ids::TENANT_A, &wd);
    assert_eq!(code, 0, "{err}");
    assert!(!wd.exists());
}

/// The attack: a reload that Landlock blocks logged a bare EACCES.
#[test]
#[ignore = "needs root"]
fn a_reload_blocked_by_the_sandbox_says_so_and_what_to_do() {
    require_root();
    let f = Fixture::new();
    let (d, config) = daemon_with_config(&f);
    // An editor's save: a new inode renamed over the old, outside the one
    // file Landlock lets vmrmd read.
    let new = f.base().join("vmrmd.toml.new");
    write_config(&new, "name_prefix = \"vm-\"\n");
    fs::rename(&new, &config).unwrap();
    reload_until(&d, "KEEPING THE PREVIOUS CONFIGURATION");
    let log = d.log();
    assert!(log.contains("self-sandbox"), "{log}");
    assert!(log.contains("restart vmrmd"), "{log}");
}

// ---- 4. Prefix validation --------------------------------------------------

fn prefix_refused(f: &Fixture, prefixes: &[&Path], expected: &str) {
    let words = vmrmd_words(&f.socket, Path::new("/dev/null"), prefixes, &[]);
    refused(&words, expected);
}

#[test]
#[ignore = "needs root"]
fn system_trees_are_refused_as_prefixes() {
    require_root();
    let f = Fixture::new();
    for p in [
        "/etc", "/usr", "/proc", "/run", "/var", "/home", "/lib", "/dev",
    ] {
        prefix_refused(&f, &[Path::new(p)], "system directory");
    }
}

#[test]
#[ignore = "needs root"]
fn proc_and_sysfs_mounted_elsewhere_are_refused_as_prefixes() {
    require_root();
    let f = Fixture::new();
    for (fs_type, name) in [("proc", "proc"), ("sysfs", "sysfs")] {
        let target = f.base().join(format!("mnt-{name}"));
        fs::create_dir(&target).unwrap();
        nix::mount::mount(
            Some(fs_type),
            &target,
            Some(fs_type),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        let words = vmrmd_words(&f.socket, Path::new("/dev/null"), &[&target], &[]);
        let (failed, log) = run_vmrmd(&words, Duration::from_secs(10));
        let _ = nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH);
        assert!(failed, "{fs_type} accepted as a prefix:\n{log}");
        assert!(log.contains(&format!("on a {name} filesystem")), "{log}");
    }
}

#[test]
#[ignore = "needs root"]
fn duplicate_and_bind_mount_alias_prefixes_are_refused() {
    require_root();
    let f = Fixture::new();
    prefix_refused(&f, &[&f.plain, &f.plain], "configured twice");
    let alias: PathBuf = f.base().join("alias");
    fs::create_dir(&alias).unwrap();
    f.bind_mount(&f.plain, &alias);
    prefix_refused(&f, &[&f.plain, &alias], "same directory");
}

/// The attack: in a group-writable prefix, tenant A renames a group
/// member's archive to `vm-archive`, and a request (or the sweeper) removes
/// it. Such prefixes are refused now.
#[test]
#[ignore = "needs root"]
fn group_writable_prefix_is_refused_unless_sticky() {
    require_root();
    let f = Fixture::new();
    let shared = f.base().join("shared");
    mkdir(&shared, 0o770, 0);
    prefix_refused(&f, &[&shared], "group-writable without the sticky bit");
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o1770)).unwrap();
    let words = vmrmd_words(&f.socket, Path::new("/dev/null"), &[&shared], &[]);
    let (failed, log) = run_vmrmd(&words, Duration::from_secs(4));
    assert!(!failed, "sticky group-writable prefix refused:\n{log}");
}

// ---- check-config ------------------------------------------------------------

/// `check-config` printed Rust Debug (`BestEffort`, `Limits { .. }`) and
/// only the first error.
#[test]
fn check_config_prints_toml_and_every_error() {
    let f = tempfile::tempdir().unwrap();
    let prefix = fs::canonicalize(f.path()).unwrap();
    let out = Command::new(binaries::vmrmd())
        .args(["--config", "/dev/null", "--user", "61000", "--prefix"])
        .arg(&prefix)
        .arg("check-config")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    for expected in [
        "sandbox = \"best-effort\"",
        "[limits]",
        "max_connections = 256",
        "socket_mode = 0o666",
    ] {
        assert!(stdout.contains(expected), "{expected:?} missing:\n{stdout}");
    }
    assert!(
        !stdout.contains("BestEffort") && !stdout.contains("Limits {"),
        "{stdout}"
    );

    let out = Command::new(binaries::vmrmd())
        .args([
            "--config",
            "/dev/null",
            "--user",
            "61000",
            "--prefix",
            "/etc",
            "--prefix",
            "rel",
            "--max-connections",
            "0",
            "check-config",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for expected in [
        "3 problems",
        "\"/etc\" is a system directory",
        "not an absolute path",
        "max_connections must be at least 1",
    ] {
        assert!(stderr.contains(expected), "{expected:?} missing:\n{stderr}");
    }
}

/// Issue 10: a reload logged "caps and timeouts take effect only at
/// restart" for some start-only settings (not max_removals_per_uid), and
/// lumped the reloadable removal timeouts in with them. Now it names each
/// start-only setting whose new value waits for a restart, and no other.
#[test]
#[ignore = "needs root"]
fn a_reload_names_each_start_only_setting_it_cannot_change() {
    require_root();
    let f = Fixture::new();
    let (d, config) = daemon_with_config(&f);
    // Written in place: the sandbox lets vmrmd read this one file.
    fs::write(
        &config,
        "[limits]\nmax_removals_per_uid = 1\nremoval_deadline_secs = 99\nmax_rounds = 3\n",
    )
    .unwrap();
    reload_until(&d, "configuration reloaded");
    let log = d.log();
    let warning = log
        .lines()
        .find(|l| l.contains("read at start only"))
        .unwrap_or_else(|| panic!("no start-only warning:\n{log}"));
    assert!(warning.contains("limits.max_removals_per_uid"), "{warning}");
    assert!(!warning.contains("removal_deadline"), "{warning}");
    assert!(!warning.contains("max_rounds"), "{warning}");
}
