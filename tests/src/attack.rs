//! Running an attacker thread while a removal runs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

/// Runs `attack` in a loop on another thread for as long as `work` runs,
/// and returns `work`'s result with the number of attack iterations.
pub fn during<R>(mut attack: impl FnMut() + Send + 'static, work: impl FnOnce() -> R) -> (R, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let handle = {
        let stop = Arc::clone(&stop);
        let count = Arc::clone(&count);
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                attack();
                count.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let result = work();
    stop.store(true, Ordering::Relaxed);
    handle.join().expect("attacker thread panicked");
    (result, count.load(Ordering::Relaxed))
}
