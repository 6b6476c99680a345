//! `vmrm.AsyncClient`: the tokio client behind asyncio awaitables.
//!
//! Each call runs as its own tokio task and the awaitable only waits for
//! it. Cancelling the await therefore stops the waiting, never the exchange
//! half-way: the request already sent gets its answer read, and the
//! connection stays in step for the next call.

use std::sync::Arc;
use std::time::Instant;

use pyo3::prelude::*;
use pyo3_async_runtimes::tokio::{future_into_py, get_runtime};
use vmrm::ClientOptions;

use crate::client::options;
use crate::errors;
use crate::paths;
use crate::results;

/// The native half of `vmrm.AsyncClient` (whose coroutines call these
/// with the event loop running). Requests on its one connection go one at
/// a time, in order.
#[pyclass(module = "vmrm._native", frozen)]
pub struct AsyncClient {
    inner: Arc<vmrm::AsyncClient>,
    options: ClientOptions,
}

fn join_error(e: tokio::task::JoinError) -> PyErr {
    pyo3::exceptions::PyRuntimeError::new_err(format!("vmrm task ended: {e}"))
}

#[pymethods]
impl AsyncClient {
    #[new]
    #[pyo3(signature = (socket=None, timeout=None))]
    fn new(socket: Option<&Bound<'_, PyAny>>, timeout: Option<f64>) -> PyResult<Self> {
        let options = options(socket, timeout)?;
        Ok(AsyncClient {
            inner: Arc::new(vmrm::AsyncClient::with_options(options.clone())),
            options,
        })
    }

    #[getter]
    fn socket(&self) -> std::path::PathBuf {
        self.options.socket.clone()
    }

    #[pyo3(signature = (path, missing_ok=false))]
    fn remove<'py>(
        &self,
        py: Python<'py>,
        path: &Bound<'py, PyAny>,
        missing_ok: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let path = paths::removal_path(path)?;
        let client = Arc::clone(&self.inner);
        let socket = self.options.socket.clone();
        let task = get_runtime().spawn(async move {
            let started = Instant::now();
            let answer = client.remove(&path).await;
            (path, answer, started.elapsed())
        });
        future_into_py(py, async move {
            let (path, answer, took) = task.await.map_err(join_error)?;
            match answer {
                Ok(outcome) => results::removal(&path, outcome, missing_ok, took),
                Err(e) => Err(errors::from_client(&socket, Some(&path), e)),
            }
        })
    }

    fn ping<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let client = Arc::clone(&self.inner);
        let socket = self.options.socket.clone();
        let task = get_runtime().spawn(async move { client.ping().await });
        future_into_py(py, async move {
            task.await
                .map_err(join_error)?
                .map_err(|e| errors::from_client(&socket, None, e))
        })
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let client = Arc::clone(&self.inner);
        let socket = self.options.socket.clone();
        let task = get_runtime().spawn(async move { client.stats().await });
        future_into_py(py, async move {
            let answer = task
                .await
                .map_err(join_error)?
                .map_err(|e| errors::from_client(&socket, None, e))?;
            Python::attach(|py| results::stats(py, answer))
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "vmrm.AsyncClient(socket={:?})",
            self.options.socket.display().to_string()
        )
    }
}
