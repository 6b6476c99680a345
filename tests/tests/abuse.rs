//! Protocol abuse over raw sockets. Other clients must still be
//! served within a bound, and the helper's memory must stay bounded.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use vmrm_proto::{
    decode, encode, read_frame, ClientMessage, ProtocolErrorKind, Request, ServerMessage,
    PROTOCOL_VERSION,
};
use vmrm_tests::{ids, require_root, tree, Daemon, DaemonOptions, Fixture};

/// Resident memory vmrmd may reach under abuse.
const RSS_CAP_KIB: u64 = 32 * 1024;

fn served_quickly(f: &Fixture, d: &Daemon) -> Duration {
    let started = Instant::now();
    let dir = tree::vm_workdir(&f.sticky, ids::TENANT_A);
    let (code, stderr) = d.rm_as(ids::TENANT_A, &dir);
    assert_eq!(code, 0, "{stderr}");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "a tenant waited {took:?}");
    took
}

/// Whether a "busy" frame is waiting on the non-blocking `s`.
fn told_busy(s: &mut UnixStream) -> bool {
    let Ok(Some(payload)) = read_frame(s) else {
        return false;
    };
    matches!(
        decode(&payload),
        Ok(ServerMessage::Error {
            kind: ProtocolErrorKind::Busy,
            ..
        })
    )
}

fn hello() -> Vec<u8> {
    encode(&ClientMessage::Hello {
        version: PROTOCOL_VERSION,
    })
    .unwrap()
}

#[test]
#[ignore = "needs root"]
fn thousands_of_idle_connections_do_not_starve_others() {
    require_root();
    let f = Fixture::new();
    let d = Daemon::start(&f, DaemonOptions::default());
    let mut idle = Vec::new();
    let mut busy = 0;
    for i in 0..3000 {
        let mut s = UnixStream::connect(&d.socket).unwrap();
        if i % 2 == 0 {
            let _ = s.write_all(&hello());
        }
        idle.push(s);
    }
    // Past the per-uid cap (32) the attacker's connections are told "busy"
    // and closed; the tenant, another uid, still gets in. Poll the sockets
    // for those answers until (nearly) all have come, within a generous bound.
    let mut answered = vec![false; idle.len()];
    for s in &idle {
        s.set_nonblocking(true).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while busy < 2900 && Instant::now() < deadline {
        for (s, answered) in idle.iter_mut().zip(&mut answered) {
            if !*answered && told_busy(s) {
                *answered = true;
                busy += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = served_quickly(&f, &d);
    let (peak, _) = d.memory_kib();
    eprintln!(
        "3000 idle connections: {busy} told busy, tenant served in {took:?}, peak RSS {peak} KiB"
    );
    assert!(busy >= 2900, "{busy}");
    assert!(peak < RSS_CAP_KIB, "peak RSS {peak} KiB");
}

#[test]
#[ignore = "needs root"]
fn a_trickling_client_is_cut_and_others_are_served() {
    require_root();
    let f = Fixture::new();
    let d = Daemon::start(
        &f,
        DaemonOptions {
            args: vec!["--frame-timeout".into(), "2".into()],
            ..Default::default()
        },
    );
    let frame = hello();
    let mut s = UnixStream::connect(&d.socket).unwrap();
    let started = Instant::now();
    let mut cut = false;
    for byte in &frame {
        if s.write_all(&[*byte]).is_err() {
            cut = true;
            break;
        }
        served_quickly(&f, &d);
        std::thread::sleep(Duration::from_millis(1000));
    }
    // The helper cut it with a timeout error (read from our receive buffer
    // even when the later writes already failed), well before the whole
    // frame could have trickled in.
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let payload = read_frame(&mut s).unwrap().expect("an error frame");
    assert!(
        matches!(
            decode::<ServerMessage>(&payload).unwrap(),
            ServerMessage::Error {
                kind: ProtocolErrorKind::Timeout,
                ..
            }
        ),
        "cut={cut}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    served_quickly(&f, &d);
}

#[test]
#[ignore = "needs root"]
fn a_client_that_never_reads_is_dropped_and_memory_stays_bounded() {
    require_root();
    let f = Fixture::new();
    let d = Daemon::start(
        &f,
        DaemonOptions {
            args: vec!["--frame-timeout".into(), "2".into()],
            ..Default::default()
        },
    );
    let mut s = UnixStream::connect(&d.socket).unwrap();
    s.write_all(&hello()).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    // Pipeline requests without ever reading the answers.
    let mut sent = 0u64;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(8) {
        let frame = encode(&ClientMessage::Request {
            id: sent,
            request: Request::Stats,
        })
        .unwrap();
        if s.write_all(&frame).is_err() {
            break;
        }
        sent += 1;
        if sent % 1000 == 0 {
            served_quickly(&f, &d);
        }
    }
    served_quickly(&f, &d);
    let (peak, _) = d.memory_kib();
    eprintln!("never-reading client: {sent} requests pipelined, peak RSS {peak} KiB");
    assert!(peak < RSS_CAP_KIB, "peak RSS {peak} KiB");
    // The helper gave up on it: reading now ends in EOF after what it sent.
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut frames = 0;
    while let Ok(Some(payload)) = read_frame(&mut s) {
        if matches!(
            decode::<ServerMessage>(&payload),
            Ok(ServerMessage::Response { .. })
        ) {
            frames += 1;
        }
    }
    assert!(
        (frames as u64) < sent,
        "all {sent} answered; the connection was never dropped"
    );
}
