//! Work stealing below the top: a top with one subdirectory holding many is
//! removed completely, and what a busy worker hands to an idle one is
//! opened with the same rules as the walk's own (no symlink followed, no
//! foreign directory entered, a subtree moved out reported, not removed).

use std::fs;
use std::os::fd::AsFd;
use std::os::unix::fs::{lchown, symlink};
use std::path::Path;

use nix::errno::Errno;
use vmrm::Outcome;
use vmrm_proto::{Cause, Limit};
use vmrm_tests::{attack, ids, require_root, tree, Daemon, DaemonOptions, Fixture};

/// `top/one/` holding `dirs` directories `d00000`... of `files` files each.
/// Returns the entries made (the top not counted).
fn one_below(top: &Path, dirs: usize, files: usize) -> u64 {
    let one = top.join("one");
    fs::create_dir(&one).unwrap();
    for d in 0..dirs {
        let dir = one.join(format!("d{d:05}"));
        fs::create_dir(&dir).unwrap();
        vmrm_testkit::files(tree::open_dir(&dir).as_fd(), files, "f");
    }
    (1 + dirs + dirs * files) as u64
}

#[test]
#[ignore = "needs root"]
fn a_wide_tree_one_level_below_the_top_is_removed() {
    require_root();
    let f = Fixture::new();
    let prefix = f.tmpfs("below", 100_000);
    let d = Daemon::start(
        &f,
        DaemonOptions {
            prefixes: Some(vec![prefix.clone()]),
            ..Default::default()
        },
    );
    let top = tree::empty_workdir(&prefix, 0);
    let made = one_below(&top, 300, 100);
    let outcome = d.client().remove(&top).unwrap();
    assert!(
        matches!(outcome, Outcome::Removed(s) if s.entries == made + 1),
        "{outcome:?}"
    );
    assert!(!top.exists());
}

/// The attack: a subtree among many published ones is moved out of the tree
/// (outside the prefixes) while a worker, maybe a thief, is inside it
/// (CVE-2002-0435). The removal fails truthfully (Landlock refuses every
/// change at the new place, or the walk finds `..` moved), and nothing
/// outside is touched.
#[test]
#[ignore = "needs root"]
fn a_stolen_subtree_moved_out_mid_walk_fails_and_touches_nothing_outside() {
    require_root();
    let f = Fixture::new();
    let d = Daemon::start(&f, DaemonOptions::default());
    let canary = f.canary("target/c1");
    let top = tree::empty_workdir(&f.sticky, 0);
    one_below(&top, 63, 20);
    let chain_top = top.join("one/c");
    fs::create_dir(&chain_top).unwrap();
    let moved_to = f.outside.join("moved");
    let (outcome, moves) = attack::during(
        attack::move_out_midway(&chain_top, moved_to.clone()),
        || d.client().remove(&top).unwrap(),
    );
    canary.assert_intact();
    assert!(
        moves == 1 && moved_to.exists(),
        "the move did not happen mid-walk: {outcome:?}"
    );
    match &outcome {
        Outcome::Failed { failures, .. } => assert!(
            failures.iter().any(|f| {
                f.cause == Cause::Errno(Errno::EACCES as i32)
                    || f.cause == Cause::Limit(Limit::Moved)
            }),
            "no refused change or `moved` among {failures:?}"
        ),
        other => panic!("moved out mid-walk but {other:?}"),
    }
    let _ = fs::remove_dir_all(&top);
    let _ = fs::remove_dir_all(&moved_to);
}

/// The attack: subdirectories the walk has listed (and may have published)
/// are swapped, from the end of the listing back, for symlinks to a
/// directory outside the tree. Whoever meets a link unlinks it as a link;
/// nothing behind it is touched.
#[test]
#[ignore = "needs root"]
fn a_symlink_swapped_for_a_published_child_is_never_followed() {
    require_root();
    let f = Fixture::new();
    let d = Daemon::start(&f, DaemonOptions::default());
    let canaries: Vec<_> = (0..10).map(|i| f.canary(&format!("target/c{i}"))).collect();
    let target = f.outside.join("target");
    let top = tree::empty_workdir(&f.sticky, 0);
    const DIRS: usize = 400;
    one_below(&top, DIRS, 50);
    let one = top.join("one");
    let (outcome, swaps) = attack::during(
        {
            let target = target.clone();
            let mut next = DIRS;
            move || {
                let Some(d) = next.checked_sub(1) else {
                    return false;
                };
                next = d;
                let name = one.join(format!("d{d:05}"));
                fs::rename(&name, one.join(format!("x{d:05}"))).is_ok()
                    && symlink(&target, &name).is_ok()
            }
        },
        || d.client().remove(&top).unwrap(),
    );
    assert!(swaps > 0, "no swap happened: {outcome:?}");
    for canary in &canaries {
        canary.assert_intact();
    }
    assert_eq!(tree::entries(&target), Some(10), "{outcome:?}");
    let _ = fs::remove_dir_all(&top);
}

/// The attack: another user's directory (with files A cannot delete) sits
/// among the many subdirectories a walk publishes. Whoever takes it opens
/// it with the owner rule (invariant 8): it is left untouched and reported
/// `foreign_owner`, once.
#[test]
#[ignore = "needs root"]
fn a_foreign_directory_among_published_children_is_left_untouched() {
    require_root();
    let f = Fixture::new();
    let d = Daemon::start(&f, DaemonOptions::default());
    let top = tree::empty_workdir(&f.sticky, 0);
    one_below(&top, 300, 30);
    let foreign = top.join("one/d00150");
    for entry in fs::read_dir(&foreign).unwrap() {
        lchown(
            entry.unwrap().path(),
            Some(ids::TENANT_B),
            Some(ids::TENANT_B),
        )
        .unwrap();
    }
    lchown(&foreign, Some(ids::TENANT_B), Some(ids::TENANT_B)).unwrap();
    let outcome = d.client().remove(&top).unwrap();
    match &outcome {
        Outcome::Failed { failures, .. } => {
            assert_eq!(failures.len(), 1, "{failures:?}");
            assert_eq!(
                failures[0].cause,
                Cause::Limit(Limit::ForeignOwner {
                    owner: ids::TENANT_B
                })
            );
            assert_eq!(failures[0].path, b"one/d00150");
        }
        other => panic!("a foreign directory among them, yet {other:?}"),
    }
    assert_eq!(tree::entries(&foreign), Some(30));
    assert_eq!(tree::entries(&top.join("one")), Some(1));
    let _ = fs::remove_dir_all(&top);
}
