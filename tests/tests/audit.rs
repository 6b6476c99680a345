//! A complete, bounded audit trail. A removal logs a start and an end line
//! with the same `removal` number, so one cut short shows as a start with
//! no end; client-controlled fields are escaped and capped.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rustix::fs::{mknodat, openat, FileType, Mode, OFlags, CWD};
use vmrm_tests::{require_root, Daemon, DaemonOptions, Fixture};

/// The attack: 200 requests with 256 KiB paths of 0xff bytes, each refused
/// as bad_request, grew the log by 250 MiB (1.3 MB per escaped line).
#[test]
#[ignore = "needs root"]
fn audit_log_amplification_is_bounded() {
    require_root();
    let f = Fixture::new();
    let d = Daemon::start(&f, DaemonOptions::default());
    let before = d.log().len();
    let mut client = d.client();
    let mut path = f.sticky.as_os_str().as_bytes().to_vec();
    path.push(b'/');
    // As large as a frame carries.
    path.resize(256 * 1024 - 256, 0xff);
    for _ in 0..200 {
        let outcome = client.remove(Path::new(OsStr::from_bytes(&path))).unwrap();
        assert!(
            matches!(outcome, vmrm_proto::Outcome::BadRequest { .. }),
            "{outcome:?}"
        );
    }
    let grown = d.settled_log().len() - before;
    eprintln!("log grew by {grown} bytes for 200 maximal requests");
    assert!(grown < 1024 * 1024, "log grew by {grown} bytes");
    let last = d.audit().pop().unwrap();
    assert!(
        last["path"].as_str().unwrap().contains("more bytes]"),
        "{last}"
    );
}

fn flat(dir: &Path, n: usize) {
    std::fs::create_dir(dir).unwrap();
    let fd = openat(
        CWD,
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .unwrap();
    for i in 0..n {
        mknodat(
            &fd,
            format!("f{i:07}"),
            FileType::RegularFile,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
    }
}

/// The attack: vmrmd SIGKILLed mid-removal left no audit line at all,
/// though 55,000 entries had been removed. Now the start line is written
/// before the first byte is removed.
#[test]
#[ignore = "needs root"]
fn a_removal_killed_midway_leaves_a_start_line_with_no_end() {
    require_root();
    let f = Fixture::new();
    let big = f.tmpfs("big", 500_000);
    let mut d = Daemon::start(
        &f,
        DaemonOptions {
            prefixes: Some(vec![big.clone()]),
            ..DaemonOptions::default()
        },
    );
    let top = big.join("vm-killed-midway");
    let files = 300_000;
    flat(&top, files);
    let client_top = top.clone();
    let socket = d.socket.clone();
    let remover = std::thread::spawn(move || {
        let mut options = vmrm::ClientOptions::with_socket(&socket);
        options.response_timeout = Duration::from_secs(120);
        let _ = vmrm::Client::with_options(options).remove(&client_top);
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while !d.log().contains("remove_start") {
        assert!(Instant::now() < deadline, "no start line:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(2));
    }
    d.signal(Signal::SIGKILL);
    remover.join().unwrap();
    while d.alive() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let audit = d.audit();
    let start = audit
        .iter()
        .find(|l| l["message"] == "remove_start")
        .unwrap_or_else(|| panic!("{audit:?}"));
    assert_eq!(start["path"], top.display().to_string());
    assert_eq!(start["peer_uid"], 0);
    assert!(start["request_id"].is_u64());
    let removal = &start["removal"];
    let ended = audit
        .iter()
        .any(|l| l["message"] == "remove" && l["removal"] == *removal);
    assert!(!ended, "the killed removal has an end line: {audit:?}");
    let left = std::fs::read_dir(&top).map(|d| d.count()).unwrap_or(0);
    assert!(
        left < files + 1,
        "nothing was removed before the kill? {left}"
    );
}
