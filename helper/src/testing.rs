//! Test-only entry points (cargo feature `testing`, off by default): the
//! end-to-end tests' sandbox probe calls the deletion engine under the
//! self-sandbox with every policy check bypassed, so it must never ship in
//! the daemon's build.

use std::ffi::CString;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::fs::{openat, Mode, OFlags, CWD};
use vmrm_policy::{Config, ConfigFile, SandboxMode};

use crate::removal::engine::{self, Report, TopRemoval, WalkOptions};
use crate::sandbox::{self, Reach};
use crate::startup::user_database::SystemIds;

/// What [`remove_in_sandbox`] did.
#[derive(Debug)]
pub struct ProbeResult {
    /// The sandbox in force, as vmrmd logs it.
    pub sandbox: String,
    /// Entries removed.
    pub entries: u64,
    /// Failures, listed or not.
    pub failures: u64,
    /// The errnos of the listed failures (`None` for a named limit).
    pub errnos: Vec<Option<i32>>,
    /// Whether the top directory itself is gone.
    pub top_removed: bool,
}

/// Opens `target`, applies exactly the sandbox vmrmd applies for `prefix`
/// (the fds already open, as in the daemon), then removes `target` with the
/// deletion engine directly, bypassing every policy check. With the sandbox
/// on, a `target` outside `prefix` must survive.
pub fn remove_in_sandbox(
    prefix: &Path,
    mode: SandboxMode,
    target: &Path,
) -> Result<ProbeResult, String> {
    let file = ConfigFile {
        prefixes: Some(vec![prefix.to_owned()]),
        user: Some(vmrm_policy::IdSpec::Id(65534)),
        ..ConfigFile::default()
    };
    let config = Config::load(file, &SystemIds).map_err(|e| format!("config: {e}"))?;
    let (Some(parent), Some(name)) = (target.parent(), target.file_name()) else {
        return Err("target needs a parent and a name".into());
    };
    let parent = openat(
        CWD,
        parent,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("open parent: {e}"))?;
    let name = CString::new(name.as_bytes()).map_err(|e| format!("target name: {e}"))?;
    let top = engine::open_top(parent.as_fd(), &name).map_err(|e| format!("open target: {e:?}"))?;
    // The fds are opened before the sandbox: even holding them, vmrmd
    // must not be able to remove anything outside its prefixes.
    let enforced = sandbox::apply(mode, &Reach::new(&config, None, None, None))
        .map_err(|e| format!("sandbox: {e}"))?;
    let options = WalkOptions {
        max_rounds: 2,
        deadline: Instant::now() + Duration::from_secs(30),
        fd_ring: 8,
        max_depth: 64,
        count_bytes: false,
        owners: engine::Owners::new(top.owner, &[]),
        no_progress: Duration::from_secs(30),
    };
    let mut report = Report::default();
    let emptied = engine::empty_tree(top.fd.as_fd(), top.unread(), &options, &mut report);
    let top_removed = emptied && engine::remove_top(parent.as_fd(), &name) == TopRemoval::Removed;
    Ok(ProbeResult {
        sandbox: enforced.to_string(),
        entries: report.stats.entries,
        failures: report.failure_count(),
        errnos: report.failures.iter().map(|f| f.cause.errno()).collect(),
        top_removed,
    })
}
