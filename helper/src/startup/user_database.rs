//! Resolving user and group names through the system's user database.

use nix::unistd::{Group, Uid as NixUid, User};
use vmrm_policy::{Gid, IdResolver, IdSpec, Uid};

/// [`IdResolver`] over getpwnam/getgrnam (NSS).
pub struct SystemIds;

impl IdResolver for SystemIds {
    fn user(&self, spec: &IdSpec) -> Option<(Uid, Gid)> {
        match spec {
            IdSpec::Name(name) => User::from_name(name)
                .ok()
                .flatten()
                .map(|u| (Uid(u.uid.as_raw()), Gid(u.gid.as_raw()))),
            // A bare number needs no account: use its passwd entry's group
            // if there is one, else the same number as gid.
            IdSpec::Id(id) => {
                let gid = User::from_uid(NixUid::from_raw(*id))
                    .ok()
                    .flatten()
                    .map_or(*id, |u| u.gid.as_raw());
                Some((Uid(*id), Gid(gid)))
            }
        }
    }

    fn group(&self, spec: &IdSpec) -> Option<Gid> {
        match spec {
            IdSpec::Name(name) => Group::from_name(name)
                .ok()
                .flatten()
                .map(|g| Gid(g.gid.as_raw())),
            IdSpec::Id(id) => Some(Gid(*id)),
        }
    }
}
