//! vmrmd's self-sandbox, applied once start-up is done and before any
//! request is read: even a bug in vmrmd's own checks cannot then reach
//! outside the allowed prefixes (Landlock) or make syscalls it has no use
//! for (seccomp). `no_new_privs` and the capability bounding set are set
//! earlier by [`crate::startup::privileges`].
//!
//! Both layers apply to the calling thread and the threads it creates later,
//! so this must run while vmrmd is still single-threaded.

mod filesystem;
mod syscalls;

use std::fmt;
use std::path::{Path, PathBuf};

use vmrm_policy::{Config, SandboxMode};

/// The sandbox could not be applied as the config requires.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("sandbox = \"required\" but {0}")]
    NotEnforced(String),
    #[error("cannot set up Landlock: {0}")]
    Landlock(landlock::RulesetError),
    #[error("cannot build the seccomp filter: {0}")]
    SeccompBuild(seccompiler::BackendError),
    #[error("cannot install the seccomp filter: {0}")]
    SeccompApply(seccompiler::Error),
}

/// What the kernel enforces, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enforced {
    /// `fully`, `partially`, `not enforced` or `off`, with the ABI.
    pub landlock: String,
    /// `allow-list`, or `off`.
    pub seccomp: String,
}

impl Enforced {
    fn off() -> Enforced {
        Enforced {
            landlock: "off".into(),
            seccomp: "off".into(),
        }
    }
}

impl fmt::Display for Enforced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "landlock={} seccomp={}", self.landlock, self.seccomp)
    }
}

/// What the sandbox must leave reachable.
#[derive(Debug)]
pub struct Reach {
    /// Removal happens beneath these only.
    pub prefixes: Vec<PathBuf>,
    /// The directory of a socket vmrmd bound itself (unlinked at exit): the
    /// fd checked at start, not its path again.
    pub socket_dir: Option<std::os::fd::OwnedFd>,
    /// The parent of a socket directory vmrmd created, so that it can
    /// remove the (then empty) directory at exit.
    pub socket_dir_parent: Option<std::os::fd::OwnedFd>,
    /// Read again on SIGHUP.
    pub config_file: Option<PathBuf>,
    /// Subordinate uid ranges, read again on SIGHUP.
    pub subuid_file: PathBuf,
}

impl Reach {
    pub fn new(
        config: &Config,
        socket_dir: Option<std::os::fd::OwnedFd>,
        socket_dir_parent: Option<std::os::fd::OwnedFd>,
        config_file: Option<&Path>,
    ) -> Reach {
        Reach {
            prefixes: config
                .prefixes()
                .iter()
                .map(|p| p.path().to_owned())
                .collect(),
            socket_dir,
            socket_dir_parent,
            config_file: config_file.map(Path::to_owned),
            subuid_file: config.subuid_file().to_owned(),
        }
    }
}

/// Apply the sandbox per `mode`. In `best-effort` mode, whatever the kernel
/// supports is applied and reported; in `required` mode anything less than
/// full enforcement is an error.
pub fn apply(mode: SandboxMode, reach: &Reach) -> Result<Enforced, SandboxError> {
    if mode == SandboxMode::Off {
        return Ok(Enforced::off());
    }
    let required = mode == SandboxMode::Required;
    let landlock = filesystem::restrict(reach, required)?;
    let seccomp = syscalls::restrict()?;
    Ok(Enforced { landlock, seccomp })
}
