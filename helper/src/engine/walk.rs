//! The iterative walk that empties a directory tree.
//!
//! Depth-first, with an explicit stack instead of recursion (no stack
//! exhaustion, CVE-2021-3997). Only the deepest [`WalkOptions::fd_ring`]
//! directories hold an open fd; a shallower one is closed after recording
//! its identity and re-opened through `..` of its child when the walk comes
//! back up, checked against that identity, as GNU rm's fd ring does. So fds
//! stay constant at any depth, and memory is one listing buffer plus one
//! small frame per level, whatever the width.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use rustix::fs::{seek, statat, unlinkat, AtFlags, FileType, RawDir, SeekFrom};
use rustix::io::Errno;
use vmrm_proto::FailedOp;

use super::descend::{open_child, reopen_parent, Identity, ReopenError};
use super::Report;

/// Bounds on one walk.
#[derive(Debug, Clone)]
pub struct WalkOptions {
    /// Times one directory is listed again after `rmdir` found it refilled.
    pub max_rounds: u32,
    /// Give up (and say so) after this instant.
    pub deadline: Instant,
    /// Directory fds held open below the top, at most.
    pub fd_ring: usize,
    /// Levels below the top the walk descends; deeper directories are left
    /// in place and reported as a `limit` failure (ENAMETOOLONG).
    pub max_depth: usize,
    /// Stat regular files before unlinking them to count the bytes freed.
    pub count_bytes: bool,
}

/// Size of the one getdents buffer the walk reuses at every level.
const LISTING_BUFFER: usize = 32 * 1024;

/// How often (in entries) the deadline is checked.
const DEADLINE_CHECK_EVERY: u32 = 1024;

/// One directory on the path from the top to where the walk is.
struct Frame {
    fd: Slot,
    /// Its name in the parent (empty for the top).
    name: CString,
    /// Where to resume listing after coming back from a child: the d_off
    /// cookie of the entry after that child. `None` for a directory just
    /// opened, whose fd is at its start already (saves a seek per level).
    resume: Option<u64>,
    /// Listings so far (a refilled directory is listed again).
    round: u32,
    /// Something beneath could not be removed, so this directory cannot be
    /// either; its own `rmdir` failure would only repeat that.
    failed: bool,
}

enum Slot {
    Open(OwnedFd),
    /// Closed to bound fds; re-opened through `..` and checked against this.
    Closed(Identity),
    /// The top directory: borrowed from the caller, always open.
    Top,
}

/// What to do after scanning part of a directory.
enum Step {
    /// Descend into this child; resume the parent at `cookie`.
    Descend { name: CString, cookie: u64 },
    /// The listing reached its end.
    Done,
    /// Stop the whole walk (deadline).
    Abort,
}

/// Empty the directory `top` (remove everything inside it, not `top` itself).
/// Returns `true` when nothing is left inside.
pub fn empty_tree(top: BorrowedFd<'_>, options: &WalkOptions, report: &mut Report) -> bool {
    let mut walk = Walk {
        top,
        stack: vec![Frame {
            fd: Slot::Top,
            name: CString::default(),
            // The caller may have listed the top already: always seek.
            resume: Some(0),
            round: 0,
            failed: false,
        }],
        first_open: 0,
        buf: Vec::with_capacity(LISTING_BUFFER),
        options,
        report,
        ticks: 0,
    };
    walk.run()
}

struct Walk<'a> {
    top: BorrowedFd<'a>,
    stack: Vec<Frame>,
    /// Frames below this index hold `Slot::Closed` (or are the top).
    first_open: usize,
    buf: Vec<u8>,
    options: &'a WalkOptions,
    report: &'a mut Report,
    ticks: u32,
}

impl Walk<'_> {
    fn run(&mut self) -> bool {
        loop {
            match self.scan_current() {
                Step::Descend { name, cookie } => {
                    let depth = self.stack.len() - 1;
                    self.stack[depth].resume = Some(cookie);
                    self.descend(name);
                }
                Step::Done => {
                    if self.stack.len() == 1 {
                        return !self.stack[0].failed;
                    }
                    if !self.ascend() {
                        return false;
                    }
                }
                Step::Abort => return false,
            }
        }
    }

    fn fd_of(&self, depth: usize) -> BorrowedFd<'_> {
        frame_fd(&self.stack[depth], self.top)
    }

    /// List the current directory from where it was left, unlinking every
    /// non-directory, until a subdirectory (to descend into) or the end.
    fn scan_current(&mut self) -> Step {
        let depth = self.stack.len() - 1;
        if let Some(cookie) = self.stack[depth].resume {
            let fd = self.fd_of(depth);
            if let Err(e) = seek(fd, SeekFrom::Start(cookie)) {
                self.fail_here(depth, None, FailedOp::ReadDir, e);
                return Step::Done;
            }
        }
        // Split borrows: the listing borrows `buf`, the actions `report`.
        let Walk {
            buf,
            report,
            options,
            ticks,
            stack,
            top,
            ..
        } = self;
        let fd = frame_fd(&stack[depth], *top);
        let mut listing = RawDir::new(fd, buf.spare_capacity_mut());
        let mut failed = false;
        let step = loop {
            let entry = match listing.next() {
                None => break Step::Done,
                Some(Ok(entry)) => entry,
                Some(Err(e)) => {
                    let path = rel(stack, depth, None);
                    report.fail(FailedOp::ReadDir, e.raw_os_error(), || path);
                    failed = true;
                    break Step::Done;
                }
            };
            let name = entry.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            *ticks += 1;
            if *ticks % DEADLINE_CHECK_EVERY == 0 && Instant::now() >= options.deadline {
                let path = rel(stack, depth, Some(name));
                report.fail(FailedOp::Limit, Errno::TIMEDOUT.raw_os_error(), || path);
                failed = true;
                break Step::Abort;
            }
            let descend = || Step::Descend {
                name: name.to_owned(),
                cookie: entry.next_entry_cookie(),
            };
            if entry.file_type() == FileType::Directory {
                break descend();
            }
            match unlink_entry(fd, name, entry.file_type(), options.count_bytes) {
                Ok(bytes) => {
                    report.stats.entries += 1;
                    report.stats.bytes += bytes;
                }
                // d_type was stale or unknown: it is a directory after all.
                Err(Errno::ISDIR) => break descend(),
                // Gone already (someone else removed it): nothing to do.
                Err(Errno::NOENT) => {}
                Err(e) => {
                    // EBUSY: something is mounted on it; never crossed.
                    let op = if e == Errno::BUSY {
                        FailedOp::MountPoint
                    } else {
                        FailedOp::Unlink
                    };
                    let path = rel(stack, depth, Some(name));
                    report.fail(op, e.raw_os_error(), || path);
                    failed = true;
                }
            }
        };
        if failed {
            stack[depth].failed = true;
        }
        step
    }

    /// Open the child `name` of the current directory and make it current.
    fn descend(&mut self, name: CString) {
        let depth = self.stack.len() - 1;
        if depth >= self.options.max_depth {
            self.fail_here(depth, Some(&name), FailedOp::Limit, Errno::NAMETOOLONG);
            return;
        }
        let parent = self.fd_of(depth);
        match open_child(parent, &name) {
            Ok(fd) => {
                self.push(fd, name, 0);
            }
            // Swapped for a symlink or file since it was listed: unlink the
            // link itself, never what it points to.
            Err(Errno::LOOP) | Err(Errno::NOTDIR) => {
                match unlinkat(parent, &name, AtFlags::empty()) {
                    Ok(()) => self.report.stats.entries += 1,
                    Err(Errno::NOENT) => {}
                    Err(e) => self.fail_here(depth, Some(&name), FailedOp::Unlink, e),
                }
            }
            Err(Errno::NOENT) => {}
            // A mount point (bind mounts of the same device too): leave it
            // and everything under it, and say so.
            Err(Errno::XDEV) => {
                self.fail_here(depth, Some(&name), FailedOp::MountPoint, Errno::XDEV)
            }
            Err(e) => self.fail_here(depth, Some(&name), FailedOp::Open, e),
        }
    }

    fn push(&mut self, fd: OwnedFd, name: CString, round: u32) {
        self.stack.push(Frame {
            fd: Slot::Open(fd),
            name,
            resume: None,
            round,
            failed: false,
        });
        self.first_open = self.first_open.max(1);
        // Frames [first_open, len) are open; close the shallowest when over.
        while self.stack.len() - self.first_open > self.options.fd_ring {
            let frame = &mut self.stack[self.first_open];
            if let Slot::Open(fd) = &frame.fd {
                match Identity::of(fd.as_fd()) {
                    Ok(id) => frame.fd = Slot::Closed(id),
                    // Cannot record who it is, so cannot safely close it:
                    // keep it open (one more fd) rather than trust `..`.
                    Err(_) => break,
                }
            }
            self.first_open += 1;
        }
    }

    /// The current directory's listing is done: go back to its parent and
    /// remove it there. Returns `false` when the walk must stop.
    fn ascend(&mut self) -> bool {
        let child = self.stack.pop().expect("ascend below the top");
        let depth = self.stack.len() - 1;
        let child_fd = match child.fd {
            Slot::Open(fd) => fd,
            _ => unreachable!("the current frame is always open"),
        };
        if let Slot::Closed(id) = self.stack[depth].fd {
            match reopen_parent(child_fd.as_fd(), id) {
                Ok(fd) => {
                    self.stack[depth].fd = Slot::Open(fd);
                    self.first_open = depth;
                }
                // The parent cannot be verified: `..` is another directory
                // now, or cannot even be opened (under Landlock, a subtree
                // moved outside the prefixes gets EACCES here). Stop.
                Err(err) => {
                    let errno = match err {
                        ReopenError::Moved => Errno::XDEV,
                        ReopenError::Io(e) => e,
                    };
                    self.stack.push(Frame {
                        fd: Slot::Open(child_fd),
                        ..child
                    });
                    let depth = self.stack.len() - 1;
                    let path = rel(&self.stack, depth, None);
                    self.report
                        .fail(FailedOp::Moved, errno.raw_os_error(), || path);
                    return false;
                }
            }
        }
        drop(child_fd);
        if child.failed {
            self.stack[depth].failed = true;
            return true;
        }
        let parent = self.fd_of(depth);
        match unlinkat(parent, &child.name, AtFlags::REMOVEDIR) {
            Ok(()) => self.report.stats.entries += 1,
            // Moved away or removed by someone else meanwhile.
            Err(Errno::NOENT) => {}
            // Refilled while we emptied it: list it again, a bounded number
            // of times, so a tree that keeps growing cannot hold us forever.
            Err(Errno::NOTEMPTY) | Err(Errno::EXIST)
                if child.round + 1 < self.options.max_rounds =>
            {
                match open_child(parent, &child.name) {
                    Ok(fd) => self.push(fd, child.name, child.round + 1),
                    Err(Errno::NOENT) => {}
                    Err(e) => self.fail_here(depth, Some(&child.name), FailedOp::Open, e),
                }
            }
            Err(Errno::NOTEMPTY) | Err(Errno::EXIST) => self.fail_here(
                depth,
                Some(&child.name),
                FailedOp::KeptGrowing,
                Errno::NOTEMPTY,
            ),
            Err(e) => self.fail_here(depth, Some(&child.name), FailedOp::Rmdir, e),
        }
        true
    }

    fn fail_here(&mut self, depth: usize, name: Option<&CStr>, op: FailedOp, e: Errno) {
        let path = rel(&self.stack, depth, name);
        self.report.fail(op, e.raw_os_error(), || path);
        self.stack[depth].failed = true;
    }
}

/// The fd of a frame that is (or is about to be) listed.
fn frame_fd<'a>(frame: &'a Frame, top: BorrowedFd<'a>) -> BorrowedFd<'a> {
    match &frame.fd {
        Slot::Open(fd) => fd.as_fd(),
        Slot::Top => top,
        // `ascend` re-opens a frame before it becomes current.
        Slot::Closed(_) => unreachable!("walk reached a closed frame"),
    }
}

/// The path of `name` (or of the directory at `depth`) relative to the
/// top, for failure reports.
fn rel(stack: &[Frame], depth: usize, name: Option<&CStr>) -> Vec<u8> {
    let mut path = Vec::new();
    for frame in &stack[1..=depth] {
        path.extend_from_slice(frame.name.as_bytes());
        path.push(b'/');
    }
    match name {
        Some(name) => path.extend_from_slice(name.to_bytes()),
        None => {
            path.pop();
        }
    }
    path
}

/// Unlink one non-directory without opening it (a FIFO or device is never
/// opened, a hardlink's target is never modified). Returns bytes freed.
pub(super) fn unlink_entry(
    dir: BorrowedFd<'_>,
    name: &CStr,
    kind: FileType,
    count_bytes: bool,
) -> Result<u64, Errno> {
    let mut bytes = 0;
    if count_bytes && matches!(kind, FileType::RegularFile | FileType::Unknown) {
        if let Ok(st) = statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            // Only the last link frees the blocks.
            if st.st_nlink == 1 && FileType::from_raw_mode(st.st_mode) == FileType::RegularFile {
                bytes = u64::try_from(st.st_blocks).unwrap_or(0) * 512;
            }
        }
    }
    unlinkat(dir, name, AtFlags::empty())?;
    Ok(bytes)
}
