//! The orphan sweeper sweeps only directories of owners a
//! request would be served for, audits what it did with the owner and
//! `source=sweep` (no invented fields), and audits an emptied top it cannot
//! unlink once, not on every pass.

use std::time::{Duration, Instant};

use vmrm_tests::daemon::SWEEP_LOG;
use vmrm_tests::{ids, require_root, tree, Daemon, DaemonOptions, Fixture};

fn sweeping(extra: &[&str]) -> DaemonOptions {
    let mut args: Vec<String> = ["--sweep-interval", "1", "--sweep-grace", "0"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    DaemonOptions {
        args,
        env: vec![("RUST_LOG".into(), SWEEP_LOG.into())],
        ..DaemonOptions::default()
    }
}

fn sweep_ends(d: &Daemon, path: &std::path::Path) -> Vec<serde_json::Value> {
    d.audit()
        .into_iter()
        .filter(|l| l["source"] == "sweep" && l["message"] == "remove")
        .filter(|l| l["path"] == path.display().to_string())
        .collect()
}

fn wait_for_sweep(d: &Daemon, path: &std::path::Path) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(line) = sweep_ends(d, path).pop() {
            return line;
        }
        assert!(Instant::now() < deadline, "never swept:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The attack: the sweeper emptied `vm-*` directories of root, of the
/// overflow uid (which requests refuse) and of users who never used vmrm.
#[test]
#[ignore = "needs root"]
fn sweeper_leaves_root_overflow_and_unlisted_owners_alone() {
    require_root();
    let f = Fixture::new();
    let a = ids::TENANT_A.to_string();
    // Built before vmrmd starts, so no pass sees a half-built tree.
    let root_dir = tree::vm_workdir(&f.plain, 0);
    let overflow_dir = tree::vm_workdir(&f.plain, 65534);
    let stranger_dir = tree::vm_workdir(&f.plain, ids::TENANT_B);
    let orphan = tree::vm_workdir(&f.plain, ids::TENANT_A);
    let d = Daemon::start(&f, sweeping(&["--allow-uid", &a]));
    let line = wait_for_sweep(&d, &orphan);
    assert!(!orphan.exists());
    // Two more full passes for the others to have had their chance (the
    // first pass to end may have begun before).
    d.wait_sweeps(d.sweeps() + 1, 2);
    for kept in [&root_dir, &overflow_dir, &stranger_dir] {
        assert!(kept.join("overlay.qcow2").exists(), "{kept:?} swept");
        assert!(sweep_ends(&d, kept).is_empty(), "{kept:?} audited");
    }
    // Who it acted for, and nothing invented.
    assert_eq!(line["owner_uid"], ids::TENANT_A, "{line}");
    assert_eq!(line["verdict"], "removed", "{line}");
    for invented in ["peer_uid", "peer_gid", "peer_pid", "request_id"] {
        assert!(line.get(invented).is_none(), "{invented} in {line}");
    }
    let start = d
        .audit()
        .into_iter()
        .find(|l| l["message"] == "remove_start" && l["removal"] == line["removal"]);
    assert!(start.is_some_and(|s| s["source"] == "sweep"), "{}", d.log());
}

/// The attack: in a sticky prefix the sweeper empties a tenant's top but
/// may not unlink it, and audited it again on every pass (10,005 lines in
/// 10 s from 2,000 empty directories).
#[test]
#[ignore = "needs root"]
fn emptied_but_unlinkable_top_is_audited_once() {
    require_root();
    let f = Fixture::new();
    // Built before vmrmd starts, so no pass sees a half-built tree.
    let top = tree::vm_workdir(&f.sticky, ids::TENANT_A);
    let d = Daemon::start(&f, sweeping(&[]));
    let line = wait_for_sweep(&d, &top);
    assert_eq!(line["verdict"], "emptied", "{line}");
    assert!(top.exists(), "the owner removes the empty top");
    // Three more passes, each of which used to audit it again.
    d.wait_sweeps(d.sweeps(), 3);
    assert_eq!(sweep_ends(&d, &top).len(), 1, "{}", d.log());
}
