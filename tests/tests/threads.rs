//! A thread per connection: every connection vmrmd admits is served by a
//! thread of its own, even with every place taken, and shutdown does not
//! wait for idle connections' threads.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use vmrm_proto::{
    decode, encode, read_frame, Answer, ClientMessage, Outcome, Request, ServerMessage,
    MAX_FRAME_LEN, PROTOCOL_VERSION,
};
use vmrm_tests::tenant::as_uid;
use vmrm_tests::{ids, require_root, tree, Daemon, DaemonOptions, Fixture};

/// vmrmd's default connection cap (`max_connections`), and per uid.
const MAX_CONNECTIONS: usize = 256;
const PER_UID: usize = 32;

/// Peers other than the tenants: uids no test gives a name.
const FIRST_PEER: u32 = 61_100;

fn frame(message: &ClientMessage) -> Vec<u8> {
    encode(message).unwrap()
}

/// The next message on `s`, within its read timeout.
fn next(s: &mut UnixStream) -> ServerMessage {
    let payload = read_frame(s)
        .expect("no answer within the read timeout")
        .expect("closed instead of answering");
    decode(&payload).unwrap()
}

/// `n` connections from `uid` that have said hello and then keep quiet.
fn idle_connections(d: &Daemon, uid: u32, n: usize) -> Vec<UnixStream> {
    let socket = d.socket.clone();
    as_uid(uid, move || {
        (0..n)
            .map(|_| {
                let mut s = UnixStream::connect(&socket).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                s.write_all(&frame(&ClientMessage::Hello {
                    version: PROTOCOL_VERSION,
                }))
                .unwrap();
                assert!(matches!(next(&mut s), ServerMessage::Hello { .. }));
                s
            })
            .collect()
    })
    .join()
    .unwrap()
}

/// Fill every place but one with idle connections from several uids (as
/// many per uid as vmrmd allows one tenant).
fn all_places_but_one(d: &Daemon) -> Vec<UnixStream> {
    // The start-up probe's connection must have given its place back.
    d.wait_connections_closed();
    let mut idle = Vec::new();
    let mut uid = FIRST_PEER;
    while idle.len() < MAX_CONNECTIONS - 1 {
        let n = PER_UID.min(MAX_CONNECTIONS - 1 - idle.len());
        idle.extend(idle_connections(d, uid, n));
        uid += 1;
    }
    idle
}

/// The attack: tenants open every connection vmrmd admits and leave them
/// idle, each holding the thread that serves it. The last place still
/// gets a thread (a removal is served at once), and so does every idle
/// connection when it finally asks: no connection waits for another's
/// thread to come free. Memory and threads stay bounded.
#[test]
#[ignore = "needs root"]
fn every_place_taken_by_idle_connections_still_serves_each_at_once() {
    require_root();
    let f = Fixture::new();
    let d = Daemon::start(&f, DaemonOptions::default());
    let mut idle = all_places_but_one(&d);
    assert_eq!(d.open_connections(), MAX_CONNECTIONS - 1);

    // The last place: tenant A's removal, served at once.
    let dir = tree::vm_workdir(&f.sticky, ids::TENANT_A);
    let started = Instant::now();
    let (code, stderr) = d.rm_as(ids::TENANT_A, &dir);
    assert_eq!(code, 0, "{stderr}\n{}", d.log());
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "the last place waited {took:?}"
    );

    // Every idle connection asks at once; each is answered.
    let started = Instant::now();
    for (id, s) in idle.iter_mut().enumerate() {
        let ping = ClientMessage::Request {
            id: id as u64,
            request: Request::Ping,
        };
        s.write_all(&frame(&ping)).unwrap();
    }
    for (id, s) in idle.iter_mut().enumerate() {
        match next(s) {
            ServerMessage::Response {
                id: got,
                answer: Answer::Pong { .. },
            } => assert_eq!(got, id as u64),
            other => panic!("connection {id}: {other:?}"),
        }
    }
    let pinged = started.elapsed();
    let threads: usize = d.status_field("Threads").trim().parse().unwrap();
    let (peak, _) = d.memory_kib();
    eprintln!(
        "{} idle connections: the last place served in {took:?}, all pinged in {pinged:?}; \
         {threads} threads, peak RSS {peak} KiB",
        idle.len()
    );
    assert!(pinged < Duration::from_secs(10), "{pinged:?}");
    // One per connection, the runtime's worker, the main thread, the
    // spares; nothing per request.
    assert!(threads <= MAX_CONNECTIONS + 8, "{threads} threads");
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
}

/// The attack: every place taken by a connection that sends one frame of
/// the largest size vmrmd reads (256 KiB: a path far over PATH_MAX, a bad
/// request that keeps the connection open) and then idles. Each thread
/// gives that buffer back after the frame, so memory does not grow with
/// the connections holding such a frame's worth (255 x 256 KiB = 64 MiB).
#[test]
#[ignore = "needs root"]
fn idle_connections_that_each_sent_a_largest_frame_keep_no_buffer_of_it() {
    require_root();
    let f = Fixture::new();
    let d = Daemon::start(&f, DaemonOptions::default());
    let mut idle = all_places_but_one(&d);
    let (before, _) = d.memory_kib();
    for (id, s) in idle.iter_mut().enumerate() {
        let large = ClientMessage::Request {
            id: id as u64,
            request: Request::Remove {
                path: vec![b'a'; MAX_FRAME_LEN - 64],
            },
        };
        s.write_all(&frame(&large)).unwrap();
        match next(s) {
            ServerMessage::Response {
                answer: Answer::Removal(Outcome::BadRequest { .. }),
                ..
            } => {}
            other => panic!("connection {id}: {other:?}"),
        }
    }
    let (peak, _) = d.memory_kib();
    eprintln!(
        "{} connections sent {} KiB each: peak RSS {before} KiB before, {peak} KiB after",
        idle.len(),
        MAX_FRAME_LEN / 1024
    );
    assert!(
        peak < before + 16 * 1024,
        "peak RSS grew from {before} to {peak} KiB"
    );
}

/// The shipped unit lets vmrmd start a thread for every connection it
/// admits by default, plus the helpers of every removal slot: with fewer,
/// a connection past the limit would wait for another to close.
#[test]
fn the_units_task_limit_leaves_a_thread_for_every_connection() {
    let unit =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/systemd/vmrmd.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    let tasks: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("TasksMax="))
        .expect("TasksMax in the unit")
        .parse()
        .unwrap();
    // Connections, 4 removal slots of 3 helpers each, the runtime's threads.
    let needed = MAX_CONNECTIONS + 4 * 3 + 8;
    assert!(tasks >= needed, "TasksMax={tasks}, vmrmd may need {needed}");
}

/// SIGTERM while connections sit idle: vmrmd drains its removals and exits
/// at once, not when the idle connections' threads would time out (300 s).
#[test]
#[ignore = "needs root"]
fn sigterm_with_idle_connections_open_exits_at_once() {
    require_root();
    let f = Fixture::new();
    let mut d = Daemon::start(&f, DaemonOptions::default());
    let idle = idle_connections(&d, ids::TENANT_A, 8);
    let started = Instant::now();
    assert!(d.stop(), "vmrmd did not stop cleanly:\n{}", d.log());
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "stopping took {took:?}");
    assert!(d.log().contains("vmrmd stopped"), "{}", d.log());
    drop(idle);
}
