//! Building the trees the benchmark removes. Building is never timed. The
//! shapes (wide, chain, unique names) are `vmrm-testkit`'s, shared with the
//! tests; the VM workdir with a real overlay is the benchmark's own.

use std::fs;
use std::os::unix::fs::{lchown, PermissionsExt};
use std::path::{Path, PathBuf};

pub use vmrm_testkit::{unique, wide};

/// A chain of `depth` directories in a new `prefix/vm-...`.
pub fn chain(prefix: &Path, depth: usize) -> PathBuf {
    let top = unique(prefix);
    fs::create_dir(&top).expect("mkdir top");
    drop(vmrm_testkit::chain(&top, depth, None));
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
