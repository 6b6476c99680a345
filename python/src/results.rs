//! What a removal returns: `RemovalStats`, and the helper's other verdicts
//! turned into the package's exceptions.

use std::path::Path;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use vmrm::{Denied, Outcome, Stats};

use crate::errors;

/// What one removal did.
#[pyclass(module = "vmrm", frozen, get_all, eq)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RemovalStats {
    /// Directory entries removed, the top directory included.
    pub entries: u64,
    /// Bytes of storage freed.
    pub bytes: u64,
    /// Seconds the call took, as the caller saw it.
    pub duration: f64,
}

#[pymethods]
impl RemovalStats {
    #[new]
    #[pyo3(signature = (entries=0, bytes=0, duration=0.0))]
    fn new(entries: u64, bytes: u64, duration: f64) -> Self {
        RemovalStats {
            entries,
            bytes,
            duration,
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "RemovalStats(entries={}, bytes={}, duration={:.6})",
            self.entries, self.bytes, self.duration
        )
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        let s = slf.get();
        let cls = py.get_type::<RemovalStats>();
        (cls, (s.entries, s.bytes, s.duration)).into_pyobject(py)
    }
}

impl RemovalStats {
    pub(crate) fn of(stats: vmrm::RemovalStats, took: Duration) -> Self {
        RemovalStats {
            entries: stats.entries,
            bytes: stats.bytes,
            duration: took.as_secs_f64(),
        }
    }
}

/// A removal's outcome: stats on success (or on NotFound with
/// `missing_ok`), else the exception that says why.
pub(crate) fn removal(
    path: &Path,
    outcome: Outcome,
    missing_ok: bool,
    took: Duration,
) -> PyResult<RemovalStats> {
    match outcome {
        Outcome::Removed(s) | Outcome::Emptied(s) => Ok(RemovalStats::of(s, took)),
        Outcome::NotFound if missing_ok => Ok(RemovalStats::of(Default::default(), took)),
        other => Err(errors::from_outcome(path, other, took)),
    }
}

/// The helper's counters as a plain dict.
pub(crate) fn stats_dict(py: Python<'_>, s: &Stats) -> PyResult<Py<PyAny>> {
    let d = PyDict::new(py);
    d.set_item("uptime_secs", s.uptime_secs)?;
    let v = PyDict::new(py);
    v.set_item("removed", s.verdicts.removed)?;
    v.set_item("emptied", s.verdicts.emptied)?;
    v.set_item("not_found", s.verdicts.not_found)?;
    v.set_item("denied", s.verdicts.denied)?;
    v.set_item("failed", s.verdicts.failed)?;
    v.set_item("bad_request", s.verdicts.bad_request)?;
    v.set_item("unavailable", s.verdicts.unavailable)?;
    d.set_item("verdicts", v)?;
    d.set_item("entries_removed", s.entries_removed)?;
    d.set_item("bytes_freed", s.bytes_freed)?;
    d.set_item("errors", s.errors)?;
    d.set_item("connections_accepted", s.connections_accepted)?;
    d.set_item("connections_refused", s.connections_refused)?;
    let l = PyDict::new(py);
    let [p50, p90, p99, max] = s.latency_us;
    l.set_item("p50", p50)?;
    l.set_item("p90", p90)?;
    l.set_item("p99", p99)?;
    l.set_item("max", max)?;
    d.set_item("latency_us", l)?;
    Ok(d.into_any().unbind())
}

/// The answer to a stats request.
pub(crate) fn stats(py: Python<'_>, answer: Result<Stats, Denied>) -> PyResult<Py<PyAny>> {
    match answer {
        Ok(s) => stats_dict(py, &s),
        Err(Denied { reason, message }) => {
            let denied = Outcome::Denied { reason, message };
            Err(errors::from_outcome(Path::new(""), denied, Duration::ZERO))
        }
    }
}
