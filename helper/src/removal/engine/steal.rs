//! Work stealing below the top: the subdirectories a busy worker's walk
//! hands to idle workers, and the pool the workers wait on.
//!
//! A walk publishes only when a worker is hungry (an atomic counter): half
//! of the subdirectory names its current directory holds, with a `dup` of
//! that directory's fd, in one [`Group`]. An idle worker takes one [`Unit`]
//! (the group and one name) at a time and deals with it exactly as the
//! walk would have: opened relative to the group's fd with the same rules
//! (owner, no symlink, no mount), emptied with the same walk, removed
//! relative to that fd. Bounded: at most [`QUEUE_BYTES`] of names wait,
//! and at most `fd_cap` group fds are open at once (counted against the
//! removal's fd budget).
//!
//! The publishing frame keeps a [`Pending`] token that every group taken
//! from it, and every token published below a unit of it, holds: while
//! anything stolen from a directory is still being worked on, its walk
//! does not try to remove it (it would find it not empty and list it
//! again, racing the thief); it leaves it for the final sequential pass.

use std::collections::VecDeque;
use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rustix::io::fcntl_dupfd_cloexec;

/// Bytes of names waiting to be taken, at most (one name may go over).
pub(super) const QUEUE_BYTES: usize = 64 * 1024;

/// A directory's walk meeting at least this many subdirectories at once
/// starts another worker (when the removal may have one): below it, a
/// thread costs more than it saves, and a chain never starts one.
pub(super) const MIN_SIBLINGS: usize = 8;

/// How long an idle worker sleeps before looking again, at most: wake-ups
/// come through the condvar; this only bounds a missed one.
const IDLE_WAIT: Duration = Duration::from_millis(20);

/// What a walk needs to share its work: the pool, and a way to start one
/// more worker (the fan-out's scope).
pub(super) trait Share {
    fn pool(&self) -> &Pool;
    /// Start one more worker, if the removal may still have one.
    fn more_hands(&self);
}

/// Held (through an `Arc`) by a directory that published subdirectories
/// and by everything working on them, down to thieves' own publications:
/// more than one holder means that directory is not done with yet.
pub(super) struct Pending {
    _above: Option<Arc<Pending>>,
    /// Tokens above this one: see [`MAX_NESTING`].
    nesting: usize,
}

/// Tokens above one another, at most: workers stealing back and forth down
/// a deep tree would otherwise chain a token per level (memory, and a
/// recursive drop as deep as the tree). A walk this deep in stolen work
/// keeps its subdirectories to itself.
const MAX_NESTING: usize = 1024;

impl Pending {
    pub(super) fn under(above: Option<Arc<Pending>>) -> Arc<Pending> {
        let nesting = above.as_ref().map_or(0, |p| p.nesting + 1);
        Arc::new(Pending {
            _above: above,
            nesting,
        })
    }

    /// Whether a walk of work stolen below `token` may publish in turn.
    pub(super) fn may_nest(token: Option<&Arc<Pending>>) -> bool {
        token.is_none_or(|p| p.nesting < MAX_NESTING)
    }

    /// Whether anything stolen from the directory holding `token` is still
    /// being worked on.
    pub(super) fn outstanding(token: &Arc<Pending>) -> bool {
        if Arc::strong_count(token) > 1 {
            return true;
        }
        // The thieves' removals happen before they drop their holds.
        fence(Ordering::Acquire);
        false
    }
}

/// Subdirectories published from one directory: that directory's fd (a
/// dup, so the walk's fd ring may close its own), where it is, and the
/// token of the frame that published them.
pub(super) struct Group {
    fd: OwnedFd,
    /// Relative to the removal's top (its tail, for failure reports).
    pub path: Vec<u8>,
    /// Levels below the top of the subdirectories (for `max_depth`).
    pub level: usize,
    pub token: Arc<Pending>,
    fds: Arc<AtomicUsize>,
}

impl Group {
    pub(super) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.fds.fetch_sub(1, Ordering::Release);
    }
}

/// One subdirectory to steal.
pub(super) struct Unit {
    pub group: Arc<Group>,
    pub name: CString,
}

/// The queue of published units, and who waits on it.
pub(super) struct Pool {
    state: Mutex<State>,
    wake: Condvar,
    /// Workers waiting for a unit: walks publish only when this is not 0.
    hungry: AtomicUsize,
    /// Bytes of names queued (read without the lock, for [`Pool::room`]).
    queued: AtomicUsize,
    /// Group fds open, and at most.
    fds: Arc<AtomicUsize>,
    fd_cap: usize,
    /// Workers that may still be started.
    spare: AtomicUsize,
    /// The removal's limits were met: every worker stops.
    stop: AtomicBool,
}

struct State {
    queue: VecDeque<Unit>,
    /// Workers not waiting (the one creating the pool counts).
    active: usize,
    /// Nothing is queued and nobody works: no unit will come any more.
    done: bool,
}

impl Pool {
    /// A pool for the calling worker, which may start `spare` more, with
    /// `fd_cap` fds for groups.
    pub(super) fn new(fd_cap: usize, spare: usize) -> Pool {
        Pool {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                active: 1,
                done: false,
            }),
            wake: Condvar::new(),
            hungry: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            fds: Arc::new(AtomicUsize::new(0)),
            fd_cap,
            spare: AtomicUsize::new(spare),
            stop: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A worker that panicked left the queue consistent (every change
        // is one push or pop): go on with it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn hungry(&self) -> bool {
        self.hungry.load(Ordering::Relaxed) > 0
    }

    /// Bytes of names the queue may still take.
    pub(super) fn room(&self) -> usize {
        QUEUE_BYTES.saturating_sub(self.queued.load(Ordering::Relaxed))
    }

    /// Take one spare worker slot (for [`Share::more_hands`]).
    pub(super) fn take_spare(&self) -> bool {
        self.spare
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }

    pub(super) fn may_grow(&self) -> bool {
        self.spare.load(Ordering::Relaxed) > 0
    }

    pub(super) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Stop every worker: the removal's limits were met.
    pub(super) fn halt(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let _state = self.lock();
        self.wake.notify_all();
    }

    /// Publish the NUL-terminated `names` of subdirectories of `dir` (at
    /// `path`, its subdirectories `level` levels below the top). Returns
    /// `false`, publishing nothing, when no fd may be spent on it.
    pub(super) fn publish(
        &self,
        dir: BorrowedFd<'_>,
        path: Vec<u8>,
        level: usize,
        token: Arc<Pending>,
        names: &[u8],
    ) -> bool {
        if self.fds.fetch_add(1, Ordering::Acquire) >= self.fd_cap {
            self.fds.fetch_sub(1, Ordering::Release);
            return false;
        }
        let fd = match fcntl_dupfd_cloexec(dir, 0) {
            Ok(fd) => fd,
            Err(_) => {
                self.fds.fetch_sub(1, Ordering::Release);
                return false;
            }
        };
        let group = Arc::new(Group {
            fd,
            path,
            level,
            token,
            fds: Arc::clone(&self.fds),
        });
        let mut state = self.lock();
        if state.done {
            return false;
        }
        for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
            if let Ok(name) = CString::new(name) {
                state.queue.push_back(Unit {
                    group: Arc::clone(&group),
                    name,
                });
            }
        }
        self.queued.fetch_add(names.len(), Ordering::Relaxed);
        self.wake.notify_all();
        true
    }

    /// A worker started by [`Share::more_hands`] joins; `false` when there
    /// is nothing left to do.
    pub(super) fn enter(&self) -> bool {
        let mut state = self.lock();
        if state.done || self.stopped() {
            return false;
        }
        state.active += 1;
        true
    }

    /// The next unit for a worker with nothing else to do, waiting while
    /// other workers may still publish. `None` once nothing is queued and
    /// nobody works, or the removal stopped: the worker is then done.
    pub(super) fn take(&self) -> Option<Unit> {
        let mut state = self.lock();
        loop {
            if self.stopped() {
                state.done = true;
                self.wake.notify_all();
                return None;
            }
            if let Some(unit) = state.queue.pop_front() {
                let bytes = unit.name.as_bytes_with_nul().len();
                self.queued.fetch_sub(bytes, Ordering::Relaxed);
                return Some(unit);
            }
            if state.done {
                return None;
            }
            state.active -= 1;
            if state.active == 0 {
                state.done = true;
                self.wake.notify_all();
                return None;
            }
            self.hungry.fetch_add(1, Ordering::Relaxed);
            state = match self.wake.wait_timeout(state, IDLE_WAIT) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
            self.hungry.fetch_sub(1, Ordering::Relaxed);
            state.active += 1;
        }
    }
}

/// Whether the NUL-terminated `names` hold at least `n` names (reads at
/// most `n` names' bytes).
pub(super) fn at_least(names: &[u8], n: usize) -> bool {
    names.iter().filter(|&&b| b == 0).take(n).count() >= n
}

/// Where to split the NUL-terminated `names` to publish about half of them
/// (within `room` bytes, one name may go over) and keep at least the last
/// one: the end of the published part, or `None` to publish nothing.
pub(super) fn split_point(names: &[u8], room: usize) -> Option<usize> {
    let last_start = names[..names.len().checked_sub(1)?]
        .iter()
        .rposition(|&b| b == 0)?
        + 1;
    let want = (names.len() / 2).min(room).max(1);
    let end = names[want - 1..].iter().position(|&b| b == 0)? + want;
    Some(end.min(last_start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_the_last_name_and_cuts_at_a_boundary() {
        assert_eq!(split_point(b"a\0", 100), None);
        assert_eq!(split_point(b"a\0b\0", 100), Some(2));
        assert_eq!(split_point(b"aaaa\0b\0", 100), Some(5));
        assert_eq!(split_point(b"a\0b\0c\0d\0", 100), Some(4));
        assert_eq!(split_point(b"a\0b\0c\0d\0", 1), Some(2));
        assert!(at_least(b"a\0b\0", 2));
        assert!(!at_least(b"a\0b\0", 3));
    }
}
