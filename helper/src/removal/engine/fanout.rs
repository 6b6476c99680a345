//! Parallel fan-out: when the top directory holds many subdirectories, a few
//! worker threads empty and remove them side by side, each with the same
//! race-safe sequential walk (its own fd ring, rooted at the subdirectory's
//! fd, with the same owner rule). A final sequential pass over the top then
//! removes the rest and reports ordinary failures, so results read the same
//! either way; a subtree that moved away while a worker was in it is no
//! longer there for that pass to meet, so the worker's `moved` failure is
//! kept and makes the removal fail, as it would at any width. So do the
//! worker's ordinary failures when that pass finds nothing left: what failed
//! was moved out of the tree meanwhile (out of the prefixes, where Landlock
//! refuses every change), and the sequential walk would have reported it
//! too, rather than `removed` (CVE-2002-0435). A worker that
//! meets the removal's deadline or lack of progress stops them all, and the
//! removal, as the sequential walk would.
//!
//! Parallelism across directories pays (the kernel's per-directory locks
//! are what serialize removal); inside one flat directory it does not, so a
//! top with few subdirectories goes straight to the sequential walk.
//!
//! The top's subdirectory names are handed to the workers in batches of at
//! most [`BATCH_BYTES`], read from the top's listing as it goes, so memory
//! stays flat whatever the width.

use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use rustix::fs::{fstat, seek, unlinkat, AtFlags, FileType, RawDir, SeekFrom};

use vmrm_proto::Failure;

use super::descend::{open_owned_child, pass_cap};
use super::report::{moved, stops_removal};
use super::walk::unlink_entry;
use super::{empty_tree, Report, WalkOptions};

/// Fan out only over at least this many subdirectories: below it, thread
/// start-up costs more than it saves (a typical VM workdir has one or two).
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
    options: &WalkOptions,
    report: &mut Report,
) -> bool {
    let workers = workers();
    let mut ended = Ended::default();
    // The workers' ordinary failures, held aside for the sequential pass.
    let mut aside = Report::default();
    if workers > 1 && seek(top, SeekFrom::Start(0)).is_ok() {
        let mut buf = [MaybeUninit::<u8>::uninit(); 32 * 1024];
        let mut listing = RawDir::new(top, &mut buf);
        let mut batch = Batch::default();
        let mut fanned = false;
        // The same bounds as the walk's: a top that keeps refilling, or a
        // passed deadline, ends the fan-out and leaves the rest (and the
        // report) to the sequential walk.
        let mut left = pass_cap(fstat(top).map_or(0, |st| st.st_size));
        loop {
            let more = batch.fill(&mut listing, top, options, &mut left, report);
            // The first batch decides: a top with few subdirectories is
            // left to the sequential walk alone.
            if batch.len() >= MIN_SUBDIRS || (fanned && batch.len() > 0) {
                fanned = true;
                ended.add(fan_out(
                    top,
                    &batch,
                    options,
                    workers.min(batch.len()),
                    report,
                    &mut aside,
                ));
            }
            if !more || !fanned || ended.stop {
                break;
            }
            batch.clear();
        }
    }
    // A worker's walk ended by the removal's own limits: so is the removal,
    // as a sequential walk would stop (its reason is in the report).
    if ended.stop {
        return false;
    }
    let emptied = empty_tree(top, options, report);
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
            let Some(Ok(entry)) = listing.next() else {
                return false;
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

/// Workers take subdirectories off a shared index until none are left (or
/// one of them hits the removal's limits). Returns what ended walks early;
/// the workers' ordinary failures go to `aside`.
fn fan_out(
    top: BorrowedFd<'_>,
    subdirs: &Batch,
    options: &WalkOptions,
    workers: usize,
    report: &mut Report,
    aside: &mut Report,
) -> Ended {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    // The fd budget is shared: each worker gets its slice of the ring.
    let per_worker = WalkOptions {
        fd_ring: (options.fd_ring / workers).max(2),
        ..options.clone()
    };
    let reports: Vec<(Report, Report)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| scope.spawn(|| work(top, subdirs, &next, &stop, &per_worker)))
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let mut ended = Ended::default();
    for (r, others) in reports {
        for f in &r.failures {
            ended.moved |= moved(f.op);
            ended.stop |= stops_removal(f.cause);
        }
        report.merge(r);
        aside.merge(others);
    }
    ended
}

/// One worker: returns what it removed, and, apart, its ordinary failures:
/// the sequential pass meets whatever it left and reports that (see
/// [`empty_tree_parallel`] for when they are kept). A moved subtree is kept,
/// since it is no longer there for that pass to see, and so is the
/// removal's deadline or lack of progress, which stops every worker
/// (through `stop`) and the removal.
fn work(
    top: BorrowedFd<'_>,
    subdirs: &Batch,
    next: &AtomicUsize,
    stop: &AtomicBool,
    options: &WalkOptions,
) -> (Report, Report) {
    let mut total = Report::default();
    let mut others = Report::default();
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(name) = subdirs.get(i) else {
            break;
        };
        // An empty subdirectory costs one `rmdir`, as in the walk (whoever
        // owns it: the peer owns the top, so could remove it too).
        match unlinkat(top, name, AtFlags::REMOVEDIR) {
            Ok(()) => {
                total.stats.entries += 1;
                continue;
            }
            Err(rustix::io::Errno::NOENT) => continue,
            Err(_) => {}
        }
        // Same opening rules as the walk, owner included: a symlink, mount
        // point or foreign directory fails here and is left to the
        // sequential pass, which reports it.
        let Ok(opened) = open_owned_child(top, name, &options.owners) else {
            continue;
        };
        let dir = opened.fd;
        let mut report = Report::default();
        let emptied = empty_tree(dir.as_fd(), options, &mut report);
        drop(dir);
        if emptied && unlinkat(top, name, AtFlags::REMOVEDIR).is_ok() {
            report.stats.entries += 1;
        }
        total.stats.entries += report.stats.entries;
        total.stats.bytes += report.stats.bytes;
        others.omitted += report.omitted;
        for f in report.failures {
            let mut path = name.to_bytes().to_vec();
            path.push(b'/');
            path.extend_from_slice(&f.path);
            if !ends_walk(&f) {
                others.fail(f.op, f.cause, || path);
                continue;
            }
            if !moved(f.op) {
                stop.store(true, Ordering::Relaxed);
            }
            total.fail(f.op, f.cause, || path);
        }
    }
    (total, others)
}
