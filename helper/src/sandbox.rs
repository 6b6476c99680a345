//! vmrmd's self-sandbox (Landlock and seccomp), applied after start-up.

use std::fmt;
use std::path::Path;

use vmrm_policy::{Config, SandboxMode};

/// The sandbox could not be applied as the config requires.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("sandbox = \"required\" but {0}")]
    NotEnforced(String),
}

/// What the kernel enforces, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enforced {
    pub landlock: String,
    pub seccomp: String,
}

impl fmt::Display for Enforced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "landlock={} seccomp={}", self.landlock, self.seccomp)
    }
}

pub fn apply(config: &Config, _config_file: Option<&Path>) -> Result<Enforced, SandboxError> {
    match config.sandbox {
        SandboxMode::Off => Ok(Enforced {
            landlock: "off".into(),
            seccomp: "off".into(),
        }),
        SandboxMode::BestEffort => Ok(Enforced {
            landlock: "not implemented".into(),
            seccomp: "not implemented".into(),
        }),
        SandboxMode::Required => Err(SandboxError::NotEnforced("not implemented yet".into())),
    }
}
