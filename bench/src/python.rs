//! Section 5: a typical workdir removed from Python, as the service user,
//! with the `vmrm` package (`python/bench/bench_removal.py`) beside the
//! Rust library and `sudo rm -rf`, interleaved in the same run.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::setup::{Daemon, Env, Worker, QEMU_UID};
use crate::summary::{median, median_ratio, quantile, show};
use crate::trees;

/// The Python worker: `bench_removal.py worker` as the service user, with
/// `$VMRM_BENCH_PYTHON` (default `python3`) and `$VMRM_BENCH_PYTHONPATH` as
/// its path, so a package installed for the run is found.
fn start_python(env: &Env, socket: &Path) -> Result<Worker, String> {
    let python = std::env::var_os("VMRM_BENCH_PYTHON").unwrap_or_else(|| "python3".into());
    let script = std::fs::canonicalize("python/bench/bench_removal.py")
        .map_err(|e| format!("python/bench/bench_removal.py (run from the repo root): {e}"))?;
    let path = std::env::var_os("VMRM_BENCH_PYTHONPATH");
    let vars: Vec<(&str, &OsStr)> = path.iter().map(|p| ("PYTHONPATH", p.as_os_str())).collect();
    Worker::spawn(
        "python worker",
        env,
        &[&python, script.as_os_str()],
        &vars,
        socket,
    )
}

pub fn section(
    iterations: usize,
    env: &Env,
    prefix: &Path,
    daemon: &Daemon,
    md: &mut String,
    targets: &mut Vec<String>,
) -> Result<(), String> {
    let _ = writeln!(md, "## 7. A typical workdir, from Python\n");
    let mut py = match start_python(env, &daemon.socket) {
        Ok(w) => w,
        Err(e) => {
            let _ = writeln!(md, "Skipped: {e}\n");
            return Ok(());
        }
    };
    let mut rust = Worker::start(env, &daemon.socket)?;
    let overlay = env.base.join("template.qcow2");
    let console = vec![b'x'; 64 * 1024];
    // (name, worker command); index 0 is the Rust library.
    let methods = [
        ("Rust library, persistent connection", "lib"),
        ("`await AsyncClient.remove`, persistent connection", "async"),
        ("`Client.remove`, persistent connection", "client"),
        (
            "`await` the Rust tokio client (pyo3-async-runtimes), persistent connection",
            "tokio",
        ),
        (
            "`await asyncio.to_thread(Client.remove)`, persistent connection",
            "thread",
        ),
        (
            "`asyncio.create_subprocess_exec(\"vmrm\", \"rm\", …)`",
            "cli",
        ),
        ("`subprocess.run([\"sudo\", \"rm\", \"-rf\", …])`", "sudo"),
    ];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); methods.len()];
    for i in 0..iterations + 5 {
        let dirs: Vec<PathBuf> = (0..methods.len())
            .map(|_| trees::workdir(prefix, env.uid, QEMU_UID, &overlay, &console))
            .collect();
        for k in 0..methods.len() {
            let m = (i + k) % methods.len();
            let (name, cmd) = methods[m];
            let line = format!("{cmd} {}", dirs[m].display());
            let took = if m == 0 {
                rust.time(&line)?
            } else {
                py.time(&line)?
            };
            if dirs[m].exists() {
                return Err(format!("{name} left {} behind", dirs[m].display()));
            }
            if i >= 5 {
                times[m].push(took);
            }
        }
    }
    let fstype = crate::capture(
        "findmnt",
        &["-no", "FSTYPE", "-T", &prefix.display().to_string()],
    );
    let _ = writeln!(
        md,
        "The workdir of section 1 (qcow2 overlay, four sockets, console log, owned by a `qemu-vm` uid) in \
         a sticky prefix on {fstype}, removed by `python/bench/bench_removal.py` running as the service \
         user with the `vmrm` package (`pip install ./python`), interleaved with the Rust library. \
         {iterations} iterations per method.\n"
    );
    let _ = writeln!(md, "| method | median | p99 |\n|---|---|---|");
    for ((name, _), t) in methods.iter().zip(&times) {
        let _ = writeln!(
            md,
            "| {name} | {} | {} |",
            show(median(t)),
            show(quantile(t, 0.99))
        );
    }
    let async_vs_rust = median_ratio(&times[1], &times[0]);
    let client_vs_rust = median_ratio(&times[2], &times[0]);
    let tokio_vs_async = median_ratio(&times[3], &times[1]);
    let thread_vs_async = median_ratio(&times[4], &times[1]);
    let sudo_vs_async = median_ratio(&times[6], &times[1]);
    let sudo_vs_client = median_ratio(&times[6], &times[2]);
    let _ = writeln!(
        md,
        "\nRatios (median of per-iteration ratios): `AsyncClient` / Rust library = **{async_vs_rust:.2}x**; \
         `Client` / Rust library = **{client_vs_rust:.2}x**; `sudo rm -rf` / `AsyncClient` = \
         **{sudo_vs_async:.1}x**; `sudo rm -rf` / `Client` = **{sudo_vs_client:.1}x**; the tokio client \
         (pyo3-async-runtimes) / `AsyncClient` = **{tokio_vs_async:.2}x**; a worker thread per call \
         (`asyncio.to_thread`) / `AsyncClient` = **{thread_vs_async:.2}x**.\n"
    );
    let worst = async_vs_rust.max(client_vs_rust);
    targets.push(crate::target(
        "Python on a persistent connection ≤ 1.3x the Rust library",
        format!("{async_vs_rust:.2}x async, {client_vs_rust:.2}x blocking"),
        worst <= 1.3,
    ));
    let least = sudo_vs_async.min(sudo_vs_client);
    targets.push(crate::target(
        "Python on a persistent connection ≥ 25x faster than `sudo rm -rf` from Python",
        format!("{sudo_vs_async:.1}x async, {sudo_vs_client:.1}x blocking"),
        least >= 25.0,
    ));
    Ok(())
}
