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
    #[error("prefix {0:?} is not an absolute path")]
    NotAbsolute(PathBuf),
    #[error("prefix {0:?} is `/`; name a directory below it")]
    Root(PathBuf),
    #[error("prefix {0:?} is not normalized (empty, `.` or `..` component, or trailing slash)")]
    NotNormalized(PathBuf),
    #[error("prefix {path:?} cannot be inspected: {source}")]
    Inaccessible {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("prefix {0:?} is not a directory")]
    NotDirectory(PathBuf),
    #[error("prefix {path:?} goes through a symbolic link (it resolves to {resolved:?}); configure the resolved path")]
    Symlinked { path: PathBuf, resolved: PathBuf },
    #[error(
        "prefix {0:?} is writable by others without the sticky bit: anyone could swap its entries"
    )]
    WorldWritableNotSticky(PathBuf),
    #[error("prefix {inner:?} lies inside prefix {outer:?}; prefixes must not nest")]
    Nested { outer: PathBuf, inner: PathBuf },
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
        Ok(Prefix(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_os_str().as_bytes()
    }

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
    /// without symlinks (the helper opens it with RESOLVE_NO_SYMLINKS), and
    /// not writable by others unless sticky. In a world-writable non-sticky
    /// directory any user could rename a victim's directory to a `vm-` name.
    pub fn check_on_disk(&self) -> Result<(), PrefixError> {
        let inaccessible = |source| PrefixError::Inaccessible {
            path: self.0.clone(),
            source,
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
        const STICKY: u32 = 0o1000;
        if meta.mode() & OTHER_WRITE != 0 && meta.mode() & STICKY == 0 {
            return Err(PrefixError::WorldWritableNotSticky(self.0.clone()));
        }
        Ok(())
    }
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
