//! Least privilege at start-up: refuse setuid and file-capability execution,
//! become the service user when started as root, keep CAP_DAC_OVERRIDE and
//! nothing else, set no_new_privs, and report what the kernel says we hold.
//!
//! Must run while the process is still single-threaded: capability sets are
//! per thread, and threads created later inherit them.

use std::fmt;

use caps::{CapSet, Capability, CapsHashSet};
use nix::unistd::{
    getegid, geteuid, setgroups, setresgid, setresuid, Gid as NixGid, Uid as NixUid,
};
use vmrm_policy::{Gid, Uid};

/// The one capability vmrmd keeps.
pub const KEPT: Capability = Capability::CAP_DAC_OVERRIDE;

/// `AT_SECURE` in the auxiliary vector (linux/auxvec.h).
const AT_SECURE: u64 = 23;

/// A step of the privilege drop that failed.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error(
        "refusing to run with AT_SECURE set: vmrmd was started setuid, setgid or with file \
         capabilities; give it CAP_DAC_OVERRIDE as an ambient capability from its service \
         manager instead"
    )]
    AtSecure,
    #[error("cannot read /proc/self/auxv to check AT_SECURE: {0}")]
    Auxv(std::io::Error),
    #[error("cannot {step}: {error}")]
    Caps {
        step: &'static str,
        error: caps::errors::CapsError,
    },
    #[error("cannot {step}: {error}")]
    Id {
        step: &'static str,
        error: nix::Error,
    },
    #[error("still running as uid 0 after switching to uid {0}")]
    StillRoot(Uid),
    #[error(
        "started as root, but the service user {0:?} does not exist. vmrmd needs an account of \
         its own, so that no other process can signal, prlimit or stop it. Either create it: \
         `useradd --system --no-create-home --shell /usr/sbin/nologin {0}`, or knowingly share \
         an existing account: `--user nobody` (or `user = \"nobody\"` in the config)"
    )]
    NoServiceUser(String),
}

/// Refuse to run when the kernel flagged this exec as secure (setuid,
/// setgid, file capabilities): vmrmd is meant to get its capability from a
/// service manager, and a setuid copy would hand it to any local user.
pub fn refuse_at_secure() -> Result<(), PrivilegeError> {
    let auxv = std::fs::read("/proc/self/auxv").map_err(PrivilegeError::Auxv)?;
    let secure = auxv
        .chunks_exact(16)
        .map(|pair| {
            let word = |b: &[u8]| u64::from_ne_bytes(b.try_into().unwrap_or([0; 8]));
            (word(&pair[..8]), word(&pair[8..]))
        })
        .any(|(key, value)| key == AT_SECURE && value != 0);
    if secure {
        return Err(PrivilegeError::AtSecure);
    }
    Ok(())
}

/// What the process holds after [`drop_privileges`], read back from the
/// kernel rather than assumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub uid: Uid,
    pub gid: Gid,
    pub effective: CapsHashSet,
    pub permitted: CapsHashSet,
    pub bounding: CapsHashSet,
    pub ambient: CapsHashSet,
    pub no_new_privs: bool,
    pub dumpable: bool,
}

impl Held {
    pub fn read() -> Result<Held, PrivilegeError> {
        let read =
            |set, step| caps::read(None, set).map_err(|error| PrivilegeError::Caps { step, error });
        Ok(Held {
            uid: Uid(geteuid().as_raw()),
            gid: Gid(getegid().as_raw()),
            effective: read(CapSet::Effective, "read the effective capability set")?,
            permitted: read(CapSet::Permitted, "read the permitted capability set")?,
            bounding: read(CapSet::Bounding, "read the bounding capability set")?,
            ambient: read(CapSet::Ambient, "read the ambient capability set")?,
            no_new_privs: nix::sys::prctl::get_no_new_privs().unwrap_or(false),
            dumpable: nix::sys::prctl::get_dumpable().unwrap_or(true),
        })
    }

    /// Whether CAP_DAC_OVERRIDE is in force.
    pub fn can_override_dac(&self) -> bool {
        self.effective.contains(&KEPT)
    }
}

fn names(set: &CapsHashSet) -> String {
    let mut v: Vec<String> = set.iter().map(|c| c.to_string().to_lowercase()).collect();
    v.sort();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(",")
    }
}

impl fmt::Display for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "uid={} gid={} effective={} permitted={} bounding={} ambient={} no_new_privs={} \
             dumpable={}",
            self.uid,
            self.gid,
            names(&self.effective),
            names(&self.permitted),
            names(&self.bounding),
            names(&self.ambient),
            self.no_new_privs,
            self.dumpable
        )
    }
}

fn caps_err(step: &'static str) -> impl FnOnce(caps::errors::CapsError) -> PrivilegeError {
    move |error| PrivilegeError::Caps { step, error }
}

fn id_err(step: &'static str) -> impl FnOnce(nix::Error) -> PrivilegeError {
    move |error| PrivilegeError::Id { step, error }
}

/// Drop to least privilege. Started as root, become `user` keeping only
/// CAP_DAC_OVERRIDE; otherwise keep CAP_DAC_OVERRIDE if we have it and shed
/// every other capability. Either way: bounding set reduced where we may,
/// no ambient or inheritable capabilities, no_new_privs.
///
/// `user` is `None` when the configured default account does not exist;
/// `spec` names it for the message.
pub fn drop_privileges(user: Option<(Uid, Gid)>, spec: &str) -> Result<Held, PrivilegeError> {
    let only_kept: CapsHashSet = [KEPT].into_iter().collect();

    // The bounding set can only shrink, and only with CAP_SETPCAP: do it
    // first, while root still has that.
    if caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP).unwrap_or(false) {
        let bounding =
            caps::read(None, CapSet::Bounding).map_err(caps_err("read the bounding set"))?;
        for cap in bounding.into_iter().filter(|c| *c != KEPT) {
            caps::drop(None, CapSet::Bounding, cap).map_err(caps_err("shrink the bounding set"))?;
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(caps_err("clear the ambient set"))?;
    caps::clear(None, CapSet::Inheritable).map_err(caps_err("clear the inheritable set"))?;

    if geteuid().is_root() {
        let (uid, gid) = user.ok_or_else(|| PrivilegeError::NoServiceUser(spec.to_owned()))?;
        // Keep the permitted set across the uid change; trimmed right after.
        nix::sys::prctl::set_keepcaps(true).map_err(id_err("set PR_SET_KEEPCAPS"))?;
        setgroups(&[]).map_err(id_err("clear supplementary groups"))?;
        let g = NixGid::from_raw(gid.0);
        setresgid(g, g, g).map_err(id_err("switch group id"))?;
        let u = NixUid::from_raw(uid.0);
        setresuid(u, u, u).map_err(id_err("switch user id"))?;
        nix::sys::prctl::set_keepcaps(false).map_err(id_err("clear PR_SET_KEEPCAPS"))?;
        if geteuid().is_root() {
            return Err(PrivilegeError::StillRoot(uid));
        }
    }

    let permitted =
        caps::read(None, CapSet::Permitted).map_err(caps_err("read the permitted set"))?;
    let keep: CapsHashSet = permitted.intersection(&only_kept).copied().collect();
    caps::set(None, CapSet::Effective, &keep).map_err(caps_err("set the effective set"))?;
    caps::set(None, CapSet::Permitted, &keep).map_err(caps_err("set the permitted set"))?;

    nix::sys::prctl::set_no_new_privs().map_err(id_err("set no_new_privs"))?;
    // Not dumpable: /proc/<pid>/{mem,environ,fd} become root's and ptrace is
    // refused, even to other processes of vmrmd's own uid. Set after the
    // uid change, which resets it.
    nix::sys::prctl::set_dumpable(false).map_err(id_err("clear PR_SET_DUMPABLE"))?;
    Held::read()
}
