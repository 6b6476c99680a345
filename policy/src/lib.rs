//! What vmrmd may do, for whom: configuration, the path and name grammar, and
//! peer authorization.
//!
//! Everything here is a pure decision over values (config validation only
//! reads file metadata). The helper turns kernel facts (peer credentials,
//! `fstat` of an opened fd) into the values these functions judge; every
//! verdict is `#[must_use]` so a caller cannot forget to act on a denial.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[macro_use]
mod declare;
mod config;
mod denial;
mod grammar;
mod kernel_ids;
pub mod kinds;
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod oracle;
mod prefix;
mod tenancy;

pub use config::{
    Config, ConfigError, ConfigFile, IdResolver, IdSpec, Limits, LimitsFile, RunAs, SandboxMode,
    SweepConfig, SweepFile, DEFAULT_CONFIG_PATH, DEFAULT_NAME_PREFIX, DEFAULT_PREFIX,
    DEFAULT_SOCKET, DEFAULT_SOCKET_MODE, DEFAULT_SUBUID_FILE, DEFAULT_USER,
};
pub use denial::Denial;
pub use grammar::{check_name, Target};
pub use kernel_ids::{Gid, Pid, Uid, OVERFLOW_GID, OVERFLOW_UID};
pub use prefix::{Prefix, PrefixError};
pub use tenancy::{authorize_owner, authorize_peer, authorize_sweep, PeerCredentials};
