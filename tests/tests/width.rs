//! Wide directories: a directory of many empty subdirectories is removed
//! completely and correctly, by a walk that reads each listing once (the
//! timing against GNU rm is a measurement, in BENCHMARKS.md, not a test).

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

/// The attack: the fan-out used to keep up to 65,536 names per
/// removal, so 4 concurrent removals of tops with 66,000 long-named
/// subdirectories took the helper from 21 MB to 92 MB. Names now go to the
/// workers in bounded batches.
#[test]
#[ignore = "needs root"]
fn four_wide_tops_with_long_names_stay_in_bounded_memory() {
    require_root();
    let f = Fixture::new();
    let prefix = f.tmpfs("wide", 400_000);
    let d = Daemon::start(
        &f,
        DaemonOptions {
            prefixes: Some(vec![prefix.clone()]),
            ..Default::default()
        },
    );
    let stem = "n".repeat(200);
    let tops: Vec<_> = (0..4)
        .map(|_| {
            let top = tree::empty_workdir(&prefix, 0);
            tree::named_subdirs(&top, 66_000, &stem, 0);
            top
        })
        .collect();
    let outcomes: Vec<Outcome> = std::thread::scope(|s| {
        let handles: Vec<_> = tops
            .iter()
            .map(|top| s.spawn(|| d.client().remove(top).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (top, outcome) in tops.iter().zip(&outcomes) {
        assert!(
            matches!(outcome, Outcome::Removed(s) if s.entries >= 66_000),
            "{outcome:?}"
        );
        assert!(!top.exists());
    }
    let (peak, _) = d.memory_kib();
    eprintln!("4 x 66,000 long names: peak RSS {peak} KiB");
    assert!(peak < 32 * 1024, "peak RSS {peak} KiB");
}
