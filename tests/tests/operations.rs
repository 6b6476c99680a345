//! Running vmrmd as operators do: socket activation, readiness and
//! watchdog notifications, reload, stats, and the orphan sweeper.

use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{lchown, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rustix::fs::{flock, FlockOperation};
use vmrm_tests::{
    binaries,
    daemon::{as_user, SWEEP_LOG},
    ids, require_root, tree, Daemon, DaemonOptions, Fixture,
};

/// A NOTIFY_SOCKET the daemon's uid may send to.
fn notify_socket(f: &Fixture) -> (UnixDatagram, PathBuf) {
    let path = f.base().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    (sock, path)
}

/// Read notifications until one contains `want`.
fn expect_notify(sock: &UnixDatagram, want: &str) {
    let mut buf = [0u8; 512];
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let Ok(n) = sock.recv(&mut buf) else { break };
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        if msg.lines().any(|l| l == want) {
            return;
        }
        seen.push(msg);
    }
    panic!("no {want} among {seen:?}");
}

#[test]
#[ignore = "needs root"]
fn socket_activated_it_serves_notifies_and_feeds_the_watchdog() {
    require_root();
    let f = Fixture::new();
    let (notify, notify_path) = notify_socket(&f);
    let mut d = Daemon::start(
        &f,
        DaemonOptions {
            activate: true,
            env: vec![
                ("NOTIFY_SOCKET".into(), notify_path.display().to_string()),
                ("WATCHDOG_USEC".into(), "400000".into()),
            ],
            ..Default::default()
        },
    );
    expect_notify(&notify, "READY=1");
    assert!(d.log().contains("\"activated\":true"), "{}", d.log());
    expect_notify(&notify, "WATCHDOG=1");
    let dir = tree::vm_workdir(&f.sticky, ids::TENANT_A);
    let (code, stderr) = d.rm_as(ids::TENANT_A, &dir);
    assert_eq!(code, 0, "{stderr}");
    d.signal(Signal::SIGHUP);
    expect_notify(&notify, "RELOADING=1");
    expect_notify(&notify, "READY=1");
    assert!(d.stop(), "{}", d.log());
    expect_notify(&notify, "STOPPING=1");
    // The socket belongs to the service manager: vmrmd leaves it.
    assert!(f.socket.exists());
}

fn write_config(path: &Path, body: &str) {
    // Replace by rename, as editors and config management do.
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, body).unwrap();
    fs::rename(&tmp, path).unwrap();
}

fn wait_log(d: &Daemon, needle: &str, times: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.log().matches(needle).count() < times {
        assert!(Instant::now() < deadline, "no {needle:?} in\n{}", d.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
#[ignore = "needs root"]
fn sighup_swaps_the_policy_and_keeps_the_old_one_when_the_new_is_invalid() {
    require_root();
    let f = Fixture::new();
    let etc = f.base().join("etc/vmrm");
    fs::create_dir_all(&etc).unwrap();
    let config = etc.join("vmrmd.toml");
    write_config(&config, &format!("allow_uids = [{}]\n", ids::TENANT_A));
    let d = Daemon::start(
        &f,
        DaemonOptions {
            config: Some(config.clone()),
            ..Default::default()
        },
    );
    let a_dir = tree::vm_workdir(&f.sticky, ids::TENANT_A);
    let b_dir = tree::vm_workdir(&f.sticky, ids::TENANT_B);
    let (code, stderr) = d.rm_as(ids::TENANT_B, &b_dir);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("peer_not_allowed"), "{stderr}");

    // Only B now.
    write_config(&config, &format!("allow_uids = [{}]\n", ids::TENANT_B));
    d.signal(Signal::SIGHUP);
    wait_log(&d, "configuration reloaded", 1);
    let (code, stderr) = d.rm_as(ids::TENANT_A, &a_dir);
    assert_eq!(code, 3, "{stderr}");
    assert!(a_dir.exists());

    // A broken file: loudly refused, B's policy stays.
    write_config(&config, "allow_uids = [\n");
    d.signal(Signal::SIGHUP);
    wait_log(&d, "KEEPING THE PREVIOUS CONFIGURATION", 1);
    let (code, stderr) = d.rm_as(ids::TENANT_B, &b_dir);
    assert_eq!(code, 0, "{stderr}");
    let (code, _) = d.rm_as(ids::TENANT_A, &a_dir);
    assert_eq!(code, 3);

    // check-config says the same, with the exit status to script on.
    let check = |path: &Path| {
        Command::new(binaries::vmrmd())
            .arg("--config")
            .arg(path)
            .arg("--prefix")
            .arg(&f.sticky)
            .arg("check-config")
            .output()
            .unwrap()
    };
    let out = check(&config);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("vmrmd.toml") && stderr.contains("is not valid"),
        "{stderr}"
    );
    write_config(&config, "name_prefix = \"vm-\"\n");
    let out = check(&config);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration is valid"));
}

#[test]
#[ignore = "needs root"]
fn stats_count_every_verdict_and_export_prometheus_text() {
    require_root();
    let f = Fixture::new();
    let d = Daemon::start(&f, DaemonOptions::default());
    let dir = tree::vm_workdir(&f.plain, ids::TENANT_A);
    assert_eq!(d.rm_as(ids::TENANT_A, &dir).0, 0);
    let dir = tree::vm_workdir(&f.sticky, ids::TENANT_A);
    assert_eq!(d.rm_as(ids::TENANT_A, &dir).0, 0);
    assert_eq!(d.rm_as(ids::TENANT_A, Path::new("/etc")).0, 3);
    assert_eq!(d.rm_as(ids::TENANT_A, &f.sticky.join("vm-none")).0, 4);

    let out = d.vmrm_as(ids::TENANT_A, &[OsStr::new("stats")]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("removed 1 emptied 1 not_found 1 denied 1 failed 0"),
        "{text}"
    );

    let out = d.vmrm_as(
        ids::TENANT_A,
        &[OsStr::new("stats"), OsStr::new("--prometheus")],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let sample = |name: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    assert_eq!(sample("vmrm_requests_total{verdict=\"removed\"}"), 1);
    assert_eq!(sample("vmrm_requests_total{verdict=\"denied\"}"), 1);
    assert!(sample("vmrm_entries_removed_total") >= 16);
    assert!(sample("vmrm_removal_latency_microseconds{quantile=\"0.5\"}") > 0);
    // Every line is a comment or `name{labels} value`.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = line.rsplit_once(' ').unwrap();
        assert!(
            name.starts_with("vmrm_") && value.parse::<u64>().is_ok(),
            "{line}"
        );
    }
}

/// A process holding a WorkDir (the probe), as TENANT_A.
fn live_workdir(f: &Fixture, d: &Daemon) -> (Child, PathBuf) {
    let words = as_user(ids::TENANT_A);
    let mut child = Command::new(&words[0])
        .args(&words[1..])
        .arg(env!("CARGO_BIN_EXE_workdir_probe"))
        .arg(&f.sticky)
        .arg(&d.socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let dir = PathBuf::from(line.trim());
    // qemu-vm's files inside.
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    for name in ["overlay.qcow2", "console.log"] {
        fs::write(dir.join(name), b"x").unwrap();
        lchown(dir.join(name), Some(ids::QEMU_VM), Some(ids::QEMU_VM)).unwrap();
    }
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    (child, dir)
}

#[test]
#[ignore = "needs root"]
fn the_sweeper_removes_workdirs_of_killed_owners_and_never_live_ones() {
    require_root();
    let f = Fixture::new();
    let d = Daemon::start(
        &f,
        DaemonOptions {
            // Grace 0: every directory is "old"; only the lock protects.
            args: ["--sweep-interval", "1", "--sweep-grace", "0"]
                .map(String::from)
                .to_vec(),
            env: vec![("RUST_LOG".into(), SWEEP_LOG.into())],
            ..Default::default()
        },
    );
    let (mut live, live_dir) = live_workdir(&f, &d);
    let (mut doomed, doomed_dir) = live_workdir(&f, &d);
    // In a non-sticky prefix, held by flock(1), also killed.
    let plain_dir = tree::vm_workdir(&f.plain, ids::TENANT_A);
    // --no-fork: the lock holder is the process we kill, not a child of it.
    let mut holder = Command::new("flock")
        .arg("--no-fork")
        .arg(&plain_dir)
        .args(["sleep", "600"])
        .spawn()
        .unwrap();
    // flock(1) holds its lock once ours cannot be taken.
    let deadline = Instant::now() + Duration::from_secs(10);
    while flock(
        fs::File::open(&plain_dir).unwrap(),
        FlockOperation::NonBlockingLockShared,
    )
    .is_ok()
    {
        assert!(Instant::now() < deadline, "flock(1) never took its lock");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Two full passes after every lock is held (the first pass to end may
    // have begun before): nothing touched.
    d.wait_sweeps(d.sweeps() + 1, 2);
    assert_eq!(tree::entries(&doomed_dir), Some(2));
    assert!(plain_dir.exists());

    doomed.kill().unwrap();
    doomed.wait().unwrap();
    holder.kill().unwrap();
    holder.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while (plain_dir.exists() || tree::entries(&doomed_dir) != Some(0)) && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    // Non-sticky: gone. Sticky /tmp-like: emptied; unlinking the empty top
    // there needs CAP_FOWNER, which vmrmd does not hold.
    assert!(!plain_dir.exists(), "{}", d.log());
    assert_eq!(tree::entries(&doomed_dir), Some(0), "{}", d.log());
    let sweeps: Vec<_> = d
        .audit()
        .into_iter()
        .filter(|l| l["source"] == "sweep")
        .collect();
    assert!(
        sweeps.iter().any(|l| l["verdict"] == "removed"),
        "{sweeps:?}"
    );
    assert!(
        sweeps.iter().any(|l| l["verdict"] == "emptied"),
        "{sweeps:?}"
    );
    assert!(sweeps.iter().all(|l| l["owner_uid"] == ids::TENANT_A));

    // The live one was never touched, and cleans up normally.
    assert_eq!(tree::entries(&live_dir), Some(2));
    live.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert!(live.wait().unwrap().success());
    assert!(!live_dir.exists());
}
