//! `vmrm._native`: the PyO3 extension that puts the Rust `vmrm` client (the
//! one implementation of the protocol) behind Python's `vmrm` package.

mod async_client;
mod client;
mod errors;
mod paths;
mod results;
mod workdir;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // One small runtime, built on first async use only: a process that only
    // uses the blocking client (or forks before any await) never starts it.
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(1).enable_all();
    pyo3_async_runtimes::tokio::init(builder);

    m.add_class::<results::RemovalStats>()?;
    m.add_class::<client::Client>()?;
    m.add_class::<client::Pending>()?;
    m.add_class::<async_client::AsyncClient>()?;
    m.add_class::<workdir::NativeWorkDir>()?;
    m.add("DEFAULT_SOCKET", vmrm_proto::DEFAULT_SOCKET)?;
    m.add("SUN_PATH_MAX", vmrm::SUN_PATH_MAX)?;
    Ok(())
}
