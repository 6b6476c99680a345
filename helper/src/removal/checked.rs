//! The checked entry point: one remove request, judged by policy and carried
//! out by the engine.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{openat2, statx, AtFlags, Mode, OFlags, ResolveFlags, StatxAttributes};
use rustix::fs::{StatxFlags, CWD};
use rustix::io::Errno;
use vmrm_policy::{authorize_owner, Config, Limits, PeerCredentials};
use vmrm_proto::{Cause, DenyReason, FailedOp, Limit, Outcome};

use crate::removal::engine::{
    self, Listing, OpenTopError, Owners, Report, TopDir, TopRemoval, WalkOptions,
};

/// Directory fds of the configured prefixes, opened once at start (and on
/// reload), in the order of [`Config::prefixes`].
#[derive(Debug)]
pub struct PrefixDirs(Vec<OwnedFd>);

/// Fds of the top directory's ancestors the engine may hold besides the
/// current one; with the top, the prefix and the listing this keeps a
/// removal under 40 fds at any depth.
pub const FD_RING: usize = 32;

impl PrefixDirs {
    /// Open every prefix as an `O_PATH` directory fd, refusing symlinks
    /// anywhere in the path (a prefix is trusted config, but a symlink in it
    /// could be re-pointed after validation).
    pub fn open(config: &Config) -> Result<PrefixDirs, PrefixOpenError> {
        config
            .prefixes()
            .iter()
            .map(|p| {
                openat2(
                    CWD,
                    p.path(),
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                    ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
                )
                .map_err(|e| PrefixOpenError {
                    path: p.path().to_owned(),
                    error: e.into(),
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(PrefixDirs)
    }

    pub fn get(&self, index: usize) -> Option<BorrowedFd<'_>> {
        self.0.get(index).map(|fd| fd.as_fd())
    }

    /// For `check-config`: a sentence for each prefix that is not a mount
    /// point of its own (per `statx` on the fd, `STATX_ATTR_MOUNT_ROOT`).
    /// Such a prefix shares a filesystem with users' data, so a tenant can
    /// rename other users' directories into its workdirs; invariant 8 leaves
    /// them untouched, and a dedicated mount makes the rename fail (EXDEV).
    pub fn mount_warnings(&self, config: &Config) -> Vec<String> {
        self.0
            .iter()
            .zip(config.prefixes())
            .filter_map(|(fd, prefix)| {
                let st = statx(fd, c"", AtFlags::EMPTY_PATH, StatxFlags::empty()).ok()?;
                let known = st.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT);
                let own = st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT);
                (known && !own).then(|| {
                    format!(
                        "prefix {prefix} is not a filesystem of its own: tenants can rename \
                         other users' directories (a shared group's project) into their \
                         workdirs; vmrmd leaves those untouched and reports them \
                         (foreign_owner), but a dedicated mount for the prefix makes such \
                         renames fail outright (EXDEV)"
                    )
                })
            })
            .collect()
    }
}

/// A prefix directory could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open prefix {path:?}: {error}")]
pub struct PrefixOpenError {
    pub path: std::path::PathBuf,
    pub error: std::io::Error,
}

/// What one remove request leaves: its outcome, and the top directory's fd
/// when it was opened. The caller closes that fd once it has answered: the
/// kernel frees a removed directory's inode at its last close, which on ext4
/// took 0.2 to 2 ms, longer than the rest of a typical workdir's removal.
#[derive(Debug)]
pub struct Finished {
    pub outcome: Outcome,
    pub top: Option<OwnedFd>,
}

impl From<Outcome> for Finished {
    fn from(outcome: Outcome) -> Finished {
        Finished { outcome, top: None }
    }
}

/// Handle one remove request for `peer`, within `config.limits()`. Every
/// refusal happens before the first byte is removed.
pub fn remove(
    config: &Config,
    prefixes: &PrefixDirs,
    peer: &PeerCredentials,
    path: &[u8],
) -> Finished {
    let top = match open_authorized(config, prefixes, peer, path) {
        Ok(opened) => opened,
        Err(refused) => return refused.into(),
    };
    let (prefix, name, top) = top;
    // Invariant 8: below the top, only the peer's and the runners' own
    // directories are entered.
    let owners = Owners::new(peer.uid, config.runner_users());
    let outcome = remove_opened(config.limits(), &owners, prefix, &name, &top);
    Finished {
        outcome,
        top: Some(top.fd),
    }
}

/// The request's top directory, opened under its prefix and owned by the
/// peer; or the outcome that refuses it.
fn open_authorized<'p>(
    config: &Config,
    prefixes: &'p PrefixDirs,
    peer: &PeerCredentials,
    path: &[u8],
) -> Result<(BorrowedFd<'p>, CString, TopDir), Outcome> {
    // Invariant 1: `<prefix>/<one valid component>`, nothing else.
    let target = match config.target(path) {
        Ok(t) => t,
        Err(d) => return Err(denied(d.reason, d.message)),
    };
    let Some(prefix) = prefixes.get(target.prefix_index) else {
        // The policy and its prefix fds are swapped together on reload, so
        // this is an internal fault, not the client's.
        return Err(Outcome::Unavailable {
            message: "vmrmd's table of prefixes is out of date".into(),
        });
    };
    // The grammar admits no NUL, so this cannot fail; refuse rather than panic.
    let Ok(name) = CString::new(target.name) else {
        return Err(denied(DenyReason::BadName, "name contains NUL".into()));
    };

    let top = match engine::open_top(prefix, &name) {
        Ok(top) => top,
        Err(OpenTopError::NotFound) => return Err(Outcome::NotFound),
        Err(OpenTopError::NotDirectory) => {
            return Err(denied(
                DenyReason::NotDirectory,
                "not a directory (symlinks are never followed)".into(),
            ))
        }
        Err(OpenTopError::MountPoint) => {
            return Err(denied(DenyReason::MountPoint, "a mount point".into()))
        }
        Err(OpenTopError::Io(e)) => {
            let mut report = Report::default();
            report.fail(FailedOp::Open, Cause::Errno(e.raw_os_error()), Vec::new);
            return Err(failed(report));
        }
    };
    // Invariant 2: the peer owns the directory we hold, per fstat on its fd.
    if let Err(d) = authorize_owner(peer, top.owner) {
        return Err(denied(d.reason, d.message));
    }
    Ok((prefix, name, top))
}

/// Empty and remove a top directory already opened (and authorized) as
/// `name` under `prefix`, within `limits`, entering only directories of
/// `owners` (the top's owner and the runner users). Shared by requests and
/// the orphan sweeper.
pub fn remove_opened(
    limits: &Limits,
    owners: &Owners,
    prefix: BorrowedFd<'_>,
    name: &CStr,
    top: &TopDir,
) -> Outcome {
    // The deadline runs from when the removal starts, not from the request.
    let options = WalkOptions {
        max_rounds: limits.max_rounds(),
        deadline: crate::deadline::after(limits.removal_deadline()),
        fd_ring: FD_RING,
        max_depth: limits.max_depth(),
        count_bytes: limits.count_bytes(),
        owners: owners.clone(),
        no_progress: limits.no_progress(),
    };
    let mut report = Report::default();
    for round in 1..=limits.max_rounds() {
        let listing = if round == 1 {
            top.unread()
        } else {
            Listing::Read
        };
        if !engine::empty_tree_parallel(top.fd.as_fd(), listing, &options, &mut report) {
            return failed(report);
        }
        match engine::remove_top(prefix, name) {
            TopRemoval::Removed => {
                report.stats.entries += 1;
                return Outcome::Removed(report.stats);
            }
            // Someone renamed or removed the emptied directory meanwhile: it
            // is gone from the prefix either way.
            TopRemoval::AlreadyGone => return Outcome::Removed(report.stats),
            TopRemoval::LeftForOwner => return Outcome::Emptied(report.stats),
            // Refilled after we emptied it: go again, a bounded number of times.
            TopRemoval::Failed(Errno::NOTEMPTY) if round < limits.max_rounds() => continue,
            TopRemoval::Failed(Errno::NOTEMPTY) => {
                report.fail(FailedOp::Rmdir, Cause::Limit(Limit::KeptGrowing), Vec::new);
                return failed(report);
            }
            TopRemoval::Failed(e) => {
                report.fail(FailedOp::Rmdir, Cause::Errno(e.raw_os_error()), Vec::new);
                return failed(report);
            }
        }
    }
    failed(report)
}

fn denied(reason: DenyReason, message: String) -> Outcome {
    Outcome::Denied { reason, message }
}

fn failed(report: Report) -> Outcome {
    Outcome::Failed {
        stats: report.stats,
        failures: report.failures,
        omitted: report.omitted,
    }
}
