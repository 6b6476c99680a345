//! Issue 3: races a hostile tenant or `qemu-vm` can run against a removal in
//! progress. After every round every canary (outside the tree, and in
//! another tenant's workdir) is intact and the helper still serves.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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

fn exchange(a: &Path, b: &Path) {
    let _ = renameat2(AT_FDCWD, a, AT_FDCWD, b, RenameFlags::RENAME_EXCHANGE);
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
    assert!(rounds >= 3 && swaps > 0);
}

#[test]
#[ignore = "needs root"]
fn a_subtree_moved_out_during_removal_is_not_followed_up() {
    require_root();
    // Sandboxed, Landlock refuses every step outside the prefixes; without
    // the sandbox, the identity check on `..` alone must stop the walk.
    moved_out(World::new(&[]), Cause::Errno(13));
    moved_out(World::with_sandbox(&[], "off"), Cause::Limit(Limit::Moved));
}

fn moved_out(w: World, cause: Cause) {
    let mut outcomes = Vec::new();
    for round in 0..3 {
        // Deeper than the helper's fd ring, so it must re-open parents
        // through `..` and notice the move (CVE-2002-0435).
        let top = tree::empty_workdir(&w.f.sticky, 0);
        tree::chain(&top, 120);
        let mut bottom = top.clone();
        for _ in 0..120 {
            bottom.push("d");
        }
        fill(&bottom, 20_000);
        let mut middle = top.clone();
        for _ in 0..40 {
            middle.push("d");
        }
        let moved_to = w.f.outside.join(format!("moved-{round}"));
        let watch = bottom.clone();
        let (outcome, _) = attack::during(
            {
                let (middle, moved_to) = (middle.clone(), moved_to.clone());
                let mut done = false;
                move || {
                    // As soon as the bottom starts emptying, move the middle
                    // of the chain (with the walk inside it) out of the tree.
                    if !done && tree::entries(&watch).is_some_and(|n| n < 19_000) {
                        let _ = fs::rename(&middle, &moved_to);
                        done = true;
                    }
                }
            },
            || w.d.client().remove(&top).unwrap(),
        );
        w.assert_intact();
        if moved_to.exists() {
            // The move happened mid-walk: the helper must have stopped at the
            // moved directory instead of climbing into `outside`.
            // (Meanwhile Landlock refused every unlink in the subtree's new
            // place outside the prefixes: EACCES failures, nothing removed.)
            match &outcome {
                Outcome::Failed { failures, .. } => assert!(
                    failures
                        .iter()
                        .any(|f| f.op == FailedOp::Reopen && f.cause == cause),
                    "no `reopen` failure of {cause:?} among {:?}",
                    failures.iter().map(|f| (f.op, f.cause)).collect::<Vec<_>>()
                ),
                other => panic!("moved mid-walk but {}", summary(other)),
            }
        }
        outcomes.push(summary(&outcome));
        clear(&[top, moved_to]);
    }
    eprintln!("moved-subtree rounds: {outcomes:?}");
}

#[test]
#[ignore = "needs root"]
fn a_deep_subdirectory_moved_to_the_top_is_handled() {
    require_root();
    let w = World::new(&[]);
    let top = tree::empty_workdir(&w.f.sticky, 0);
    tree::chain(&top, 80);
    let mut deep = top.clone();
    for _ in 0..60 {
        deep.push("d");
    }
    fill(&deep, 20_000);
    let target = top.join("lifted");
    let (outcome, _) = attack::during(
        {
            let (deep, target) = (deep.clone(), target.clone());
            let mut done = false;
            move || {
                if !done && tree::entries(&deep).is_some_and(|n| n < 19_000) {
                    let _ = fs::rename(&deep, &target);
                    done = true;
                }
            }
        },
        || w.d.client().remove(&top).unwrap(),
    );
    w.assert_intact();
    // Truthful either way: success means gone.
    if matches!(outcome, Outcome::Removed(_)) {
        assert!(!top.exists());
    } else {
        assert!(top.exists(), "{}", summary(&outcome));
        clear(&[top]);
    }
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
                let _ = fs::write(dir.join(format!("n{i}")), b"");
                if i % 50 == 0 {
                    let sub = dir.join(format!("s{i}"));
                    let _ = fs::create_dir(&sub).and_then(|()| fs::create_dir(sub.join("t")));
                }
                i += 1;
            }
        },
        || w.d.client().remove(&top).unwrap(),
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(30), "removal took {took:?}");
    w.assert_intact();
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
