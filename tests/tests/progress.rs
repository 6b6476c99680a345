//! A removal that makes no progress ends early and says so. The
//! attack: a tenant builds a chain deeper than the helper will descend in
//! reasonable time under Landlock (each level costs O(depth)), so each
//! removal spends seconds of helper CPU, removes nothing, and can be
//! resubmitted forever.

use std::time::{Duration, Instant};

use vmrm::Outcome;
use vmrm_tests::{require_root, tree, Daemon, DaemonOptions, Fixture};

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
