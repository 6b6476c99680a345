//! Building the trees the benchmark removes. Building is never timed.

use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{lchown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{mkdirat, mknodat, openat, FileType, Mode, OFlags, CWD};

pub fn unique(prefix: &Path) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    prefix.join(format!("vm-{:08x}-{n:08x}", std::process::id()))
}

fn open_dir(path: &Path) -> OwnedFd {
    openat(
        CWD,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .unwrap_or_else(|e| panic!("open {path:?}: {e}"))
}

fn files(dir: &OwnedFd, n: usize) {
    for i in 0..n {
        mknodat(
            dir.as_fd(),
            format!("f{i:07}"),
            FileType::RegularFile,
            Mode::from_raw_mode(0o644),
            0,
        )
        .expect("mknodat");
    }
}

/// `dirs` directories of `per_dir` empty files (dirs = 0: the files flat).
pub fn wide(prefix: &Path, dirs: usize, per_dir: usize) -> PathBuf {
    let top = unique(prefix);
    fs::create_dir(&top).expect("mkdir top");
    let fd = open_dir(&top);
    if dirs == 0 {
        files(&fd, per_dir);
    }
    for d in 0..dirs {
        let name = format!("d{d:05}");
        mkdirat(fd.as_fd(), name.as_str(), Mode::from_raw_mode(0o755)).expect("mkdirat");
        let sub = openat(
            fd.as_fd(),
            name.as_str(),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .expect("open sub");
        files(&sub, per_dir);
    }
    top
}

/// A chain of `depth` directories.
pub fn chain(prefix: &Path, depth: usize) -> PathBuf {
    let top = unique(prefix);
    fs::create_dir(&top).expect("mkdir top");
    let mut fd = open_dir(&top);
    for _ in 0..depth {
        mkdirat(fd.as_fd(), "d", Mode::from_raw_mode(0o755)).expect("mkdirat");
        fd = openat(
            fd.as_fd(),
            "d",
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .expect("open d");
    }
    top
}

/// A typical VM workdir: owned by `owner`, mode 0700, holding a qcow2
/// overlay (a copy of `overlay`), four sockets and a console log, all owned
/// by `qemu`.
pub fn workdir(prefix: &Path, owner: u32, qemu: u32, overlay: &Path, console: &[u8]) -> PathBuf {
    let dir = unique(prefix);
    fs::create_dir(&dir).expect("mkdir workdir");
    fs::copy(overlay, dir.join("overlay.qcow2")).expect("copy overlay");
    fs::write(dir.join("console.log"), console).expect("console");
    for s in ["cmd.sock", "event.sock", "qmp.sock", "gvproxy.sock"] {
        drop(std::os::unix::net::UnixListener::bind(dir.join(s)).expect("bind"));
    }
    for name in [
        "overlay.qcow2",
        "console.log",
        "cmd.sock",
        "event.sock",
        "qmp.sock",
        "gvproxy.sock",
    ] {
        lchown(dir.join(name), Some(qemu), Some(qemu)).expect("chown");
    }
    lchown(&dir, Some(owner), Some(owner)).expect("chown dir");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).expect("chmod");
    dir
}
