//! Test-only hook: proves vmrmd's self-sandbox confines it on its own.
//!
//! `vmrmd-sandbox-probe --prefix DIR --sandbox MODE TARGET` applies exactly
//! the sandbox vmrmd applies for prefix DIR (after opening TARGET), then
//! calls the deletion engine on TARGET directly, bypassing every policy check, and prints what
//! happened as JSON. With the sandbox on, a TARGET outside DIR must survive.
//! Not installed; built for the end-to-end tests.

use std::ffi::CString;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use rustix::fs::{openat, Mode, OFlags, CWD};
use vmrm_policy::{Config, ConfigFile, SandboxMode};
use vmrmd::engine::{self, Report, TopRemoval, WalkOptions};
use vmrmd::ids::SystemIds;
use vmrmd::sandbox::{self, Reach};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    prefix: PathBuf,
    #[arg(long)]
    sandbox: SandboxMode,
    target: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let file = ConfigFile {
        prefixes: Some(vec![args.prefix.clone()]),
        user: Some(vmrm_policy::IdSpec::Id(65534)),
        ..ConfigFile::default()
    };
    let config = match Config::load(file, &SystemIds) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("config: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (Some(parent), Some(name)) = (args.target.parent(), args.target.file_name()) else {
        eprintln!("target needs a parent and a name");
        return ExitCode::FAILURE;
    };
    let parent = match openat(
        CWD,
        parent,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("open parent: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Ok(name) = CString::new(name.as_bytes()) else {
        return ExitCode::FAILURE;
    };
    let top = match engine::open_top(parent.as_fd(), &name) {
        Ok(top) => top,
        Err(e) => {
            eprintln!("open target: {e:?}");
            return ExitCode::FAILURE;
        }
    };
    // The fds are opened before the sandbox: even holding them, vmrmd
    // must not be able to remove anything outside its prefixes.
    let enforced = match sandbox::apply(args.sandbox, &Reach::new(&config, None, None, None)) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("sandbox: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = WalkOptions {
        max_rounds: 2,
        deadline: Instant::now() + Duration::from_secs(30),
        fd_ring: 8,
        max_depth: 64,
        count_bytes: false,
        owners: engine::Owners::new(vmrm_policy::Uid(top.owner), &[]),
        no_progress: Duration::from_secs(30),
    };
    let mut report = Report::default();
    let emptied = engine::empty_tree(top.fd.as_fd(), &options, &mut report);
    let top_removed = emptied && engine::remove_top(parent.as_fd(), &name) == TopRemoval::Removed;
    let errnos: Vec<String> = report
        .failures
        .iter()
        .map(|f| match f.cause.errno() {
            Some(errno) => errno.to_string(),
            None => format!("{:?}", f.cause),
        })
        .collect();
    println!(
        "{{\"sandbox\":\"{enforced}\",\"entries\":{},\"failures\":{},\"errnos\":[{}],\"top_removed\":{top_removed}}}",
        report.stats.entries,
        report.failure_count(),
        errnos.join(",")
    );
    ExitCode::SUCCESS
}
