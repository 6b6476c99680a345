//! Section 5: fairness between tenants. Tenant B removes small workdirs
//! (10 files) one after another while tenant A loads vmrmd in each of the
//! ways known to have stalled other tenants (many huge trees, refilling
//! trees, many connections); B's latency is the measure.

use std::fmt::Write as _;
use std::fs;
use std::os::fd::AsFd;
use std::os::unix::fs::{lchown, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustix::fs::{mkdirat, mknodat, openat, FileType, Mode, OFlags, CWD};
use rustix::process::Uid;
use vmrm::{Client, ClientOptions, Outcome};

use crate::setup::{Daemon, Env};
use crate::summary::{quantile, show};
use crate::{target, trees, Plan};

/// Tenant A: a uid with no passwd entry, as many service uids are.
const A_UID: u32 = 61_001;
/// A's subordinate uid range, as `usermod --add-subuids` records it.
const A_SUBUIDS: u32 = 300_000;

/// The target: B's typical removal p99 while A does its worst.
const P99_TARGET: Duration = Duration::from_millis(50);

/// Run `work` on a new thread whose own uids (not the process's) are `uid`.
fn as_uid<R: Send + 'static>(uid: u32, work: impl FnOnce() -> R + Send + 'static) -> JoinHandle<R> {
    thread::spawn(move || {
        let u = Uid::from_raw(uid);
        // rustix's per-thread setresuid, not glibc's process-wide one.
        rustix::thread::set_thread_res_uid(u, u, u).expect("setresuid");
        work()
    })
}

fn client(socket: &Path) -> Client {
    let mut options = ClientOptions::with_socket(socket);
    options.response_timeout = Duration::from_secs(1200);
    Client::with_options(options)
}

/// A 0700 workdir of `owner` holding `files` empty files, built as root.
fn flat(prefix: &Path, owner: u32, files: usize) -> PathBuf {
    let dir = trees::unique(prefix);
    fs::create_dir(&dir).expect("mkdir");
    let fd = openat(
        CWD,
        &dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .expect("open");
    for i in 0..files {
        mknodat(
            fd.as_fd(),
            format!("f{i:07}"),
            FileType::RegularFile,
            Mode::from_raw_mode(0o644),
            0,
        )
        .expect("mknodat");
    }
    lchown(&dir, Some(owner), Some(owner)).expect("chown");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).expect("chmod");
    dir
}

/// A chain of `depth` directories built by A itself (so every level is
/// A's), under a top A makes in the sticky prefix.
fn chain_as_a(prefix: &Path, depth: usize) -> PathBuf {
    let top = trees::unique(prefix);
    fs::create_dir(&top).expect("mkdir top");
    let mut fd = openat(
        CWD,
        &top,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .expect("open top");
    for _ in 0..depth {
        mkdirat(fd.as_fd(), "d", Mode::from_raw_mode(0o755)).expect("mkdirat");
        fd = openat(
            fd.as_fd(),
            "d",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .expect("open d");
    }
    top
}

/// B's side: remove `dirs` one at a time, a fresh connection each (so a
/// connection cap would show), `gap` apart, until `stop` or the last dir.
/// Returns the latencies and the number of removals that failed.
fn b_samples(
    socket: &Path,
    b_uid: u32,
    dirs: Vec<PathBuf>,
    gap: Duration,
    stop: Arc<AtomicBool>,
) -> (Vec<Duration>, usize) {
    let socket = socket.to_owned();
    as_uid(b_uid, move || {
        let (mut times, mut failed) = (Vec::new(), 0);
        for dir in dirs {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let t = Instant::now();
            let ok = matches!(client(&socket).remove(&dir), Ok(Outcome::Removed(_)));
            if ok {
                times.push(t.elapsed());
            } else {
                failed += 1;
            }
            thread::sleep(gap);
        }
        (times, failed)
    })
    .join()
    .unwrap_or_default()
}

struct Row {
    load: String,
    times: Vec<Duration>,
    failed: usize,
    note: String,
}

/// The row of B's `dirs` removed back to back (2 ms apart), with `note`
/// on A's side.
fn back_to_back(socket: &Path, b: u32, dirs: Vec<PathBuf>, what: &str, note: String) -> Row {
    let no_stop = Arc::new(AtomicBool::new(false));
    let (times, failed) = b_samples(socket, b, dirs, Duration::from_millis(2), no_stop);
    Row {
        load: what.into(),
        times,
        failed,
        note,
    }
}

/// The row of A's `load` threads (each returns how many removals it asked)
/// running for `window` once `settle` has let them get going, with B's
/// `dirs` spread over the window; `stop` ends the load.
fn under_load(
    socket: &Path,
    b: u32,
    dirs: Vec<PathBuf>,
    (settle, window): (Duration, Duration),
    stop: Arc<AtomicBool>,
    load: Vec<JoinHandle<usize>>,
    what: &str,
) -> Row {
    thread::sleep(settle);
    let timer = stop_after(window, Arc::clone(&stop));
    let gap = window / dirs.len().max(1) as u32;
    let (times, failed) = b_samples(socket, b, dirs, gap, Arc::clone(&stop));
    let _ = timer.join();
    stop.store(true, Ordering::Relaxed);
    let asked: usize = load.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    Row {
        load: what.into(),
        times,
        failed,
        note: format!("A: {asked} removals asked"),
    }
}

pub fn fairness(
    plan: &Plan,
    env: &Env,
    md: &mut String,
    targets: &mut Vec<String>,
) -> Result<(), String> {
    let quick = plan.reps == 1;
    let subuid = env.base.join("subuid");
    fs::write(&subuid, format!("{A_UID}:{A_SUBUIDS}:65536\n")).map_err(|e| e.to_string())?;
    let daemon = Daemon::start(
        env,
        "vmrmd-fairness",
        &["--subuid-file", &subuid.display().to_string()],
    )?;
    let socket = daemon.socket.clone();
    let prefix = env.tmpfs.clone();
    let b = env.uid;
    let samples = if quick { 150 } else { 300 };
    let b_dirs = |n: usize| -> Vec<PathBuf> { (0..n).map(|_| flat(&prefix, b, 10)).collect() };
    let mut rows = Vec::new();

    // Reference: B alone.
    eprintln!("  fairness: B alone");
    rows.push(back_to_back(
        &socket,
        b,
        b_dirs(samples),
        "none (B alone)",
        String::new(),
    ));

    // 1. 32 huge removals at once.
    let files = if quick { 20_000 } else { 50_000 };
    eprintln!("  fairness: 32 x {files} files");
    let huge: Vec<PathBuf> = (0..32).map(|_| flat(&prefix, A_UID, files)).collect();
    let bs = b_dirs(samples);
    let started = Instant::now();
    let a: Vec<_> = huge
        .into_iter()
        .map(|dir| {
            let socket = socket.clone();
            as_uid(A_UID, move || {
                matches!(client(&socket).remove(&dir), Ok(Outcome::Removed(_)))
            })
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let ok = a
                .into_iter()
                .filter_map(|t| t.join().ok())
                .filter(|ok| *ok)
                .count();
            stop.store(true, Ordering::Relaxed);
            (ok, started.elapsed())
        })
    };
    thread::sleep(Duration::from_millis(100));
    let (times, failed) = b_samples(&socket, b, bs, Duration::from_millis(10), stop);
    let (a_ok, a_took) = watcher.join().unwrap_or_default();
    rows.push(Row {
        load: format!("32 removals of {files} files each, at once"),
        times,
        failed,
        note: format!("A: {a_ok}/32 removed in {}", show(a_took)),
    });

    // 2. Four workdirs that keep refilling, removed again and again.
    let window = Duration::from_secs(if quick { 5 } else { 10 });
    eprintln!("  fairness: 4 refilling trees for {window:?}");
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let dir = flat(&prefix, A_UID, 2_000);
        // The refiller: root stands in for A's VM writing files.
        let (d, s) = (dir.clone(), Arc::clone(&stop));
        load.push(thread::spawn(move || {
            let mut n = 0u64;
            while !s.load(Ordering::Relaxed) {
                if fs::File::create(d.join(format!("r{n}"))).is_err() {
                    // Removed: A's VM makes it again.
                    let _ = fs::create_dir(&d);
                    let _ = lchown(&d, Some(A_UID), Some(A_UID));
                }
                n += 1;
            }
            0usize
        }));
        let (socket, s) = (socket.clone(), Arc::clone(&stop));
        load.push(as_uid(A_UID, move || {
            let mut asked = 0;
            while !s.load(Ordering::Relaxed) {
                if let Ok(Outcome::NotFound) = client(&socket).remove(&dir) {
                    // Until its VM makes the directory again.
                    thread::sleep(Duration::from_millis(1));
                }
                asked += 1;
            }
            asked
        }));
    }
    rows.push(under_load(
        &socket,
        b,
        b_dirs(samples),
        (Duration::from_millis(300), window),
        stop,
        load,
        "4 workdirs refilling, removed over and over",
    ));

    // 3. Ten chains of 8,200 levels, resubmitted.
    let window = Duration::from_secs(if quick { 10 } else { 20 });
    eprintln!("  fairness: 10 chains of 8,200 levels for {window:?}");
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..10)
        .map(|_| {
            let (socket, s, prefix) = (socket.clone(), Arc::clone(&stop), prefix.clone());
            as_uid(A_UID, move || {
                let mut asked = 0usize;
                let mut top = chain_as_a(&prefix, 8_200);
                while !s.load(Ordering::Relaxed) {
                    let _ = client(&socket).remove(&top);
                    asked += 1;
                    if !top.exists() {
                        top = chain_as_a(&prefix, 8_200);
                    }
                }
                asked
            })
        })
        .collect();
    rows.push(under_load(
        &socket,
        b,
        b_dirs(samples),
        (Duration::from_millis(500), window),
        stop,
        load,
        "10 chains of 8,200 levels, resubmitted",
    ));

    // 4. Eight of A's subordinate uids holding 32 connections each.
    eprintln!("  fairness: 8 subuids x 32 connections");
    let held: Vec<UnixStream> = (0..8)
        .map(|k| {
            let socket = socket.clone();
            as_uid(A_SUBUIDS + k, move || {
                (0..32)
                    .filter_map(|_| UnixStream::connect(&socket).ok())
                    .collect::<Vec<_>>()
            })
        })
        .flat_map(|t| t.join().unwrap_or_default())
        .collect();
    thread::sleep(Duration::from_millis(300));
    rows.push(back_to_back(
        &socket,
        b,
        b_dirs(samples),
        "8 subordinate uids x 32 idle connections",
        format!("{} connected; all but A's 32 told busy", held.len()),
    ));
    drop(held);

    let _ = writeln!(md, "## 6. Fairness between tenants\n");
    let _ = writeln!(
        md,
        "Tenant B removes a workdir of 10 empty files, a fresh connection each time, while tenant A \
         loads the same vmrmd (defaults: 4 removals at once, 2 per tenant; A's subordinate uid range \
         in its subuid file). Up to {samples} samples of B per row, spread over A's load. tmpfs.\n"
    );
    let _ = writeln!(
        md,
        "| A's load | B samples | B p50 | B p99 | B max | B failed | A |\n|---|---|---|---|---|---|---|"
    );
    let mut worst = Duration::ZERO;
    let mut all_served = true;
    for r in &rows {
        let p99 = quantile(&r.times, 0.99);
        worst = worst.max(p99);
        all_served &= r.failed == 0 && !r.times.is_empty();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.load,
            r.times.len(),
            show(quantile(&r.times, 0.5)),
            show(p99),
            show(r.times.iter().max().copied().unwrap_or_default()),
            r.failed,
            r.note
        );
    }
    md.push('\n');
    targets.push(target(
        "tenant B's 10-file removal p99 < 50 ms under each of A's loads",
        format!("worst p99 {}", show(worst)),
        worst < P99_TARGET && all_served,
    ));
    Ok(())
}

fn stop_after(window: Duration, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    thread::spawn(move || {
        thread::sleep(window);
        stop.store(true, Ordering::Relaxed);
    })
}
