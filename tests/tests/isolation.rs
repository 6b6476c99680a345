//! Tenant isolation in the engine. vmrmd removes nothing the tenant and its
//! VM runner could not have removed themselves (SECURITY.md, invariant 8),
//! and the parallel fan-out reports a moved subtree at any width.

use std::fs;
use std::os::unix::fs::{lchown, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use vmrm::Outcome;
use vmrm_proto::{Cause, Limit};
use vmrm_tests::{attack, ids, require_root, tree, Daemon, DaemonOptions, Fixture};

/// The victim: a user sharing a group with tenant A.
const VICTIM: u32 = ids::TENANT_B;

/// The victim's group-writable project directory, as it sits in the
/// victim's own space: `project/` (0775) holding `notes` and a 0755
/// `data/` with files that A cannot delete.
fn victims_project(f: &Fixture, name: &str) -> PathBuf {
    let project = f.outside.join(name);
    fs::create_dir_all(project.join("data")).unwrap();
    for i in 0..5 {
        fs::write(project.join(format!("data/file{i}")), b"victim's data").unwrap();
    }
    fs::write(project.join("notes"), b"victim's notes").unwrap();
    for p in [project.join("data"), project.clone()] {
        for entry in fs::read_dir(&p).unwrap() {
            lchown(entry.unwrap().path(), Some(VICTIM), Some(VICTIM)).unwrap();
        }
    }
    lchown(&project, Some(VICTIM), Some(VICTIM)).unwrap();
    fs::set_permissions(&project, fs::Permissions::from_mode(0o775)).unwrap();
    fs::set_permissions(project.join("data"), fs::Permissions::from_mode(0o755)).unwrap();
    project
}

fn victims_files_intact(project: &Path) {
    for i in 0..5 {
        assert_eq!(
            fs::read(project.join(format!("data/file{i}"))).unwrap(),
            b"victim's data",
            "the victim's data/file{i} was touched"
        );
    }
    assert_eq!(fs::read(project.join("notes")).unwrap(), b"victim's notes");
}

#[test]
#[ignore = "needs root"]
fn confused_deputy_foreign_dir_is_left_and_reported() {
    require_root();
    let f = Fixture::new();
    let d = Daemon::start(&f, DaemonOptions::default());
    for (i, prefix) in [&f.sticky, &f.plain].into_iter().enumerate() {
        let workdir = tree::vm_workdir(prefix, ids::TENANT_A);
        let project = victims_project(&f, &format!("project{i}"));
        // Tenant A renames the victim's project into its own workdir (the
        // shared group lets it; here root does the same rename).
        let moved_in = workdir.join("project");
        fs::rename(&project, &moved_in).unwrap();

        let out = d.vmrm_as(
            ids::TENANT_A,
            &["rm".as_ref(), "--json".as_ref(), workdir.as_os_str()],
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        victims_files_intact(&moved_in);
        assert_ne!(out.status.code(), Some(0), "{stdout} {stderr}");
        let line: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap())
            .unwrap_or_else(|e| panic!("{e}: {stdout:?} {stderr}"));
        assert_eq!(line["result"], "failed", "{line}");
        let failures = line["failures"].as_array().unwrap();
        assert!(
            failures.iter().any(|f| f["limit"] == "foreign_owner"
                && f["path"] == "project"
                && f["owner"] == VICTIM),
            "{line}"
        );
        // A's and qemu-vm's own files went; only the foreign tree is left.
        assert!(!workdir.join("overlay.qcow2").exists());
        assert!(!workdir.join("qemu-private").exists());
        assert_eq!(tree::entries(&workdir), Some(1));
    }
}

#[test]
#[ignore = "needs root"]
fn confused_deputy_is_reported_typed_with_the_owner() {
    require_root();
    let f = Fixture::new();
    let d = Daemon::start(&f, DaemonOptions::default());
    // The test's client is uid 0 and owns this workdir; the victim's
    // project inside it, deeper down, is still not entered.
    let workdir = tree::empty_workdir(&f.plain, 0);
    fs::create_dir_all(workdir.join("a/b")).unwrap();
    let project = victims_project(&f, "project");
    fs::rename(&project, workdir.join("a/b/project")).unwrap();
    let outcome = d.client().remove(&workdir).unwrap();
    victims_files_intact(&workdir.join("a/b/project"));
    let Outcome::Failed { failures, .. } = &outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(failures.len(), 1, "{failures:?}");
    let foreign = Cause::Limit(Limit::ForeignOwner { owner: VICTIM });
    assert_eq!(failures[0].cause, foreign);
    assert_eq!(failures[0].path, b"a/b/project");
}

#[test]
#[ignore = "needs root"]
fn runner_owned_private_dirs_are_entered_only_when_configured() {
    require_root();
    let f = Fixture::new();
    // As deployed (`--runner-user` qemu-vm): the whole workdir goes.
    let d = Daemon::start(&f, DaemonOptions::default());
    let dir = tree::vm_workdir(&f.plain, ids::TENANT_A);
    let (code, err) = d.rm_as(ids::TENANT_A, &dir);
    assert_eq!(code, 0, "{err}");
    assert!(!dir.exists());
    drop(d);

    // No runner configured (the default): qemu-vm's 0700 directory is
    // left and reported; everything else of the workdir is removed.
    let d = Daemon::start(
        &f,
        DaemonOptions {
            runners: Some(vec![]),
            ..Default::default()
        },
    );
    let dir = tree::vm_workdir(&f.plain, ids::TENANT_A);
    let (code, err) = d.rm_as(ids::TENANT_A, &dir);
    assert_ne!(code, 0);
    assert!(
        err.contains("qemu-private") && err.contains("foreign_owner"),
        "{err}"
    );
    assert!(err.contains(&ids::QEMU_VM.to_string()), "{err}");
    assert!(dir.join("qemu-private/state").exists());
    assert_eq!(tree::entries(&dir), Some(1));
}

/// The attack: a subdirectory moved out of the tree (outside the prefixes)
/// mid-walk (CVE-2002-0435) gives the same truthful failure whether the top
/// has one subdirectory (sequential walk) or many (parallel fan-out, which
/// used to report `removed`). The walk holds an fd for every level it is in
/// and never climbs `..`, so it cannot reach the subtree's new siblings, and
/// Landlock refuses every change at the subtree's new place (EACCES).
#[test]
#[ignore = "needs root"]
fn fan_out_reports_a_subtree_moved_out_at_any_width() {
    require_root();
    let f = Fixture::new();
    // The default sandbox (`required`): Landlock confines the walk to the
    // prefixes.
    let d = Daemon::start(&f, DaemonOptions::default());
    let canary = f.canary("target/c1");
    for width in [1usize, 8, 64] {
        let top = tree::empty_workdir(&f.sticky, 0);
        let chain_top = top.join("c");
        fs::create_dir(&chain_top).unwrap();
        for i in 1..width {
            fs::create_dir(top.join(format!("e{i}"))).unwrap();
            fs::write(top.join(format!("e{i}/f")), b"").unwrap();
        }
        let moved_to = f.outside.join(format!("moved-{width}"));
        let (outcome, moves) = attack::during(
            attack::move_out_midway(&chain_top, moved_to.clone()),
            || d.client().remove(&top).unwrap(),
        );
        canary.assert_intact();
        assert!(
            moves == 1 && moved_to.exists(),
            "width {width}: the move did not happen mid-walk: {outcome:?}"
        );
        match &outcome {
            Outcome::Failed { failures, .. } => assert!(
                failures
                    .iter()
                    .any(|f| f.cause == Cause::Errno(Errno::EACCES as i32)),
                "width {width}: no refused change at the new place among {failures:?}"
            ),
            other => panic!("width {width}: moved out mid-walk but {other:?}"),
        }
        let _ = fs::remove_dir_all(&top);
        let _ = fs::remove_dir_all(&moved_to);
    }
}

/// `check-config` says when a prefix shares a filesystem with users' data
/// (where the confused-deputy rename works at all).
#[test]
#[ignore = "needs root"]
fn check_config_warns_about_a_prefix_that_is_not_its_own_mount() {
    require_root();
    let f = Fixture::new();
    let own = f.tmpfs("own", 1000);
    let check = |prefix: &Path| {
        let out = std::process::Command::new(vmrm_tests::binaries::vmrmd())
            .args(["--config", "/dev/null", "--prefix"])
            .arg(prefix)
            .arg("check-config")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let shared = check(&f.sticky);
    assert!(
        shared.contains("warning: prefix") && shared.contains("not a filesystem of its own"),
        "{shared}"
    );
    let dedicated = check(&own);
    assert!(!dedicated.contains("warning"), "{dedicated}");
}
