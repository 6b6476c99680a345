//! Running an attacker thread while a removal runs, counting the attacks
//! that took effect so a race test can assert that the race happened.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

/// Runs `attack` in a loop on another thread for as long as `work` runs,
/// and returns `work`'s result with the number of iterations in which
/// `attack` returned `true` (it took effect: a rename succeeded, a file
/// was created). Failed attempts do not count, so a test asserting a
/// count above zero knows the race really ran.
pub fn during<R>(
    mut attack: impl FnMut() -> bool + Send + 'static,
    work: impl FnOnce() -> R,
) -> (R, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let hits = Arc::new(AtomicU64::new(0));
    let handle = {
        let stop = Arc::clone(&stop);
        let hits = Arc::clone(&hits);
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if attack() {
                    hits.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let result = work();
    stop.store(true, Ordering::Relaxed);
    handle.join().expect("attacker thread panicked");
    (result, hits.load(Ordering::Relaxed))
}

/// Files at the bottom of [`move_out_midway`]'s chain: enough that the
/// walk is still inside when the move lands.
pub const BOTTOM_FILES: usize = 20_000;

/// Levels of [`move_out_midway`]'s chain, above the depth where subtrees
/// move up to chunks (so the tenant's paths still name what the walk is in).
pub const CHAIN_LEVELS: usize = 12;

/// Builds a chain of [`CHAIN_LEVELS`] directories in `chain_top` (which
/// exists) with [`BOTTOM_FILES`] empty files at its bottom, and returns the
/// attack for [`during`]: as soon as the bottom starts emptying (a walk is
/// inside), rename the chain's middle, with the walk in it, to `moved_to`
/// (outside the tree), once. CVE-2002-0435.
pub fn move_out_midway(
    chain_top: &Path,
    moved_to: PathBuf,
) -> impl FnMut() -> bool + Send + 'static {
    crate::tree::chain(chain_top, CHAIN_LEVELS);
    let (mut bottom, mut middle) = (chain_top.to_path_buf(), chain_top.to_path_buf());
    for level in 0..CHAIN_LEVELS {
        bottom.push("d");
        if level < CHAIN_LEVELS / 2 {
            middle.push("d");
        }
    }
    for i in 0..BOTTOM_FILES {
        fs::write(bottom.join(format!("f{i}")), b"").unwrap();
    }
    let mut done = false;
    move || {
        if !done && crate::tree::entries(&bottom).is_some_and(|n| n < BOTTOM_FILES - 1000) {
            done = true;
            return fs::rename(&middle, &moved_to).is_ok();
        }
        false
    }
}
