//! Parallel fan-out: a few worker threads empty and remove the top's
//! subdirectories side by side, each with the same race-safe sequential
//! walk (its own fd ring, rooted at the subdirectory's fd, with the same
//! owner rule), and steal work from each other at every level below: a
//! walk that holds several subdirectory names while another worker is idle
//! hands it some (see [`super::steal`]), so a top with one subdirectory
//! holding a thousand is spread as well as a top holding a thousand. A
//! final sequential pass over the top then removes the rest and reports
//! ordinary failures, so results read the same at any width; a subtree
//! that moved away while a worker was in it is no longer there for that
//! pass to meet, so the worker's `moved` failure is kept and makes the
//! removal fail, as it would at any width. So do a worker's ordinary
//! failures when that pass finds nothing left: what failed was moved out
//! of the tree meanwhile (out of the prefixes, where Landlock refuses every
//! change), and the sequential walk would have reported it too, rather
//! than `removed` (CVE-2002-0435). A worker that meets the removal's
//! deadline or lack of progress stops them all, and the removal, as the
//! sequential walk would.
//!
//! Parallelism across directories pays (the kernel's per-directory locks
//! are what serialize removal); inside one flat directory it does not, so
//! a top without subdirectories goes straight to the sequential walk, and
//! the calling thread starts with the first subdirectories alone: more
//! workers are started when the top holds [`MIN_SUBDIRS`] subdirectories,
//! or a walk below meets as many siblings at once.
//!
//! The fd budget is shared: a quarter of it for the directories whose
//! subdirectories were published, the rest split between the workers'
//! rings. The top's subdirectory names are handed to the workers in
//! batches of at most [`BATCH_BYTES`], read from the top's listing as it
//! goes, and at most [`super::steal::QUEUE_BYTES`] of names wait to be
//! stolen, so memory stays flat whatever the width.

use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::Scope;
use std::time::Instant;

use rustix::fs::{unlinkat, AtFlags, FileType, RawDir};

use vmrm_proto::Failure;

use super::descend::{open_owned_child, pass_cap};
use super::report::{moved, stops_removal};
use super::steal::{Pending, Pool, Share};
use super::walk::{empty_subtree, unlink_entry, Listing, Stealing};
use super::{empty_tree, Report, WalkOptions};

/// Start every worker at once only over at least this many subdirectories
/// of the top: below it, thread start-up costs more than it saves (a
/// typical VM workdir has one or two).
const MIN_SUBDIRS: usize = 8;

/// Bytes of subdirectory names read ahead for the workers, at most (plus
/// one listing chunk). Bounds memory whatever the width.
const BATCH_BYTES: usize = 64 * 1024;

/// Worker threads per removal, at most.
const MAX_WORKERS: usize = 4;

fn workers() -> usize {
    static WORKERS: OnceLock<usize> = OnceLock::new();
    *WORKERS.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(MAX_WORKERS)
    })
}

/// Empty `top`, in parallel across its subdirectories when that pays.
/// Returns `true` when nothing is left inside and nothing moved away.
pub fn empty_tree_parallel(
    top: BorrowedFd<'_>,
    start: Listing,
    options: &WalkOptions,
    report: &mut Report,
) -> bool {
    empty_tree_with(top, start, options, report, workers())
}

/// [`empty_tree_parallel`] with `workers` threads at most (the tests' way to
/// have several on any machine).
pub(super) fn empty_tree_with(
    top: BorrowedFd<'_>,
    mut start: Listing,
    options: &WalkOptions,
    report: &mut Report,
    workers: usize,
) -> bool {
    let mut ended = Ended::default();
    // The workers' ordinary failures, held aside for the sequential pass.
    let mut aside = Report::default();
    // The top's own walk (few subdirectories) left nothing.
    let mut walked = false;
    if workers > 1 && start.rewind(top) {
        let mut buf = [MaybeUninit::<u8>::uninit(); 32 * 1024];
        let mut listing = RawDir::new(top, &mut buf);
        let mut batch = Batch::default();
        // The same bounds as the walk's: a top that keeps refilling, or a
        // passed deadline, ends the fan-out and leaves the rest (and the
        // report) to the sequential walk.
        let mut left = pass_cap(start.size(top));
        // Read from now on: the sequential pass, if any, rewinds.
        start = Listing::Read;
        let mut wide = false;
        loop {
            let more = batch.fill(&mut listing, top, options, &mut left, report);
            // The first batch decides: with many subdirectories, every
            // worker starts on them at once.
            wide |= batch.len() >= MIN_SUBDIRS;
            if wide {
                let (e, _) = fan_out(top, Some(&batch), options, workers, report, &mut aside);
                ended.add(e);
            } else if batch.len() > 0 {
                // A few: this thread walks the top itself (chunks go under
                // the top, as in the sequential walk) and starts others
                // only when a walk meets a wide directory below.
                let (e, all) = fan_out(top, None, options, workers, report, &mut aside);
                ended.add(e);
                walked = all;
            }
            if !more || !wide || ended.stop {
                break;
            }
            batch.clear();
        }
        // A flat top (a typical VM workdir) read to its end with every entry
        // unlinked is empty as far as one pass can tell, which is all the
        // sequential pass would tell too: its listing is skipped (four
        // syscalls of a dozen). Whatever came in meanwhile makes the top's
        // rmdir fail (ENOTEMPTY), and the caller goes round again.
        walked |= !wide && batch.len() == 0 && batch.listed && !batch.kept;
    }
    // A worker's walk ended by the removal's own limits: so is the removal,
    // as a sequential walk would stop (its reason is in the report).
    if ended.stop {
        return false;
    }
    let emptied = walked || empty_tree(top, start, options, report);
    // Nothing left to meet, yet a worker failed: what it failed on is no
    // longer in the tree (moved out meanwhile). Said, as the sequential walk
    // would; when the pass left something, it reported that itself, and the
    // worker's failures would mostly be the same ones again.
    let failed_aside = aside.failure_count() > 0;
    if emptied && failed_aside {
        report.merge(aside);
    }
    emptied && !ended.moved && !failed_aside
}

/// What ended some worker's walk early.
#[derive(Default, Clone, Copy)]
struct Ended {
    /// A subtree moved away while a worker was in it.
    moved: bool,
    /// The deadline, or no progress: the whole removal stops.
    stop: bool,
}

impl Ended {
    fn add(&mut self, other: Ended) {
        self.moved |= other.moved;
        self.stop |= other.stop;
    }
}

/// Failures a worker keeps (the sequential pass would not meet them
/// again, or should not spend the time to): they ended its walk.
fn ends_walk(f: &Failure) -> bool {
    moved(f.op) || stops_removal(f.cause)
}

/// Subdirectory names for the workers, NUL-separated in one buffer.
#[derive(Default)]
struct Batch {
    names: Vec<u8>,
    starts: Vec<usize>,
    /// The top's listing was read to its end.
    listed: bool,
    /// Some entry other than a subdirectory was not unlinked.
    kept: bool,
}

impl Batch {
    fn len(&self) -> usize {
        self.starts.len()
    }

    fn get(&self, i: usize) -> Option<&CStr> {
        let start = *self.starts.get(i)?;
        CStr::from_bytes_until_nul(&self.names[start..]).ok()
    }

    fn clear(&mut self) {
        self.names.clear();
        self.starts.clear();
    }

    /// Read the top's listing on, whole chunks at a time, until the batch
    /// holds [`BATCH_BYTES`] of names or the listing ends, or `left`
    /// entries or the deadline run out (returns `false` then). Non-directories are unlinked on the way (so the listing is
    /// never wasted on a flat directory); failures are left for the
    /// sequential pass to meet and report.
    fn fill(
        &mut self,
        listing: &mut RawDir<'_, BorrowedFd<'_>>,
        top: BorrowedFd<'_>,
        options: &WalkOptions,
        left: &mut u64,
        report: &mut Report,
    ) -> bool {
        loop {
            if *left == 0 || (*left % 1024 == 0 && Instant::now() >= options.deadline) {
                return false;
            }
            *left -= 1;
            let entry = match listing.next() {
                Some(Ok(entry)) => entry,
                None => {
                    self.listed = true;
                    return false;
                }
                Some(Err(_)) => return false,
            };
            let name = entry.file_name();
            if name != c"." && name != c".." {
                if entry.file_type() == FileType::Directory {
                    self.starts.push(self.names.len());
                    self.names.extend_from_slice(name.to_bytes_with_nul());
                } else if let Ok(bytes) =
                    unlink_entry(top, name, entry.file_type(), options.count_bytes)
                {
                    report.stats.entries += 1;
                    report.stats.bytes += bytes;
                } else {
                    self.kept = true;
                }
            }
            // Stop only between chunks, so the fd's position is exactly
            // where the next batch starts: nothing is read twice.
            if listing.is_buffer_empty() && self.names.len() >= BATCH_BYTES {
                return true;
            }
        }
    }
}

/// What the workers of one batch share.
struct Job<'a> {
    top: BorrowedFd<'a>,
    subdirs: &'a Batch,
    /// The next of `subdirs` to take.
    next: AtomicUsize,
    /// With each worker's slice of the fd ring.
    options: WalkOptions,
    pool: Pool,
    /// Each worker's (kept, aside) reports, as it ends.
    results: Mutex<Vec<(Report, Report)>>,
}

/// A worker's handle on the job, and on the scope to start more in.
#[derive(Clone, Copy)]
struct Hands<'scope, 'env> {
    scope: &'scope Scope<'scope, 'env>,
    job: &'env Job<'env>,
}

impl Share for Hands<'_, '_> {
    fn pool(&self) -> &Pool {
        &self.job.pool
    }

    fn more_hands(&self) {
        if !self.job.pool.take_spare() {
            return;
        }
        let hands = *self;
        // No thread (EAGAIN): the others do the work.
        let _ = std::thread::Builder::new().spawn_scoped(self.scope, move || {
            if hands.job.pool.enter() && catch_unwind(AssertUnwindSafe(|| work(hands))).is_err() {
                // A bug: the others must not wait for this worker. What it
                // left is met by the final pass.
                hands.job.pool.halt();
            }
        });
    }
}

/// With `subdirs`, the top's subdirectories there are taken off a shared
/// index by up to `workers` workers, this thread being one; without, this
/// thread walks the top itself, and starts others when a walk meets a
/// wide directory. Then they steal from each other until nothing is left
/// (or one of them hits the removal's limits). Returns what ended walks
/// early, and whether the top's own walk left it empty; the workers'
/// ordinary failures go to `aside`.
fn fan_out(
    top: BorrowedFd<'_>,
    subdirs: Option<&Batch>,
    options: &WalkOptions,
    workers: usize,
    report: &mut Report,
    aside: &mut Report,
) -> (Ended, bool) {
    let none = Batch::default();
    let (subdirs, start) = match subdirs {
        Some(batch) => (batch, workers),
        None => (&none, 1),
    };
    let workers = workers.max(1);
    // The fd budget is shared: a quarter for published directories, and
    // each worker gets its slice of the rest for its ring and the
    // subdirectory it is in.
    let published = (options.fd_ring / 4).max(1);
    let ring = (options.fd_ring.saturating_sub(published) / workers).saturating_sub(1);
    let job = Job {
        top,
        subdirs,
        next: AtomicUsize::new(0),
        options: WalkOptions {
            fd_ring: ring.max(2),
            ..options.clone()
        },
        pool: Pool::new(published, workers - 1),
        results: Mutex::new(Vec::new()),
    };
    let walked = std::thread::scope(|scope| {
        let hands = Hands { scope, job: &job };
        let walked = catch_unwind(AssertUnwindSafe(|| {
            for _ in 1..start.min(subdirs.len()) {
                hands.more_hands();
            }
            let walked = start == 1 && walk_top(&hands);
            work(hands);
            walked
        }));
        // A bug here: the workers must not wait for this thread before
        // the scope lets the panic go on.
        if walked.is_err() {
            job.pool.halt();
        }
        walked
    });
    let walked = walked.unwrap_or_else(|panic| resume_unwind(panic));
    let reports = job
        .results
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    let mut ended = Ended::default();
    for (r, others) in reports {
        for f in &r.failures {
            ended.moved |= moved(f.op);
            ended.stop |= stops_removal(f.cause);
        }
        report.merge(r);
        aside.merge(others);
    }
    (ended, walked)
}

/// Walk the top itself, publishing to the workers it starts; its failures
/// sorted as a worker's. Returns whether it left the top empty.
fn walk_top(hands: &Hands<'_, '_>) -> bool {
    let job = hands.job;
    let stealing = Stealing {
        share: hands,
        base: Vec::new(),
        inherit: None,
    };
    let mut walk = Report::default();
    let emptied = empty_subtree(
        job.top,
        Listing::Read,
        0,
        Some(stealing),
        &job.options,
        &mut walk,
    );
    let (mut kept, mut others) = (Report::default(), Report::default());
    sort(walk, None, &job.pool, &mut kept, &mut others);
    let mut results = job.results.lock().unwrap_or_else(PoisonError::into_inner);
    results.push((kept, others));
    emptied
}

/// One worker: takes the top's subdirectories, then stolen ones, until
/// none are left. Records what it removed and, apart, its ordinary
/// failures: the sequential pass meets whatever it left and reports that
/// (see [`empty_tree_parallel`] for when they are kept). A moved subtree is
/// kept, since it is no longer there for that pass to see, and so is the
/// removal's deadline or lack of progress, which stops every worker
/// (through the pool) and the removal.
fn work(hands: Hands<'_, '_>) {
    let job = hands.job;
    let mut kept = Report::default();
    let mut others = Report::default();
    loop {
        let i = job.next.fetch_add(1, Ordering::Relaxed);
        if let Some(name) = job.subdirs.get(i).filter(|_| !job.pool.stopped()) {
            let path = name.to_bytes().to_vec();
            let unit = (job.top, name, 1, path, None);
            deal_with(&hands, unit, &mut kept, &mut others);
            continue;
        }
        let Some(stolen) = job.pool.take() else {
            break;
        };
        kept.stolen += 1;
        let group = &stolen.group;
        let mut path = group.path.clone();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(stolen.name.to_bytes());
        let inherit = Some(Arc::clone(&group.token));
        let unit = (
            group.fd(),
            stolen.name.as_c_str(),
            group.level,
            path,
            inherit,
        );
        deal_with(&hands, unit, &mut kept, &mut others);
    }
    let mut results = job.results.lock().unwrap_or_else(PoisonError::into_inner);
    results.push((kept, others));
}

/// A subdirectory to deal with: its parent's fd, its name, its level below
/// the top, its path from the top, and the token of the directory it was
/// stolen from.
type Unit<'a> = (
    BorrowedFd<'a>,
    &'a CStr,
    usize,
    Vec<u8>,
    Option<Arc<Pending>>,
);

/// Empty and remove one subdirectory, as the walk would have.
fn deal_with(hands: &Hands<'_, '_>, unit: Unit<'_>, kept: &mut Report, others: &mut Report) {
    let (parent, name, level, path, inherit) = unit;
    let options = &hands.job.options;
    // An empty subdirectory costs one `rmdir`, as in the walk (whoever
    // owns it: its parent's owner, the peer or a runner, could remove it).
    match unlinkat(parent, name, AtFlags::REMOVEDIR) {
        Ok(()) => {
            kept.stats.entries += 1;
            return;
        }
        Err(rustix::io::Errno::NOENT) => return,
        Err(_) => {}
    }
    // Same opening rules as the walk, owner included: a symlink, mount
    // point or foreign directory fails here and is left to its parent's
    // walk or the sequential pass, which reports it.
    let Ok(opened) = open_owned_child(parent, name, &options.owners) else {
        return;
    };
    // Reports keep a path's tail: so does the base of what is published.
    let mut base = path.clone();
    base.drain(..base.len().saturating_sub(vmrm_proto::MAX_REPORTED_PATH_LEN));
    let stealing = Stealing {
        share: hands,
        base,
        inherit,
    };
    let dir = opened.fd;
    let mut report = Report::default();
    let emptied = empty_subtree(
        dir.as_fd(),
        Listing::Read,
        level,
        Some(stealing),
        options,
        &mut report,
    );
    drop(dir);
    if emptied && unlinkat(parent, name, AtFlags::REMOVEDIR).is_ok() {
        report.stats.entries += 1;
    }
    sort(report, Some(&path), &hands.job.pool, kept, others);
}

/// Sort a walk's report (of the subdirectory at `path`, or of the top):
/// what it removed and what ended it go to `kept`, its ordinary failures
/// to `others` (see [`empty_tree_parallel`]). The removal's limits stop
/// every worker.
fn sort(report: Report, path: Option<&[u8]>, pool: &Pool, kept: &mut Report, others: &mut Report) {
    kept.stats.entries += report.stats.entries;
    kept.stats.bytes += report.stats.bytes;
    others.omitted += report.omitted;
    for f in report.failures {
        let mut at = Vec::new();
        if let Some(path) = path {
            at.extend_from_slice(path);
            at.push(b'/');
        }
        at.extend_from_slice(&f.path);
        if !ends_walk(&f) {
            others.fail(f.op, f.cause, || at);
            continue;
        }
        if !moved(f.op) {
            pool.halt();
        }
        kept.fail(f.op, f.cause, || at);
    }
}
