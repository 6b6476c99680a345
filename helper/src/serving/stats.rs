//! Counters and removal latencies since start, for `vmrm stats`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use vmrm_proto::{Outcome, Stats as WireStats, Verdict, VerdictCounts};

/// Lock-free counters plus one latency histogram behind a mutex (held for
/// one record or one read, never across I/O).
pub struct Stats {
    started: Instant,
    removed: AtomicU64,
    emptied: AtomicU64,
    not_found: AtomicU64,
    denied: AtomicU64,
    failed: AtomicU64,
    bad_request: AtomicU64,
    unavailable: AtomicU64,
    entries: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    accepted: AtomicU64,
    refused: AtomicU64,
    /// Microseconds, 1 µs to 1 h, 2 significant digits: a few KiB.
    latency: Mutex<Histogram<u64>>,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    pub fn new() -> Stats {
        Stats {
            started: Instant::now(),
            removed: AtomicU64::new(0),
            emptied: AtomicU64::new(0),
            not_found: AtomicU64::new(0),
            denied: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            bad_request: AtomicU64::new(0),
            unavailable: AtomicU64::new(0),
            entries: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            latency: Mutex::new(
                Histogram::new_with_bounds(1, 3_600_000_000, 2)
                    .expect("constant histogram bounds are valid"),
            ),
        }
    }

    pub fn connection_accepted(&self) {
        self.accepted.fetch_add(1, Relaxed);
    }

    pub fn connection_refused(&self) {
        self.refused.fetch_add(1, Relaxed);
    }

    /// Count one finished remove request.
    pub fn record(&self, outcome: &Outcome, took: Duration) {
        let counter = match outcome.verdict() {
            Verdict::Removed => &self.removed,
            Verdict::Emptied => &self.emptied,
            Verdict::NotFound => &self.not_found,
            Verdict::Denied => &self.denied,
            Verdict::Failed => &self.failed,
            Verdict::BadRequest => &self.bad_request,
            Verdict::Unavailable => &self.unavailable,
            // A verdict this build does not know cannot come from it.
            _ => return,
        };
        counter.fetch_add(1, Relaxed);
        if let Some(s) = outcome.removal_stats() {
            self.entries.fetch_add(s.entries, Relaxed);
            self.bytes.fetch_add(s.bytes, Relaxed);
        }
        self.errors.fetch_add(outcome.failure_count(), Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        if let Ok(mut h) = self.latency.lock() {
            h.saturating_record(micros);
        }
    }

    pub fn snapshot(&self) -> WireStats {
        let latency_us = match self.latency.lock() {
            Ok(h) if !h.is_empty() => [
                h.value_at_quantile(0.50),
                h.value_at_quantile(0.90),
                h.value_at_quantile(0.99),
                h.max(),
            ],
            _ => [0; 4],
        };
        WireStats {
            uptime_secs: self.started.elapsed().as_secs(),
            verdicts: VerdictCounts {
                removed: self.removed.load(Relaxed),
                emptied: self.emptied.load(Relaxed),
                not_found: self.not_found.load(Relaxed),
                denied: self.denied.load(Relaxed),
                failed: self.failed.load(Relaxed),
                bad_request: self.bad_request.load(Relaxed),
                unavailable: self.unavailable.load(Relaxed),
            },
            entries_removed: self.entries.load(Relaxed),
            bytes_freed: self.bytes.load(Relaxed),
            errors: self.errors.load(Relaxed),
            connections_accepted: self.accepted.load(Relaxed),
            connections_refused: self.refused.load(Relaxed),
            latency_us,
        }
    }
}
