//! vmrmd's own files (the socket directory, the config file) reached without
//! trusting a path another user could swap: walk from `/` one component at
//! a time with `openat(O_PATH | O_NOFOLLOW)`, `fstat` each fd, and refuse a
//! component that someone other than root or vmrmd's own user could change.
//!
//! The attack this stops: a tenant pre-creates the socket directory under
//! /tmp, vmrmd (as root) binds and chmods in it, and an inotify-driven swap
//! of the socket for a symlink turns the chmod onto a root-owned file.

use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{fstat, mkdirat, openat, FileType, Mode, OFlags, Stat, CWD};
use rustix::io::Errno;
use vmrm_policy::Uid;

/// Who may own a trusted directory or file: root, and the uid(s) vmrmd
/// runs as.
#[derive(Debug, Clone)]
pub struct Owners(Vec<Uid>);

impl Owners {
    /// Root, the effective uid, and `extra` (vmrmd's configured user).
    pub fn root_and_self(extra: Option<Uid>) -> Owners {
        let mut v = vec![Uid(0), Uid(rustix::process::geteuid().as_raw())];
        v.extend(extra);
        v.sort_unstable();
        v.dedup();
        Owners(v)
    }

    fn allows(&self, uid: Uid) -> bool {
        self.0.contains(&uid)
    }
}

/// A path component that cannot be trusted, or could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("{0:?} must be an absolute path without `.` or `..`, below `/`")]
    NotAbsolute(PathBuf),
    #[error("cannot open {path:?}: {error}")]
    Open {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{0:?} is a symbolic link; name the real path")]
    Symlink(PathBuf),
    #[error("{0:?} is not a directory")]
    NotDirectory(PathBuf),
    #[error("{0:?} is not a regular file")]
    NotRegular(PathBuf),
    #[error(
        "{path:?} is owned by uid {owner}: only root or vmrmd's own user may own it, since its \
         owner could swap what vmrmd finds there"
    )]
    Owner { path: PathBuf, owner: Uid },
    #[error(
        "{path:?} has mode {mode:04o}: it must not be writable by its group or by others{hint}"
    )]
    Writable {
        path: PathBuf,
        mode: u32,
        hint: &'static str,
    },
    #[error("{path:?} is larger than {max} bytes")]
    TooLarge { path: PathBuf, max: u64 },
}

/// An opened, checked directory.
pub struct TrustedDir {
    pub fd: OwnedFd,
    /// The directory holding it, opened and checked the same way.
    pub parent: OwnedFd,
    /// Whether vmrmd created it (and so may remove it at exit).
    pub created: bool,
}

const STICKY: u32 = 0o1000;
const GROUP_OR_OTHER_WRITE: u32 = 0o022;

fn open_error(path: &Path) -> impl FnOnce(Errno) -> TrustError + '_ {
    move |e| TrustError::Open {
        path: path.to_owned(),
        error: e.into(),
    }
}

/// Open `path` as a directory through checked ancestors. Every ancestor
/// must be a directory owned by one of `owners` and not writable by group or
/// others, unless sticky (as /tmp is: then no one else can rename the
/// next component, which the walk checks is ours). The directory itself
/// must not be group- or world-writable at all. With `create`, missing
/// components are made (mode 0755) by vmrmd.
pub fn open_dir(path: &Path, owners: &Owners, create: bool) -> Result<TrustedDir, TrustError> {
    let names = components(path)?;
    let root = openat(
        CWD,
        "/",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(open_error(Path::new("/")))?;
    check(
        &fstat(&root).map_err(open_error(Path::new("/")))?,
        Path::new("/"),
        owners,
        true,
    )?;
    let mut parent: Option<OwnedFd> = None;
    let mut current = root;
    let mut walked = PathBuf::from("/");
    let mut created = false;
    for (i, name) in names.iter().enumerate() {
        walked.push(name);
        let last = i + 1 == names.len();
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let next = match openat(&current, *name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) if create => {
                // Exactly 0755 whatever the inherited umask (tenants must
                // be able to reach the socket); vmrmd is single-threaded
                // at start, so the process-wide umask touches nothing else.
                let old_mask = rustix::process::umask(Mode::from_raw_mode(0o022));
                let made = mkdirat(&current, *name, Mode::from_raw_mode(0o755));
                rustix::process::umask(old_mask);
                match made {
                    Ok(()) => created = last,
                    // Made meanwhile by someone: checked below like any other.
                    Err(Errno::EXIST) => {}
                    Err(e) => return Err(open_error(&walked)(e)),
                }
                openat(&current, *name, flags, Mode::empty()).map_err(open_error(&walked))?
            }
            // O_PATH | O_NOFOLLOW on a symlink with O_DIRECTORY: ENOTDIR.
            Err(Errno::NOTDIR) | Err(Errno::LOOP) => {
                return Err(match statat_nofollow(&current, name) {
                    Some(FileType::Symlink) => TrustError::Symlink(walked),
                    _ => TrustError::NotDirectory(walked),
                })
            }
            Err(e) => return Err(open_error(&walked)(e)),
        };
        let stat = fstat(&next).map_err(open_error(&walked))?;
        check(&stat, &walked, owners, !last)?;
        parent = Some(current);
        current = next;
    }
    let parent = match parent {
        Some(p) => p,
        None => return Err(TrustError::NotAbsolute(path.to_owned())),
    };
    Ok(TrustedDir {
        fd: current,
        parent,
        created,
    })
}

fn statat_nofollow(dir: &OwnedFd, name: &OsStr) -> Option<FileType> {
    rustix::fs::statat(dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
        .ok()
        .map(|s| FileType::from_raw_mode(s.st_mode))
}

fn check(stat: &Stat, path: &Path, owners: &Owners, ancestor: bool) -> Result<(), TrustError> {
    if FileType::from_raw_mode(stat.st_mode) != FileType::Directory {
        return Err(TrustError::NotDirectory(path.to_owned()));
    }
    let owner = Uid(stat.st_uid);
    if !owners.allows(owner) {
        return Err(TrustError::Owner {
            path: path.to_owned(),
            owner,
        });
    }
    let mode = stat.st_mode & 0o7777;
    let sticky_ancestor = ancestor && mode & STICKY != 0;
    if mode & GROUP_OR_OTHER_WRITE != 0 && !sticky_ancestor {
        return Err(TrustError::Writable {
            path: path.to_owned(),
            mode,
            hint: if ancestor {
                ""
            } else {
                " (use a directory of its own, such as /run/vmrmd, mode 0755)"
            },
        });
    }
    Ok(())
}

/// The normal components of an absolute path; `.` and `..` are refused
/// rather than resolved.
fn components(path: &Path) -> Result<Vec<&OsStr>, TrustError> {
    if !path.is_absolute() {
        return Err(TrustError::NotAbsolute(path.to_owned()));
    }
    path.components()
        .filter(|c| !matches!(c, Component::RootDir))
        .map(|c| match c {
            Component::Normal(n) => Ok(n),
            _ => Err(TrustError::NotAbsolute(path.to_owned())),
        })
        .collect()
}

/// Largest config file read.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Read a config file through checked ancestors, opening it `O_NOFOLLOW`:
/// a regular file owned by one of `owners` and not group- or
/// world-writable, in a directory that passes [`open_dir`]. `/dev/null`
/// (the character device) reads as an empty file, meaning "no config".
pub fn read_config(path: &Path, owners: &Owners) -> Result<String, TrustError> {
    // A relative `--config` is taken from the working directory, then
    // walked from `/` like any other.
    let absolute = std::path::absolute(path).map_err(|error| TrustError::Open {
        path: path.to_owned(),
        error,
    })?;
    let path = absolute.as_path();
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(TrustError::NotAbsolute(path.to_owned()));
    };
    let dir = open_dir(dir, owners, false)?;
    let fd = openat(
        &dir.fd,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        Errno::LOOP => TrustError::Symlink(path.to_owned()),
        e => open_error(path)(e),
    })?;
    let stat = fstat(&fd).map_err(open_error(path))?;
    let kind = FileType::from_raw_mode(stat.st_mode);
    let dev_null = kind == FileType::CharacterDevice
        && rustix::fs::major(stat.st_rdev) == 1
        && rustix::fs::minor(stat.st_rdev) == 3;
    if dev_null {
        return Ok(String::new());
    }
    if kind != FileType::RegularFile {
        return Err(TrustError::NotRegular(path.to_owned()));
    }
    let owner = Uid(stat.st_uid);
    if !owners.allows(owner) {
        return Err(TrustError::Owner {
            path: path.to_owned(),
            owner,
        });
    }
    if stat.st_mode & GROUP_OR_OTHER_WRITE != 0 {
        return Err(TrustError::Writable {
            path: path.to_owned(),
            mode: stat.st_mode & 0o7777,
            hint: "",
        });
    }
    let mut text = String::new();
    std::fs::File::from(fd)
        .take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|error| TrustError::Open {
            path: path.to_owned(),
            error,
        })?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(TrustError::TooLarge {
            path: path.to_owned(),
            max: MAX_CONFIG_BYTES,
        });
    }
    Ok(text)
}

/// `name` as a C-compatible path relative to a checked directory fd, for
/// `bind` (which takes a path): `/proc/self/fd/N/name` resolves through the
/// fd we hold, not through the path's ancestors again.
pub fn through_fd(dir: &impl AsFd, name: &OsStr) -> PathBuf {
    use std::os::fd::AsRawFd;
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_fd().as_raw_fd()));
    p.push(name);
    p
}
