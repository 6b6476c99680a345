//! State shared by every connection: the policy in force (swapped whole on
//! reload), the subordinate uid ranges, the concurrency caps and the
//! counters.

use std::sync::{Arc, RwLock};

use crate::serving::accounting::{Account, SubordinateIds};
use crate::serving::admission::Admission;
use crate::serving::fair_queue::FairQueue;
use crate::startup::user_database::SystemIds;
use vmrm_policy::{Config, Limits, Uid};

use crate::removal::PrefixDirs;
use crate::serving::stats::Stats;

/// A config together with the prefix fds opened for it. Requests take an
/// `Arc` of it, so a reload never changes the rules under a running request.
#[derive(Debug)]
pub struct Policy {
    pub config: Config,
    pub prefixes: PrefixDirs,
}

pub struct Service {
    policy: RwLock<Arc<Policy>>,
    /// Read at start and on every reload.
    subordinate: RwLock<Arc<SubordinateIds>>,
    /// Fixed at start: caps are sized once, a reload does not resize them.
    pub limits: Limits,
    pub removals: FairQueue,
    pub admission: Admission,
    pub stats: Stats,
}

impl Service {
    pub fn new(policy: Policy) -> Service {
        let limits = policy.config.limits().clone();
        let subordinate = read_subordinate(&policy.config).unwrap_or_default();
        Service {
            removals: FairQueue::new(
                limits.max_concurrent_removals(),
                limits.max_removals_per_uid(),
            ),
            admission: Admission::new(limits.max_connections(), limits.max_connections_per_uid()),
            limits,
            policy: RwLock::new(Arc::new(policy)),
            subordinate: RwLock::new(Arc::new(subordinate)),
            stats: Stats::new(),
        }
    }

    /// The policy in force now.
    pub fn policy(&self) -> Arc<Policy> {
        match self.policy.read() {
            Ok(p) => Arc::clone(&p),
            // A panic while swapping cannot leave a half-written Arc.
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The account a peer uid's connections and removals count against.
    pub fn account_of(&self, uid: Uid) -> Account {
        let map = match self.subordinate.read() {
            Ok(m) => Arc::clone(&m),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        };
        map.account_of(uid)
    }

    /// Put a new, already validated policy in force, and read the
    /// subordinate uid ranges again (an unreadable file keeps the old ones).
    pub fn replace_policy(&self, policy: Policy) {
        if let Some(map) = read_subordinate(&policy.config) {
            let map = Arc::new(map);
            match self.subordinate.write() {
                Ok(mut m) => *m = map,
                Err(poisoned) => *poisoned.into_inner() = map,
            }
        }
        let new = Arc::new(policy);
        match self.policy.write() {
            Ok(mut p) => *p = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
    }
}

fn read_subordinate(config: &Config) -> Option<SubordinateIds> {
    match SubordinateIds::read(config.subuid_file(), &SystemIds) {
        Ok(map) => {
            tracing::info!(
                file = %config.subuid_file().display(),
                ranges = map.len(),
                "subordinate uids are charged to their range's owner"
            );
            Some(map)
        }
        Err(e) => {
            tracing::error!(error = %e, "subordinate uid ranges not read; a tenant's user namespace uids count as separate tenants");
            None
        }
    }
}
