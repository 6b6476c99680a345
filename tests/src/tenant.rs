//! Acting as tenants from the test process: threads with a tenant's uids,
//! tenant B's small probe removal, tenant A's VMs refilling its workdirs,
//! and the audit lines that show whose removals have started.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustix::process::Uid;
use vmrm_proto::Outcome;

use crate::{ids, tree, Daemon};

/// Generous: B's 10-file removal takes milliseconds when served fairly.
pub const SERVED_WITHIN: Duration = Duration::from_secs(10);

/// Run `work` on a new thread whose (and only whose) uids are `uid`: its
/// connections carry that uid in SO_PEERCRED, and the files it creates are
/// that uid's, as a tenant process's would be.
pub fn as_uid<R: Send + 'static>(
    uid: u32,
    work: impl FnOnce() -> R + Send + 'static,
) -> JoinHandle<R> {
    thread::spawn(move || {
        // rustix's per-thread setresuid, not glibc's process-wide one: the
        // rest of the test process stays root.
        let u = Uid::from_raw(uid);
        rustix::thread::set_thread_res_uid(u, u, u).unwrap();
        work()
    })
}

/// A client of `socket` that waits long for an answer: a test's own
/// timeouts decide, not the client's.
pub fn patient_client(socket: &Path) -> vmrm::Client {
    let mut options = vmrm::ClientOptions::with_socket(socket);
    options.response_timeout = Duration::from_secs(660);
    vmrm::Client::with_options(options)
}

/// B removes a workdir of 10 files in `prefix`; returns how long it took.
pub fn b_is_served(prefix: &Path, d: &Daemon) -> Duration {
    let dir = tree::wide_workdir(prefix, ids::TENANT_B, 10);
    let socket = d.socket.clone();
    let started = Instant::now();
    let outcome = as_uid(ids::TENANT_B, move || patient_client(&socket).remove(&dir))
        .join()
        .unwrap();
    let took = started.elapsed();
    assert!(
        matches!(outcome, Ok(Outcome::Removed(_))),
        "B: {outcome:?}\n{}",
        d.log()
    );
    took
}

/// Audit lines `message` (`remove_start` or `remove`) of requests from
/// peer `uid` so far.
pub fn audit_count(d: &Daemon, message: &str, uid: u32) -> usize {
    d.audit()
        .iter()
        .filter(|l| l["message"] == message && l["peer_uid"] == uid)
        .count()
}

/// Wait (polling, 30 s at most) until `n` removals of peer `uid` have
/// started (each has its `remove_start` audit line: it holds a slot).
pub fn wait_started(d: &Daemon, uid: u32, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    // Start lines are written before the removal begins: no need to let
    // the log settle (as `Daemon::audit` does) on every poll.
    let started = || {
        d.log()
            .lines()
            .filter(|l| l.contains("\"message\":\"remove_start\""))
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|l| l["peer_uid"] == uid)
            .count()
    };
    while started() < n {
        assert!(
            Instant::now() < deadline,
            "{n} removals of uid {uid} did not start:\n{}",
            d.log()
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// Writer threads standing in for a tenant's VMs: as the tenant's uid,
/// each creates empty files in its directory and in the subdirectories
/// `s0`, `s1`... of it, one place after another, as fast as it can, until
/// stopped. A subdirectory a removal took is made again at once, and a
/// file in the top itself keeps the top from being found empty, so a tree
/// refills for as long as the writers outrun the removal; a full
/// filesystem (ENOSPC) or a top that is gone only makes them try again.
pub struct Refill {
    stop: Arc<AtomicBool>,
    writers: Vec<JoinHandle<u64>>,
}

impl Refill {
    /// `writers` threads of `uid` per directory of `dirs`, sharing it and
    /// its `subdirs` subdirectories (made now, `uid`'s).
    pub fn start(uid: u32, dirs: &[PathBuf], subdirs: usize, writers: usize) -> Refill {
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for dir in dirs {
            let subs: Vec<PathBuf> = (0..subdirs).map(|j| dir.join(format!("s{j}"))).collect();
            for sub in &subs {
                fs::create_dir(sub).unwrap();
                std::os::unix::fs::lchown(sub, Some(uid), Some(uid)).unwrap();
            }
            for k in 0..writers {
                let (top, subs, stop) = (dir.clone(), subs.clone(), Arc::clone(&stop));
                handles.push(as_uid(uid, move || write_until(&top, &subs, k, &stop)));
            }
        }
        Refill {
            stop,
            writers: handles,
        }
    }

    /// Stop the writers; returns how many files they created.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.writers.drain(..).map(|t| t.join().unwrap()).sum()
    }
}

impl Drop for Refill {
    /// A failed test stops its writers too, so the fixture can clean up.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.writers.drain(..) {
            let _ = t.join();
        }
    }
}

/// Writer `k`'s loop: a file `w<k>-<n>` in the next of `top` and `subs`
/// (starting at the `k`th, so that writers sharing a place never collide
/// on a name) until `stop`. Returns how many files it created.
fn write_until(top: &Path, subs: &[PathBuf], k: usize, stop: &AtomicBool) -> u64 {
    let mut created = 0;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let at = (k + n as usize) % (subs.len() + 1);
        let place = if at == 0 { top } else { &subs[at - 1] };
        match fs::File::create(place.join(format!("w{k}-{n}"))) {
            Ok(_) => created += 1,
            // The removal took the subdirectory: the VM makes it again
            // (in vain once the top is gone; the loop goes on regardless).
            Err(e) if e.kind() == ErrorKind::NotFound && at > 0 => {
                let _ = fs::create_dir(place);
            }
            Err(_) => {}
        }
        n += 1;
    }
    created
}
