//! Issue 8, attack 3: a wide directory of empty subdirectories is removed
//! completely and correctly, by a walk that reads each listing once (the
//! timing against GNU rm is a measurement, in the closing note,
//! not a test).

use vmrm::Outcome;
use vmrm_tests::{require_root, tree, Daemon, DaemonOptions, Fixture};

#[test]
#[ignore = "needs root"]
fn a_wide_directory_of_empty_subdirectories_is_removed() {
    require_root();
    let f = Fixture::new();
    let prefix = f.tmpfs("wide", 300_000);
    let d = Daemon::start(
        &f,
        DaemonOptions {
            prefixes: Some(vec![prefix.clone()]),
            ..Default::default()
        },
    );
    // Owned by the test's client (uid 0), as its own subdirectories.
    let top = tree::empty_workdir(&prefix, 0);
    tree::empty_subdirs(&top, 100_000, 0);
    std::fs::write(top.join("file"), b"x").unwrap();
    let outcome = d.client().remove(&top).unwrap();
    assert!(
        matches!(outcome, Outcome::Removed(s) | Outcome::Emptied(s) if s.entries >= 100_001),
        "{outcome:?}"
    );
    assert!(tree::entries(&top).is_none_or(|n| n == 0), "{outcome:?}");
}
