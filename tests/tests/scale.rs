//! Issue 3: width and depth. A 1,000,000-entry directory and a
//! 100,000-level chain, with the helper's peak memory and open fds measured
//! while it removes them, and capped.

use std::os::fd::AsFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::fs::{mknodat, openat, FileType, Mode, OFlags, CWD};
use vmrm::Outcome;
use vmrm_proto::{Cause, Limit};
use vmrm_tests::{require_root, tree, Daemon, DaemonOptions, Fixture};

/// vmrmd's peak resident memory must stay under this.
const RSS_CAP_KIB: u64 = 32 * 1024;
/// And its open fds under this, whatever the depth.
const FD_CAP: usize = 64;

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
            fd.as_fd(),
            format!("f{i:07}"),
            FileType::RegularFile,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
    }
}

/// Remove `top` while sampling the helper's open fds; returns the outcome,
/// the time taken and the most fds seen.
fn remove_watched(d: &Daemon, top: &Path) -> (Outcome, Duration, usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let most = Arc::new(AtomicUsize::new(0));
    let pid = d.pid();
    let sampler = {
        let (stop, most) = (Arc::clone(&stop), Arc::clone(&most));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
                    most.fetch_max(dir.count(), Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let started = Instant::now();
    let outcome = d.client().remove(top).unwrap();
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    (outcome, took, most.load(Ordering::Relaxed))
}

#[test]
#[ignore = "needs root"]
fn a_million_entries_and_a_100000_level_chain_in_bounded_memory_and_fds() {
    require_root();
    let f = Fixture::new();
    let prefix = f.tmpfs("big", 1_500_000);
    let options = |sandbox, args: &[&str]| DaemonOptions {
        prefixes: Some(vec![prefix.clone()]),
        sandbox: Some(sandbox),
        args: args.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };

    // As deployed: sandboxed, default limits.
    let mut d = Daemon::start(&f, options("required", &[]));
    let (rss_idle, _) = d.memory_kib();
    let wide = prefix.join(tree::workdir_name());
    flat(&wide, 1_000_000);
    let (outcome, took, fds) = remove_watched(&d, &wide);
    assert!(
        matches!(outcome, Outcome::Removed(s) if s.entries == 1_000_001),
        "{outcome:?}"
    );
    let (rss_wide, _) = d.memory_kib();
    eprintln!("1,000,000 entries: {took:?}, peak fds {fds}, peak RSS {rss_wide} KiB (idle {rss_idle} KiB)");
    assert!(rss_wide < RSS_CAP_KIB, "peak RSS {rss_wide} KiB");
    assert!(fds < FD_CAP, "{fds} fds");

    // Under Landlock every removal at depth d walks d directories up to its
    // rule, so the sandboxed helper stops at limits.max_depth (8192) and
    // says so, in bounded time, memory and fds.
    let deep = tree::empty_workdir(&prefix, 0);
    tree::chain(&deep, 100_000);
    let (outcome, took, fds) = remove_watched(&d, &deep);
    match &outcome {
        Outcome::Failed { failures, .. } => {
            assert_eq!(
                failures.len(),
                1,
                "{:?}",
                failures.iter().map(|f| f.op).collect::<Vec<_>>()
            );
            assert_eq!(failures[0].cause, Cause::Limit(Limit::Depth));
            assert!(failures[0].path_truncated);
        }
        other => panic!("{other:?}"),
    }
    let (rss, _) = d.memory_kib();
    eprintln!("100,000 levels, sandboxed: stopped at max_depth 8192 after {took:?}, peak fds {fds}, peak RSS {rss} KiB");
    assert!(rss < RSS_CAP_KIB && fds < FD_CAP, "{rss} KiB, {fds} fds");
    assert!(d.stop());

    // The engine itself at full depth: unsandboxed, depth limit lifted.
    let d = Daemon::start(&f, options("off", &["--max-depth", "200000"]));
    let (outcome, took, fds) = remove_watched(&d, &deep);
    // Nothing was removed above: every level still held the deep part.
    assert!(
        matches!(outcome, Outcome::Removed(s) if s.entries == 100_002),
        "{outcome:?}"
    );
    let (rss, _) = d.memory_kib();
    eprintln!("100,000 levels, unsandboxed: {took:?}, peak fds {fds}, peak RSS {rss} KiB");
    assert!(rss < RSS_CAP_KIB && fds < FD_CAP, "{rss} KiB, {fds} fds");
}
