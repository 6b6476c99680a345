//! Issue 13: deep chains under the deployed sandbox in linear time. The walk
//! moves subtrees deeper than 16 levels up to chunks under the top, so
//! Landlock's check (a walk up to the prefix) stays short; these tests
//! check the time against GNU rm, the bounds, and that chunks never leave
//! the tenant's tree.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use vmrm::Outcome;
use vmrm_proto::{Cause, FailedOp, Limit};
use vmrm_tests::{attack, ids, require_root, tree, Daemon, DaemonOptions, Fixture};

fn sandboxed(f: &Fixture, prefix: &Path, args: &[&str]) -> Daemon {
    Daemon::start(
        f,
        DaemonOptions {
            prefixes: Some(vec![prefix.to_path_buf()]),
            sandbox: Some("required"),
            args: args.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        },
    )
}

fn gnu_rm(path: &Path) -> Duration {
    let started = Instant::now();
    let status = Command::new("rm").arg("-rf").arg(path).status().unwrap();
    assert!(status.success());
    started.elapsed()
}

#[test]
#[ignore = "needs root"]
fn a_100000_level_chain_is_removed_under_the_sandbox_in_linear_time() {
    require_root();
    let f = Fixture::new();
    let prefix = f.tmpfs("chains", 400_000);
    let d = sandboxed(&f, &prefix, &[]);
    let reference = tree::empty_workdir(&prefix, 0);
    tree::chain(&reference, 100_000);
    let rm = gnu_rm(&reference);
    let top = tree::empty_workdir(&prefix, 0);
    tree::chain(&top, 100_000);
    let fds_idle = d.open_fds();
    let started = Instant::now();
    let outcome = d.client().remove(&top).unwrap();
    let took = started.elapsed();
    assert!(
        matches!(outcome, Outcome::Removed(s) if s.entries == 100_002),
        "{outcome:?}"
    );
    assert!(!top.exists());
    let (rss, _) = d.memory_kib();
    eprintln!(
        "100,000 levels under the sandbox: {took:?}; GNU rm {rm:?} ({:.2}x); peak RSS {rss} KiB, fds idle {fds_idle}",
        took.as_secs_f64() / rm.as_secs_f64()
    );
    // Generous: quadratic took minutes; linear is within a few times rm.
    assert!(
        took < rm * 20 + Duration::from_secs(2),
        "{took:?} vs rm {rm:?}"
    );
    assert!(rss < 32 * 1024, "{rss} KiB");
    // No chunk left behind anywhere in the prefix.
    assert_eq!(tree::entries(&prefix), Some(0));
}

#[test]
#[ignore = "needs root"]
fn max_depth_counts_levels_as_built_not_as_flattened() {
    require_root();
    let f = Fixture::new();
    let prefix = f.tmpfs("limit", 100_000);
    let d = sandboxed(&f, &prefix, &["--max-depth", "1000"]);
    let top = tree::empty_workdir(&prefix, 0);
    tree::chain(&top, 5_000);
    let outcome = d.client().remove(&top).unwrap();
    match &outcome {
        Outcome::Failed { failures, .. } => {
            assert_eq!(failures.len(), 1, "{outcome:?}");
            assert_eq!(failures[0].op, FailedOp::Open);
            assert_eq!(failures[0].cause, Cause::Limit(Limit::Depth));
        }
        other => panic!("{other:?}"),
    }
    // Everything above the limit is gone; the rest stays inside the top.
    assert!(top.exists());
    assert_eq!(tree::entries(&prefix), Some(1));
    fs::remove_dir_all(&top).unwrap();
}

/// A chunk is moved only when it is the directory the walk opened and
/// checked: another user's directory swapped in under a deep name (the
/// tenant could not have moved it) stays where it is, untouched.
#[test]
#[ignore = "needs root"]
fn a_foreign_directory_swapped_in_below_the_flattening_depth_is_not_moved() {
    require_root();
    let f = Fixture::new();
    let d = sandboxed(&f, &f.sticky, &["--max-rounds", "2"]);
    let mut swaps = 0;
    for round in 0..4 {
        let top = tree::empty_workdir(&f.sticky, ids::TENANT_A);
        tree::chain_owned(&top, 60, Some(ids::TENANT_A));
        // Tenant B's project, with a file the tenant may not touch.
        let foreign = tree::empty_workdir(&f.sticky, ids::TENANT_B);
        fs::write(foreign.join("precious"), b"b").unwrap();
        tree::chown_tree(&foreign, ids::TENANT_B);
        let mut deep = top.clone();
        // The level the walk moves up first: 17 below the top.
        for _ in 0..17 {
            deep.push("d");
        }
        let (deep2, foreign2) = (deep.clone(), foreign.clone());
        let (outcome, n) = attack::during(
            move || {
                nix::fcntl::renameat2(
                    nix::fcntl::AT_FDCWD,
                    &deep2,
                    nix::fcntl::AT_FDCWD,
                    &foreign2,
                    nix::fcntl::RenameFlags::RENAME_EXCHANGE,
                )
                .is_ok()
            },
            || d.rm_as(ids::TENANT_A, &top),
        );
        swaps += n;
        // B's file is still there (wherever the swaps left B's directory,
        // maybe inside a subtree of A's that was moved up whole), and B's
        // directory itself never became a chunk.
        let mut found = find(&foreign, "precious") || find(&top, "precious");
        found |= foreign.join("precious").exists();
        assert!(found, "round {round}: B's file is gone ({outcome:?})");
        let chunked = fs::read_dir(&top).into_iter().flatten().flatten().any(|e| {
            e.file_name().to_string_lossy().starts_with(".vmrm-")
                && e.metadata().is_ok_and(|m| m.uid() == ids::TENANT_B)
        });
        assert!(
            !chunked,
            "round {round}: B's directory was moved into a chunk"
        );
        for p in [&top, &foreign] {
            let _ = fs::remove_dir_all(p);
        }
    }
    assert!(swaps > 0, "no swap ever took effect: the race did not run");
}

/// Whether a file called `name` is anywhere under `dir` (not following
/// symlinks).
fn find(dir: &Path, name: &str) -> bool {
    let Ok(entries) = fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        e.file_name() == name || (e.file_type().is_ok_and(|t| t.is_dir()) && find(&e.path(), name))
    })
}
