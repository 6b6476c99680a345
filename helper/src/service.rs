//! State shared by every connection: the policy in force (swapped whole on
//! reload), the concurrency caps and the counters.

use std::sync::{Arc, RwLock};

use tokio::sync::Semaphore;

use crate::admission::Admission;
use vmrm_policy::{Config, Limits};

use crate::removal::PrefixDirs;
use crate::stats::Stats;

/// A config together with the prefix fds opened for it. Requests take an
/// `Arc` of it, so a reload never changes the rules under a running request.
#[derive(Debug)]
pub struct Policy {
    pub config: Config,
    pub prefixes: PrefixDirs,
}

pub struct Service {
    policy: RwLock<Arc<Policy>>,
    /// Fixed at start: caps are sized once, a reload does not resize them.
    pub limits: Limits,
    pub removals: Semaphore,
    pub admission: Admission,
    pub stats: Stats,
}

impl Service {
    pub fn new(policy: Policy) -> Service {
        let limits = policy.config.limits.clone();
        Service {
            removals: Semaphore::new(limits.max_concurrent_removals),
            admission: Admission::new(limits.max_connections, limits.max_connections_per_uid),
            limits,
            policy: RwLock::new(Arc::new(policy)),
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

    /// Put a new, already validated policy in force.
    pub fn replace_policy(&self, policy: Policy) {
        let new = Arc::new(policy);
        match self.policy.write() {
            Ok(mut p) => *p = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
    }
}
