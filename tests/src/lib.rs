//! The end-to-end test harness: per-test directories and prefixes, the real
//! `vmrmd` started as an unprivileged numeric uid holding only
//! CAP_DAC_OVERRIDE, clients run as other numeric uids, canaries outside.
//!
//! Tests that need root are marked `#[ignore = "needs root"]`, so a plain
//! `cargo nextest run` lists them as skipped; `--run-ignored all` (as CI
//! does, as root) runs them. Each calls [`require_root`] first, so run
//! without root they fail with the reason instead of passing untested.

pub mod attack;
pub mod binaries;
pub mod daemon;
pub mod fixture;
pub mod tenant;
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

/// Fails the test, saying why, unless it runs as root.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (real uids, setpriv, mounts): run it as root, \
         e.g. `sudo cargo nextest run --workspace --run-ignored all`"
    );
}
