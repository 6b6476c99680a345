//! Races a hostile tenant or `qemu-vm` can run against a removal in
//! progress. After every round every canary (outside the tree, and in
//! another tenant's workdir) is intact and the helper still serves.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
use vmrm::Outcome;
use vmrm_proto::{Cause, FailedOp, Limit};
use vmrm_tests::{attack, ids, require_root, tree, Canary, Daemon, DaemonOptions, Fixture};

/// Files per level: widens the window between listing and unlinking
/// (CVE-2018-6954 style).
const WIDTH: usize = 400;

fn fill(dir: &Path, n: usize) {
    fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        fs::write(dir.join(format!("f{i}")), b"").unwrap();
    }
}

struct World {
    f: Fixture,
    d: Daemon,
    canaries: Vec<Canary>,
    other: PathBuf,
    other_entries: Option<usize>,
}

impl World {
    fn new(args: &[&str]) -> World {
        World::with_sandbox(args, "required")
    }

    fn with_sandbox(args: &[&str], sandbox: &'static str) -> World {
        let f = Fixture::new();
        let d = Daemon::start(
            &f,
            DaemonOptions {
                args: args.iter().map(|s| s.to_string()).collect(),
                sandbox: Some(sandbox),
                ..Default::default()
            },
        );
        let canaries = vec![
            f.canary("target/c1"),
            f.canary("target/sub/c2"),
            f.canary("c3"),
        ];
        let other = tree::vm_workdir(&f.sticky, ids::TENANT_B);
        let other_entries = tree::entries(&other);
        World {
            f,
            d,
            canaries,
            other,
            other_entries,
        }
    }

    fn assert_intact(&self) {
        for c in &self.canaries {
            c.assert_intact();
        }
        assert_eq!(
            tree::entries(&self.other),
            self.other_entries,
            "other tenant's workdir touched"
        );
        assert!(self.d.client().ping().is_ok(), "helper stopped serving");
    }
}

/// A root-owned tree (the test's own client, uid 0, owns it): top/a/b/c/d,
/// each level wide.
fn wide_tree(prefix: &Path) -> PathBuf {
    let top = prefix.join(tree::workdir_name());
    let mut level = top.clone();
    for name in ["a", "b", "c", "d"] {
        fill(&level, WIDTH);
        level.push(name);
    }
    fill(&level, WIDTH);
    top
}

/// Swaps `a` and `b`; true if the kernel did (false once the helper has
/// removed one of them).
fn exchange(a: &Path, b: &Path) -> bool {
    renameat2(AT_FDCWD, a, AT_FDCWD, b, RenameFlags::RENAME_EXCHANGE).is_ok()
}

/// Leftovers of a round (a swapped-in symlink, a renamed directory) go with
/// std's remove_dir_all, which does not follow symlinks either.
fn clear(paths: &[PathBuf]) {
    for p in paths {
        match fs::symlink_metadata(p) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(p).unwrap(),
            Ok(_) => fs::remove_file(p).unwrap(),
            Err(_) => {}
        }
    }
}

#[test]
#[ignore = "needs root"]
fn symlink_swap_loops_never_reach_outside_the_tree() {
    require_root();
    let w = World::new(&["--max-rounds", "4"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut rounds = 0;
    let mut swaps = 0;
    // At the top, in a middle component, deep in the tree.
    for depth in [0usize, 2, 4].into_iter().cycle().take(12) {
        if Instant::now() > deadline {
            break;
        }
        let top = wide_tree(&w.f.sticky);
        let mut victim = top.clone();
        for name in ["a", "b", "c", "d"].iter().take(depth) {
            victim.push(name);
        }
        let decoy = PathBuf::from(format!("{}.lnk", victim.display()));
        symlink(w.f.outside.join("target"), &decoy).unwrap();
        let (outcome, n) = {
            let (v, d) = (victim.clone(), decoy.clone());
            attack::during(
                move || exchange(&v, &d),
                || w.d.client().remove(&top).unwrap(),
            )
        };
        swaps += n;
        rounds += 1;
        w.assert_intact();
        if let Outcome::Failed { failures, .. } = &outcome {
            assert!(
                failures
                    .iter()
                    .all(|f| f.op != FailedOp::Reopen || depth > 0),
                "{}",
                summary(&outcome)
            );
        }
        clear(&[
            top.clone(),
            decoy,
            PathBuf::from(format!("{}.lnk", top.display())),
        ]);
    }
    eprintln!("symlink swaps: {rounds} rounds, {swaps} swaps, canaries intact");
    // `swaps` counts exchanges the kernel made, so the race really ran.
    assert!(rounds >= 3, "only {rounds} rounds before the deadline");
    assert!(swaps > 0, "no symlink swap succeeded in {rounds} rounds");
}

/// A subtree moved out of the tree (outside the prefixes) while the walk is
/// inside it (CVE-2002-0435). The walk holds an fd for every level it is in
/// (deeper levels are moved up under the top, so the stack never outgrows
/// the fd ring) and never climbs through `..`, so it cannot reach the moved
/// subtree's new siblings: the canaries next to it stay intact. Sandboxed,
/// Landlock also refuses every change at the subtree's new place.
#[test]
#[ignore = "needs root"]
fn a_subtree_moved_out_during_removal_is_not_followed_up() {
    require_root();
    moved_out(World::new(&[]), true);
    moved_out(World::with_sandbox(&[], "off"), false);
}

fn moved_out(w: World, sandboxed: bool) {
    let mut outcomes = Vec::new();
    for round in 0..3 {
        // Above the depth where the walk moves subtrees up, so the
        // subtree is still where the tenant built it.
        let top = tree::empty_workdir(&w.f.sticky, 0);
        tree::chain(&top, 12);
        let mut bottom = top.clone();
        for _ in 0..12 {
            bottom.push("d");
        }
        fill(&bottom, 20_000);
        let mut middle = top.clone();
        for _ in 0..6 {
            middle.push("d");
        }
        let moved_to = w.f.outside.join(format!("moved-{round}"));
        let watch = bottom.clone();
        let (outcome, moves) = attack::during(
            {
                let (middle, moved_to) = (middle.clone(), moved_to.clone());
                let mut done = false;
                move || {
                    // As soon as the bottom starts emptying, move the middle
                    // of the chain (with the walk inside it) out of the tree.
                    if !done && tree::entries(&watch).is_some_and(|n| n < 19_000) {
                        done = true;
                        return fs::rename(&middle, &moved_to).is_ok();
                    }
                    false
                }
            },
            || w.d.client().remove(&top).unwrap(),
        );
        w.assert_intact();
        // The bottom holds 20,000 files, so the walk is still inside the
        // moved subtree when the rename runs: the race happened every round.
        assert!(
            moves == 1 && moved_to.exists(),
            "round {round}: the move did not happen mid-walk: {}",
            summary(&outcome)
        );
        match &outcome {
            // Sandboxed, Landlock refused the walk's changes at the
            // subtree's new place outside the prefixes.
            Outcome::Failed { failures, .. } => assert!(
                sandboxed
                    && failures
                        .iter()
                        .any(|f| f.cause == Cause::Errno(Errno::EACCES as i32)),
                "round {round}: {}",
                summary(&outcome)
            ),
            // Unsandboxed, the walk finished the tenant's own subtree
            // through the fds it held; the workdir itself is gone.
            Outcome::Removed(_) => assert!(!top.exists(), "round {round}: top still there"),
            other => panic!("round {round}: {}", summary(other)),
        }
        outcomes.push(summary(&outcome));
        clear(&[top, moved_to]);
    }
    eprintln!("moved-subtree rounds (sandboxed: {sandboxed}): {outcomes:?}");
}

#[test]
#[ignore = "needs root"]
fn a_deep_subdirectory_moved_to_the_top_is_handled() {
    require_root();
    let w = World::new(&[]);
    // Above the depth where the walk moves subtrees up itself.
    let top = tree::empty_workdir(&w.f.sticky, 0);
    tree::chain(&top, 14);
    let mut deep = top.clone();
    for _ in 0..10 {
        deep.push("d");
    }
    fill(&deep, 20_000);
    let target = top.join("lifted");
    let (outcome, lifts) = attack::during(
        {
            let (deep, target) = (deep.clone(), target.clone());
            let mut done = false;
            move || {
                if !done && tree::entries(&deep).is_some_and(|n| n < 19_000) {
                    done = true;
                    return fs::rename(&deep, &target).is_ok();
                }
                false
            }
        },
        || w.d.client().remove(&top).unwrap(),
    );
    w.assert_intact();
    eprintln!("lifted subtree: {lifts} lift, {}", summary(&outcome));
    assert!(
        lifts == 1,
        "the lift did not happen mid-walk: {}",
        summary(&outcome)
    );
    // The walk notices its parent changed and leaves that branch; the lifted
    // directory is still inside the tree, so a later round removes it.
    assert!(
        matches!(outcome, Outcome::Removed(_)) && !top.exists(),
        "lifted subtree not removed: {}",
        summary(&outcome)
    );
}

#[test]
#[ignore = "needs root"]
fn a_tree_that_keeps_growing_ends_with_a_truthful_report() {
    require_root();
    let w = World::new(&["--max-rounds", "3", "--removal-deadline", "3"]);
    let top = tree::empty_workdir(&w.f.sticky, 0);
    fill(&top.join("grow"), 5_000);
    let started = Instant::now();
    let (outcome, created) = attack::during(
        {
            let dir = top.join("grow");
            let mut i = 0u64;
            move || {
                // Keep refilling: new files and new subdirectories, but never
                // re-create the top once it is gone (that would be a new tree).
                let _ = fs::create_dir(&dir);
                let created = fs::write(dir.join(format!("n{i}")), b"").is_ok();
                if i % 50 == 0 {
                    let sub = dir.join(format!("s{i}"));
                    let _ = fs::create_dir(&sub).and_then(|()| fs::create_dir(sub.join("t")));
                }
                i += 1;
                created
            }
        },
        || w.d.client().remove(&top).unwrap(),
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(30), "removal took {took:?}");
    assert!(created > 0, "the tree never grew during the removal");
    w.assert_intact();
    // Either ending is truthful: the helper outran the growth (and the top
    // is gone), or it gave up with only growth-related failures.
    match &outcome {
        Outcome::Removed(_) => assert!(!top.exists()),
        Outcome::Failed { failures, .. } => {
            assert!(top.exists());
            assert!(
                failures.iter().all(|f| matches!(
                    f.cause,
                    Cause::Limit(Limit::KeptGrowing | Limit::Deadline | Limit::Depth)
                )),
                "{}",
                summary(&outcome)
            );
        }
        other => panic!("{}", summary(other)),
    }
    eprintln!(
        "growing tree: {created} creations, {took:?}, {}",
        summary(&outcome)
    );
    clear(&[top]);
}

/// A chain deep enough to be flattened (issue 13), each level `width`
/// files wide; returns the top.
fn deep_wide_chain(prefix: &Path, levels: usize, width: usize) -> PathBuf {
    let top = tree::empty_workdir(prefix, 0);
    let mut level = top.clone();
    for _ in 0..levels {
        level.push("d");
        fill(&level, width);
    }
    top
}

/// The chunks (`.vmrm-*`) directly under `top` right now.
fn chunks(top: &Path) -> Vec<PathBuf> {
    fs::read_dir(top)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".vmrm-"))
        .map(|e| e.path())
        .collect()
}

/// Symlinks swapped in, in a loop, for the directory the walk moves up to
/// a chunk (17 levels below the top) and for chunks themselves: the walk
/// never follows one, and never moves anything out of the tree.
#[test]
#[ignore = "needs root"]
fn symlink_swaps_at_the_flattening_depth_never_reach_outside_the_tree() {
    require_root();
    let w = World::new(&["--max-rounds", "4"]);
    let mut swaps = 0;
    for round in 0..4 {
        let top = deep_wide_chain(&w.f.sticky, 40, 50);
        let mut victim = top.clone();
        for _ in 0..17 {
            victim.push("d");
        }
        let decoy = PathBuf::from(format!("{}.lnk", victim.display()));
        symlink(w.f.outside.join("target"), &decoy).unwrap();
        let target = w.f.outside.join("target");
        let (outcome, n) = {
            let (v, d, t, root) = (victim.clone(), decoy.clone(), target.clone(), top.clone());
            attack::during(
                move || {
                    let mut hit = exchange(&v, &d);
                    // And a chunk itself, when there is one.
                    if let Some(c) = chunks(&root).first() {
                        let _ = fs::remove_file(root.join("lnk"));
                        let _ = symlink(&t, root.join("lnk"));
                        hit |= exchange(c, &root.join("lnk"));
                    }
                    hit
                },
                || w.d.client().remove(&top).unwrap(),
            )
        };
        swaps += n;
        w.assert_intact();
        if matches!(outcome, Outcome::Removed(_)) {
            assert!(!top.exists(), "round {round}: removed but {top:?} is there");
        }
        clear(&[top.clone(), decoy, w.f.sticky.join("lnk")]);
    }
    eprintln!("flattening-depth symlink swaps: {swaps} swaps, canaries intact");
    assert!(swaps > 0);
}

/// A chunk moved out of the tree (outside the prefixes) while the walk is
/// inside it: the walk never climbs out through `..` into `outside`, and
/// nothing there but the moved chunk's own entries is touched.
#[test]
#[ignore = "needs root"]
fn a_chunk_moved_out_during_removal_is_not_followed_up() {
    require_root();
    for sandbox in ["required", "off"] {
        let w = World::with_sandbox(&[], sandbox);
        let mut outcomes = Vec::new();
        let mut moves = 0;
        for round in 0..2 {
            let top = deep_wide_chain(&w.f.sticky, 60, 40);
            let moved_to = w.f.outside.join(format!("moved-{round}"));
            let (outcome, n) = attack::during(
                {
                    let (top, moved_to) = (top.clone(), moved_to.clone());
                    move || {
                        !moved_to.exists()
                            && chunks(&top)
                                .first()
                                .is_some_and(|c| fs::rename(c, &moved_to).is_ok())
                    }
                },
                || w.d.client().remove(&top).unwrap(),
            );
            w.assert_intact();
            if matches!(outcome, Outcome::Removed(_)) {
                assert!(!top.exists(), "{}", summary(&outcome));
            }
            moves += n;
            outcomes.push(format!("{} moved={}", summary(&outcome), moved_to.exists()));
            clear(&[top, moved_to]);
        }
        eprintln!("moved-chunk rounds ({sandbox}): {outcomes:?}");
        assert!(
            moves > 0,
            "no chunk was ever moved out: the race did not run"
        );
    }
}

/// A tenant that keeps adding entries to the chunks and taking names under
/// the top: the removal ends truthfully, within its limits.
#[test]
#[ignore = "needs root"]
fn a_tree_growing_into_its_chunks_ends_with_a_truthful_report() {
    require_root();
    let w = World::new(&["--max-rounds", "3", "--removal-deadline", "5"]);
    let top = deep_wide_chain(&w.f.sticky, 200, 5);
    let started = Instant::now();
    let (outcome, _) = attack::during(
        {
            let top = top.clone();
            let mut i = 0u64;
            move || {
                let mut hit = false;
                for c in chunks(&top) {
                    hit |= fs::write(c.join(format!("g{i}")), b"").is_ok();
                }
                hit |= fs::create_dir(top.join(format!(".vmrm-{i:016x}"))).is_ok();
                i += 1;
                hit
            }
        },
        || w.d.client().remove(&top).unwrap(),
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(30), "removal took {took:?}");
    w.assert_intact();
    match &outcome {
        Outcome::Removed(_) => assert!(!top.exists()),
        Outcome::Failed { failures, .. } => assert!(
            failures.iter().all(|f| matches!(
                    f.cause,
                    Cause::Limit(Limit::KeptGrowing | Limit::Deadline | Limit::Depth)
                )
                    // The client's own rmdir of the emptied top (the
                    // helper lacks CAP_FOWNER in the sticky prefix), refilled.
                    || (f.op == FailedOp::Rmdir && f.cause == Cause::Errno(39))),
            "{}",
            summary(&outcome)
        ),
        other => panic!("{}", summary(other)),
    }
    eprintln!("growing into chunks: {took:?}, {}", summary(&outcome));
    clear(&[top]);
}

/// An outcome in one short line: verdict, counts, failure ops and errnos.
fn summary(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Failed {
            stats,
            failures,
            omitted,
        } => {
            let mut ops: Vec<String> = failures
                .iter()
                .map(|f| format!("{}/{:?}", f.op.as_str(), f.cause))
                .collect();
            ops.dedup();
            format!(
                "failed: {} entries removed, failures {ops:?} (+{omitted} omitted)",
                stats.entries
            )
        }
        other => format!("{other:?}"),
    }
}
