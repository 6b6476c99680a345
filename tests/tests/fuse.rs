//! A hung FUSE mount: a FUSE filesystem whose server never answers, mounted
//! inside a workdir, must not wedge vmrmd. The removal ends promptly with a
//! `mount_point` failure (with `count_bytes` on, whose stat used to block in
//! FUSE_GETATTR) and another tenant is served meanwhile.
//!
//! No fuse3 needed: the test opens /dev/fuse itself and mounts with that fd,
//! then never reads it, which is exactly a server that never answers.

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use vmrm_tests::{ids, require_root, tree, Daemon, DaemonOptions, Fixture};

/// A FUSE mount with no server behind it. Dropping it detaches the mount
/// and closes the device fd, which aborts the connection and releases
/// anything blocked in it.
struct SilentFuse {
    target: PathBuf,
    _dev: OwnedFd,
}

impl SilentFuse {
    /// Mount on `target`: a regular file (`rootmode` of a file) or a
    /// directory.
    fn mount_on(target: &Path) -> SilentFuse {
        let dev: OwnedFd = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/fuse")
            .expect("/dev/fuse")
            .into();
        let rootmode = if target.is_dir() { "40000" } else { "100000" };
        let options = format!(
            "fd={},rootmode={rootmode},user_id=0,group_id=0,allow_other",
            dev.as_raw_fd()
        );
        mount(
            Some("vmrm-silent"),
            target,
            Some("fuse"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(options.as_str()),
        )
        .unwrap_or_else(|e| panic!("mounting fuse on {target:?}: {e}"));
        SilentFuse {
            target: target.to_owned(),
            _dev: dev,
        }
    }
}

impl Drop for SilentFuse {
    fn drop(&mut self) {
        let _ = umount2(&self.target, MntFlags::MNT_DETACH);
    }
}

#[test]
#[ignore = "needs root"]
fn a_silent_fuse_mount_inside_fails_promptly_and_others_are_served() {
    require_root();
    let f = Fixture::new();
    // Bytes are counted: the path that used to stat the mount point.
    let d = Daemon::start(
        &f,
        DaemonOptions {
            args: vec!["--count-bytes".into(), "true".into()],
            ..Default::default()
        },
    );
    for (kind, prefix) in [("file", &f.sticky), ("dir", &f.plain)] {
        let dir = tree::vm_workdir(prefix, ids::TENANT_A);
        let target = dir.join("hang");
        if kind == "dir" {
            fs::create_dir(&target).unwrap();
        } else {
            fs::write(&target, b"").unwrap();
        }
        std::os::unix::fs::lchown(&target, Some(ids::TENANT_A), Some(ids::TENANT_A)).unwrap();
        let fuse = SilentFuse::mount_on(&target);

        let started = Instant::now();
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| {
                let (code, stderr) = d.rm_as(ids::TENANT_A, &dir);
                (code, stderr, started.elapsed())
            });
            // Meanwhile another tenant's typical removal is served.
            let other = tree::vm_workdir(prefix, ids::TENANT_B);
            let b = d.rm_as(ids::TENANT_B, &other);
            assert!(!other.exists(), "{kind}: {b:?}");
            (a.join().unwrap(), (b, started.elapsed()))
        });
        let (code, stderr, took) = a;
        assert!(took < Duration::from_secs(30), "{kind}: took {took:?}");
        assert_eq!(code, 1, "{kind}: {stderr}");
        assert!(
            stderr.contains("hang") && stderr.contains("mount_point"),
            "{kind}: {stderr}"
        );
        let ((b_code, b_err), b_took) = b;
        assert_eq!(b_code, 0, "{kind}: {b_err}");
        assert!(
            b_took < Duration::from_secs(30),
            "{kind}: B took {b_took:?}"
        );
        // Everything but the mount point is gone.
        assert_eq!(tree::entries(&dir), Some(1));
        drop(fuse);
        assert!(d.client().ping().is_ok());
    }
}
