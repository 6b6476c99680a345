//! Issue 8: a removal that makes no progress ends early and says so. The
//! attack: a tenant builds a chain deeper than the helper will descend in
//! reasonable time under Landlock (each level costs O(depth)), so each
//! removal spends seconds of helper CPU, removes nothing, and can be
//! resubmitted forever.

use std::time::{Duration, Instant};

use vmrm::Outcome;
use vmrm_proto::{Cause, Limit};
use vmrm_tests::{require_root, tree, Daemon, DaemonOptions, Fixture};

#[test]
#[ignore = "needs root"]
fn an_unremovable_deep_chain_ends_early_with_no_progress() {
    require_root();
    let f = Fixture::new();
    let prefix = f.tmpfs("deep", 100_000);
    let d = Daemon::start(
        &f,
        DaemonOptions {
            prefixes: Some(vec![prefix.clone()]),
            // Deep enough that descending alone, sandboxed, takes well over
            // the 1 s without progress allowed here.
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
    match &outcome {
        Outcome::Failed {
            failures, stats, ..
        } => {
            assert_eq!(stats.entries, 0, "{outcome:?}");
            let last = failures.last().unwrap();
            let no_progress = Cause::Limit(Limit::NoProgress);
            assert_eq!(last.cause, no_progress, "{failures:?}");
        }
        other => panic!("{other:?}"),
    }
    // Ended by the 1 s limit, not by the 600 s deadline (generous bound).
    assert!(took < Duration::from_secs(60), "took {took:?}");
    assert!(top.join("d/d/d").exists());
    eprintln!("50,000-level chain: no_progress after {took:?}");
}
