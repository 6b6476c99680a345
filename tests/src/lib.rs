//! The end-to-end test harness: per-test directories and prefixes, the real
//! `vmrmd` started as an unprivileged numeric uid holding only
//! CAP_DAC_OVERRIDE, clients run as other numeric uids, canaries outside.
//!
//! Tests that need root call [`require_root`] first: without root they skip
//! with a visible message, unless `CI` is set, where they fail instead.

pub mod attack;
pub mod binaries;
pub mod daemon;
pub mod fixture;
pub mod tree;

pub use daemon::{Daemon, DaemonOptions};
pub use fixture::{Canary, Fixture};

/// Numeric ids used by the tests; no accounts are created for them.
pub mod ids {
    /// vmrmd runs as this uid and gid.
    pub const HELPER: u32 = 61_000;
    /// The service owning workdirs.
    pub const TENANT_A: u32 = 61_001;
    /// Another tenant, who must never touch A's workdirs.
    pub const TENANT_B: u32 = 61_002;
    /// The `qemu-vm` user writing inside workdirs.
    pub const QEMU_VM: u32 = 61_003;
}

/// True when the test may run. Skips loudly without root, fails under CI.
pub fn require_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test} needs root, and CI is set: run the suite as root"
    );
    eprintln!("SKIPPED {test}: needs root (real uids, setpriv, mounts); run as root to include it");
    false
}
