//! The iterative walk that empties a directory tree.
//!
//! Depth-first, with an explicit stack instead of recursion (no stack
//! exhaustion, CVE-2021-3997). Only the deepest [`WalkOptions::fd_ring`]
//! directories hold an open fd; a shallower one is closed after recording
//! its identity and re-opened through `..` of its child when the walk comes
//! back up, checked against that identity, as GNU rm's fd ring does. So fds
//! stay constant at any depth.
//!
//! Work is proportional to the tree: each directory's listing is read once.
//! The names of the subdirectories in a chunk already read are kept in its
//! frame (within [`PENDING_BUDGET`] bytes for the whole walk) and dealt with
//! one by one, each first with a plain `rmdir`, so an empty one costs one
//! syscall. Only over the budget does a frame fall back to descending at
//! the first subdirectory and re-reading its listing from the cookie after
//! it when it comes back. Memory is one listing buffer, the budget, and one
//! small frame per level, whatever the width.
//!
//! Deep trees are flattened as they go: Landlock checks each operation by
//! walking from its directory up to the rule (the prefix), so an operation
//! at depth *d* costs O(*d*) and a chain would be quadratic. When the walk
//! is about to descend [`FLATTEN_AT`] levels below its top, it first moves
//! the child (a directory it opened and checked) up to a new uniquely named
//! entry of the top, a *chunk*, and deals with it from there later. Every
//! operation then stays within [`FLATTEN_AT`] levels of the top, so a chain
//! costs linear time and constant memory; `max_depth` still counts levels
//! as the tenant built them.
//!
//! Inside the parallel fan-out a walk also shares its work: while another
//! worker is idle, it hands about half of the subdirectory names its
//! current directory holds to that worker (see [`super::steal`]), and
//! leaves a directory whose handed-out subdirectories are still being
//! worked on for the fan-out's final pass rather than listing it again.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::fs::{fstat, openat2, seek, unlinkat, AtFlags, FileType, Mode, OFlags, RawDir};
use rustix::fs::{renameat_with, RenameFlags, ResolveFlags, SeekFrom};
use rustix::io::Errno;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use vmrm_proto::{Cause, FailedOp, Limit};

use super::descend::{open_child, open_owned_child, pass_cap, reopen_parent, EnterError, Identity};
use super::descend::{Opened, ReopenError};
use super::steal::{at_least, split_point, Pending, Share, MIN_SIBLINGS};
use super::{Owners, Report};

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
    /// Report the bytes freed: `fstat` each regular file through an
    /// `O_PATH` fd that cannot cross a mount, before unlinking it.
    pub count_bytes: bool,
    /// Whose directories below the top may be entered (invariant 8).
    pub owners: Owners,
    /// End the walk with `no_progress` when it removed nothing this long.
    pub no_progress: Duration,
}

/// Size of the one getdents buffer the walk reuses at every level.
const LISTING_BUFFER: usize = 32 * 1024;

/// Bytes of subdirectory names the frames of one walk keep, at most (one
/// name may go over). A chunk of the listing holds at most about this many
/// bytes of names (32 KiB of dirents), so a few levels of wide directories
/// fit; beyond it a frame falls back to re-reading from a cookie.
pub(super) const PENDING_BUDGET: usize = 128 * 1024;

/// Levels below its top the walk descends in place; a directory deeper than
/// that is first moved up to a chunk directly under the top. Under Landlock
/// every operation costs time in proportion to its distance from the
/// prefix, so this bounds that cost; it is below the fd ring, so a chain is
/// never re-opened through `..` either.
pub(super) const FLATTEN_AT: usize = 16;

/// Chunks waiting to be dealt with, at most (16 bytes each). Over this the
/// walk descends in place, as it did before flattening.
const MAX_CHUNKS: usize = 8192;

/// Names a chunk move tries when its name is taken (by the tenant, or by a
/// concurrent removal of the same tree) before descending in place.
const CHUNK_TRIES: u32 = 8;

/// The start of every chunk's name.
const CHUNK_PREFIX: &str = ".vmrm-";

/// Numbers chunks, unique within this process.
static NEXT_CHUNK: AtomicU64 = AtomicU64::new(0);

/// The name of chunk `n`: the number hashed with a key random to this
/// process, so a tenant watching its tree cannot predict the next names and
/// take them all beforehand to make the walk descend in place (and pay
/// Landlock's quadratic cost again).
fn chunk_name(n: u64) -> CString {
    static KEY: OnceLock<RandomState> = OnceLock::new();
    let hashed = KEY.get_or_init(RandomState::new).hash_one(n);
    // Hex digits and ASCII only: no NUL.
    CString::new(format!("{CHUNK_PREFIX}{hashed:016x}")).unwrap_or_default()
}

/// A subtree moved up to the top, to be emptied and removed from there.
struct Moved {
    /// Its name under the top is `chunk_name(n)`.
    n: u64,
    /// Its depth below the top where the tenant built it.
    level: usize,
}

/// How often (in entries and descents) the clock is checked.
const CLOCK_CHECK_EVERY: u32 = 256;

/// One directory on the path from the top to where the walk is.
struct Frame {
    fd: Slot,
    /// Device and inode from the `fstat` at open, to check a re-open.
    id: Identity,
    /// Its name in the parent (empty for the top).
    name: CString,
    /// Levels below the top where the tenant built it (moving it up to a
    /// chunk does not change this), for `max_depth`.
    level: usize,
    /// The d_off cookie after the last entry consumed: where a re-opened fd
    /// resumes its listing.
    cookie: u64,
    /// The fd's own position is not `cookie` (re-opened, or a chunk left
    /// half-read): seek there before the next read.
    seek: bool,
    /// The listing reached its end this round.
    listed: bool,
    /// Subdirectories already listed, not yet dealt with; each name is
    /// followed by a NUL.
    pending: Vec<u8>,
    /// Listings so far (a refilled directory is listed again).
    round: u32,
    /// Entries this listing pass may still yield before the directory
    /// counts as one that keeps growing.
    pass_left: u64,
    /// Something beneath could not be removed, so this directory cannot be
    /// either; its own `rmdir` failure would only repeat that.
    failed: bool,
    /// Held while subdirectories it published are being worked on by
    /// other workers (see [`super::steal`]).
    published: Option<Arc<Pending>>,
    /// Something beneath is still being worked on by another worker: left
    /// for the final sequential pass, not a failure.
    deferred: bool,
}

impl Frame {
    fn new(
        fd: Slot,
        id: Identity,
        name: CString,
        level: usize,
        round: u32,
        pass_cap: u64,
    ) -> Frame {
        Frame {
            fd,
            id,
            name,
            level,
            cookie: 0,
            seek: false,
            listed: false,
            pending: Vec::new(),
            round,
            pass_left: pass_cap,
            failed: false,
            published: None,
            deferred: false,
        }
    }
}

enum Slot {
    Open(OwnedFd),
    /// Closed to bound fds; re-opened through `..` and checked against the
    /// frame's identity.
    Closed,
    /// The top directory: borrowed from the caller, always open.
    Top,
}

/// What reading one chunk of a listing came to.
enum Chunk {
    /// More may follow.
    More,
    /// The listing reached its end (or cannot go on).
    End,
    /// Stop the whole walk (deadline, no progress).
    Abort,
}

/// What a walk may take as known about its top's listing when it starts.
#[derive(Debug, Clone, Copy)]
pub enum Listing {
    /// Opened and never read since: at its start, with the `st_size` that
    /// the `fstat` at the open reported. Spares a rewind and a second
    /// `fstat` (two syscalls of the twenty a typical workdir costs).
    Unread { size: i64 },
    /// Maybe read before (an earlier pass): rewind, and ask its size again.
    Read,
}

impl Listing {
    /// Bring the listing to its start; `false` when it cannot be.
    pub(super) fn rewind(self, dir: BorrowedFd<'_>) -> bool {
        match self {
            Listing::Unread { .. } => true,
            Listing::Read => seek(dir, SeekFrom::Start(0)).is_ok(),
        }
    }

    /// The directory's size, which bounds how much one pass may list.
    pub(super) fn size(self, dir: BorrowedFd<'_>) -> i64 {
        match self {
            Listing::Unread { size } => size,
            Listing::Read => fstat(dir).map_or(0, |st| st.st_size),
        }
    }
}

/// Empty the directory `top` (remove everything inside it, not `top` itself),
/// its listing as `start` says. Returns `true` when nothing is left inside.
pub fn empty_tree(
    top: BorrowedFd<'_>,
    start: Listing,
    options: &WalkOptions,
    report: &mut Report,
) -> bool {
    empty_subtree(top, start, 0, None, options, report)
}

/// A walk that shares its work with idle workers (see [`super::steal`]).
pub(super) struct Stealing<'a> {
    pub share: &'a dyn Share,
    /// The walk's top relative to the removal's top (for failure reports
    /// from what others take).
    pub base: Vec<u8>,
    /// The token of the directory this walk's top was stolen from, if any:
    /// what this walk publishes holds it too.
    pub inherit: Option<Arc<Pending>>,
}

/// Empty `top`, `level` levels below the removal's top, publishing
/// subdirectories to idle workers when `stealing` says how. Returns `true`
/// when nothing is left inside; `false` also when something published is
/// still being worked on (not a failure: no report, and the fan-out's
/// final pass meets what is left).
pub(super) fn empty_subtree(
    top: BorrowedFd<'_>,
    start: Listing,
    level: usize,
    stealing: Option<Stealing<'_>>,
    options: &WalkOptions,
    report: &mut Report,
) -> bool {
    let cap = pass_cap(start.size(top));
    let mut first = Frame::new(
        Slot::Top,
        Identity::default(),
        CString::default(),
        level,
        0,
        cap,
    );
    // The caller may have listed the top already: seek unless it says not.
    first.seek = matches!(start, Listing::Read);
    let now = Instant::now();
    let mut walk = Walk {
        top,
        stack: vec![first],
        chunks: Vec::new(),
        first_open: 0,
        buf: Vec::with_capacity(LISTING_BUFFER),
        pending_bytes: 0,
        options,
        stealing,
        clock: Clock {
            ticks: 0,
            progress_at: now,
            progress_entries: report.stats.entries,
        },
        report,
    };
    walk.run()
}

struct Walk<'a> {
    top: BorrowedFd<'a>,
    stack: Vec<Frame>,
    /// Subtrees moved up to the top, not yet dealt with (newest last).
    chunks: Vec<Moved>,
    /// Frames below this index hold `Slot::Closed` (or are the top).
    first_open: usize,
    buf: Vec<u8>,
    /// Sum of the frames' `pending` lengths.
    pending_bytes: usize,
    options: &'a WalkOptions,
    stealing: Option<Stealing<'a>>,
    report: &'a mut Report,
    clock: Clock,
}

/// When the walk last checked the time, and last made progress.
struct Clock {
    ticks: u32,
    progress_at: Instant,
    progress_entries: u64,
}

impl Clock {
    /// Count one unit of work; every [`CLOCK_CHECK_EVERY`] units, check the
    /// deadline and whether anything was removed lately. Returns the failure
    /// that ends the walk, if any.
    fn tick(&mut self, options: &WalkOptions, entries: u64) -> Option<Limit> {
        self.ticks = self.ticks.wrapping_add(1);
        if self.ticks % CLOCK_CHECK_EVERY != 0 {
            return None;
        }
        let now = Instant::now();
        if now >= options.deadline {
            return Some(Limit::Deadline);
        }
        if entries != self.progress_entries {
            self.progress_entries = entries;
            self.progress_at = now;
        } else if now.duration_since(self.progress_at) >= options.no_progress {
            return Some(Limit::NoProgress);
        }
        None
    }
}

impl Walk<'_> {
    fn run(&mut self) -> bool {
        loop {
            let depth = self.stack.len() - 1;
            // At the top, chunks come first: the listing or the pending
            // names may hold a chunk too, but by then it is gone (ENOENT).
            if depth == 0 {
                if let Some(chunk) = self.chunks.pop() {
                    if !self.enter_chunk(chunk) {
                        return false;
                    }
                    continue;
                }
            }
            if self.stealing.is_some() && !self.stack[depth].pending.is_empty() {
                self.offer(depth);
            }
            if let Some(name) = self.pop_pending(depth) {
                // Among siblings, try `rmdir` first: in a wide directory of
                // empty subdirectories that is all each one costs. An only
                // child (a chain) goes straight in: under Landlock every
                // `rmdir` walks up to the prefix, so a failed one per level
                // would make a deep chain half again as slow.
                let siblings = !self.stack[depth].pending.is_empty();
                if !self.enter(name, siblings) {
                    return false;
                }
                continue;
            }
            if !self.stack[depth].listed {
                match self.read_chunk(depth) {
                    Chunk::More => {}
                    Chunk::End => self.stack[depth].listed = true,
                    Chunk::Abort => return false,
                }
                continue;
            }
            if depth == 0 {
                let top = &self.stack[0];
                return !top.failed && !unfinished(top);
            }
            if !self.ascend() {
                return false;
            }
        }
    }

    /// Hand about half of the subdirectory names the frame at `depth`
    /// holds to idle workers, if any wait (the walk keeps the rest, and the
    /// last one at least). A wide directory met while the removal may
    /// still start a worker starts one, which will be hungry.
    fn offer(&mut self, depth: usize) {
        let Some(stealing) = &self.stealing else {
            return;
        };
        let share = stealing.share;
        let pool = share.pool();
        if !Pending::may_nest(stealing.inherit.as_ref()) {
            return;
        }
        let pending = &self.stack[depth].pending;
        if !pool.hungry() {
            if pool.may_grow() && at_least(pending, MIN_SIBLINGS) {
                share.more_hands();
            }
            return;
        }
        let Some(split) = split_point(pending, pool.room()) else {
            return;
        };
        let mut path = stealing.base.clone();
        let here = rel(&self.stack, depth, None);
        if !path.is_empty() && !here.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(&here);
        let inherit = stealing.inherit.clone();
        let frame = &mut self.stack[depth];
        let token = Arc::clone(
            frame
                .published
                .get_or_insert_with(|| Pending::under(inherit)),
        );
        let level = frame.level + 1;
        let fd = frame_fd(frame, self.top);
        if pool.publish(fd, path, level, token, &frame.pending[..split]) {
            frame.pending.drain(..split);
            self.pending_bytes -= split;
        }
    }

    fn fd_of(&self, depth: usize) -> BorrowedFd<'_> {
        frame_fd(&self.stack[depth], self.top)
    }

    /// The last subdirectory name the frame at `depth` holds, taken off it.
    fn pop_pending(&mut self, depth: usize) -> Option<CString> {
        let pending = &mut self.stack[depth].pending;
        let end = pending.len().checked_sub(1)?;
        let start = pending[..end]
            .iter()
            .rposition(|&b| b == 0)
            .map_or(0, |i| i + 1);
        let name = CString::new(&pending[start..end]).ok();
        self.pending_bytes -= pending.len() - start;
        pending.truncate(start);
        if pending.is_empty() {
            // A deep chain must not keep a buffer per level.
            *pending = Vec::new();
        }
        name
    }

    /// Read one chunk (one getdents) of the current directory's listing:
    /// unlink every non-directory, and keep the subdirectories' names in
    /// the frame to deal with next.
    fn read_chunk(&mut self, depth: usize) -> Chunk {
        if self.stack[depth].seek {
            let cookie = self.stack[depth].cookie;
            if let Err(e) = seek(self.fd_of(depth), SeekFrom::Start(cookie)) {
                self.fail_here(depth, None, FailedOp::ReadDir, e);
                return Chunk::End;
            }
            self.stack[depth].seek = false;
        }
        let mut pending = std::mem::take(&mut self.stack[depth].pending);
        let mut cookie = self.stack[depth].cookie;
        let mut pass_left = self.stack[depth].pass_left;
        let mut seek_after = false;
        let mut failed = false;
        // Split borrows: the listing borrows `buf`, the actions `report`.
        let Walk {
            buf,
            report,
            options,
            clock,
            stack,
            top,
            pending_bytes,
            ..
        } = self;
        let fd = frame_fd(&stack[depth], *top);
        let mut listing = RawDir::new(fd, buf.spare_capacity_mut());
        let mut first = true;
        let chunk = loop {
            // One getdents per call: the first `next` reads, the rest of the
            // buffer is consumed, and the next read waits for the next call.
            if !first && listing.is_buffer_empty() {
                break Chunk::More;
            }
            first = false;
            let entry = match listing.next() {
                None => break Chunk::End,
                Some(Ok(entry)) => entry,
                Some(Err(e)) => {
                    let path = rel(stack, depth, None);
                    report.fail(FailedOp::ReadDir, Cause::Errno(e.raw_os_error()), || path);
                    failed = true;
                    break Chunk::End;
                }
            };
            let name = entry.file_name();
            if name == c"." || name == c".." {
                cookie = entry.next_entry_cookie();
                continue;
            }
            if let Some(limit) = clock.tick(options, report.stats.entries) {
                let path = rel(stack, depth, Some(name));
                report.fail(FailedOp::ReadDir, Cause::Limit(limit), || path);
                failed = true;
                break Chunk::Abort;
            }
            // Entries keep coming after the cursor faster than they go: a
            // tree that keeps growing. Stop listing it (the helper's own
            // bound); what is left of it stays, and is why.
            if pass_left == 0 {
                let path = rel(stack, depth, None);
                let cause = Cause::Limit(Limit::KeptGrowing);
                report.fail(FailedOp::ReadDir, cause, || path);
                failed = true;
                break Chunk::End;
            }
            pass_left -= 1;
            let mut is_dir = entry.file_type() == FileType::Directory;
            if !is_dir {
                match unlink_entry(fd, name, entry.file_type(), options.count_bytes) {
                    Ok(bytes) => {
                        report.stats.entries += 1;
                        report.stats.bytes += bytes;
                    }
                    // d_type was stale or unknown: it is a directory after all.
                    Err(Errno::ISDIR) => is_dir = true,
                    // Gone already (someone else removed it): nothing to do.
                    Err(Errno::NOENT) => {}
                    Err(e) => {
                        // EBUSY: something is mounted on it; never crossed.
                        let cause = if e == Errno::BUSY {
                            Cause::Limit(Limit::MountPoint)
                        } else {
                            Cause::Errno(e.raw_os_error())
                        };
                        let path = rel(stack, depth, Some(name));
                        report.fail(FailedOp::Unlink, cause, || path);
                        failed = true;
                    }
                }
            }
            cookie = entry.next_entry_cookie();
            if is_dir {
                let over = *pending_bytes + name.to_bytes().len() >= PENDING_BUDGET;
                pending.extend_from_slice(name.to_bytes_with_nul());
                *pending_bytes += name.to_bytes_with_nul().len();
                if over {
                    // Over budget: deal with what is held, then re-read the
                    // rest of this chunk from the cookie after this entry.
                    seek_after = !listing.is_buffer_empty();
                    break Chunk::More;
                }
            }
        };
        let frame = &mut stack[depth];
        frame.pending = pending;
        frame.cookie = cookie;
        frame.pass_left = pass_left;
        frame.seek = seek_after;
        if failed {
            frame.failed = true;
        }
        chunk
    }

    /// Deal with the subdirectory `name` of the current directory: with
    /// `try_rmdir`, `rmdir` it if empty (one syscall); else open it and make
    /// it current. Returns `false` when the walk must stop.
    fn enter(&mut self, name: CString, try_rmdir: bool) -> bool {
        let depth = self.stack.len() - 1;
        if let Some(limit) = self.clock.tick(self.options, self.report.stats.entries) {
            let path = rel(&self.stack, depth, Some(&name));
            self.report
                .fail(FailedOp::Open, Cause::Limit(limit), || path);
            self.stack[depth].failed = true;
            return false;
        }
        let parent = self.fd_of(depth);
        // An empty directory is removed whoever owns it: its parent's owner
        // (the peer or a runner, or the walk would not be here) could
        // remove it too.
        if try_rmdir {
            match unlinkat(parent, &name, AtFlags::REMOVEDIR) {
                Ok(()) => {
                    self.report.stats.entries += 1;
                    return true;
                }
                Err(Errno::NOENT) => return true,
                // Not empty, a mount point, not ours: see what opening says.
                Err(_) => {}
            }
        }
        self.descend(name);
        true
    }

    /// Open the child `name` of the current directory and make it current,
    /// or, [`FLATTEN_AT`] levels below the top, move it up to a chunk.
    fn descend(&mut self, name: CString) {
        let depth = self.stack.len() - 1;
        let level = self.stack[depth].level;
        if level >= self.options.max_depth {
            self.limit_here(depth, Some(&name), FailedOp::Open, Limit::Depth);
            return;
        }
        let parent = self.fd_of(depth);
        match open_owned_child(parent, &name, &self.options.owners) {
            Ok(opened) => {
                if depth >= FLATTEN_AT && self.chunks.len() < MAX_CHUNKS {
                    if let Some(n) = self.move_up(depth, &name, opened.id) {
                        self.chunks.push(Moved {
                            n,
                            level: level + 1,
                        });
                        return;
                    }
                }
                self.push(opened, name, level + 1, 0);
            }
            Err(e) => self.not_entered(depth, name, e),
        }
    }

    /// Move the child `name` of the directory at `depth`, which the walk
    /// has opened and checked as `id` (owner included, invariant 8), up to
    /// a new chunk directly under the top. Returns the chunk's number, or
    /// `None` to descend in place.
    ///
    /// Only ever into the walk's own top, so a moved subtree stays inside
    /// the tree being removed. `RENAME_NOREPLACE` never replaces an entry:
    /// a taken name (by chance the tenant's own, or a concurrent removal's
    /// chunk) just means another number. The rename goes by name, so the
    /// name may have been swapped since the open (for a symlink, a file,
    /// another user's directory): what arrived is checked against `id` and,
    /// if it is anything else, moved back where it was.
    fn move_up(&self, depth: usize, name: &CStr, id: Identity) -> Option<u64> {
        let parent = self.fd_of(depth);
        for _ in 0..CHUNK_TRIES {
            let n = NEXT_CHUNK.fetch_add(1, Ordering::Relaxed);
            let chunk = chunk_name(n);
            match renameat_with(parent, name, self.top, &chunk, RenameFlags::NOREPLACE) {
                Ok(()) => {}
                Err(Errno::EXIST) => continue,
                // EXDEV: a Landlock without REFER (or a mount in between);
                // anything else: descend in place, as without flattening.
                Err(_) => return None,
            }
            let arrived = open_child(self.top, &chunk)
                .and_then(|fd| Identity::of(fd.as_fd()))
                .ok();
            if arrived == Some(id) {
                return Some(n);
            }
            // Not what we checked: put it back (NOREPLACE: if the name was
            // taken again meanwhile, it stays a chunk, and is met as an
            // ordinary entry of the top, owner check and all).
            let _ = renameat_with(self.top, &chunk, parent, name, RenameFlags::NOREPLACE);
            return None;
        }
        None
    }

    /// Open a chunk under the top and make it current. Returns `false` when
    /// the walk must stop.
    fn enter_chunk(&mut self, chunk: Moved) -> bool {
        let name = chunk_name(chunk.n);
        if let Some(limit) = self.clock.tick(self.options, self.report.stats.entries) {
            let path = rel(&self.stack, 0, Some(&name));
            self.report
                .fail(FailedOp::Open, Cause::Limit(limit), || path);
            self.stack[0].failed = true;
            return false;
        }
        // Checked again like any entry of the top: the chunk was moved as
        // a directory we had checked, but the tenant can rename entries of
        // its own top.
        match open_owned_child(self.top, &name, &self.options.owners) {
            Ok(opened) => self.push(opened, name, chunk.level, 0),
            Err(e) => self.not_entered(0, name, e),
        }
        true
    }

    /// A child that could not be entered: say why, or deal with it.
    fn not_entered(&mut self, depth: usize, name: CString, err: EnterError) {
        let parent = self.fd_of(depth);
        match err {
            // Moved in from elsewhere (invariant 8): left as it is.
            EnterError::Foreign { owner } => {
                let limit = Limit::ForeignOwner { owner };
                self.limit_here(depth, Some(&name), FailedOp::Open, limit);
            }
            // Swapped for a symlink or file since it was listed: unlink the
            // link itself, never what it points to.
            EnterError::Io(Errno::LOOP) | EnterError::Io(Errno::NOTDIR) => {
                match unlinkat(parent, &name, AtFlags::empty()) {
                    Ok(()) => self.report.stats.entries += 1,
                    Err(Errno::NOENT) => {}
                    Err(e) => self.fail_here(depth, Some(&name), FailedOp::Unlink, e),
                }
            }
            EnterError::Io(Errno::NOENT) => {}
            // A mount point (bind mounts of the same device too): leave it
            // and everything under it, and say so.
            EnterError::Io(Errno::XDEV) => {
                self.limit_here(depth, Some(&name), FailedOp::Open, Limit::MountPoint)
            }
            EnterError::Io(e) => self.fail_here(depth, Some(&name), FailedOp::Open, e),
        }
    }

    fn push(&mut self, opened: Opened, name: CString, level: usize, round: u32) {
        let Opened { fd, id, pass_cap } = opened;
        self.stack
            .push(Frame::new(Slot::Open(fd), id, name, level, round, pass_cap));
        self.first_open = self.first_open.max(1);
        // Frames [first_open, len) are open; close the shallowest when over.
        // Its identity is known from the `fstat` at open.
        while self.stack.len() - self.first_open > self.options.fd_ring {
            self.stack[self.first_open].fd = Slot::Closed;
            self.first_open += 1;
        }
    }

    /// The current directory's listing is done: go back to its parent and
    /// remove it there. Returns `false` when the walk must stop.
    fn ascend(&mut self) -> bool {
        let child = self.stack.pop().expect("ascend below the top");
        self.pending_bytes -= child.pending.len();
        let depth = self.stack.len() - 1;
        let child_fd = match child.fd {
            Slot::Open(fd) => fd,
            _ => unreachable!("the current frame is always open"),
        };
        if let Slot::Closed = self.stack[depth].fd {
            match reopen_parent(child_fd.as_fd(), self.stack[depth].id) {
                Ok(fd) => {
                    let parent = &mut self.stack[depth];
                    parent.fd = Slot::Open(fd);
                    // A fresh fd lists from the start: resume at the cookie.
                    parent.seek = true;
                    self.first_open = depth;
                }
                // The parent cannot be verified: `..` is another directory
                // now, or cannot even be opened (under Landlock, a subtree
                // moved outside the prefixes gets EACCES here). Stop.
                Err(err) => {
                    let cause = match err {
                        ReopenError::Moved => Cause::Limit(Limit::Moved),
                        ReopenError::Io(e) => Cause::Errno(e.raw_os_error()),
                    };
                    self.stack.push(Frame {
                        fd: Slot::Open(child_fd),
                        ..child
                    });
                    let depth = self.stack.len() - 1;
                    let path = rel(&self.stack, depth, None);
                    self.report.fail(FailedOp::Reopen, cause, || path);
                    return false;
                }
            }
        }
        drop(child_fd);
        if child.failed {
            self.stack[depth].failed = true;
            return true;
        }
        // Another worker is still in there: removing it now would find it
        // not empty and list it again alongside that worker.
        if child.deferred || child.published.as_ref().is_some_and(Pending::outstanding) {
            self.stack[depth].deferred = true;
            return true;
        }
        let parent = self.fd_of(depth);
        match unlinkat(parent, &child.name, AtFlags::REMOVEDIR) {
            Ok(()) => self.report.stats.entries += 1,
            // Moved away or removed by someone else meanwhile.
            Err(Errno::NOENT) => {}
            // Refilled while we emptied it: list it again, a bounded number
            // of times, so a tree that keeps growing cannot hold us forever.
            // It is opened (and its owner checked) afresh: a directory
            // swapped in under the same name is judged on its own.
            Err(Errno::NOTEMPTY) | Err(Errno::EXIST)
                if child.round + 1 < self.options.max_rounds =>
            {
                match open_owned_child(parent, &child.name, &self.options.owners) {
                    Ok(opened) => self.push(opened, child.name, child.level, child.round + 1),
                    Err(e) => self.not_entered(depth, child.name, e),
                }
            }
            Err(Errno::NOTEMPTY) | Err(Errno::EXIST) => self.limit_here(
                depth,
                Some(&child.name),
                FailedOp::Rmdir,
                Limit::KeptGrowing,
            ),
            Err(e) => self.fail_here(depth, Some(&child.name), FailedOp::Rmdir, e),
        }
        true
    }

    fn fail_here(&mut self, depth: usize, name: Option<&CStr>, op: FailedOp, e: Errno) {
        self.failed_here(depth, name, op, Cause::Errno(e.raw_os_error()));
    }

    fn limit_here(&mut self, depth: usize, name: Option<&CStr>, op: FailedOp, limit: Limit) {
        self.failed_here(depth, name, op, Cause::Limit(limit));
    }

    fn failed_here(&mut self, depth: usize, name: Option<&CStr>, op: FailedOp, cause: Cause) {
        let path = rel(&self.stack, depth, name);
        self.report.fail(op, cause, || path);
        self.stack[depth].failed = true;
    }
}

/// Whether something below `frame` is still being worked on elsewhere.
fn unfinished(frame: &Frame) -> bool {
    frame.deferred || frame.published.as_ref().is_some_and(Pending::outstanding)
}

/// The fd of a frame that is (or is about to be) listed.
fn frame_fd<'a>(frame: &'a Frame, top: BorrowedFd<'a>) -> BorrowedFd<'a> {
    match &frame.fd {
        Slot::Open(fd) => fd.as_fd(),
        Slot::Top => top,
        // `ascend` re-opens a frame before it becomes current.
        Slot::Closed => unreachable!("walk reached a closed frame"),
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

/// Unlink one non-directory without opening it for I/O (a FIFO or device is
/// never opened, a hardlink's target is never modified). Returns bytes freed.
pub(super) fn unlink_entry(
    dir: BorrowedFd<'_>,
    name: &CStr,
    kind: FileType,
    count_bytes: bool,
) -> Result<u64, Errno> {
    let bytes = if count_bytes && matches!(kind, FileType::RegularFile | FileType::Unknown) {
        bytes_of(dir, name)
    } else {
        0
    };
    unlinkat(dir, name, AtFlags::empty())?;
    Ok(bytes)
}

/// The blocks a regular file's last link frees, or 0. Never by path: an
/// `O_PATH` fd opened with RESOLVE_NO_XDEV fails (EXDEV) on a mount point
/// before reaching the mounted filesystem, so a FUSE server that never
/// answers cannot block us in its GETATTR; `fstat` then asks the inode we
/// hold, on our own filesystem.
fn bytes_of(dir: BorrowedFd<'_>, name: &CStr) -> u64 {
    let resolve = ResolveFlags::BENEATH
        | ResolveFlags::NO_SYMLINKS
        | ResolveFlags::NO_XDEV
        | ResolveFlags::NO_MAGICLINKS;
    let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let Ok(fd) = openat2(dir, name, flags, Mode::empty(), resolve) else {
        return 0;
    };
    match fstat(fd.as_fd()) {
        // Only the last link frees the blocks.
        Ok(st)
            if st.st_nlink == 1 && FileType::from_raw_mode(st.st_mode) == FileType::RegularFile =>
        {
            u64::try_from(st.st_blocks).unwrap_or(0) * 512
        }
        _ => 0,
    }
}
