//! `vmrm.Client`: the blocking client on one persistent connection, with
//! the GIL released while it waits.

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use vmrm::ClientOptions;

use crate::errors;
use crate::paths;
use crate::results::{self, RemovalStats};

/// Options from the constructor's arguments: `socket` else `$VMRM_SOCKET`
/// else the built-in path; `timeout` bounds each wait for an answer.
pub(crate) fn options(
    socket: Option<&Bound<'_, PyAny>>,
    timeout: Option<f64>,
) -> PyResult<ClientOptions> {
    let mut options = match socket {
        Some(s) if !s.is_none() => ClientOptions::with_socket(paths::path_arg(s)?),
        _ => ClientOptions::default(),
    };
    if let Some(t) = timeout {
        let t = Duration::try_from_secs_f64(t)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| PyValueError::new_err(format!("timeout must be > 0, not {t}")))?;
        options.response_timeout = t;
        options.send_timeout = options.send_timeout.min(t);
    }
    Ok(options)
}

/// A blocking client. Safe to share between threads: requests on its one
/// connection go one at a time (use one client per thread for parallelism).
#[pyclass(module = "vmrm", frozen)]
pub struct Client {
    inner: Mutex<vmrm::Client>,
    options: ClientOptions,
}

impl Client {
    fn lock(&self) -> MutexGuard<'_, vmrm::Client> {
        // A panic while locked cannot leave the connection half-read: the
        // Rust client drops its stream on every error path.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[pymethods]
impl Client {
    #[new]
    #[pyo3(signature = (socket=None, timeout=None))]
    fn new(socket: Option<&Bound<'_, PyAny>>, timeout: Option<f64>) -> PyResult<Self> {
        let options = options(socket, timeout)?;
        Ok(Client {
            inner: Mutex::new(vmrm::Client::with_options(options.clone())),
            options,
        })
    }

    /// The socket this client connects to.
    #[getter]
    fn socket(&self) -> PathBuf {
        self.options.socket.clone()
    }

    #[pyo3(signature = (path, missing_ok=false))]
    fn remove(
        &self,
        py: Python<'_>,
        path: &Bound<'_, PyAny>,
        missing_ok: bool,
    ) -> PyResult<RemovalStats> {
        let path = paths::removal_path(path)?;
        let started = Instant::now();
        let answer = py.detach(|| self.lock().remove(&path));
        let took = started.elapsed();
        match answer {
            Ok(outcome) => results::removal(&path, outcome, missing_ok, took),
            Err(e) => Err(errors::from_client(&self.options.socket, Some(&path), e)),
        }
    }

    fn ping(&self, py: Python<'_>) -> PyResult<String> {
        py.detach(|| self.lock().ping())
            .map_err(|e| errors::from_client(&self.options.socket, None, e))
    }

    fn stats(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let answer = py
            .detach(|| self.lock().stats())
            .map_err(|e| errors::from_client(&self.options.socket, None, e))?;
        results::stats(py, answer)
    }

    /// Drop the connection now (the next call opens a new one).
    fn close(&self, py: Python<'_>) {
        let fresh = vmrm::Client::with_options(self.options.clone());
        py.detach(|| *self.lock() = fresh);
    }

    /// First half of a removal for `vmrm.AsyncClient`: send, do not wait.
    fn _send_remove(&self, py: Python<'_>, path: &Bound<'_, PyAny>) -> PyResult<Pending> {
        let path = paths::removal_path(path)?;
        let started = Instant::now();
        match py.detach(|| self.lock().send_remove(&path)) {
            Ok(pending) => Ok(Pending {
                inner: Mutex::new(Some(pending)),
                path,
                started,
            }),
            Err(e) => Err(errors::from_client(&self.options.socket, Some(&path), e)),
        }
    }

    /// The connection's fd, to wait on; None when there is none.
    fn _fileno(&self) -> Option<i32> {
        self.lock().as_fd().map(|fd| fd.as_raw_fd())
    }

    /// Whether `_finish_remove` would find something to read now, without
    /// waiting.
    fn _answer_waiting(&self) -> bool {
        self.lock().answer_waiting()
    }

    /// Second half: read the waiting answer. None: sent again, wait again.
    fn _finish_remove(
        &self,
        py: Python<'_>,
        pending: &Pending,
        missing_ok: bool,
    ) -> PyResult<Option<RemovalStats>> {
        let taken = pending
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some(p) = taken else {
            return Err(PyValueError::new_err("this removal has already finished"));
        };
        let path = &pending.path;
        match py.detach(|| self.lock().finish_remove(p)) {
            Ok(Ok(outcome)) => {
                results::removal(path, outcome, missing_ok, pending.started.elapsed()).map(Some)
            }
            Ok(Err(again)) => {
                *pending.inner.lock().unwrap_or_else(|e| e.into_inner()) = Some(again);
                Ok(None)
            }
            Err(e) => Err(errors::from_client(&self.options.socket, Some(path), e)),
        }
    }

    /// Forget a pending answer (the caller was cancelled): the connection
    /// is dropped, never left half-read.
    fn _abandon(&self) {
        self.lock().abandon();
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _ty: &Bound<'_, PyAny>,
        _value: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) {
        self.close(py);
    }

    fn __repr__(&self) -> String {
        format!(
            "vmrm.Client(socket={:?})",
            self.options.socket.display().to_string()
        )
    }
}

/// A removal sent by `Client._send_remove`, not yet answered.
#[pyclass(module = "vmrm._native", frozen)]
pub struct Pending {
    inner: Mutex<Option<vmrm::PendingRemoval>>,
    path: PathBuf,
    started: Instant,
}
