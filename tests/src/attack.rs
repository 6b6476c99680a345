//! Running an attacker thread while a removal runs, counting the attacks
//! that took effect so a race test can assert that the race happened.

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
