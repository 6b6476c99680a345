//! Builders of the trees the end-to-end tests remove: VM workdirs as a
//! sandbox host leaves them, owned by the test's numeric uids. The shapes
//! shared with the engine tests and the benchmark (chains, wide
//! directories, unique names) come from `vmrm-testkit`.

use std::fs;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{lchown, PermissionsExt};
use std::path::{Path, PathBuf};

pub use vmrm_testkit::{open_dir, workdir_name};

use crate::ids;

/// An empty directory `prefix/<name>` owned by `owner`, mode 0700.
pub fn empty_workdir(prefix: &Path, owner: u32) -> PathBuf {
    let dir = prefix.join(workdir_name());
    fs::create_dir(&dir).unwrap();
    lchown(&dir, Some(owner), Some(owner)).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

fn qemu_owned(path: &Path) {
    lchown(path, Some(ids::QEMU_VM), Some(ids::QEMU_VM)).unwrap();
}

/// A workdir as a VM sandbox leaves it: owned by `owner`, holding an
/// overlay, a console log, four sockets and a 0700 subdirectory, all owned
/// by `qemu-vm`.
pub fn vm_workdir(prefix: &Path, owner: u32) -> PathBuf {
    let dir = empty_workdir(prefix, owner);
    fs::write(dir.join("overlay.qcow2"), vec![0u8; 256 * 1024]).unwrap();
    fs::write(dir.join("console.log"), b"[    0.000000] Linux version\n").unwrap();
    for name in ["overlay.qcow2", "console.log"] {
        qemu_owned(&dir.join(name));
        fs::set_permissions(dir.join(name), fs::Permissions::from_mode(0o600)).unwrap();
    }
    for name in ["cmd.sock", "event.sock", "qmp.sock", "gvproxy.sock"] {
        drop(std::os::unix::net::UnixListener::bind(dir.join(name)).unwrap());
        qemu_owned(&dir.join(name));
    }
    let private = dir.join("qemu-private");
    fs::create_dir(&private).unwrap();
    fs::write(private.join("state"), b"state").unwrap();
    qemu_owned(&private.join("state"));
    qemu_owned(&private);
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// A chain `d/d/d/...` of `depth` levels under `top`, built through fds so
/// no path exceeds PATH_MAX, with a file at the bottom.
pub fn chain(top: &Path, depth: usize) {
    chain_owned(top, depth, None);
}

/// [`chain`], each level (and the leaf) owned by `owner` when given: a
/// removal enters only its requester's (and the runners') directories.
pub fn chain_owned(top: &Path, depth: usize, owner: Option<u32>) {
    let bottom = vmrm_testkit::chain(top, depth, owner);
    let leaf = format!("/proc/self/fd/{}/leaf", bottom.as_raw_fd());
    fs::write(&leaf, b"leaf").unwrap();
    if let Some(uid) = owner {
        lchown(&leaf, Some(uid), Some(uid)).unwrap();
    }
}

/// Give `root` and everything under it to `owner` (as a tenant that built
/// the tree itself would own it). Does not follow symlinks.
pub fn chown_tree(root: &Path, owner: u32) {
    lchown(root, Some(owner), Some(owner)).unwrap();
    if fs::symlink_metadata(root).unwrap().is_dir() {
        for entry in fs::read_dir(root).unwrap() {
            chown_tree(&entry.unwrap().path(), owner);
        }
    }
}

/// A directory of `n` empty subdirectories `d0000000`... under `top`,
/// built through its fd, owned by `owner`.
pub fn empty_subdirs(top: &Path, n: usize, owner: u32) {
    named_subdirs(top, n, "d", owner);
}

/// `n` empty subdirectories `<stem>0000000`... under `top`, owned by
/// `owner` (a long `stem` makes long names).
pub fn named_subdirs(top: &Path, n: usize, stem: &str, owner: u32) {
    vmrm_testkit::subdirs(top, n, stem, Some(owner));
}

/// A workdir of `owner` in `prefix` holding `files` empty files, made
/// through the directory's fd (no path walk per file).
pub fn wide_workdir(prefix: &Path, owner: u32, files: usize) -> PathBuf {
    let dir = empty_workdir(prefix, owner);
    vmrm_testkit::files(open_dir(&dir).as_fd(), files, "f");
    dir
}

/// Number of entries directly in `dir`, or `None` if it is gone.
pub fn entries(dir: &Path) -> Option<usize> {
    fs::read_dir(dir).ok().map(|d| d.count())
}
