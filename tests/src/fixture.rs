//! One test's world: its own base directory under /tmp with a sticky prefix,
//! a plain prefix, a directory of canaries outside both, and a socket path.
//! Everything (mounts first) is removed when the fixture drops.

use std::cell::RefCell;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

pub struct Fixture {
    dir: tempfile::TempDir,
    /// Mode 1777, like /tmp.
    pub sticky: PathBuf,
    /// Mode 0755 root-owned: only vmrmd (with CAP_DAC_OVERRIDE) can unlink.
    pub plain: PathBuf,
    /// Outside every prefix: canaries live here.
    pub outside: PathBuf,
    pub socket: PathBuf,
    mounts: RefCell<Vec<PathBuf>>,
}

fn mkdir(path: &Path, mode: u32) {
    fs::create_dir_all(path).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("vmrm-it-")
            .tempdir_in("/tmp")
            .unwrap();
        let base = fs::canonicalize(dir.path()).unwrap();
        fs::set_permissions(&base, fs::Permissions::from_mode(0o755)).unwrap();
        let f = Fixture {
            sticky: base.join("sticky"),
            plain: base.join("plain"),
            outside: base.join("outside"),
            socket: base.join("run/vmrmd.sock"),
            dir,
            mounts: RefCell::new(Vec::new()),
        };
        mkdir(&f.sticky, 0o1777);
        mkdir(&f.plain, 0o755);
        mkdir(&f.outside, 0o755);
        mkdir(&base.join("run"), 0o755);
        f
    }

    pub fn base(&self) -> &Path {
        self.dir.path()
    }

    /// A file outside the prefixes whose content and inode must survive.
    pub fn canary(&self, name: &str) -> Canary {
        let path = self.outside.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        let content = format!("canary {name}").into_bytes();
        fs::write(&path, &content).unwrap();
        let meta = fs::metadata(&path).unwrap();
        Canary {
            path,
            content,
            ino: meta.ino(),
            mode: meta.mode(),
            uid: meta.uid(),
        }
    }

    /// A fresh tmpfs (mode 1777, like /tmp) mounted at `<base>/<name>`, for
    /// trees too big to build quickly on disk; unmounted on drop.
    pub fn tmpfs(&self, name: &str, max_inodes: u64) -> PathBuf {
        let target = self.base().join(name);
        fs::create_dir(&target).unwrap();
        let options = format!("mode=1777,size=8g,nr_inodes={max_inodes}");
        mount(
            Some("tmpfs"),
            &target,
            Some("tmpfs"),
            MsFlags::empty(),
            Some(options.as_str()),
        )
        .unwrap();
        self.mounts.borrow_mut().push(target.clone());
        target
    }

    /// Bind-mount `source` on `target`; undone when the fixture drops.
    pub fn bind_mount(&self, source: &Path, target: &Path) {
        mount(
            Some(source),
            target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap();
        self.mounts.borrow_mut().push(target.to_owned());
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Fixture::new()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for target in self.mounts.borrow().iter().rev() {
            let _ = umount2(target, MntFlags::MNT_DETACH);
        }
    }
}

/// A file that must come through untouched.
#[derive(Debug, Clone)]
pub struct Canary {
    pub path: PathBuf,
    content: Vec<u8>,
    ino: u64,
    mode: u32,
    uid: u32,
}

impl Canary {
    pub fn assert_intact(&self) {
        let meta = fs::symlink_metadata(&self.path)
            .unwrap_or_else(|e| panic!("canary {:?} is gone: {e}", self.path));
        assert_eq!(meta.ino(), self.ino, "canary {:?} replaced", self.path);
        assert_eq!(
            meta.mode(),
            self.mode,
            "canary {:?} mode changed",
            self.path
        );
        assert_eq!(meta.uid(), self.uid, "canary {:?} owner changed", self.path);
        assert_eq!(
            fs::read(&self.path).unwrap(),
            self.content,
            "canary {:?} modified",
            self.path
        );
    }
}
