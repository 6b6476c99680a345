//! The orphan sweeper: removes workdirs whose owner is gone.
//!
//! A live `vmrm::WorkDir` holds an exclusive `flock` on its directory. On
//! the configured interval the sweeper lists each prefix and removes a
//! directory only if its name follows the grammar, it has not changed for
//! the grace period, and its lock can be taken without waiting (whoever held
//! it has exited). It keeps the lock while removing, and audits every
//! removal like a request.

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rustix::fs::{flock, openat, Dir, FlockOperation, Mode, OFlags};
use vmrm_policy::{check_name, Gid, PeerCredentials, Uid};
use vmrm_proto::Outcome;

use crate::audit;
use crate::engine::{self, Owners};
use crate::removal::remove_opened;
use crate::service::{Policy, Service};

/// How often to look again at a config whose sweeper is off (a reload may
/// turn it on).
const IDLE_CHECK: Duration = Duration::from_secs(30);

/// Directories looked at per prefix per sweep, at most: a prefix of a
/// million entries costs a bounded pass, the rest wait for the next one.
const MAX_CANDIDATES: usize = 10_000;

/// One directory the sweeper removed (or tried to).
pub struct Swept {
    pub path: Vec<u8>,
    pub owner: Uid,
    pub outcome: Outcome,
    pub took: Duration,
}

/// Sweep forever on the configured interval.
pub async fn run(service: Arc<Service>) {
    loop {
        let Some(interval) = service.policy().config.sweep.interval else {
            tokio::time::sleep(IDLE_CHECK).await;
            continue;
        };
        tokio::time::sleep(interval).await;
        let Ok(_permit) = service.removals.acquire().await else {
            return;
        };
        let policy = service.policy();
        let swept =
            match tokio::task::spawn_blocking(move || sweep_once(&policy, SystemTime::now())).await
            {
                Ok(swept) => swept,
                Err(e) => {
                    tracing::error!(error = %e, "sweep failed");
                    continue;
                }
            };
        for s in swept {
            let peer = PeerCredentials {
                uid: s.owner,
                gid: Gid(0),
                pid: None,
            };
            service.stats.record(&s.outcome, s.took);
            audit::removal("sweep", &peer, &s.path, &s.outcome, s.took);
        }
    }
}

/// One pass over every prefix.
pub fn sweep_once(policy: &Policy, now: SystemTime) -> Vec<Swept> {
    let config = &policy.config;
    let mut swept = Vec::new();
    for (index, prefix) in config.prefixes.iter().enumerate() {
        let Some(prefix_fd) = policy.prefixes.get(index) else {
            continue;
        };
        for name in candidates(prefix_fd, &config.name_prefix) {
            if let Some((owner, outcome, took)) = sweep_one(policy, prefix_fd, &name, now) {
                let mut path = prefix.as_bytes().to_vec();
                path.push(b'/');
                path.extend_from_slice(name.as_bytes());
                swept.push(Swept {
                    path,
                    owner,
                    outcome,
                    took,
                });
            }
        }
    }
    swept
}

/// Names under the prefix that follow the grammar.
fn candidates(prefix: BorrowedFd<'_>, name_prefix: &str) -> Vec<CString> {
    let listing = openat(
        prefix,
        c".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .and_then(Dir::new);
    let mut dir = match listing {
        Ok(dir) => dir,
        Err(e) => {
            tracing::warn!(error = %e, "sweeper cannot list a prefix");
            return Vec::new();
        }
    };
    let mut names = Vec::new();
    while let Some(Ok(entry)) = dir.read() {
        if names.len() >= MAX_CANDIDATES {
            break;
        }
        let name = entry.file_name();
        if check_name(name_prefix, name.to_bytes()).is_ok() {
            names.push(name.to_owned());
        }
    }
    names
}

/// Remove `name` if it is old enough and its lock is free.
fn sweep_one(
    policy: &Policy,
    prefix: BorrowedFd<'_>,
    name: &CString,
    now: SystemTime,
) -> Option<(Uid, Outcome, Duration)> {
    // Same opening rules as a request: no symlink, no mount point.
    let top = engine::open_top(prefix, name).ok()?;
    let age = now.duration_since(top.changed).unwrap_or_default();
    if age < policy.config.sweep.grace {
        return None;
    }
    // Held by a live WorkDir: never touched, however old.
    flock(top.fd.as_fd(), FlockOperation::NonBlockingLockExclusive).ok()?;
    let started = Instant::now();
    let owners = Owners::new(Uid(top.owner), &policy.config.runner_users);
    let outcome = remove_opened(&policy.config.limits, &owners, prefix, name, &top);
    Some((Uid(top.owner), outcome, started.elapsed()))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::time::Duration;

    use rustix::fs::{flock, openat, FlockOperation, Mode, OFlags, CWD};
    use vmrm_policy::oracle::NumericIds;
    use vmrm_policy::{Config, ConfigFile, IdSpec};

    use super::*;
    use crate::removal::PrefixDirs;

    fn policy(prefix: &std::path::Path) -> Policy {
        let file = ConfigFile {
            prefixes: Some(vec![prefix.to_owned()]),
            user: Some(IdSpec::Id(65534)),
            ..ConfigFile::default()
        };
        let config = Config::load(file, &NumericIds).unwrap();
        let prefixes = PrefixDirs::open(&config).unwrap();
        Policy { config, prefixes }
    }

    #[test]
    fn sweeps_old_unlocked_workdirs_only() {
        let base = tempfile::tempdir().unwrap();
        let prefix = fs::canonicalize(base.path()).unwrap();
        for name in ["vm-dead", "vm-live", "not-a-workdir"] {
            fs::create_dir_all(prefix.join(name).join("sub")).unwrap();
            fs::write(prefix.join(name).join("sub/file"), b"x").unwrap();
        }
        let live = openat(
            CWD,
            prefix.join("vm-live"),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        flock(&live, FlockOperation::NonBlockingLockExclusive).unwrap();
        let policy = policy(&prefix);

        // Within the grace period (default one hour) nothing is swept.
        assert!(sweep_once(&policy, SystemTime::now()).is_empty());
        assert!(prefix.join("vm-dead").exists());

        let later = SystemTime::now() + Duration::from_secs(7200);
        let swept = sweep_once(&policy, later);
        assert_eq!(swept.len(), 1);
        assert!(swept[0].path.ends_with(b"/vm-dead"));
        assert!(matches!(swept[0].outcome, Outcome::Removed(_)));
        assert!(!prefix.join("vm-dead").exists());
        assert!(prefix.join("vm-live/sub/file").exists());
        assert!(prefix.join("not-a-workdir/sub/file").exists());
    }
}
