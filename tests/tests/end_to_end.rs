//! The whole path, end to end: tenants remove their own workdirs and nothing
//! else, through the real vmrmd running as an unprivileged uid holding only
//! CAP_DAC_OVERRIDE.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{lchown, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use vmrm::Outcome;
use vmrm_proto::{Cause, DenyReason, FailedOp};
use vmrm_tests::{ids, require_root, tree, Daemon, DaemonOptions, Fixture};

fn start() -> (Fixture, Daemon) {
    let f = Fixture::new();
    let d = Daemon::start(&f, DaemonOptions::default());
    (f, d)
}

#[test]
#[ignore = "needs root"]
fn tenant_removes_its_workdir_of_qemu_files_in_a_sticky_prefix() {
    require_root();
    let (f, d) = start();
    let canary = f.canary("keep");
    let dir = tree::vm_workdir(&f.sticky, ids::TENANT_A);
    let (code, stderr) = d.rm_as(ids::TENANT_A, &dir);
    assert_eq!(code, 0, "{stderr}");
    assert!(!dir.exists(), "{dir:?} still there");
    canary.assert_intact();
    // The helper may not unlink the top of a sticky prefix: it emptied it,
    // and the client finished as the owner.
    let audit = d.audit();
    assert_eq!(audit.last().unwrap()["verdict"], "emptied", "{audit:?}");
    assert_eq!(audit.last().unwrap()["peer_uid"], ids::TENANT_A);
}

#[test]
#[ignore = "needs root"]
fn tenant_removes_its_workdir_in_a_plain_prefix() {
    require_root();
    let (f, d) = start();
    let dir = tree::vm_workdir(&f.plain, ids::TENANT_A);
    let (code, stderr) = d.rm_as(ids::TENANT_A, &dir);
    assert_eq!(code, 0, "{stderr}");
    assert!(!dir.exists());
    assert_eq!(d.audit().last().unwrap()["verdict"], "removed");
    // 2 files + 4 sockets + subdir with 1 file + the top itself.
    assert_eq!(d.audit().last().unwrap()["entries"], 9);
}

#[test]
#[ignore = "needs root"]
fn another_tenant_is_denied_and_the_directory_untouched() {
    require_root();
    let (f, d) = start();
    for prefix in [&f.sticky, &f.plain] {
        let dir = tree::vm_workdir(prefix, ids::TENANT_A);
        let before = tree::entries(&dir);
        let (code, stderr) = d.rm_as(ids::TENANT_B, &dir);
        assert_eq!(code, 3, "{stderr}");
        assert!(stderr.contains("not_owner"), "{stderr}");
        assert_eq!(tree::entries(&dir), before);
        // qemu-vm does not own the workdir either.
        let (code, _) = d.rm_as(ids::QEMU_VM, &dir);
        assert_eq!(code, 3);
        assert_eq!(tree::entries(&dir), before);
    }
}

fn bytes_path(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(bytes))
}

#[test]
#[ignore = "needs root"]
fn paths_outside_the_grammar_are_denied_and_nothing_is_touched() {
    require_root();
    let (f, d) = start();
    let canary = f.canary("vm-canary/file");
    // Owned by root: the test's own client (uid 0) would be its owner, so
    // only the grammar stands between these requests and the directory.
    let victim = tree::vm_workdir(&f.sticky, 0);
    let nested = victim.join("vm-nested");
    fs::create_dir(&nested).unwrap();
    let before = tree::entries(&victim);
    let sticky = f.sticky.as_os_str().as_bytes();
    let name = victim.file_name().unwrap().as_bytes();
    let cat = |parts: &[&[u8]]| bytes_path(&parts.concat());
    let cases: Vec<(PathBuf, DenyReason)> = vec![
        (PathBuf::from("/"), DenyReason::OutsidePrefixes),
        (PathBuf::from("//"), DenyReason::OutsidePrefixes),
        (f.sticky.clone(), DenyReason::OutsidePrefixes),
        (cat(&[sticky, b"/"]), DenyReason::BadName),
        (cat(&[sticky, b"/.."]), DenyReason::BadName),
        (cat(&[sticky, b"/."]), DenyReason::BadName),
        (
            cat(&[b"/", sticky, b"/", name]),
            DenyReason::OutsidePrefixes,
        ),
        (cat(&[sticky, b"//", name]), DenyReason::BadName),
        (cat(&[sticky, b"/./", name]), DenyReason::BadName),
        (cat(&[sticky, b"/", name, b"/"]), DenyReason::BadName),
        (cat(&[sticky, b"/", name, b"/."]), DenyReason::BadName),
        (cat(&[sticky, b"/", name, b"/.."]), DenyReason::BadName),
        (
            cat(&[sticky, b"/", name, b"/../../outside"]),
            DenyReason::BadName,
        ),
        (
            cat(&[sticky, b"/", name, b"/vm-nested"]),
            DenyReason::BadName,
        ),
        (cat(&[sticky, b"/", name, b"\0"]), DenyReason::BadName),
        (cat(&[sticky, b"/xx-", &name[3..]]), DenyReason::BadName),
        (cat(&[sticky, b"/", name, b" /etc"]), DenyReason::BadName),
        (f.outside.join("vm-canary"), DenyReason::OutsidePrefixes),
        (PathBuf::from("/etc"), DenyReason::OutsidePrefixes),
        (PathBuf::from("relative/vm-x"), DenyReason::OutsidePrefixes),
    ];
    let mut client = d.client();
    for (path, reason) in cases {
        match client.remove(&path).unwrap() {
            Outcome::Denied { reason: got, .. } => assert_eq!(got, reason, "{path:?}"),
            other => panic!("{path:?}: {other:?}"),
        }
    }
    assert_eq!(tree::entries(&victim), before);
    assert!(nested.exists());
    canary.assert_intact();
    // The CLI refuses the classic sudoers escapes the same way.
    let escape = cat(&[sticky, b"/", name, b"/../../outside"]);
    let (code, stderr) = d.rm_as(ids::TENANT_A, &escape);
    assert_eq!(code, 3, "{stderr}");
    canary.assert_intact();
}

#[test]
#[ignore = "needs root"]
fn a_symlinked_top_is_refused_and_its_target_untouched() {
    require_root();
    let (f, d) = start();
    let canary = f.canary("target/file");
    let link = f.sticky.join(tree::workdir_name());
    symlink(f.outside.join("target"), &link).unwrap();
    lchown(&link, Some(ids::TENANT_A), Some(ids::TENANT_A)).unwrap();
    let (code, stderr) = d.rm_as(ids::TENANT_A, &link);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("not_directory"), "{stderr}");
    canary.assert_intact();
    assert!(fs::symlink_metadata(&link).is_ok());
}

#[test]
#[ignore = "needs root"]
fn symlinks_inside_are_removed_as_links_and_targets_untouched() {
    require_root();
    let (f, d) = start();
    let file = f.canary("target/file");
    let other = f.canary("elsewhere");
    let dir = tree::vm_workdir(&f.sticky, ids::TENANT_A);
    symlink(f.outside.join("target"), dir.join("to-dir")).unwrap();
    symlink(&other.path, dir.join("qemu-private/to-file")).unwrap();
    symlink("/", dir.join("to-root")).unwrap();
    symlink("loop", dir.join("loop")).unwrap();
    fs::create_dir_all(dir.join("a/b")).unwrap();
    tree::chown_tree(&dir.join("a"), ids::TENANT_A);
    symlink("../../../..", dir.join("a/b/up")).unwrap();
    let (code, stderr) = d.rm_as(ids::TENANT_A, &dir);
    assert_eq!(code, 0, "{stderr}");
    assert!(!dir.exists());
    file.assert_intact();
    other.assert_intact();
    assert!(Path::new("/etc/passwd").exists());
}

#[test]
#[ignore = "needs root"]
fn hardlinks_to_outside_files_are_unlinked_and_the_files_untouched() {
    require_root();
    let (f, d) = start();
    let canary = f.canary("linked");
    let dir = tree::vm_workdir(&f.sticky, ids::TENANT_A);
    fs::hard_link(&canary.path, dir.join("hardlink")).unwrap();
    let (code, stderr) = d.rm_as(ids::TENANT_A, &dir);
    assert_eq!(code, 0, "{stderr}");
    canary.assert_intact();
}

#[test]
#[ignore = "needs root"]
fn a_bind_mount_inside_is_not_crossed_and_is_reported() {
    require_root();
    let (f, d) = start();
    let canary = f.canary("mounted/precious");
    let dir = tree::vm_workdir(&f.sticky, ids::TENANT_A);
    let mnt = dir.join("sub/mnt");
    fs::create_dir_all(&mnt).unwrap();
    tree::chown_tree(&dir.join("sub"), ids::TENANT_A);
    // Same device: only RESOLVE_NO_XDEV's mount check can see it.
    f.bind_mount(&f.outside.join("mounted"), &mnt);
    let (code, stderr) = d.rm_as(ids::TENANT_A, &dir);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("sub/mnt") && stderr.contains("mount_point"),
        "{stderr}"
    );
    canary.assert_intact();
    // Everything else is gone; only the path to the mount point remains.
    assert_eq!(tree::entries(&dir), Some(1));
    assert_eq!(tree::entries(&dir.join("sub")), Some(1));

    let mut client = d.client();
    // A mount point as the top is refused outright.
    let top = f.sticky.join(tree::workdir_name());
    fs::create_dir(&top).unwrap();
    f.bind_mount(&f.outside.join("mounted"), &top);
    match client.remove(&top).unwrap() {
        Outcome::Denied { reason, .. } => assert_eq!(reason, DenyReason::MountPoint),
        other => panic!("{other:?}"),
    }
    canary.assert_intact();
}

#[test]
#[ignore = "needs root"]
fn fifos_sockets_and_devices_are_removed_without_blocking() {
    require_root();
    let (f, d) = start();
    let dir = tree::vm_workdir(&f.sticky, ids::TENANT_A);
    let rw = Mode::from_bits_truncate(0o666);
    nix::unistd::mkfifo(&dir.join("fifo"), rw).unwrap();
    mknod(&dir.join("null"), SFlag::S_IFCHR, rw, makedev(1, 3)).unwrap();
    mknod(&dir.join("loop"), SFlag::S_IFBLK, rw, makedev(7, 0)).unwrap();
    // A FIFO where a directory was listed would block an open without
    // O_NONBLOCK; make one deep down too.
    fs::create_dir(dir.join("deep")).unwrap();
    tree::chown_tree(&dir.join("deep"), ids::TENANT_A);
    nix::unistd::mkfifo(&dir.join("deep/fifo"), rw).unwrap();
    for name in ["fifo", "null", "loop", "deep/fifo"] {
        lchown(dir.join(name), Some(ids::QEMU_VM), Some(ids::QEMU_VM)).unwrap();
    }
    let started = Instant::now();
    let (code, stderr) = d.rm_as(ids::TENANT_A, &dir);
    assert_eq!(code, 0, "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(!dir.exists());
}

#[test]
#[ignore = "needs root"]
fn missing_paths_and_force() {
    require_root();
    let (f, d) = start();
    let missing = f.sticky.join(tree::workdir_name());
    let (code, _) = d.rm_as(ids::TENANT_A, &missing);
    assert_eq!(code, 4);
    let out = d.vmrm_as(
        ids::TENANT_A,
        &[OsStr::new("rm"), OsStr::new("-rf"), missing.as_os_str()],
    );
    assert_eq!(out.status.code(), Some(0));
    // One bad path among good ones: the good ones go, the status says denied.
    let good = tree::vm_workdir(&f.sticky, ids::TENANT_A);
    let out = d.vmrm_as(
        ids::TENANT_A,
        &[
            OsStr::new("rm"),
            OsStr::new("-f"),
            OsStr::new("--json"),
            good.as_os_str(),
            OsStr::new("/etc"),
        ],
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(!good.exists());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["result"], "removed");
    assert_eq!(lines[1]["result"], "denied");
    assert_eq!(lines[1]["reason"], "outside_prefixes");
}

#[test]
#[ignore = "needs root"]
fn an_unreachable_helper_has_its_own_exit_status() {
    require_root();
    let (f, mut d) = start();
    let dir = tree::vm_workdir(&f.sticky, ids::TENANT_A);
    assert!(d.stop(), "vmrmd did not stop cleanly:\n{}", d.log());
    assert!(!f.socket.exists(), "socket left behind");
    let (code, stderr) = d.rm_as(ids::TENANT_A, &dir);
    assert_eq!(code, 5, "{stderr}");
    assert!(stderr.contains("cannot connect"), "{stderr}");
    assert!(dir.exists());
}

#[test]
#[ignore = "needs root"]
fn failures_inside_are_reported_with_relative_path_and_errno() {
    require_root();
    let (f, d) = start();
    let dir = tree::vm_workdir(&f.plain, ids::TENANT_A);
    // An immutable file cannot be unlinked even with CAP_DAC_OVERRIDE.
    let stuck = dir.join("qemu-private/stuck");
    fs::write(&stuck, b"x").unwrap();
    let immutable = std::process::Command::new("chattr")
        .arg("+i")
        .arg(&stuck)
        .status();
    // /tmp on this project's machines is ext4, where chattr works: a
    // failure here is a broken test set-up, never a pass.
    assert!(
        matches!(immutable, Ok(s) if s.success()),
        "chattr +i failed on {}: {immutable:?}",
        stuck.display()
    );
    let mut client = d.client();
    let _ = lchown(&dir, Some(0), Some(0));
    let outcome = client.remove(&dir).unwrap();
    let _ = std::process::Command::new("chattr")
        .arg("-i")
        .arg(&stuck)
        .status();
    match outcome {
        Outcome::Failed { failures, .. } => {
            assert_eq!(failures.len(), 1, "{failures:?}");
            assert_eq!(failures[0].path, b"qemu-private/stuck");
            assert_eq!(failures[0].op, FailedOp::Unlink);
            assert_eq!(
                failures[0].cause,
                Cause::Errno(nix::errno::Errno::EPERM as i32)
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(tree::entries(&dir), Some(1));
}
