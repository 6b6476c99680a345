//! The native half of `vmrm.WorkDir`: the Rust `WorkDir`, which creates the
//! directory, holds its flock for life and cleans it up (through vmrmd when
//! it holds other users' files). The Python class adds paths and context
//! managers.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use pyo3::prelude::*;
use pyo3_async_runtimes::tokio::{future_into_py, get_runtime};
use tokio::sync::Mutex;

use crate::client::options;
use crate::errors;
use crate::paths;

#[pyclass(module = "vmrm._native", frozen)]
pub struct NativeWorkDir {
    inner: Arc<Mutex<vmrm::WorkDir>>,
    path: PathBuf,
    socket: PathBuf,
    /// The process that created it: a forked child that inherited the
    /// object must never remove its parent's live directory on exit.
    creator: u32,
}

impl Drop for NativeWorkDir {
    fn drop(&mut self) {
        if std::process::id() != self.creator {
            // A forked child's copy: leak one reference so the Rust
            // WorkDir's drop (which cleans up) never runs here. The child's
            // fds close when it exits.
            std::mem::forget(Arc::clone(&self.inner));
        }
    }
}

#[pymethods]
impl NativeWorkDir {
    /// Create `<prefix>/vm-<id8>-XXXXXXXX`, mode 0700, locked.
    #[staticmethod]
    #[pyo3(signature = (vm_id, prefix=None, socket=None, timeout=None, use_helper=false))]
    fn create(
        py: Python<'_>,
        vm_id: String,
        prefix: Option<&Bound<'_, PyAny>>,
        socket: Option<&Bound<'_, PyAny>>,
        timeout: Option<f64>,
        use_helper: bool,
    ) -> PyResult<Self> {
        let options = options(socket, timeout)?;
        let socket = options.socket.clone();
        let mut builder = vmrm::WorkDir::builder(vm_id)
            .client_options(options)
            .uses_helper(use_helper);
        if let Some(p) = prefix.filter(|p| !p.is_none()) {
            builder = builder.base(paths::absolute(&paths::path_arg(p)?));
        }
        let wd = py
            .detach(|| builder.create())
            .map_err(errors::from_workdir)?;
        Ok(NativeWorkDir {
            path: wd.path().to_owned(),
            socket,
            creator: std::process::id(),
            inner: Arc::new(Mutex::new(wd)),
        })
    }

    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    #[getter]
    fn cleaned_up(&self) -> bool {
        self.inner
            .try_lock()
            .map(|wd| wd.is_cleaned_up())
            .unwrap_or(false)
    }

    #[getter]
    fn use_helper(&self) -> bool {
        self.inner
            .try_lock()
            .map(|wd| wd.uses_helper())
            .unwrap_or(false)
    }

    #[setter]
    fn set_use_helper(&self, py: Python<'_>, yes: bool) {
        py.detach(|| self.inner.blocking_lock().set_uses_helper(yes));
    }

    /// Remove the directory; idempotent, and safe to call again after an
    /// error.
    fn cleanup(&self, py: Python<'_>) -> PyResult<()> {
        let started = Instant::now();
        py.detach(|| self.inner.blocking_lock().cleanup())
            .map_err(|e| errors::from_cleanup(&self.socket, e, started.elapsed()))
    }

    /// `cleanup` as an awaitable. A cancelled await lets the cleanup run to
    /// its end; awaiting `acleanup` again then returns at once.
    fn acleanup<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let inner = Arc::clone(&self.inner);
        let socket = self.socket.clone();
        let task = get_runtime().spawn(async move {
            let started = Instant::now();
            let r = inner.lock().await.cleanup_async().await;
            (r, started.elapsed())
        });
        future_into_py(py, async move {
            let (r, took) = task.await.map_err(|e| {
                pyo3::exceptions::PyRuntimeError::new_err(format!("vmrm task ended: {e}"))
            })?;
            r.map_err(|e| errors::from_cleanup(&socket, e, took))
        })
    }
}
