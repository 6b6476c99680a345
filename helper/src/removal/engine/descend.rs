//! Opening a child directory (checked against its owner), and re-opening a
//! parent by verified identity.

use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{fstat, openat2, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use vmrm_policy::Uid;

use super::Owners;

/// Flags for every directory the engine opens: a directory or nothing, no
/// symlink even as the last component, never blocking (a FIFO swapped in
/// must not hang us), never leaked across exec.
fn dir_oflags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC
}

/// Resolution rules for descending: stay beneath the parent fd, no symlinks
/// (CVE-2022-21658, CVE-2018-6954 swaps), no mount crossing (bind mounts of
/// the same device included), no /proc magic links.
fn beneath() -> ResolveFlags {
    ResolveFlags::BENEATH
        | ResolveFlags::NO_SYMLINKS
        | ResolveFlags::NO_XDEV
        | ResolveFlags::NO_MAGICLINKS
}

/// Open the directory `name` (one component) inside `parent`. EXDEV means a
/// mount point; ELOOP or ENOTDIR mean it is not (or no longer) a directory.
pub(super) fn open_child(parent: BorrowedFd<'_>, name: &CStr) -> Result<OwnedFd, Errno> {
    openat2(parent, name, dir_oflags(), Mode::empty(), beneath())
}

/// Why a child directory was not entered.
pub(super) enum EnterError {
    /// From `openat2` or `fstat`: see [`open_child`].
    Io(Errno),
    /// Owned by neither the peer nor a runner user (invariant 8): left
    /// untouched, with everything in it.
    Foreign { owner: u32 },
}

/// Open the directory `name` inside `parent` and check, with one `fstat` on
/// the fd just opened (the inode we hold, not whatever the name means by
/// now), that its owner is one the walk may enter.
pub(super) fn open_owned_child(
    parent: BorrowedFd<'_>,
    name: &CStr,
    owners: &Owners,
) -> Result<Opened, EnterError> {
    let fd = open_child(parent, name).map_err(EnterError::Io)?;
    let st = fstat(fd.as_fd()).map_err(EnterError::Io)?;
    if !owners.allows(Uid(st.st_uid)) {
        return Err(EnterError::Foreign { owner: st.st_uid });
    }
    let id = Identity {
        dev: st.st_dev,
        ino: st.st_ino,
    };
    Ok(Opened {
        fd,
        id,
        pass_cap: pass_cap(st.st_size),
    })
}

/// A directory opened for the walk.
pub(super) struct Opened {
    pub fd: OwnedFd,
    /// What the fd ring needs to close and re-open it later.
    pub id: Identity,
    /// Entries one listing pass of it may yield: see [`pass_cap`].
    pub pass_cap: u64,
}

/// Entries one listing pass of a directory may yield before the walk calls
/// it a tree that keeps growing. On some kernels' tmpfs and btrfs, entries
/// created during a listing land after the cursor, so a tenant creating
/// files as fast as they are removed would keep one pass going until the
/// deadline; recent kernels end a listing at the entries it began with (seen
/// on 6.18), and a refilled directory meets `max_rounds` instead
/// (tests/tests/progress.rs accepts either bound). A
/// directory's size bounds its entries at open (tmpfs counts 20 bytes an
/// entry, ext4 at least 12, btrfs 2 per name byte), so half its size is a
/// generous bound; the floor keeps filesystems whose directory sizes mean
/// little from failing an honest directory under a million entries.
pub(super) fn pass_cap(dir_size: i64) -> u64 {
    const FLOOR: u64 = 1 << 20;
    u64::try_from(dir_size).unwrap_or(0) / 2 + FLOOR
}

/// A directory's identity: device and inode, as `fstat` on its fd reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Identity {
    dev: u64,
    ino: u64,
}

impl Identity {
    pub(super) fn of(fd: BorrowedFd<'_>) -> Result<Identity, Errno> {
        let st = fstat(fd)?;
        Ok(Identity {
            dev: st.st_dev,
            ino: st.st_ino,
        })
    }
}

/// Why a parent could not be re-opened.
pub(super) enum ReopenError {
    /// `..` of the child is no longer the parent we left: the subtree was
    /// moved while we were in it (CVE-2002-0435). Going on would delete in
    /// whatever directory it was moved under.
    Moved,
    Io(Errno),
}

/// Re-open the parent of `child` through `..` and check it is the directory
/// we closed, by device and inode. This is how the engine keeps a constant
/// number of fds at any depth without trusting a path.
pub(super) fn reopen_parent(
    child: BorrowedFd<'_>,
    expected: Identity,
) -> Result<OwnedFd, ReopenError> {
    // Not RESOLVE_BENEATH: `..` is by definition not beneath the child. The
    // identity check below is what keeps us inside the tree.
    let resolve = ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_XDEV | ResolveFlags::NO_MAGICLINKS;
    let fd =
        openat2(child, c"..", dir_oflags(), Mode::empty(), resolve).map_err(ReopenError::Io)?;
    match Identity::of(fd.as_fd()) {
        Ok(found) if found == expected => Ok(fd),
        Ok(_) => Err(ReopenError::Moved),
        Err(e) => Err(ReopenError::Io(e)),
    }
}
