//! Engine tests on real trees in a temp dir, as whatever user runs them.

use std::ffi::CString;
use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{symlink, MetadataExt};
use std::time::{Duration, Instant};

use rustix::fs::{mkdirat, openat, Mode, OFlags, CWD};
use vmrm_proto::{Cause, FailedOp, Limit};

use super::*;

fn options(fd_ring: usize) -> WalkOptions {
    WalkOptions {
        max_rounds: 4,
        deadline: Instant::now() + Duration::from_secs(120),
        fd_ring,
        max_depth: 100_000,
        count_bytes: true,
        owners: Owners::new(vmrm_policy::Uid(rustix::process::geteuid().as_raw()), &[]),
        no_progress: Duration::from_secs(120),
    }
}

fn open_dir(path: &std::path::Path) -> OwnedFd {
    openat(
        CWD,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .unwrap()
}

fn count_entries(path: &std::path::Path) -> usize {
    fs::read_dir(path).unwrap().count()
}

#[test]
fn empties_a_mixed_tree_and_never_touches_link_targets() {
    let base = tempfile::tempdir().unwrap();
    let outside = base.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("canary"), b"keep me").unwrap();
    let canary_ino = fs::metadata(outside.join("canary")).unwrap().ino();

    let top = base.path().join("vm-test");
    fs::create_dir_all(top.join("a/b/c")).unwrap();
    fs::write(top.join("overlay.qcow2"), vec![7u8; 100_000]).unwrap();
    fs::write(top.join("a/b/c/deep"), b"x").unwrap();
    symlink(&outside, top.join("link-to-dir")).unwrap();
    symlink(outside.join("canary"), top.join("a/link-to-file")).unwrap();
    symlink("/nonexistent", top.join("dangling")).unwrap();
    fs::hard_link(outside.join("canary"), top.join("a/b/hardlink")).unwrap();
    nix::unistd::mkfifo(
        &top.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(top.join("qmp.sock")).unwrap();

    let fd = open_dir(&top);
    let mut report = Report::default();
    assert!(
        empty_tree(fd.as_fd(), Listing::Read, &options(32), &mut report),
        "{report:?}"
    );
    assert_eq!(count_entries(&top), 0);
    assert!(report.failures.is_empty());
    // 3 dirs + overlay + deep + 3 links + hardlink + fifo + socket
    assert_eq!(report.stats.entries, 11);
    assert!(report.stats.bytes >= 100_000, "{}", report.stats.bytes);

    assert_eq!(fs::read(outside.join("canary")).unwrap(), b"keep me");
    let meta = fs::metadata(outside.join("canary")).unwrap();
    assert_eq!((meta.ino(), meta.nlink()), (canary_ino, 1));
}

/// Builds a chain `d/d/d/...` of `depth` levels under `top` through fds, so
/// no path ever exceeds PATH_MAX, with a file at the bottom.
fn make_chain(top: &std::path::Path, depth: usize) {
    let bottom = vmrm_testkit::chain(top, depth, None);
    vmrm_testkit::files(bottom.as_fd(), 1, "leaf");
}

#[test]
fn removes_a_chain_far_deeper_than_its_fd_ring() {
    let base = tempfile::tempdir().unwrap();
    let top = base.path().join("vm-deep");
    fs::create_dir(&top).unwrap();
    make_chain(&top, 3000);
    let fd = open_dir(&top);
    let mut report = Report::default();
    assert!(
        empty_tree(fd.as_fd(), Listing::Read, &options(4), &mut report),
        "{report:?}"
    );
    assert_eq!(report.stats.entries, 3001);
    assert_eq!(count_entries(&top), 0);
}

#[test]
fn wide_directories_with_subdirs_are_emptied() {
    let base = tempfile::tempdir().unwrap();
    let top = base.path().join("vm-wide");
    for d in 0..50 {
        let dir = top.join(format!("d{d}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..40 {
            fs::write(dir.join(format!("f{f}")), b"").unwrap();
        }
    }
    for f in 0..2000 {
        fs::write(top.join(format!("g{f}")), b"").unwrap();
    }
    let fd = open_dir(&top);
    let mut report = Report::default();
    assert!(
        empty_tree(fd.as_fd(), Listing::Read, &options(2), &mut report),
        "{report:?}"
    );
    assert_eq!(report.stats.entries, 50 + 50 * 40 + 2000);
    assert_eq!(count_entries(&top), 0);
}

#[test]
fn a_passed_deadline_stops_the_walk_and_says_so() {
    let base = tempfile::tempdir().unwrap();
    let top = base.path().join("vm-slow");
    fs::create_dir(&top).unwrap();
    for f in 0..3000 {
        fs::write(top.join(format!("f{f}")), b"").unwrap();
    }
    let fd = open_dir(&top);
    let mut report = Report::default();
    let mut opts = options(8);
    opts.deadline = Instant::now();
    assert!(!empty_tree(fd.as_fd(), Listing::Read, &opts, &mut report));
    assert_eq!(report.failures[0].cause, Cause::Limit(Limit::Deadline));
    assert!(count_entries(&top) > 0);
}

#[test]
fn top_open_refuses_symlinks_and_files() {
    let base = tempfile::tempdir().unwrap();
    fs::create_dir(base.path().join("vm-dir")).unwrap();
    symlink(base.path().join("vm-dir"), base.path().join("vm-link")).unwrap();
    fs::write(base.path().join("vm-file"), b"").unwrap();
    let prefix = open_dir(base.path());
    let name = |s: &str| CString::new(s).unwrap();
    assert!(open_top(prefix.as_fd(), &name("vm-dir")).is_ok());
    assert_eq!(
        open_top(prefix.as_fd(), &name("vm-link")).unwrap_err(),
        OpenTopError::NotDirectory
    );
    assert_eq!(
        open_top(prefix.as_fd(), &name("vm-file")).unwrap_err(),
        OpenTopError::NotDirectory
    );
    assert_eq!(
        open_top(prefix.as_fd(), &name("vm-none")).unwrap_err(),
        OpenTopError::NotFound
    );
    assert_eq!(
        remove_top(prefix.as_fd(), &name("vm-dir")),
        TopRemoval::Removed
    );
    assert_eq!(
        remove_top(prefix.as_fd(), &name("vm-dir")),
        TopRemoval::AlreadyGone
    );
}

#[test]
fn many_subdirectories_are_emptied_in_parallel() {
    let base = tempfile::tempdir().unwrap();
    let top = base.path().join("vm-fan");
    for d in 0..40 {
        let dir = top.join(format!("d{d}/inner"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..30 {
            fs::write(dir.join(format!("f{f}")), b"").unwrap();
        }
    }
    fs::write(top.join("loose"), b"").unwrap();
    symlink("/", top.join("d0/root-link")).unwrap();
    let fd = open_dir(&top);
    let mut report = Report::default();
    assert!(
        empty_tree_parallel(fd.as_fd(), Listing::Read, &options(8), &mut report),
        "{report:?}"
    );
    assert_eq!(report.stats.entries, 40 * 2 + 40 * 30 + 2);
    assert_eq!(count_entries(&top), 0);
    assert!(report.failures.is_empty());
}

#[test]
fn a_wide_directory_of_empty_subdirectories_is_emptied() {
    let base = tempfile::tempdir().unwrap();
    let top = base.path().join("vm-empties");
    fs::create_dir(&top).unwrap();
    let fd = open_dir(&top);
    for i in 0..20_000 {
        mkdirat(&fd, format!("d{i:06}").as_str(), Mode::from_raw_mode(0o755)).unwrap();
    }
    let mut report = Report::default();
    assert!(
        empty_tree_parallel(fd.as_fd(), Listing::Read, &options(8), &mut report),
        "{report:?}"
    );
    assert_eq!(report.stats.entries, 20_000);
    assert_eq!(count_entries(&top), 0);
}

/// More subdirectory names than the walk keeps ([`walk::PENDING_BUDGET`]):
/// eight levels, each with 150 long-named siblings and, created last (so
/// listed last on tmpfs, and taken first), the directory leading deeper.
/// Deep frames go over the budget and fall back to re-reading their listing
/// from a cookie; nothing is missed or counted twice.
#[test]
fn names_over_the_budget_fall_back_to_cookies_and_miss_nothing() {
    let base = tempfile::tempdir().unwrap();
    let top = base.path().join("vm-budget");
    let long = "n".repeat(200);
    let mut level = top.clone();
    let mut expected = 0;
    for _ in 0..8 {
        for b in 0..150 {
            let dir = level.join(format!("{long}{b:04}"));
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("f"), b"").unwrap();
            expected += 2;
        }
        level.push("d");
        fs::create_dir(&level).unwrap();
        expected += 1;
    }
    const { assert!(8 * 150 * 205 > super::walk::PENDING_BUDGET) };
    let fd = open_dir(&top);
    let mut report = Report::default();
    assert!(
        empty_tree(fd.as_fd(), Listing::Read, &options(2), &mut report),
        "{report:?}"
    );
    assert_eq!(report.stats.entries, expected);
    assert_eq!(count_entries(&top), 0);
}

#[test]
fn a_walk_that_removes_nothing_for_too_long_ends_with_no_progress() {
    let base = tempfile::tempdir().unwrap();
    let top = base.path().join("vm-stuck");
    // Subdirectories the walk may not enter (another owner, invariant 8),
    // each holding a file: it meets them one by one and removes nothing.
    // (A deep chain used to do this; the walk now removes as it goes.)
    for d in 0..600 {
        let dir = top.join(format!("d{d}"));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("f"), b"").unwrap();
    }
    let fd = open_dir(&top);
    let mut report = Report::default();
    let mut opts = options(8);
    opts.owners = Owners::new(vmrm_policy::Uid(4242), &[]);
    opts.no_progress = Duration::ZERO;
    assert!(!empty_tree(fd.as_fd(), Listing::Read, &opts, &mut report));
    let last = report.failures.last().unwrap();
    assert_eq!(last.cause, Cause::Limit(Limit::NoProgress), "{report:?}");
    assert_eq!(report.stats.entries, 0);
}

#[test]
fn a_passed_deadline_stops_the_fan_out_too() {
    let base = tempfile::tempdir().unwrap();
    let top = base.path().join("vm-slow-fan");
    for d in 0..20 {
        let dir = top.join(format!("d{d}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..600 {
            fs::write(dir.join(format!("f{f}")), b"").unwrap();
        }
    }
    let fd = open_dir(&top);
    let mut report = Report::default();
    let mut opts = options(8);
    opts.deadline = Instant::now();
    assert!(!empty_tree_parallel(
        fd.as_fd(),
        Listing::Read,
        &opts,
        &mut report
    ));
    assert!(
        report
            .failures
            .iter()
            .all(|f| f.cause == Cause::Limit(Limit::Deadline)),
        "{report:?}"
    );
    assert!(!report.failures.is_empty());
    assert!(count_entries(&top) > 0);
}

#[test]
fn a_deep_chain_is_moved_up_in_chunks_and_removed_with_its_depth_counted() {
    let base = tempfile::tempdir().unwrap();
    let top = base.path().join("vm-chunks");
    fs::create_dir(&top).unwrap();
    make_chain(&top, 1_000);
    // The tenant's own entry that looks like a chunk: an ordinary entry.
    fs::create_dir(top.join(".vmrm-0")).unwrap();
    let fd = open_dir(&top);
    let mut report = Report::default();
    assert!(
        empty_tree(fd.as_fd(), Listing::Read, &options(4), &mut report),
        "{report:?}"
    );
    assert_eq!(count_entries(&top), 0);

    // The same chain against a depth limit: it counts levels as built.
    make_chain(&top, 1_000);
    let mut report = Report::default();
    let mut opts = options(4);
    opts.max_depth = 300;
    assert!(!empty_tree(fd.as_fd(), Listing::Read, &opts, &mut report));
    assert_eq!(report.failures.len(), 1, "{report:?}");
    assert_eq!(report.failures[0].op, FailedOp::Open);
    assert_eq!(report.failures[0].cause, Cause::Limit(Limit::Depth));
    // Levels 1..=300 are still there (a chunk holds the part below 16).
    assert_eq!(count_entries(&top), 1);
}

/// `top/one/` holding `dirs` directories of `files` files each: the top has
/// one subdirectory, so only stealing below it spreads the work.
fn one_below(top: &std::path::Path, dirs: usize, files: usize) -> usize {
    let one = top.join("one");
    fs::create_dir_all(&one).unwrap();
    let fd = open_dir(&one);
    for d in 0..dirs {
        let name = format!("d{d:05}");
        mkdirat(&fd, name.as_str(), Mode::from_raw_mode(0o755)).unwrap();
        vmrm_testkit::files(open_dir(&one.join(&name)).as_fd(), files, "f");
    }
    1 + dirs + dirs * files
}

#[test]
fn one_subdirectory_holding_many_is_spread_by_stealing() {
    let base = tempfile::tempdir().unwrap();
    let top = base.path().join("vm-steal");
    let expected = one_below(&top, 300, 40);
    let fd = open_dir(&top);
    let mut report = Report::default();
    assert!(
        fanout::empty_tree_with(fd.as_fd(), Listing::Read, &options(8), &mut report, 2),
        "{report:?}"
    );
    assert_eq!(report.stats.entries, expected as u64);
    assert_eq!(count_entries(&top), 0);
    assert!(report.failures.is_empty(), "{report:?}");
    assert!(report.stolen > 0, "nothing was stolen: {report:?}");
}

/// Wide directories at several depths below `top/one`, with chains deeper
/// than the flattening depth among them. Returns the entries it made.
fn deep_and_wide(top: &std::path::Path) -> usize {
    let mut expected = 0;
    let mut level = top.join("one");
    for depth in 0..5 {
        fs::create_dir_all(&level).unwrap();
        expected += 1;
        for d in 0..40 {
            let dir = level.join(format!("w{d}"));
            fs::create_dir(&dir).unwrap();
            vmrm_testkit::files(open_dir(&dir).as_fd(), 20, "f");
            expected += 21;
            if d % 10 == 0 {
                let bottom = vmrm_testkit::chain(&dir, 30 + depth, None);
                vmrm_testkit::files(bottom.as_fd(), 3, "leaf");
                expected += 30 + depth + 3;
            }
        }
        level.push("next");
    }
    expected
}

/// Deep and wide at once, with 2 and 4 workers on small fd-ring slices:
/// every entry is counted once and nothing is left.
#[test]
fn deep_and_wide_mixes_are_stolen_from_at_every_level() {
    let base = tempfile::tempdir().unwrap();
    let top = base.path().join("vm-mix");
    fs::create_dir(&top).unwrap();
    let fd = open_dir(&top);
    for (workers, ring) in [(2, 8), (4, 8), (4, 32)] {
        let expected = deep_and_wide(&top);
        let mut report = Report::default();
        assert!(
            fanout::empty_tree_with(
                fd.as_fd(),
                Listing::Read,
                &options(ring),
                &mut report,
                workers
            ),
            "{report:?}"
        );
        assert_eq!(report.stats.entries, expected as u64, "{report:?}");
        assert_eq!(count_entries(&top), 0);
        assert!(report.failures.is_empty(), "{report:?}");
    }
}

/// The attack: a subtree is moved out of the tree while a worker (maybe a
/// thief) is inside it. The walk must notice when it comes back up
/// (`..` is no longer the directory it left), say `moved`, and never touch
/// the directory it was moved into.
#[test]
fn a_stolen_subtree_moved_out_mid_walk_ends_moved_and_touches_nothing_outside() {
    const LEVELS: usize = 12;
    const BOTTOM: usize = 20_000;
    let base = tempfile::tempdir().unwrap();
    let outside = base.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("canary"), b"keep me").unwrap();
    let top = base.path().join("vm-moved");
    one_below(&top, 64, 20);
    let chain_top = top.join("one/c");
    fs::create_dir(&chain_top).unwrap();
    let bottom_fd = vmrm_testkit::chain(&chain_top, LEVELS, None);
    vmrm_testkit::files(bottom_fd.as_fd(), BOTTOM, "f");
    drop(bottom_fd);
    let (mut bottom, mut middle) = (chain_top.clone(), chain_top.clone());
    for level in 0..LEVELS {
        bottom.push("d");
        if level < LEVELS / 2 {
            middle.push("d");
        }
    }
    let moved_to = outside.join("moved");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let fd = open_dir(&top);
    let mut report = Report::default();
    let (emptied, moved) = std::thread::scope(|s| {
        let attacker = s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let left = fs::read_dir(&bottom).map(|d| d.count()).unwrap_or(BOTTOM);
                if left < BOTTOM - 1000 {
                    return fs::rename(&middle, &moved_to).is_ok();
                }
            }
            false
        });
        let emptied =
            fanout::empty_tree_with(fd.as_fd(), Listing::Read, &options(8), &mut report, 2);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (emptied, attacker.join().unwrap())
    });
    assert!(moved, "the move did not happen mid-walk: {report:?}");
    assert!(!emptied, "moved out mid-walk, yet emptied: {report:?}");
    assert!(
        report
            .failures
            .iter()
            .any(|f| f.op == FailedOp::Reopen && f.cause == Cause::Limit(Limit::Moved)),
        "{report:?}"
    );
    assert_eq!(fs::read(outside.join("canary")).unwrap(), b"keep me");
    assert!(moved_to.is_dir());
}

/// The attack: a published subdirectory is swapped for a symlink to a
/// directory outside the tree between its publication and its theft. The
/// link is unlinked as a link, never followed.
#[test]
fn a_symlink_swapped_for_a_published_child_is_never_followed() {
    let base = tempfile::tempdir().unwrap();
    let outside = base.path().join("outside");
    fs::create_dir(&outside).unwrap();
    for i in 0..20 {
        fs::write(outside.join(format!("canary{i}")), b"keep me").unwrap();
    }
    let top = base.path().join("vm-swap");
    one_below(&top, 400, 20);
    let one = top.join("one");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let fd = open_dir(&top);
    let mut report = Report::default();
    let swaps = std::thread::scope(|s| {
        let attacker = s.spawn(|| {
            let mut swaps = 0;
            // From the end of the listing backwards: what the walk has
            // listed but not dealt with, or published.
            for d in (0..400).rev() {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let name = one.join(format!("d{d:05}"));
                let aside = one.join(format!("x{d:05}"));
                if fs::rename(&name, &aside).is_ok() && symlink(&outside, &name).is_ok() {
                    swaps += 1;
                }
            }
            swaps
        });
        let emptied =
            fanout::empty_tree_with(fd.as_fd(), Listing::Read, &options(8), &mut report, 2);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let swaps = attacker.join().unwrap();
        assert!(emptied || !report.failures.is_empty(), "{report:?}");
        swaps
    });
    assert!(swaps > 0);
    for i in 0..20 {
        assert_eq!(
            fs::read(outside.join(format!("canary{i}"))).unwrap(),
            b"keep me"
        );
    }
    // Whatever the race left, a second pass removes it, links as links.
    let mut report = Report::default();
    assert!(
        fanout::empty_tree_with(fd.as_fd(), Listing::Read, &options(8), &mut report, 2),
        "{report:?}"
    );
    assert_eq!(count_entries(&top), 0);
    assert_eq!(count_entries(&outside), 20);
}

/// The attack: another user's directory among the subdirectories a walk
/// publishes. The thief opens it with the same owner rule, so it is left
/// untouched, with everything in it, and reported `foreign_owner` once.
/// (Needs root to give it away; skipped otherwise.)
#[test]
fn a_foreign_directory_among_published_children_is_left_untouched() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root to chown");
        return;
    }
    let base = tempfile::tempdir().unwrap();
    let top = base.path().join("vm-foreign");
    let expected = one_below(&top, 300, 20);
    let foreign = top.join("one/d00150");
    std::os::unix::fs::chown(&foreign, Some(4243), Some(4243)).unwrap();
    let fd = open_dir(&top);
    let mut report = Report::default();
    assert!(!fanout::empty_tree_with(
        fd.as_fd(),
        Listing::Read,
        &options(8),
        &mut report,
        2
    ));
    assert_eq!(report.failures.len(), 1, "{report:?}");
    let failure = &report.failures[0];
    assert_eq!(
        failure.cause,
        Cause::Limit(Limit::ForeignOwner { owner: 4243 }),
        "{report:?}"
    );
    assert_eq!(failure.path, b"one/d00150");
    assert_eq!(count_entries(&top.join("one")), 1);
    assert_eq!(count_entries(&foreign), 20);
    assert_eq!(report.stats.entries, (expected - 1 - 21) as u64);
}
