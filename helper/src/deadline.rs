//! Deadlines from configured durations, which an operator may set too large
//! to add to the clock (`idle_timeout_secs = 9223372036854775807`):
//! `Instant + Duration` panics on overflow.

use std::time::{Duration, Instant};

/// Far enough to never come: about a century.
const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `after` from now, or, when that cannot be represented, a century from
/// now.
pub fn after(after: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(after)
        .or_else(|| now.checked_add(NEVER))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_too_large_for_the_clock_is_a_century_away() {
        let far = after(Duration::from_secs(i64::MAX as u64));
        assert!(far > Instant::now() + Duration::from_secs(50 * 365 * 24 * 3600));
        let near = after(Duration::from_secs(5));
        assert!(near <= Instant::now() + Duration::from_secs(5));
    }
}
