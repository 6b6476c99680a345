//! Who may ask, and whose directories they may remove.

use vmrm_proto::DenyReason;

use crate::{Config, Denial, Gid, Pid, Uid, OVERFLOW_UID};

/// A peer's identity as the kernel recorded it when it connected
/// (SO_PEERCRED), never as the peer claims it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCredentials {
    /// The peer's effective uid.
    pub uid: Uid,
    /// The peer's effective gid.
    pub gid: Gid,
    /// For the audit log only: pids are reused, so they prove nothing.
    pub pid: Option<Pid>,
}

/// May this peer use the helper at all? The overflow uid never may: it stands
/// for any id unmapped in our user namespace. When allow-lists are set, the
/// peer must be on the uid list or hold a group on the group list
/// (`groups` are its supplementary groups, from SO_PEERGROUPS).
#[must_use = "the verdict decides whether the peer may be served"]
pub fn authorize_peer(
    config: &Config,
    peer: &PeerCredentials,
    groups: &[Gid],
) -> Result<(), Denial> {
    if peer.uid == OVERFLOW_UID {
        return Err(Denial::new(
            DenyReason::OverflowUid,
            format!(
                "peer uid {OVERFLOW_UID} is the overflow uid (unmapped in this user namespace)"
            ),
        ));
    }
    if config.allow_uids().is_empty() && config.allow_groups().is_empty() {
        return Ok(());
    }
    let uid_ok = config.allow_uids().contains(&peer.uid);
    let group_ok = config
        .allow_groups()
        .iter()
        .any(|g| *g == peer.gid || groups.contains(g));
    if uid_ok || group_ok {
        Ok(())
    } else {
        Err(Denial::new(
            DenyReason::PeerNotAllowed,
            format!(
                "peer uid {} (gid {}) is not on the helper's allow-lists",
                peer.uid, peer.gid
            ),
        ))
    }
}

/// May this peer remove a directory whose owner (from `fstat` on the opened
/// directory fd, never a path lookup) is `owner`? Only its own.
#[must_use = "the verdict decides whether the directory may be removed"]
pub fn authorize_owner(peer: &PeerCredentials, owner: Uid) -> Result<(), Denial> {
    if owner == OVERFLOW_UID || peer.uid == OVERFLOW_UID {
        return Err(Denial::new(
            DenyReason::OverflowUid,
            "the directory or the peer has the overflow uid, which proves no ownership",
        ));
    }
    if owner != peer.uid {
        return Err(Denial::new(
            DenyReason::NotOwner,
            format!(
                "owned by uid {owner}, not by the requesting uid {}",
                peer.uid
            ),
        ));
    }
    Ok(())
}

/// May the orphan sweeper remove a directory owned by `owner` (with the
/// owner's `groups`, primary first, from the user database)? Only when a
/// request from that owner would be served: never the overflow uid, never
/// root unless root is on `allow_uids` by name or number, and only owners
/// the allow-lists admit. The attack: the sweeper emptied `vm-*`
/// directories of root, of uid 65534 and of users who never used vmrm.
#[must_use = "the verdict decides whether the directory may be swept"]
pub fn authorize_sweep(config: &Config, owner: Uid, groups: &[Gid]) -> Result<(), Denial> {
    if owner == Uid(0) && !config.allow_uids().contains(&Uid(0)) {
        return Err(Denial::new(
            DenyReason::PeerNotAllowed,
            "owned by root, which is swept only when allow_uids names root",
        ));
    }
    let as_peer = PeerCredentials {
        uid: owner,
        gid: groups.first().copied().unwrap_or(crate::OVERFLOW_GID),
        pid: None,
    };
    authorize_peer(config, &as_peer, groups)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oracle::{config_with_prefixes, NumericIds};
    use crate::{Config, ConfigFile, IdSpec};

    /// A config under /tmp with these allow-lists.
    fn allowing(uids: &[u32], groups: &[u32]) -> Config {
        let ids = |v: &[u32]| Some(v.iter().map(|&i| IdSpec::Id(i)).collect());
        let file = ConfigFile {
            prefixes: Some(vec!["/tmp".into()]),
            allow_uids: ids(uids),
            allow_groups: ids(groups),
            ..ConfigFile::default()
        };
        Config::resolve(file, &NumericIds).unwrap()
    }

    fn peer(uid: u32, gid: u32) -> PeerCredentials {
        PeerCredentials {
            uid: Uid(uid),
            gid: Gid(gid),
            pid: Some(Pid(1)),
        }
    }

    #[test]
    fn owner_only() {
        assert!(authorize_owner(&peer(1000, 1000), Uid(1000)).is_ok());
        let d = authorize_owner(&peer(1000, 1000), Uid(1001)).unwrap_err();
        assert_eq!(d.reason, DenyReason::NotOwner);
        let d = authorize_owner(&peer(65534, 65534), Uid(65534)).unwrap_err();
        assert_eq!(d.reason, DenyReason::OverflowUid);
    }

    #[test]
    fn no_allow_lists_admits_everyone_but_overflow() {
        let c = config_with_prefixes(&["/tmp"]);
        assert!(authorize_peer(&c, &peer(1000, 1000), &[]).is_ok());
        assert_eq!(
            authorize_peer(&c, &peer(65534, 100), &[])
                .unwrap_err()
                .reason,
            DenyReason::OverflowUid
        );
    }

    #[test]
    fn the_sweeper_takes_only_owners_a_request_would_be_served_for() {
        let c = config_with_prefixes(&["/tmp"]);
        assert!(authorize_sweep(&c, Uid(1000), &[]).is_ok());
        assert!(authorize_sweep(&c, Uid(0), &[]).is_err(), "root");
        assert!(authorize_sweep(&c, Uid(65534), &[]).is_err(), "overflow");
        let c = allowing(&[1000], &[2000]);
        assert!(authorize_sweep(&c, Uid(1000), &[]).is_ok());
        assert!(authorize_sweep(&c, Uid(1005), &[Gid(1005), Gid(2000)]).is_ok());
        assert!(
            authorize_sweep(&c, Uid(1006), &[Gid(1006)]).is_err(),
            "not listed"
        );
        let c = allowing(&[1000, 0], &[2000]);
        assert!(
            authorize_sweep(&c, Uid(0), &[]).is_ok(),
            "root named explicitly"
        );
    }

    #[test]
    fn allow_lists_admit_by_uid_or_group() {
        let c = allowing(&[1000], &[2000]);
        assert!(authorize_peer(&c, &peer(1000, 1000), &[]).is_ok());
        assert!(authorize_peer(&c, &peer(1001, 2000), &[]).is_ok());
        assert!(authorize_peer(&c, &peer(1002, 1002), &[Gid(5), Gid(2000)]).is_ok());
        assert_eq!(
            authorize_peer(&c, &peer(1003, 1003), &[Gid(5)])
                .unwrap_err()
                .reason,
            DenyReason::PeerNotAllowed
        );
    }
}
