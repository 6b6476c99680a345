//! Paths of the `vmrmd` and `vmrm` binaries, built on first use with the
//! same profile as the tests.

use std::path::PathBuf;
use std::sync::OnceLock;

fn build(package: &str, bin: &str) -> PathBuf {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let run = escargot::CargoBuild::new()
        .manifest_path(manifest)
        .package(package)
        .bin(bin)
        .current_release()
        .run()
        .unwrap_or_else(|e| panic!("building {bin}: {e}"));
    run.path().to_owned()
}

pub fn vmrmd() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| build("vmrmd", "vmrmd"))
}

pub fn vmrm() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| build("vmrm", "vmrm"))
}

/// The test-only sandbox probe (see tests/src/bin/vmrmd-sandbox-probe.rs).
pub fn sandbox_probe() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| build("vmrm-tests", "vmrmd-sandbox-probe"))
}
