//! Whose directories a removal may enter (invariant 8: no more than the
//! tenant and its VM runner could have removed themselves).

use vmrm_policy::Uid;

/// The owners whose directories below the top a walk may enter and empty:
/// the peer (who owns the top) and the configured runner users.
///
/// A directory owned by anyone else was moved in from elsewhere (a shared
/// group's project directory renamed into a workdir): entering it would
/// make the helper a confused deputy deleting files the tenant could not.
/// Non-directories need no check: whatever the peer could rename in, it
/// could have unlinked itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owners {
    peer: Uid,
    runners: Vec<Uid>,
}

impl Owners {
    pub fn new(peer: Uid, runners: &[Uid]) -> Owners {
        Owners {
            peer,
            runners: runners.to_vec(),
        }
    }

    /// Whether a directory owned by `owner` (per `fstat` on the fd the
    /// engine opened, never a path) may be entered.
    #[must_use]
    pub fn allows(&self, owner: Uid) -> bool {
        owner == self.peer || self.runners.contains(&owner)
    }
}
