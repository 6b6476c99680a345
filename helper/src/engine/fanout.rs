//! Parallel fan-out: when the top directory holds many subdirectories, a few
//! worker threads empty and remove them side by side, each with the same
//! race-safe sequential walk (its own fd ring, rooted at the subdirectory's
//! fd). A final sequential pass over the top then removes the rest and is
//! the one that reports failures, so results read the same either way.
//!
//! Parallelism across directories pays (the kernel's per-directory locks
//! are what serialize removal); inside one flat directory it does not, so a
//! top with few subdirectories goes straight to the sequential walk.

use std::ffi::CString;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use rustix::fs::{seek, unlinkat, AtFlags, FileType, RawDir, SeekFrom};

use vmrm_proto::FailedOp;

use super::descend::open_child;
use super::walk::unlink_entry;
use super::{empty_tree, Report, WalkOptions};

/// Fan out only over at least this many subdirectories: below it, thread
/// start-up costs more than it saves (a typical VM workdir has one or two).
const MIN_SUBDIRS: usize = 8;

/// Subdirectory names collected for the workers, at most; any beyond are
/// left to the sequential pass. Bounds memory whatever the width.
const MAX_SUBDIRS: usize = 65_536;

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
/// Returns `true` when nothing is left inside.
pub fn empty_tree_parallel(
    top: BorrowedFd<'_>,
    options: &WalkOptions,
    report: &mut Report,
) -> bool {
    let workers = workers();
    if workers > 1 {
        let subdirs = first_pass(top, options, report);
        if subdirs.len() >= MIN_SUBDIRS {
            fan_out(top, &subdirs, options, workers.min(subdirs.len()), report);
        }
    }
    empty_tree(top, options, report)
}

/// One listing of the top: non-directories are unlinked on the way (so the
/// listing is never wasted on a flat directory), directories collected for
/// the workers. Failures are left for the sequential pass to meet and report.
fn first_pass(top: BorrowedFd<'_>, options: &WalkOptions, report: &mut Report) -> Vec<CString> {
    let mut names = Vec::new();
    if seek(top, SeekFrom::Start(0)).is_err() {
        return names;
    }
    let mut buf = [MaybeUninit::<u8>::uninit(); 32 * 1024];
    let mut listing = RawDir::new(top, &mut buf);
    while let Some(Ok(entry)) = listing.next() {
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        if entry.file_type() == FileType::Directory {
            if names.len() < MAX_SUBDIRS {
                names.push(name.to_owned());
            }
            continue;
        }
        if let Ok(bytes) = unlink_entry(top, name, entry.file_type(), options.count_bytes) {
            report.stats.entries += 1;
            report.stats.bytes += bytes;
        }
    }
    names
}

/// Workers take subdirectories off a shared index until none are left.
fn fan_out(
    top: BorrowedFd<'_>,
    subdirs: &[CString],
    options: &WalkOptions,
    workers: usize,
    report: &mut Report,
) {
    let next = AtomicUsize::new(0);
    // The fd budget is shared: each worker gets its slice of the ring.
    let per_worker = WalkOptions {
        fd_ring: (options.fd_ring / workers).max(2),
        ..options.clone()
    };
    let reports: Vec<Report> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| scope.spawn(|| work(top, subdirs, &next, &per_worker)))
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    for r in reports {
        report.merge(r);
    }
}

/// One worker: returns what it removed. Its ordinary failures are not kept:
/// the sequential pass meets whatever it left and reports that. A moved
/// subtree is kept, since it is no longer there for that pass to see.
fn work(
    top: BorrowedFd<'_>,
    subdirs: &[CString],
    next: &AtomicUsize,
    options: &WalkOptions,
) -> Report {
    let mut total = Report::default();
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(name) = subdirs.get(i) else {
            break;
        };
        // Same opening rules as the walk: a symlink or mount point swapped
        // in fails here and is left to the sequential pass.
        let Ok(dir) = open_child(top, name) else {
            continue;
        };
        let mut report = Report::default();
        let emptied = empty_tree(dir.as_fd(), options, &mut report);
        drop(dir);
        if emptied && unlinkat(top, name, AtFlags::REMOVEDIR).is_ok() {
            report.stats.entries += 1;
        }
        total.stats.entries += report.stats.entries;
        total.stats.bytes += report.stats.bytes;
        for f in report
            .failures
            .into_iter()
            .filter(|f| f.op == FailedOp::Moved)
        {
            let mut path = name.as_bytes().to_vec();
            path.push(b'/');
            path.extend_from_slice(&f.path);
            total.fail(f.op, f.errno, || path);
        }
    }
    total
}
