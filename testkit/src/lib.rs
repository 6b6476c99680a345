//! Builders of the directory trees that the helper's engine tests, the
//! end-to-end tests and the benchmark remove: chains deeper than PATH_MAX
//! allows by path, wide directories of files or subdirectories, unique
//! `vm-<id8>-XXXXXXXX` names. Everything is built through directory fds,
//! so no path grows with the depth and no path walk is paid per entry.
//!
//! Builders panic with the path and errno on failure: they set up tests
//! and benchmarks, where a failed setup should stop the run.

use std::fs;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{fchown, lchown};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{mkdirat, mknodat, openat, FileType, Mode, OFlags, CWD};

/// A `vm-<pid8>-<n8>` name unique within this process.
pub fn workdir_name() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("vm-{:08x}-{n:08x}", std::process::id())
}

/// `prefix/<workdir_name()>` (not created).
pub fn unique(prefix: &Path) -> PathBuf {
    prefix.join(workdir_name())
}

/// An fd of the directory at `path`.
pub fn open_dir(path: &Path) -> OwnedFd {
    openat(CWD, path, dir_flags(), Mode::empty())
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC
}

fn mkdir_open(parent: BorrowedFd<'_>, name: &str) -> OwnedFd {
    mkdirat(parent, name, Mode::from_raw_mode(0o755))
        .unwrap_or_else(|e| panic!("mkdir {name}: {e}"));
    openat(parent, name, dir_flags(), Mode::empty()).unwrap_or_else(|e| panic!("open {name}: {e}"))
}

/// A chain `d/d/d/...` of `depth` directories under the existing `top`,
/// each owned by `owner` when given; returns the deepest directory's fd
/// (add a leaf there with [`files`]).
pub fn chain(top: &Path, depth: usize, owner: Option<u32>) -> OwnedFd {
    let mut fd = open_dir(top);
    for _ in 0..depth {
        fd = mkdir_open(fd.as_fd(), "d");
        if let Some(uid) = owner {
            fchown(&fd, Some(uid), Some(uid)).unwrap_or_else(|e| panic!("chown d: {e}"));
        }
    }
    fd
}

/// `n` empty regular files `<stem>0000000`... in `dir`.
pub fn files(dir: BorrowedFd<'_>, n: usize, stem: &str) {
    for i in 0..n {
        let name = format!("{stem}{i:07}");
        mknodat(
            dir,
            name.as_str(),
            FileType::RegularFile,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap_or_else(|e| panic!("mknod {name}: {e}"));
    }
}

/// `n` empty subdirectories `<stem>0000000`... in the existing `top`,
/// owned by `owner` when given (a long `stem` makes long names).
pub fn subdirs(top: &Path, n: usize, stem: &str, owner: Option<u32>) {
    let fd = open_dir(top);
    for i in 0..n {
        let name = format!("{stem}{i:07}");
        mkdirat(&fd, name.as_str(), Mode::from_raw_mode(0o755))
            .unwrap_or_else(|e| panic!("mkdir {name}: {e}"));
        if let Some(uid) = owner {
            let path = top.join(&name);
            lchown(&path, Some(uid), Some(uid))
                .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
        }
    }
}

/// A new `prefix/vm-...` holding `dirs` directories `d00000`... of
/// `per_dir` empty files each; with `dirs` 0, `per_dir` files directly.
pub fn wide(prefix: &Path, dirs: usize, per_dir: usize) -> PathBuf {
    let top = unique(prefix);
    fs::create_dir(&top).unwrap_or_else(|e| panic!("mkdir {}: {e}", top.display()));
    let fd = open_dir(&top);
    if dirs == 0 {
        files(fd.as_fd(), per_dir, "f");
    }
    for d in 0..dirs {
        let sub = mkdir_open(fd.as_fd(), &format!("d{d:05}"));
        files(sub.as_fd(), per_dir, "f");
    }
    top
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_deeper_than_path_max_is_built() {
        let base = std::env::temp_dir().join(workdir_name());
        fs::create_dir(&base).unwrap();
        // 2,100 levels of "d/": over PATH_MAX (4096) as a path.
        let bottom = chain(&base, 2_100, None);
        files(bottom.as_fd(), 1, "leaf");
        drop(bottom);
        let top = wide(&base, 3, 4);
        assert_eq!(fs::read_dir(&top).unwrap().count(), 3);
        assert_eq!(fs::read_dir(top.join("d00002")).unwrap().count(), 4);
        subdirs(&top, 5, "s", None);
        assert_eq!(fs::read_dir(&top).unwrap().count(), 8);
        let mut chained = 0;
        let mut fd = open_dir(&base);
        while let Ok(next) = openat(&fd, "d", dir_flags(), Mode::empty()) {
            fd = next;
            chained += 1;
        }
        assert_eq!(chained, 2_100);
        // std's remove_dir_all copes with the depth through fds as well.
        fs::remove_dir_all(&base).unwrap();
    }
}
