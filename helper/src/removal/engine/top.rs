//! The top directory of a removal: opening it under its prefix, and removing
//! it once it is empty.

use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{fstat, unlinkat, AtFlags};
use rustix::io::Errno;
use vmrm_policy::Uid;

use super::descend::open_child;
use super::walk::Listing;

/// The opened top directory and what `fstat` says about it.
#[derive(Debug)]
pub struct TopDir {
    pub fd: OwnedFd,
    /// Owner uid from `fstat` on the fd: the kernel's word about the inode
    /// we hold, not about whatever the path names by now.
    pub owner: Uid,
    /// The later of its modification and status-change times.
    pub changed: SystemTime,
    /// Its `st_size`, which bounds how much one pass may list. `fd` is left
    /// unread for the removal's first pass, which trusts both.
    pub size: i64,
}

impl TopDir {
    /// How the first pass over `fd` finds its listing.
    pub fn unread(&self) -> Listing {
        Listing::Unread { size: self.size }
    }
}

/// Why the top directory could not be opened.
#[derive(Debug, PartialEq, Eq)]
pub enum OpenTopError {
    NotFound,
    /// A symlink, file, socket...: refused, never followed.
    NotDirectory,
    /// A mount point: never crossed nor removed.
    MountPoint,
    Io(Errno),
}

/// Open `name` inside the prefix directory `prefix` with the same rules as
/// every other directory (openat2, RESOLVE_BENEATH | NO_SYMLINKS | NO_XDEV).
pub fn open_top(prefix: BorrowedFd<'_>, name: &CStr) -> Result<TopDir, OpenTopError> {
    let fd = open_child(prefix, name).map_err(|e| match e {
        Errno::NOENT => OpenTopError::NotFound,
        Errno::LOOP | Errno::NOTDIR => OpenTopError::NotDirectory,
        Errno::XDEV => OpenTopError::MountPoint,
        e => OpenTopError::Io(e),
    })?;
    let st = fstat(fd.as_fd()).map_err(OpenTopError::Io)?;
    let secs = u64::try_from(st.st_mtime.max(st.st_ctime)).unwrap_or(0);
    Ok(TopDir {
        fd,
        owner: Uid(st.st_uid),
        changed: UNIX_EPOCH + Duration::from_secs(secs),
        size: st.st_size,
    })
}

/// What happened to the emptied top directory.
#[derive(Debug, PartialEq, Eq)]
pub enum TopRemoval {
    Removed,
    /// The prefix is sticky and the helper lacks CAP_FOWNER: only the
    /// directory's owner may unlink it now that it is empty.
    LeftForOwner,
    /// Someone removed or renamed it meanwhile; what we emptied is gone from
    /// the prefix either way.
    AlreadyGone,
    Failed(Errno),
}

/// Remove the (now empty) top directory from its prefix.
pub fn remove_top(prefix: BorrowedFd<'_>, name: &CStr) -> TopRemoval {
    match unlinkat(prefix, name, AtFlags::REMOVEDIR) {
        Ok(()) => TopRemoval::Removed,
        Err(Errno::PERM) | Err(Errno::ACCESS) => TopRemoval::LeftForOwner,
        Err(Errno::NOENT) => TopRemoval::AlreadyGone,
        Err(e) => TopRemoval::Failed(e),
    }
}
