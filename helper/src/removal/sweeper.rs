//! The orphan sweeper: removes workdirs whose owner is gone.
//!
//! A live `vmrm::WorkDir` holds an exclusive `flock` on its directory. On
//! the configured interval the sweeper lists each prefix and removes a
//! directory only if its name follows the grammar, its owner is one that
//! requests would serve (allow-lists, never the overflow uid, never root
//! unless root is allowed by uid), it has not changed for the grace period,
//! and its lock can be taken without waiting (whoever held it has exited).
//! It keeps the lock while removing, and audits every removal with the
//! owner it acted for and `source=sweep`.
//!
//! Each pass examines at most `sweep.max_candidates` names per prefix and
//! the next pass goes on from there, so entries planted to fill a pass
//! cannot hide an orphan behind them. A top it emptied but cannot unlink
//! (a sticky prefix: only its owner may) is audited once, not every pass.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rustix::fs::{flock, fstat, openat, Dir, FlockOperation, Mode, OFlags};
use vmrm_policy::{authorize_sweep, check_name, Config, Gid, Uid};
use vmrm_proto::Outcome;

use crate::removal::engine::{self, Owners};
use crate::removal::remove_opened;
use crate::serving::audit::{self, Actor};
use crate::serving::service::{Policy, Service};

/// How often to look again at a config whose sweeper is off (a reload may
/// turn it on).
const IDLE_CHECK: Duration = Duration::from_secs(30);

/// Emptied tops remembered, at most (each is a few words); past this the
/// memory is dropped and each is audited once more.
const MAX_REMEMBERED: usize = 100_000;

/// One directory the sweeper removed (or tried to).
pub struct Swept {
    /// Read by the tests; the audit line is written where it was removed.
    #[cfg_attr(not(test), allow(dead_code))]
    pub path: Vec<u8>,
    pub outcome: Outcome,
    pub took: Duration,
}

/// An inode's identity and last change, to recognise an emptied top that
/// nobody touched since.
type Stamp = (u64, u64, i64, i64, i64, i64);

/// What the sweeper carries from one pass to the next.
#[derive(Debug, Default)]
pub struct SweepState {
    /// Per prefix (by index), how many matching names the next pass skips.
    cursors: Vec<usize>,
    /// Tops emptied but left for their owner (dev, ino) -> stamp after.
    emptied: HashMap<(u64, u64), Stamp>,
}

/// Sweep forever on the configured interval.
pub async fn run(service: Arc<Service>) {
    let mut state = SweepState::default();
    loop {
        let Some(interval) = service.policy().config.sweep().interval() else {
            tokio::time::sleep(IDLE_CHECK).await;
            continue;
        };
        tokio::time::sleep(interval).await;
        let Ok(_permit) = service.removals.acquire().await else {
            return;
        };
        let policy = service.policy();
        let pass = tokio::task::spawn_blocking(move || {
            let swept = state.pass(&policy, SystemTime::now());
            (state, swept)
        });
        let swept = match pass.await {
            Ok((kept, swept)) => {
                state = kept;
                swept
            }
            Err(e) => {
                tracing::error!(error = %e, "sweep failed");
                state = SweepState::default();
                continue;
            }
        };
        let removals = swept.len();
        for s in swept {
            service.stats.record(&s.outcome, s.took);
        }
        // Tests count passes by this line instead of sleeping an interval;
        // a fixed target, so `RUST_LOG=vmrmd::sweeper=debug` does not depend
        // on where this module lives.
        tracing::debug!(target: "vmrmd::sweeper", removals, "sweep pass finished");
    }
}

/// One pass with no memory of earlier ones.
#[cfg(test)]
fn sweep_once(policy: &Policy, now: SystemTime) -> Vec<Swept> {
    SweepState::default().pass(policy, now)
}

impl SweepState {
    /// One pass over every prefix.
    pub fn pass(&mut self, policy: &Policy, now: SystemTime) -> Vec<Swept> {
        let config = &policy.config;
        self.cursors.resize(config.prefixes().len(), 0);
        if self.emptied.len() > MAX_REMEMBERED {
            self.emptied.clear();
        }
        let mut swept = Vec::new();
        // One user-database lookup per owner per pass, not per directory.
        let mut owners: HashMap<Uid, bool> = HashMap::new();
        for (index, prefix) in config.prefixes().iter().enumerate() {
            let Some(prefix_fd) = policy.prefixes.get(index) else {
                continue;
            };
            let (names, next) = candidates(
                prefix_fd,
                config.name_prefix(),
                self.cursors[index],
                config.sweep().max_candidates(),
            );
            self.cursors[index] = next;
            for name in names {
                let mut path = prefix.as_bytes().to_vec();
                path.push(b'/');
                path.extend_from_slice(name.as_bytes());
                if let Some(s) = self.sweep_one(policy, &mut owners, prefix_fd, &name, path, now) {
                    swept.push(s);
                }
            }
        }
        swept
    }

    /// Remove `name` if its owner is one requests would serve, it is old
    /// enough, and its lock is free.
    fn sweep_one(
        &mut self,
        policy: &Policy,
        owners: &mut HashMap<Uid, bool>,
        prefix: BorrowedFd<'_>,
        name: &CString,
        path: Vec<u8>,
        now: SystemTime,
    ) -> Option<Swept> {
        // Same opening rules as a request: no symlink, no mount point.
        let top = engine::open_top(prefix, name).ok()?;
        let owner = top.owner;
        // The attack: root's, the overflow uid's and never-vmrm users'
        // `vm-*` directories were emptied. Only owners a request would be
        // served for are swept.
        let allowed = *owners
            .entry(owner)
            .or_insert_with(|| owner_allowed(&policy.config, owner));
        if !allowed {
            return None;
        }
        let age = now.duration_since(top.changed).unwrap_or_default();
        if age < policy.config.sweep().grace() {
            return None;
        }
        let before = stamp(top.fd.as_fd());
        if before.is_some_and(|s| self.emptied.get(&(s.0, s.1)) == Some(&s)) {
            // Emptied on an earlier pass, untouched since: said once already.
            return None;
        }
        // Held by a live WorkDir: never touched, however old.
        flock(top.fd.as_fd(), FlockOperation::NonBlockingLockExclusive).ok()?;
        let actor = Actor::Sweep { owner };
        let removal = audit::started(actor, &path);
        let started = Instant::now();
        // The same rule as a request by the owner: enter only the owner's
        // and the runners' directories (invariant 8).
        let owners = Owners::new(top.owner, policy.config.runner_users());
        let outcome = remove_opened(policy.config.limits(), &owners, prefix, name, &top);
        let took = started.elapsed();
        audit::removal(actor, Some(removal), &path, &outcome, took);
        if matches!(outcome, Outcome::Emptied(_)) {
            if let Some(after) = stamp(top.fd.as_fd()) {
                self.emptied.insert((after.0, after.1), after);
            }
        }
        Some(Swept {
            path,
            outcome,
            took,
        })
    }
}

/// Would a request from `owner` be served? Its groups come from the user
/// database (readable under the sandbox), as SO_PEERGROUPS would give them.
fn owner_allowed(config: &Config, owner: Uid) -> bool {
    let groups = if config.allow_groups().is_empty() {
        Vec::new()
    } else {
        groups_of(owner)
    };
    authorize_sweep(config, owner, &groups).is_ok()
}

fn groups_of(owner: Uid) -> Vec<Gid> {
    let Ok(Some(user)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(owner.0)) else {
        return Vec::new();
    };
    let Ok(name) = CString::new(user.name) else {
        return Vec::new();
    };
    let mut groups: Vec<Gid> = nix::unistd::getgrouplist(&name, user.gid)
        .unwrap_or_default()
        .into_iter()
        .map(|g| Gid(g.as_raw()))
        .collect();
    groups.insert(0, Gid(user.gid.as_raw()));
    groups
}

fn stamp(fd: BorrowedFd<'_>) -> Option<Stamp> {
    let st = fstat(fd).ok()?;
    Some((
        st.st_dev,
        st.st_ino,
        st.st_mtime,
        st.st_mtime_nsec as i64,
        st.st_ctime,
        st.st_ctime_nsec as i64,
    ))
}

/// Up to `max` names under the prefix that follow the grammar, starting at
/// the `cursor`-th such name; returns them and the next pass's cursor (back
/// to 0 once the listing is exhausted). The whole listing is read, but only
/// `max` names are kept and examined.
fn candidates(
    prefix: BorrowedFd<'_>,
    name_prefix: &str,
    cursor: usize,
    max: usize,
) -> (Vec<CString>, usize) {
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
            return (Vec::new(), 0);
        }
    };
    let mut names = Vec::new();
    let mut seen = 0usize;
    while let Some(Ok(entry)) = dir.read() {
        let name = entry.file_name();
        if check_name(name_prefix, name.to_bytes()).is_err() {
            continue;
        }
        if seen >= cursor {
            names.push(name.to_owned());
            if names.len() >= max {
                return (names, seen + 1);
            }
        }
        seen += 1;
    }
    (names, 0)
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
        policy_with(prefix, |_| {})
    }

    /// The test process's own uid is allowed (root too, by name, when the
    /// tests run as root: directories they make are root's).
    fn policy_with(prefix: &std::path::Path, tweak: impl FnOnce(&mut ConfigFile)) -> Policy {
        let me = rustix::process::geteuid().as_raw();
        let mut file = ConfigFile {
            prefixes: Some(vec![prefix.to_owned()]),
            user: Some(IdSpec::Id(65534)),
            allow_uids: Some(vec![IdSpec::Id(me)]),
            ..ConfigFile::default()
        };
        tweak(&mut file);
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

    /// The attack: 30,000 planted entries that never age filled every pass
    /// (the first 10,000 names, always), and orphans behind them were never
    /// swept. With a cursor, an orphan is reached within
    /// ceil(entries / per-pass cap) + 1 passes.
    #[test]
    fn planted_entries_cannot_hide_an_orphan() {
        let base = tempfile::tempdir().unwrap();
        let prefix = fs::canonicalize(base.path()).unwrap();
        let planted: usize = 30_000;
        for i in 0..planted {
            // Files: open_top refuses them, as it would young or locked dirs.
            fs::write(prefix.join(format!("vm-plant-{i:05}")), b"").unwrap();
        }
        fs::create_dir(prefix.join("vm-orphan")).unwrap();
        fs::write(prefix.join("vm-orphan/f"), b"x").unwrap();
        let cap = 1_000;
        let policy = policy_with(&prefix, |f| f.sweep.max_candidates = Some(cap));
        let later = SystemTime::now() + Duration::from_secs(7200);
        let mut state = SweepState::default();
        let bound = (planted + 1).div_ceil(cap) + 1;
        let mut passes = 0;
        while prefix.join("vm-orphan").exists() {
            passes += 1;
            assert!(passes <= bound, "orphan not swept in {bound} passes");
            let swept = state.pass(&policy, later);
            assert!(swept.iter().all(|s| s.path.ends_with(b"/vm-orphan")));
        }
    }

    /// Root's, the overflow uid's and unlisted users' `vm-*` directories
    /// were all swept before: now only owners a request would be served for.
    #[test]
    #[ignore = "needs root"]
    fn root_overflow_and_unlisted_owners_are_not_swept() {
        assert!(rustix::process::geteuid().is_root(), "needs root");
        let base = tempfile::tempdir().unwrap();
        let prefix = fs::canonicalize(base.path()).unwrap();
        for (name, owner) in [
            ("vm-root", 0),
            ("vm-overflow", 65534),
            ("vm-stranger", 61_009),
            ("vm-tenant", 61_001),
        ] {
            let dir = prefix.join(name);
            fs::create_dir(&dir).unwrap();
            fs::write(dir.join("f"), b"x").unwrap();
            std::os::unix::fs::chown(&dir, Some(owner), Some(owner)).unwrap();
        }
        let policy = policy_with(&prefix, |f| f.allow_uids = Some(vec![IdSpec::Id(61_001)]));
        let later = SystemTime::now() + Duration::from_secs(7200);
        let swept = sweep_once(&policy, later);
        assert_eq!(swept.len(), 1);
        assert!(swept[0].path.ends_with(b"/vm-tenant"));
        for kept in ["vm-root", "vm-overflow", "vm-stranger"] {
            assert!(prefix.join(kept).join("f").exists(), "{kept} swept");
        }
        // With no allow-lists, root and the overflow uid are still refused.
        let policy = policy_with(&prefix, |f| f.allow_uids = None);
        let swept = sweep_once(&policy, later);
        assert_eq!(swept.len(), 1, "only the stranger is left to sweep");
        assert!(swept[0].path.ends_with(b"/vm-stranger"));
        assert!(prefix.join("vm-root/f").exists());
        assert!(prefix.join("vm-overflow/f").exists());
    }
}
