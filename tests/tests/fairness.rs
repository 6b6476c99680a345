//! Tenants never stall each other. Tenant A's many huge or
//! refilling removals, or its subordinate uids' connections, leave tenant B
//! served; and a reload that revokes a uid reaches its open connections.

use std::fs;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rustix::net::{recv, RecvFlags};
use rustix::process::Uid;
use vmrm_proto::{
    decode, encode, read_frame, ClientMessage, Outcome, ProtocolErrorKind, ServerMessage,
    PROTOCOL_VERSION,
};
use vmrm_tests::{ids, require_root, tree, Daemon, DaemonOptions, Fixture};

/// Generous: B's 10-file removal takes milliseconds when served fairly.
const SERVED_WITHIN: Duration = Duration::from_secs(10);

/// Run `work` on a new thread whose (and only whose) uids are `uid`: its
/// connections carry that uid in SO_PEERCRED, as a tenant process's would.
fn as_uid<R: Send + 'static>(uid: u32, work: impl FnOnce() -> R + Send + 'static) -> JoinHandle<R> {
    thread::spawn(move || {
        // rustix's per-thread setresuid, not glibc's process-wide one: the
        // rest of the test process stays root.
        let u = Uid::from_raw(uid);
        rustix::thread::set_thread_res_uid(u, u, u).unwrap();
        work()
    })
}

/// B removes a workdir of 10 files in `prefix`; returns how long it took.
fn b_is_served(prefix: &Path, d: &Daemon) -> Duration {
    let dir = wide_workdir(prefix, ids::TENANT_B, 10);
    let socket = d.socket.clone();
    let started = Instant::now();
    let outcome = as_uid(ids::TENANT_B, move || {
        let mut options = vmrm::ClientOptions::with_socket(&socket);
        options.response_timeout = Duration::from_secs(660);
        vmrm::Client::with_options(options).remove(&dir)
    })
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

/// A workdir of `owner` holding `files` empty files.
fn wide_workdir(prefix: &Path, owner: u32, files: usize) -> PathBuf {
    let dir = tree::empty_workdir(prefix, owner);
    // Through the directory's fd: no path walk per file.
    vmrm_testkit::files(tree::open_dir(&dir).as_fd(), files, "f");
    dir
}

/// Connections vmrmd accepted so far, asked over `probe`'s one connection
/// (so that asking does not count).
fn accepted(probe: &mut vmrm::Client) -> u64 {
    probe.stats().unwrap().unwrap().connections_accepted
}

/// Connections vmrmd accepted or refused so far, asked over `probe`.
fn handled(probe: &mut vmrm::Client) -> u64 {
    let stats = probe.stats().unwrap().unwrap();
    stats.connections_accepted + stats.connections_refused
}

/// Wait until `s` has something to read (polling, 10 s at most).
fn wait_readable(s: &UnixStream) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let flags = RecvFlags::PEEK | RecvFlags::DONTWAIT;
    while !matches!(recv(s, &mut [0u8], flags), Ok((n, _)) if n > 0) {
        assert!(Instant::now() < deadline, "nothing to read");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Wait until vmrmd has accepted `n` more connections than `base`.
fn wait_accepted(probe: &mut vmrm::Client, base: u64, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while accepted(probe) < base + n {
        assert!(Instant::now() < deadline, "A's clients did not connect");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
#[ignore = "needs root"]
fn tenant_b_is_served_while_a_runs_32_huge_removals() {
    require_root();
    let f = Fixture::new();
    // On tmpfs: the disk under /tmp is shared, and slow to fill.
    let prefix = f.tmpfs("huge", 1_000_000);
    let d = Daemon::start(
        &f,
        DaemonOptions {
            prefixes: Some(vec![prefix.clone()]),
            ..Default::default()
        },
    );
    let dirs: Vec<PathBuf> = (0..32)
        .map(|_| wide_workdir(&prefix, ids::TENANT_A, 20_000))
        .collect();
    let done = Arc::new(AtomicUsize::new(0));
    let mut probe = d.client();
    let base = accepted(&mut probe);
    let a: Vec<_> = dirs
        .iter()
        .map(|dir| {
            let (dir, socket, done) = (dir.clone(), d.socket.clone(), Arc::clone(&done));
            as_uid(ids::TENANT_A, move || {
                let mut options = vmrm::ClientOptions::with_socket(&socket);
                options.response_timeout = Duration::from_secs(660);
                let outcome = vmrm::Client::with_options(options).remove(&dir);
                done.fetch_add(1, Ordering::SeqCst);
                outcome
            })
        })
        .collect();
    // Every one of A's requests is in before B's: a FIFO would serve B
    // only after 28 of them ended.
    wait_accepted(&mut probe, base, 32);
    thread::sleep(Duration::from_millis(200));
    let took = b_is_served(&prefix, &d);
    let a_done = done.load(Ordering::SeqCst);
    eprintln!("B served in {took:?} while A had {a_done} of 32 huge removals done");
    assert!(took < SERVED_WITHIN, "B waited {took:?}");
    assert!(
        a_done < 24,
        "B was served only after {a_done} of A's removals ended"
    );
    for t in a {
        assert!(matches!(t.join().unwrap(), Ok(Outcome::Removed(_))));
    }
}

#[test]
#[ignore = "needs root"]
fn tenant_b_is_served_while_a_keeps_4_trees_refilling() {
    require_root();
    let f = Fixture::new();
    let d = Daemon::start(
        &f,
        DaemonOptions {
            args: vec!["--removal-deadline".into(), "30".into()],
            ..Default::default()
        },
    );
    let stop = Arc::new(AtomicBool::new(false));
    let dirs: Vec<PathBuf> = (0..4)
        .map(|_| wide_workdir(&f.sticky, ids::TENANT_A, 2_000))
        .collect();
    // Two writers per workdir, as a VM writing files as fast as it can.
    let refillers: Vec<_> = dirs
        .iter()
        .flat_map(|dir| [(dir.clone(), 0), (dir.clone(), 1)])
        .map(|(dir, writer)| {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // Fails once the top is gone; keeps trying regardless.
                    let _ = fs::File::create(dir.join(format!("r{writer}-{n}")));
                    n += 1;
                }
            })
        })
        .collect();
    let mut probe = d.client();
    let base = accepted(&mut probe);
    let a: Vec<_> = dirs
        .iter()
        .map(|dir| {
            let (dir, socket) = (dir.clone(), d.socket.clone());
            as_uid(ids::TENANT_A, move || {
                let mut options = vmrm::ClientOptions::with_socket(&socket);
                options.response_timeout = Duration::from_secs(660);
                vmrm::Client::with_options(options).remove(&dir)
            })
        })
        .collect();
    wait_accepted(&mut probe, base, 4);
    thread::sleep(Duration::from_millis(300));
    let took = b_is_served(&f.plain, &d);
    eprintln!("B served in {took:?} while A's 4 trees refill");
    stop.store(true, Ordering::Relaxed);
    for t in refillers {
        t.join().unwrap();
    }
    for t in a {
        // Removed, or a truthful failure once the writers won: either way
        // an answer, not a hang.
        let outcome = t.join().unwrap();
        assert!(outcome.is_ok(), "A: {outcome:?}");
    }
    assert!(took < SERVED_WITHIN, "B waited {took:?}");
}

fn hello() -> Vec<u8> {
    encode(&ClientMessage::Hello {
        version: PROTOCOL_VERSION,
    })
    .unwrap()
}

#[test]
#[ignore = "needs root"]
fn subordinate_uids_share_their_owners_connection_cap() {
    require_root();
    let f = Fixture::new();
    // A's range, as `usermod --add-subuids` would record it.
    let subuid = f.base().join("subuid");
    fs::write(&subuid, format!("{}:300000:65536\n", ids::TENANT_A)).unwrap();
    let d = Daemon::start(
        &f,
        DaemonOptions {
            args: vec!["--subuid-file".into(), subuid.display().to_string()],
            ..Default::default()
        },
    );
    let mut probe = d.client();
    let base = handled(&mut probe);
    // 8 uids of A's user namespace x 32 connections: the global cap (256)
    // when each counts as its own tenant.
    let held: Vec<UnixStream> = (0..8u32)
        .map(|k| {
            let socket = d.socket.clone();
            as_uid(300_000 + k, move || {
                (0..32)
                    .filter_map(|_| {
                        let mut s = UnixStream::connect(&socket).ok()?;
                        let _ = s.write_all(&hello());
                        Some(s)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .flat_map(|t| t.join().unwrap())
        .collect();
    // Every connection accepted or refused before B comes.
    let deadline = Instant::now() + Duration::from_secs(30);
    while handled(&mut probe) < base + held.len() as u64 {
        assert!(
            Instant::now() < deadline,
            "the subuid connections were not handled"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let took = b_is_served(&f.plain, &d);
    let stats = d.client().stats().unwrap().unwrap();
    eprintln!(
        "{} subuid connections, {} refused; B served in {took:?}",
        held.len(),
        stats.connections_refused
    );
    assert!(took < SERVED_WITHIN, "B waited {took:?}");
    assert!(
        stats.connections_refused >= 256 - 32,
        "A's subordinate uids were admitted as separate tenants: {} refused",
        stats.connections_refused
    );
}

#[test]
#[ignore = "needs root"]
fn reload_that_drops_a_uid_denies_its_open_connection() {
    require_root();
    let f = Fixture::new();
    let etc = f.base().join("etc/vmrm");
    fs::create_dir_all(&etc).unwrap();
    let config = etc.join("vmrmd.toml");
    let write_config = |body: &str| {
        // Replace by rename, as editors and config management do.
        let tmp = config.with_extension("tmp");
        fs::write(&tmp, body).unwrap();
        fs::rename(&tmp, &config).unwrap();
    };
    write_config(&format!(
        "allow_uids = [{}, {}]\n",
        ids::TENANT_A,
        ids::TENANT_B
    ));
    let mut d = Daemon::start(
        &f,
        DaemonOptions {
            config: Some(config.clone()),
            ..Default::default()
        },
    );
    let first = tree::vm_workdir(&f.plain, ids::TENANT_A);
    let second = tree::vm_workdir(&f.plain, ids::TENANT_A);
    let (reloaded_tx, reloaded_rx) = mpsc::channel::<()>();
    let (removed_tx, removed_rx) = mpsc::channel::<()>();
    let socket = d.socket.clone();
    let (first2, second2) = (first.clone(), second.clone());
    // One client object, one connection, two removals across the reload.
    let a = as_uid(ids::TENANT_A, move || {
        let mut options = vmrm::ClientOptions::with_socket(&socket);
        options.response_timeout = Duration::from_secs(60);
        let mut c = vmrm::Client::with_options(options);
        let before = c.remove(&first2);
        removed_tx.send(()).unwrap();
        reloaded_rx.recv().unwrap();
        (before, c.remove(&second2))
    });
    removed_rx.recv().unwrap();
    write_config(&format!("allow_uids = [{}]\n", ids::TENANT_B));
    let reloads = d.log().matches("configuration reloaded").count();
    d.signal(Signal::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.log().matches("configuration reloaded").count() <= reloads {
        assert!(Instant::now() < deadline, "no reload in\n{}", d.log());
        thread::sleep(Duration::from_millis(20));
    }
    reloaded_tx.send(()).unwrap();
    let (before, after) = a.join().unwrap();
    assert!(matches!(before, Ok(Outcome::Removed(_))), "{before:?}");
    assert!(
        matches!(after, Ok(Outcome::Denied { .. })),
        "A's open connection still removes after the reload: {after:?}"
    );
    assert!(second.exists());
    assert!(d.stop(), "{}", d.log());
}

#[test]
#[ignore = "needs root"]
fn a_refused_client_that_sends_hello_first_still_reads_busy() {
    require_root();
    let f = Fixture::new();
    let d = Daemon::start(
        &f,
        DaemonOptions {
            args: vec!["--max-connections-per-uid".into(), "1".into()],
            ..Default::default()
        },
    );
    // Let the readiness probe's connection give its slot back.
    d.wait_connections_closed();
    let mut held = UnixStream::connect(&d.socket).unwrap();
    held.write_all(&hello()).unwrap();
    let mut refused = UnixStream::connect(&d.socket).unwrap();
    refused
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // A client writes its hello before reading: by then the refusal has
    // been sent; the write must land (not EPIPE) and the frame be read.
    wait_readable(&refused);
    refused
        .write_all(&hello())
        .expect("hello to a refused connection");
    let payload = read_frame(&mut refused).unwrap().expect("a busy frame");
    match decode::<ServerMessage>(&payload).unwrap() {
        ServerMessage::Error {
            kind: ProtocolErrorKind::Busy,
            message,
        } => assert!(message.contains("connections"), "{message}"),
        other => panic!("{other:?}"),
    }
}
