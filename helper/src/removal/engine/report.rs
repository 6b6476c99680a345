//! What a removal did and what it could not do, with the failure list capped.

use vmrm_proto::{
    Cause, FailedOp, Failure, Limit, RemovalStats, MAX_REPORTED_FAILURES, MAX_REPORTED_PATH_LEN,
};

/// Counts and the first [`MAX_REPORTED_FAILURES`] failures of one removal.
#[derive(Debug, Default)]
pub struct Report {
    pub stats: RemovalStats,
    pub failures: Vec<Failure>,
    /// Failures beyond the listed ones.
    pub omitted: u64,
    /// Subdirectories a worker took from another's walk (work stealing).
    pub stolen: u64,
}

impl Report {
    /// Total failures, listed or not.
    #[cfg_attr(not(any(test, feature = "testing")), allow(dead_code))]
    pub fn failure_count(&self) -> u64 {
        self.failures.len() as u64 + self.omitted
    }

    /// Record a failure. `path` is only called while the list has room, so a
    /// million failures cost a million counter increments, not path builds.
    ///
    /// A failure that ended the walk (a moved directory, a tree that kept
    /// growing, a limit) is always listed, displacing the last ordinary one,
    /// so the reason a removal stopped is never among the omitted.
    pub fn fail(&mut self, op: FailedOp, cause: Cause, path: impl FnOnce() -> Vec<u8>) {
        if self.failures.len() >= MAX_REPORTED_FAILURES {
            let ends_walk = moved(op) || stops_removal(cause) || cause == KEPT_GROWING;
            self.omitted += 1;
            if !ends_walk || self.failures.pop().is_none() {
                return;
            }
        }
        let (path, path_truncated) = cut_path(path());
        self.failures.push(Failure {
            path,
            path_truncated,
            op,
            cause,
        });
    }

    /// Fold a sub-report (from a parallel worker) into this one.
    pub fn merge(&mut self, other: Report) {
        self.stats.entries += other.stats.entries;
        self.stats.bytes += other.stats.bytes;
        self.omitted += other.omitted;
        self.stolen += other.stolen;
        for f in other.failures {
            if self.failures.len() < MAX_REPORTED_FAILURES {
                self.failures.push(f);
            } else {
                self.omitted += 1;
            }
        }
    }
}

const KEPT_GROWING: Cause = Cause::Limit(Limit::KeptGrowing);

/// A failure going back up to a parent: the subtree moved (or cannot be
/// verified), which ends that walk.
pub fn moved(op: FailedOp) -> bool {
    op == FailedOp::Reopen
}

/// A limit of the whole removal (its deadline, depth or lack of progress):
/// it stops every worker and the removal.
pub fn stops_removal(cause: Cause) -> bool {
    matches!(
        cause,
        Cause::Limit(Limit::Deadline | Limit::Depth | Limit::NoProgress)
    )
}

/// Keep the last [`MAX_REPORTED_PATH_LEN`] bytes: the deep end of a path
/// says more than its start.
fn cut_path(mut path: Vec<u8>) -> (Vec<u8>, bool) {
    if path.len() <= MAX_REPORTED_PATH_LEN {
        return (path, false);
    }
    let cut = path.len() - MAX_REPORTED_PATH_LEN;
    path.drain(..cut);
    (path, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_the_list_and_counts_the_rest() {
        let mut r = Report::default();
        for _ in 0..MAX_REPORTED_FAILURES + 10 {
            r.fail(FailedOp::Unlink, Cause::Errno(1), || b"x".to_vec());
        }
        assert_eq!(r.failures.len(), MAX_REPORTED_FAILURES);
        assert_eq!(r.omitted, 10);
        assert_eq!(r.failure_count(), MAX_REPORTED_FAILURES as u64 + 10);
    }

    #[test]
    fn the_reason_a_walk_stopped_is_always_listed() {
        let mut r = Report::default();
        for _ in 0..MAX_REPORTED_FAILURES + 10 {
            r.fail(FailedOp::Unlink, Cause::Errno(13), || b"x".to_vec());
        }
        r.fail(FailedOp::Reopen, Cause::Limit(Limit::Moved), || {
            b"moved".to_vec()
        });
        assert_eq!(r.failures.len(), MAX_REPORTED_FAILURES);
        assert_eq!(r.failures.last().unwrap().op, FailedOp::Reopen);
        assert_eq!(r.failure_count(), MAX_REPORTED_FAILURES as u64 + 11);
    }

    #[test]
    fn long_paths_keep_their_tail() {
        let mut r = Report::default();
        let mut long = vec![b'a'; MAX_REPORTED_PATH_LEN];
        long.extend(b"/tail");
        r.fail(FailedOp::Rmdir, Cause::Errno(39), || long.clone());
        assert!(r.failures[0].path_truncated);
        assert!(r.failures[0].path.ends_with(b"/tail"));
        assert_eq!(r.failures[0].path.len(), MAX_REPORTED_PATH_LEN);
    }
}
