//! A removal that makes no progress, or never gets to the end of a
//! listing, ends early and says so. The attacks: a tenant builds a chain
//! deeper than the helper will descend in reasonable time under Landlock
//! (each level costs O(depth)), so each removal spends seconds of helper
//! CPU, removes nothing, and can be resubmitted forever; or it keeps
//! refilling the directory being listed, so the listing never ends.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use vmrm::Outcome;
use vmrm_proto::{Cause, FailedOp, Limit};
use vmrm_tests::tenant::{
    as_uid, audit_count, b_is_served, patient_client, wait_started, Refill, SERVED_WITHIN,
};
use vmrm_tests::{ids, require_root, tree, Daemon, DaemonOptions, Fixture};

/// A deep chain used to be the way to make a removal spend its time without
/// progress (Landlock made each level O(depth)); the walk now moves deep
/// subtrees up under the top and removes as it goes, so even with 1 s
/// allowed without progress the chain is removed (issue 13: a tenant
/// resubmitting such a chain no longer costs seconds of vmrmd CPU each).
#[test]
#[ignore = "needs root"]
fn a_deep_chain_makes_steady_progress_and_is_removed() {
    require_root();
    let f = Fixture::new();
    let prefix = f.tmpfs("deep", 100_000);
    let d = Daemon::start(
        &f,
        DaemonOptions {
            prefixes: Some(vec![prefix.clone()]),
            args: ["--max-depth", "60000", "--no-progress", "1"]
                .map(String::from)
                .to_vec(),
            ..Default::default()
        },
    );
    let top = tree::empty_workdir(&prefix, 0);
    tree::chain(&top, 50_000);
    let started = Instant::now();
    let outcome = d.client().remove(&top).unwrap();
    let took = started.elapsed();
    assert!(
        matches!(outcome, Outcome::Removed(s) if s.entries == 50_002),
        "{outcome:?}"
    );
    assert!(took < Duration::from_secs(60), "took {took:?}");
    assert!(!top.exists());
    eprintln!("50,000-level chain: removed in {took:?}");
}

/// The attack: tenant A's VM keeps refilling the directory a removal is
/// listing, to hold a removal slot and vmrmd's CPU until the deadline.
/// The fixture keeps the writers ahead of the walk: the tmpfs holds at
/// most `INODES` inodes, the directory is full before the removal starts,
/// and every entry the walk unlinks is made again by a writer at once.
///
/// Two bounds of the engine end such a removal with `kept_growing`, and
/// which one does depends on the kernel. Where an entry created during a
/// listing can land after its cursor (tmpfs before the kernel's "infinite
/// directory reads" fix for offset directories, btrfs before its own), the
/// writers keep one listing pass from ever reaching its end, and the
/// per-pass bound ends it (`pass_cap`: half the directory's size at open,
/// 20 bytes an entry on tmpfs, plus 2^20 entries; failure op `read_dir`).
/// Where a listing stops at the entries there were when it began (tmpfs
/// on 6.18, where this was written: checked by listing a directory while
/// creating files in it), each pass ends, `rmdir` finds the directory
/// refilled, and `max_rounds` listings later the rounds bound ends it
/// (op `rmdir`). Either way: `kept_growing` on that directory, well before
/// the deadline, and tenant B served meanwhile.
#[test]
#[ignore = "needs root"]
fn a_directory_refilled_while_listed_ends_kept_growing_and_b_is_served() {
    require_root();
    /// Inodes of the tmpfs: what the writers can pile up, and their lead.
    const INODES: u64 = 20_000;
    /// Well under the 600 s deadline, even for the per-pass bound's two
    /// passes of 1.2 million unlinks.
    const ENDS_WITHIN: Duration = Duration::from_secs(300);
    let f = Fixture::new();
    let prefix = f.tmpfs("refill", INODES);
    // Not sticky: vmrmd removes the top itself, so its bounds decide (in a
    // sticky prefix it leaves the emptied top to the client, whose own
    // rmdir attempts then end in ENOTEMPTY).
    fs::set_permissions(&prefix, fs::Permissions::from_mode(0o755)).unwrap();
    let d = Daemon::start(
        &f,
        DaemonOptions {
            // B's workdir in another prefix: the tmpfs stays full.
            prefixes: Some(vec![prefix.clone(), f.plain.clone()]),
            ..Default::default()
        },
    );
    // The workdir itself is refilled: its listing by the fan-out and then
    // by the walk are each bounded the same way.
    let top = tree::empty_workdir(&prefix, ids::TENANT_A);
    let refill = Refill::start(ids::TENANT_A, std::slice::from_ref(&top), 0, 2);
    let full = Instant::now() + Duration::from_secs(60);
    while tree::entries(&top).unwrap_or(0) < (INODES * 9 / 10) as usize {
        assert!(Instant::now() < full, "the writers did not fill the tmpfs");
        std::thread::sleep(Duration::from_millis(50));
    }
    let socket = d.socket.clone();
    let a_top = top.clone();
    let a = as_uid(ids::TENANT_A, move || {
        let started = Instant::now();
        (patient_client(&socket).remove(&a_top), started.elapsed())
    });
    wait_started(&d, ids::TENANT_A, 1);
    let b_took = b_is_served(&f.plain, &d);
    let a_running = audit_count(&d, "remove", ids::TENANT_A) == 0;
    let (outcome, took) = a.join().unwrap();
    let created = refill.stop();
    eprintln!(
        "refilled directory: {outcome:?} after {took:?} ({created} files written); \
         B served in {b_took:?}"
    );
    let Ok(Outcome::Failed { failures, .. }) = &outcome else {
        panic!("A: {outcome:?}\n{}", d.log());
    };
    let bound = failures
        .iter()
        .find(|f| f.cause == Cause::Limit(Limit::KeptGrowing))
        .map(|f| f.op)
        .unwrap_or_else(|| panic!("not ended as kept_growing: {failures:?}"));
    // `read_dir`: the per-pass bound; `rmdir`: the rounds bound.
    assert!(
        matches!(bound, FailedOp::ReadDir | FailedOp::Rmdir),
        "{failures:?}"
    );
    eprintln!("ended by the {} bound", bound.as_str());
    assert!(took < ENDS_WITHIN, "the refilled removal took {took:?}");
    assert!(a_running, "B was served only after A's removal ended");
    assert!(b_took < SERVED_WITHIN, "B waited {b_took:?}");
}
