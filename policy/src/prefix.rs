//! An allowed prefix: an absolute, normalized directory path under which
//! `vm-...` directories may be removed, and the checks made on it at start.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A prefix that passed the syntactic checks: absolute, not `/`, no empty,
/// `.` or `..` component, no trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix(PathBuf);

/// Why a configured prefix is refused.
#[derive(Debug, thiserror::Error)]
pub enum PrefixError {
    /// The path does not start with `/`.
    #[error("prefix {0:?} is not an absolute path")]
    NotAbsolute(PathBuf),
    /// The path is `/` itself.
    #[error("prefix {0:?} is `/`; name a directory below it")]
    Root(PathBuf),
    /// An empty, `.` or `..` component, a trailing slash or a NUL byte.
    #[error("prefix {0:?} is not normalized (empty, `.` or `..` component, or trailing slash)")]
    NotNormalized(PathBuf),
    /// The directory cannot be examined.
    #[error("prefix {path:?} cannot be inspected: {error}")]
    Inaccessible {
        /// The prefix as configured.
        path: PathBuf,
        /// What the kernel answered.
        error: std::io::Error,
    },
    /// It exists but is not a directory.
    #[error("prefix {0:?} is not a directory")]
    NotDirectory(PathBuf),
    /// A component is a symbolic link, which whoever owns it could repoint.
    #[error("prefix {path:?} goes through a symbolic link (it resolves to {resolved:?}); configure the resolved path")]
    Symlinked {
        /// The prefix as configured.
        path: PathBuf,
        /// Where it leads once every link is resolved.
        resolved: PathBuf,
    },
    #[error(
        "prefix {0:?} is writable by others without the sticky bit: anyone could swap its entries"
    )]
    /// Writable by everyone without the sticky bit.
    WorldWritableNotSticky(PathBuf),
    #[error(
        "prefix {0:?} is group-writable without the sticky bit: any group member could rename \
         another member's directory to a workdir name and have it removed"
    )]
    /// Writable by its group without the sticky bit.
    GroupWritableNotSticky(PathBuf),
    #[error(
        "prefix {0:?} is a system directory (or lies in one); vmrmd removes only beneath \
         dedicated scratch directories such as /tmp or /var/lib/vms"
    )]
    /// A system directory such as `/etc` or `/usr`, or a path inside one.
    SystemTree(PathBuf),
    #[error("prefix {path:?} is on a {fs} filesystem, not real storage")]
    /// On procfs, sysfs or another pseudo-filesystem.
    PseudoFilesystem {
        /// The prefix as configured.
        path: PathBuf,
        /// The filesystem's name.
        fs: &'static str,
    },
    #[error("prefix {0:?} is configured twice")]
    /// The same path is listed twice.
    Duplicate(PathBuf),
    #[error(
        "prefixes {first:?} and {second:?} are the same directory (a bind mount or other \
         alias); configure it once"
    )]
    /// Two paths name the same directory.
    Alias {
        /// The prefix listed first.
        first: PathBuf,
        /// The other name of the same directory.
        second: PathBuf,
    },
    #[error("prefix {inner:?} lies inside prefix {outer:?}; prefixes must not nest")]
    /// One prefix lies inside another.
    Nested {
        /// The enclosing prefix.
        outer: PathBuf,
        /// The prefix inside it.
        inner: PathBuf,
    },
}

impl Prefix {
    /// Check the syntax of a configured prefix.
    pub fn new(path: impl Into<PathBuf>) -> Result<Prefix, PrefixError> {
        let path: PathBuf = path.into();
        let bytes = path.as_os_str().as_bytes();
        if !bytes.starts_with(b"/") {
            return Err(PrefixError::NotAbsolute(path));
        }
        if bytes == b"/" {
            return Err(PrefixError::Root(path));
        }
        let normalized = bytes[1..]
            .split(|&b| b == b'/')
            .all(|c| !c.is_empty() && c != b"." && c != b"..");
        if !normalized || bytes.contains(&0) {
            return Err(PrefixError::NotNormalized(path));
        }
        if is_system_tree(bytes) {
            return Err(PrefixError::SystemTree(path));
        }
        Ok(Prefix(path))
    }

    /// The prefix's path.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The path's bytes, as the kernel sees them.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_os_str().as_bytes()
    }

    /// The path, for messages.
    pub fn display(&self) -> std::path::Display<'_> {
        self.0.display()
    }

    /// Whether `other` lies strictly below this prefix.
    pub fn contains(&self, other: &Prefix) -> bool {
        other
            .as_bytes()
            .strip_prefix(self.as_bytes())
            .is_some_and(|rest| rest.starts_with(b"/"))
    }

    /// Check what the prefix is on disk: an existing directory reached
    /// without symlinks (the helper opens it with RESOLVE_NO_SYMLINKS), on
    /// real storage, and not writable by others or by its group unless
    /// sticky. In a writable non-sticky directory any user (or group member)
    /// could rename a victim's directory to a `vm-` name and have it
    /// removed. Returns the directory's (device, inode), to find aliases.
    pub fn check_on_disk(&self) -> Result<(u64, u64), PrefixError> {
        let inaccessible = |error| PrefixError::Inaccessible {
            path: self.0.clone(),
            error,
        };
        let meta = std::fs::symlink_metadata(&self.0).map_err(inaccessible)?;
        let resolved = std::fs::canonicalize(&self.0).map_err(inaccessible)?;
        if resolved != self.0 {
            return Err(PrefixError::Symlinked {
                path: self.0.clone(),
                resolved,
            });
        }
        if !meta.is_dir() {
            return Err(PrefixError::NotDirectory(self.0.clone()));
        }
        const OTHER_WRITE: u32 = 0o002;
        const GROUP_WRITE: u32 = 0o020;
        const STICKY: u32 = 0o1000;
        let sticky = meta.mode() & STICKY != 0;
        if meta.mode() & OTHER_WRITE != 0 && !sticky {
            return Err(PrefixError::WorldWritableNotSticky(self.0.clone()));
        }
        if meta.mode() & GROUP_WRITE != 0 && !sticky {
            return Err(PrefixError::GroupWritableNotSticky(self.0.clone()));
        }
        let statfs = rustix::fs::statfs(&self.0).map_err(|e| inaccessible(e.into()))?;
        if let Some(fs) = pseudo_filesystem(statfs.f_type as i64) {
            return Err(PrefixError::PseudoFilesystem {
                path: self.0.clone(),
                fs,
            });
        }
        // devtmpfs reports tmpfs's magic: recognise it as /dev's device.
        if std::fs::metadata("/dev").is_ok_and(|dev| dev.dev() == meta.dev()) {
            return Err(PrefixError::PseudoFilesystem {
                path: self.0.clone(),
                fs: "devtmpfs",
            });
        }
        Ok((meta.dev(), meta.ino()))
    }
}

/// Trees vmrmd must never remove beneath, whatever the config says: the
/// system's own (`/etc`, `/usr`, `/proc`...), and `/run`, `/var` and `/home`
/// themselves (directories below them, such as `/var/lib/vms`, are fine).
fn is_system_tree(path: &[u8]) -> bool {
    const TREES: &[&[u8]] = &[
        b"/etc", b"/usr", b"/bin", b"/sbin", b"/boot", b"/proc", b"/sys", b"/dev",
    ];
    const EXACT: &[&[u8]] = &[b"/run", b"/var", b"/home", b"/root", b"/srv", b"/opt"];
    let first = path[1..].split(|&b| b == b'/').next().unwrap_or_default();
    let top = &path[..first.len() + 1];
    TREES.contains(&top) || first.starts_with(b"lib") || EXACT.contains(&path)
}

/// Filesystems that are kernel interfaces, not storage (statfs f_type, from
/// linux/magic.h): removing "files" there writes to the kernel.
fn pseudo_filesystem(f_type: i64) -> Option<&'static str> {
    Some(match f_type {
        0x9fa0 => "proc",
        0x6265_6572 => "sysfs",
        0x2702_0bf1 | 0x6367_7270 => "cgroup",
        0x6462_6720 => "debugfs",
        0x7363_6673 => "securityfs",
        0x7472_6163 => "tracefs",
        0xcafe_4a11 => "bpf",
        0x6265_7963 => "configfs",
        0x1cd1 => "devpts",
        0x6165_676c => "pstore",
        0xde5e_81e4 => "efivarfs",
        0xf97c_ff8c => "selinuxfs",
        _ => return None,
    })
}

impl AsRef<OsStr> for Prefix {
    fn as_ref(&self) -> &OsStr {
        self.0.as_os_str()
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn syntax() {
        assert!(Prefix::new("/tmp").is_ok());
        assert!(Prefix::new("/var/lib/vms").is_ok());
        for bad in [
            "tmp", "/", "//", "/tmp/", "/tmp//x", "/tmp/./x", "/tmp/..", "",
        ] {
            assert!(Prefix::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn system_trees_are_refused() {
        for bad in [
            "/etc",
            "/etc/vm",
            "/usr",
            "/usr/local/tmp",
            "/bin",
            "/sbin",
            "/lib",
            "/lib64",
            "/lib/x",
            "/boot",
            "/proc",
            "/proc/self",
            "/sys",
            "/sys/fs",
            "/dev",
            "/dev/shm",
            "/run",
            "/var",
            "/home",
        ] {
            assert!(
                matches!(Prefix::new(bad), Err(PrefixError::SystemTree(_))),
                "{bad}"
            );
        }
        for good in [
            "/tmp",
            "/var/tmp",
            "/var/lib/vms",
            "/run/vms",
            "/home/vms",
            "/library",
        ] {
            // "/library" starts with "lib": refused too, by design (cheap and
            // conservative); the others are accepted.
            let refused = Prefix::new(good).is_err();
            assert_eq!(refused, good == "/library", "{good}");
        }
    }

    #[test]
    fn group_writable_prefix_is_refused_unless_sticky() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        let shared = base.join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o770)).unwrap();
        assert!(matches!(
            Prefix::new(&shared).unwrap().check_on_disk(),
            Err(PrefixError::GroupWritableNotSticky(_))
        ));
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1770)).unwrap();
        Prefix::new(&shared).unwrap().check_on_disk().unwrap();
    }

    #[test]
    fn nesting() {
        let tmp = Prefix::new("/tmp").unwrap();
        assert!(tmp.contains(&Prefix::new("/tmp/a").unwrap()));
        assert!(!tmp.contains(&Prefix::new("/tmpx").unwrap()));
        assert!(!tmp.contains(&tmp));
    }

    #[test]
    fn on_disk_checks() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        let ok = base.join("ok");
        std::fs::create_dir(&ok).unwrap();
        std::fs::set_permissions(&ok, std::fs::Permissions::from_mode(0o755)).unwrap();
        Prefix::new(&ok).unwrap().check_on_disk().unwrap();

        let open = base.join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(
            Prefix::new(&open).unwrap().check_on_disk(),
            Err(PrefixError::WorldWritableNotSticky(_))
        ));
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        Prefix::new(&open).unwrap().check_on_disk().unwrap();

        let link = base.join("link");
        std::os::unix::fs::symlink(&ok, &link).unwrap();
        assert!(matches!(
            Prefix::new(&link).unwrap().check_on_disk(),
            Err(PrefixError::Symlinked { .. })
        ));

        let file = base.join("file");
        std::fs::write(&file, b"").unwrap();
        assert!(matches!(
            Prefix::new(&file).unwrap().check_on_disk(),
            Err(PrefixError::NotDirectory(_))
        ));
        assert!(matches!(
            Prefix::new(base.join("missing")).unwrap().check_on_disk(),
            Err(PrefixError::Inaccessible { .. })
        ));
    }
}
