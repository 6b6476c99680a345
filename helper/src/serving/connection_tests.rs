//! The connection handler over a socket pair, without root and without the
//! daemon: the handshake, every request, and every way a client can break
//! the protocol (wrong version, message out of turn, oversize, truncated or
//! garbage frames).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::task::JoinHandle;
use tokio_util::codec::Framed;
use vmrm_policy::oracle::NumericIds;
use vmrm_policy::{Config, ConfigFile, Gid, PeerCredentials, Pid, Uid};
use vmrm_proto::{
    codec, decode, encode_payload, Answer, ClientMessage, DenyReason, Outcome, ProtocolErrorKind,
    Request, ServerMessage, MAX_FRAME_LEN, PROTOCOL_VERSION,
};

use super::serve;
use crate::removal::PrefixDirs;
use crate::serving::service::{Policy, Service};

/// Bounds every wait on the handler, so a hang fails instead of blocking.
const WAIT: Duration = Duration::from_secs(10);

/// A prefix (a fresh temporary directory) and the service whose policy has
/// it as its only prefix.
struct World {
    _base: tempfile::TempDir,
    prefix: PathBuf,
    service: Arc<Service>,
}

impl World {
    /// The test process's uid on the allow-list.
    fn allowing_me() -> World {
        World::allowing(rustix::process::geteuid().as_raw())
    }

    /// Only `uid` on the allow-list; short timeouts for the timeout tests.
    fn allowing(uid: u32) -> World {
        World::with_limits(uid, "idle_timeout_secs = 2\nframe_timeout_secs = 1\n")
    }

    /// Only `uid` on the allow-list, and `limits` as the `[limits]` table.
    fn with_limits(uid: u32, limits: &str) -> World {
        let base = tempfile::tempdir().unwrap();
        let prefix = std::fs::canonicalize(base.path()).unwrap();
        let text = format!(
            "prefixes = [{prefix:?}]\nuser = 65534\nallow_uids = [{uid}]\n[limits]\n{limits}"
        );
        let file = ConfigFile::parse(&text, Path::new("connection_tests.toml")).unwrap();
        let config = Config::load(file, &NumericIds).unwrap();
        let prefixes = PrefixDirs::open(&config).unwrap();
        World {
            _base: base,
            prefix,
            service: Arc::new(Service::new(Policy { config, prefixes })),
        }
    }

    /// A connection from this process, served by [`serve`] on a thread of
    /// the blocking pool, as vmrmd serves one.
    fn connect(&self) -> (UnixStream, JoinHandle<()>) {
        let (server, client) = std::os::unix::net::UnixStream::pair().unwrap();
        let me = PeerCredentials {
            uid: Uid(rustix::process::geteuid().as_raw()),
            gid: Gid(rustix::process::getegid().as_raw()),
            pid: Some(Pid(std::process::id() as i32)),
        };
        let ticket = self
            .service
            .admission
            .admit(self.service.account_of(me.uid))
            .unwrap();
        let service = Arc::clone(&self.service);
        let served = tokio::task::spawn_blocking(move || serve(service, server, me, ticket));
        client.set_nonblocking(true).unwrap();
        (UnixStream::from_std(client).unwrap(), served)
    }

    /// A connection that has completed the handshake.
    async fn hello(&self) -> (Client, JoinHandle<()>) {
        let (client, served) = self.connect();
        let mut framed = Framed::new(client, codec());
        send(&mut framed, &hello(PROTOCOL_VERSION)).await;
        match receive(&mut framed).await {
            Some(ServerMessage::Hello { version, server }) => {
                assert_eq!(version, PROTOCOL_VERSION);
                assert!(server.starts_with("vmrmd "), "{server}");
            }
            other => panic!("no hello: {other:?}"),
        }
        (framed, served)
    }
}

type Client = Framed<UnixStream, tokio_util::codec::LengthDelimitedCodec>;

fn hello(version: u16) -> ClientMessage {
    ClientMessage::Hello { version }
}

async fn send(client: &mut Client, message: &ClientMessage) {
    let payload = encode_payload(message).unwrap();
    tokio::time::timeout(WAIT, client.send(Bytes::from(payload)))
        .await
        .expect("the handler did not take a frame")
        .unwrap();
}

/// The next message, or `None` once the handler closed the connection.
async fn receive(client: &mut Client) -> Option<ServerMessage> {
    let frame = tokio::time::timeout(WAIT, client.next())
        .await
        .expect("no answer from the handler")?;
    Some(decode(&frame.ok()?).unwrap())
}

/// Send `request` and return its answer, checking the id is echoed.
async fn ask(client: &mut Client, id: u64, request: Request) -> Answer {
    send(client, &ClientMessage::Request { id, request }).await;
    match receive(client).await {
        Some(ServerMessage::Response { id: got, answer }) => {
            assert_eq!(got, id);
            answer
        }
        other => panic!("no response: {other:?}"),
    }
}

/// Send a removal request and return its outcome; any other kind of answer
/// fails the test.
async fn ask_removal(client: &mut Client, id: u64, request: Request) -> Outcome {
    match ask(client, id, request).await {
        Answer::Removal(outcome) => outcome,
        other => panic!("a removal answered with {other:?}"),
    }
}

/// The handler's last word: an error of `kind`, then the connection closes
/// and the handler's task ends.
async fn expect_error_and_close(
    client: &mut Client,
    served: JoinHandle<()>,
    kind: ProtocolErrorKind,
) {
    match receive(client).await {
        Some(ServerMessage::Error { kind: got, message }) => {
            assert_eq!(got, kind, "{message}");
            assert!(!message.is_empty());
        }
        other => panic!("expected a {kind:?} error: {other:?}"),
    }
    assert!(
        receive(client).await.is_none(),
        "still open after the error"
    );
    tokio::time::timeout(WAIT, served).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_is_answered_with_the_version_and_the_server_name() {
    let world = World::allowing_me();
    let (mut client, served) = world.hello().await;
    // A clean close between frames ends the handler quietly.
    client.get_mut().shutdown().await.unwrap();
    assert!(receive(&mut client).await.is_none());
    tokio::time::timeout(WAIT, served).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_is_answered_with_pong_on_one_connection_many_times() {
    let world = World::allowing_me();
    let (mut client, _served) = world.hello().await;
    for id in [1, 7, u64::MAX] {
        match ask(&mut client, id, Request::Ping).await {
            Answer::Pong { server } => assert!(server.starts_with("vmrmd "), "{server}"),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_are_answered_and_count_the_removals() {
    let world = World::allowing_me();
    let (mut client, _served) = world.hello().await;
    let before = match ask(&mut client, 1, Request::Stats).await {
        Answer::Stats(stats) => stats,
        other => panic!("{other:?}"),
    };
    let gone = world.prefix.join("vm-00000000-gone0000");
    let _ = ask_removal(&mut client, 2, remove(&gone)).await;
    match ask(&mut client, 3, Request::Stats).await {
        Answer::Stats(after) => assert!(
            after.verdicts != before.verdicts,
            "the removal was not counted: {before:?} then {after:?}"
        ),
        other => panic!("{other:?}"),
    }
}

fn remove(path: &Path) -> Request {
    Request::Remove {
        path: path.as_os_str().as_encoded_bytes().to_vec(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_of_the_peers_own_workdir_removes_it() {
    let world = World::allowing_me();
    let dir = world.prefix.join("vm-00000000-mine0000");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/file"), b"x").unwrap();
    let (mut client, _served) = world.hello().await;
    match ask_removal(&mut client, 1, remove(&dir)).await {
        Outcome::Removed(stats) => assert_eq!(stats.entries, 3),
        other => panic!("{other:?}"),
    }
    assert!(!dir.exists());
    assert_eq!(
        ask_removal(&mut client, 2, remove(&dir)).await,
        Outcome::NotFound
    );
}

/// A peer off the allow-list (here: the test's uid, with only another uid
/// allowed) may connect and ping, but neither read stats nor remove.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_off_the_allow_list_is_denied_stats_and_removal() {
    let me = rustix::process::geteuid().as_raw();
    let world = World::allowing(if me == 61_001 { 61_002 } else { 61_001 });
    let dir = world.prefix.join("vm-00000000-mine0000");
    std::fs::create_dir(&dir).unwrap();
    let (mut client, _served) = world.hello().await;
    assert!(matches!(
        ask(&mut client, 1, Request::Ping).await,
        Answer::Pong { .. }
    ));
    match ask(&mut client, 2, Request::Stats).await {
        Answer::Denied { reason, .. } => assert_eq!(reason, DenyReason::PeerNotAllowed),
        other => panic!("{other:?}"),
    }
    match ask_removal(&mut client, 3, remove(&dir)).await {
        Outcome::Denied { reason, .. } => assert_eq!(reason, DenyReason::PeerNotAllowed),
        other => panic!("{other:?}"),
    }
    assert!(dir.exists(), "a denied removal touched the tree");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_outside_the_prefixes_is_denied_and_the_connection_stays() {
    let world = World::allowing_me();
    let (mut client, _served) = world.hello().await;
    match ask_removal(&mut client, 1, remove(Path::new("/etc"))).await {
        Outcome::Denied { reason, .. } => assert_eq!(reason, DenyReason::OutsidePrefixes),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        ask(&mut client, 2, Request::Ping).await,
        Answer::Pong { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_over_path_max_is_a_bad_request() {
    let world = World::allowing_me();
    let (mut client, _served) = world.hello().await;
    let request = Request::Remove {
        path: vec![b'a'; 4097],
    };
    assert!(matches!(
        ask_removal(&mut client, 1, request).await,
        Outcome::BadRequest { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_protocol_version_is_refused() {
    let world = World::allowing_me();
    let (client, served) = world.connect();
    let mut client = Framed::new(client, codec());
    send(&mut client, &hello(PROTOCOL_VERSION + 1)).await;
    expect_error_and_close(&mut client, served, ProtocolErrorKind::UnsupportedVersion).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_before_the_hello_is_unexpected() {
    let world = World::allowing_me();
    let (client, served) = world.connect();
    let mut client = Framed::new(client, codec());
    let ping = ClientMessage::Request {
        id: 1,
        request: Request::Ping,
    };
    send(&mut client, &ping).await;
    expect_error_and_close(&mut client, served, ProtocolErrorKind::UnexpectedMessage).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_hello_is_unexpected() {
    let world = World::allowing_me();
    let (mut client, served) = world.hello().await;
    send(&mut client, &hello(PROTOCOL_VERSION)).await;
    expect_error_and_close(&mut client, served, ProtocolErrorKind::UnexpectedMessage).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_over_the_maximum_is_refused_before_it_is_read() {
    let world = World::allowing_me();
    let (mut raw, served) = world.connect();
    // Only the length prefix: the handler must refuse on it alone.
    let length = u32::try_from(MAX_FRAME_LEN + 1).unwrap();
    raw.write_all(&length.to_be_bytes()).await.unwrap();
    let mut client = Framed::new(raw, codec());
    expect_error_and_close(&mut client, served, ProtocolErrorKind::FrameTooLarge).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_that_is_not_a_message_is_malformed() {
    let world = World::allowing_me();
    let (mut client, served) = world.hello().await;
    tokio::time::timeout(WAIT, client.send(Bytes::from_static(&[0xff; 16])))
        .await
        .unwrap()
        .unwrap();
    expect_error_and_close(&mut client, served, ProtocolErrorKind::MalformedFrame).await;
}

/// A frame cut short and left so: the frame timeout (1 s here) ends it, so
/// a client trickling bytes cannot hold its slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_frame_left_open_times_out() {
    let world = World::allowing_me();
    let (mut raw, served) = world.connect();
    let frame = vmrm_proto::encode(&hello(PROTOCOL_VERSION)).unwrap();
    raw.write_all(&frame[..frame.len() - 1]).await.unwrap();
    let mut client = Framed::new(raw, codec());
    expect_error_and_close(&mut client, served, ProtocolErrorKind::Timeout).await;
}

/// A frame cut short by the client closing: nothing to answer, the handler
/// ends without writing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_frame_then_close_ends_the_connection() {
    let world = World::allowing_me();
    let (mut raw, served) = world.connect();
    let frame = vmrm_proto::encode(&hello(PROTOCOL_VERSION)).unwrap();
    raw.write_all(&frame[..frame.len() - 1]).await.unwrap();
    raw.shutdown().await.unwrap();
    let mut client = Framed::new(raw, codec());
    assert!(receive(&mut client).await.is_none());
    tokio::time::timeout(WAIT, served).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_with_a_timeout() {
    let world = World::allowing_me();
    let (mut client, served) = world.hello().await;
    expect_error_and_close(&mut client, served, ProtocolErrorKind::Timeout).await;
}

/// `messages` as one write, as a pipelining client sends them.
async fn send_together(raw: &mut UnixStream, messages: &[ClientMessage]) {
    let mut bytes = Vec::new();
    for message in messages {
        bytes.extend(vmrm_proto::encode(message).unwrap());
    }
    tokio::time::timeout(WAIT, raw.write_all(&bytes))
        .await
        .expect("the handler did not take the bytes")
        .unwrap();
}

/// Every message of one read(2): what the handler wrote in one write.
async fn read_once(raw: &mut UnixStream) -> Vec<ServerMessage> {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 64 * 1024];
    let n = tokio::time::timeout(WAIT, raw.read(&mut buf))
        .await
        .expect("no answer from the handler")
        .unwrap();
    let mut rest = &buf[..n];
    let mut messages = Vec::new();
    while !rest.is_empty() {
        let (prefix, tail) = rest.split_at(vmrm_proto::LENGTH_PREFIX_LEN);
        let len = u32::from_be_bytes(prefix.try_into().unwrap()) as usize;
        assert!(tail.len() >= len, "half a frame in one write");
        messages.push(decode(&tail[..len]).unwrap());
        rest = &tail[len..];
    }
    messages
}

/// A pipelining client (hello and first request in one write) is answered
/// with the hello and the response in one write: it wakes once, not twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_pipelined_behind_the_hello_is_answered_with_it_in_one_write() {
    let world = World::allowing_me();
    let dir = world.prefix.join("vm-00000000-pipe0000");
    std::fs::create_dir(&dir).unwrap();
    // Enough to remove that a hello written ahead of the response would be
    // read alone.
    for i in 0..500 {
        std::fs::write(dir.join(i.to_string()), b"").unwrap();
    }
    let (mut raw, _served) = world.connect();
    let request = ClientMessage::Request {
        id: 1,
        request: remove(&dir),
    };
    send_together(&mut raw, &[hello(PROTOCOL_VERSION), request]).await;
    match read_once(&mut raw).await.as_slice() {
        [ServerMessage::Hello { version, .. }, ServerMessage::Response {
            id: 1,
            answer: Answer::Removal(Outcome::Removed(_)),
        }] => assert_eq!(*version, PROTOCOL_VERSION),
        other => panic!("not the hello and the response in one write: {other:?}"),
    }
    assert!(!dir.exists());
    // Later requests on the connection are served as usual.
    let mut client = Framed::new(raw, codec());
    assert!(matches!(
        ask(&mut client, 2, Request::Ping).await,
        Answer::Pong { .. }
    ));
}

/// The attack: a client of another version pipelines a removal behind its
/// hello, hoping the helper runs it before (or despite) refusing the
/// version. The refusal comes and nothing is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_pipelined_behind_another_version_is_never_executed() {
    let world = World::allowing_me();
    let dir = world.prefix.join("vm-00000000-kept0000");
    std::fs::create_dir(&dir).unwrap();
    let (mut raw, served) = world.connect();
    let request = ClientMessage::Request {
        id: 1,
        request: remove(&dir),
    };
    send_together(&mut raw, &[hello(PROTOCOL_VERSION + 1), request]).await;
    let mut client = Framed::new(raw, codec());
    expect_error_and_close(&mut client, served, ProtocolErrorKind::UnsupportedVersion).await;
    assert!(
        dir.exists(),
        "a request behind a refused hello was executed"
    );
}

/// A removal sent before the hello, with the hello right behind it in the
/// same write, is still refused and touches nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_before_the_hello_is_refused_even_with_the_hello_behind_it() {
    let world = World::allowing_me();
    let dir = world.prefix.join("vm-00000000-kept0000");
    std::fs::create_dir(&dir).unwrap();
    let (mut raw, served) = world.connect();
    let request = ClientMessage::Request {
        id: 1,
        request: remove(&dir),
    };
    send_together(&mut raw, &[request, hello(PROTOCOL_VERSION)]).await;
    let mut client = Framed::new(raw, codec());
    expect_error_and_close(&mut client, served, ProtocolErrorKind::UnexpectedMessage).await;
    assert!(dir.exists(), "a request before the hello was executed");
}

/// A hello followed by only part of a request: the handler must send its
/// hello now, not hold it for a response that waits on the client (which
/// may be waiting for that hello before it sends the rest).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hello_is_sent_at_once_when_the_next_frame_is_not_all_there() {
    let world = World::allowing_me();
    let (mut raw, _served) = world.connect();
    let mut bytes = vmrm_proto::encode(&hello(PROTOCOL_VERSION)).unwrap();
    let ping = vmrm_proto::encode(&ClientMessage::Request {
        id: 1,
        request: Request::Ping,
    })
    .unwrap();
    let (head, tail) = ping.split_at(3);
    bytes.extend_from_slice(head);
    raw.write_all(&bytes).await.unwrap();
    assert!(matches!(
        read_once(&mut raw).await.as_slice(),
        [ServerMessage::Hello { .. }]
    ));
    raw.write_all(tail).await.unwrap();
    assert!(matches!(
        read_once(&mut raw).await.as_slice(),
        [ServerMessage::Response {
            id: 1,
            answer: Answer::Pong { .. }
        }]
    ));
}

/// An operator's timeouts too large to add to the clock (the largest the
/// file takes) mean "never": the connection is served as usual, and a
/// removal runs (it used to panic computing its deadline, and the client
/// got no answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_too_large_for_the_clock_mean_never() {
    let huge = i64::MAX;
    let world = World::with_limits(
        rustix::process::geteuid().as_raw(),
        &format!(
            "idle_timeout_secs = {huge}\nframe_timeout_secs = {huge}\n\
             removal_deadline_secs = {huge}\n"
        ),
    );
    let dir = world.prefix.join("vm-00000000-huge0000");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("file"), b"x").unwrap();
    let (mut client, _served) = world.hello().await;
    assert!(matches!(
        ask(&mut client, 1, Request::Ping).await,
        Answer::Pong { .. }
    ));
    match ask_removal(&mut client, 2, remove(&dir)).await {
        Outcome::Removed(stats) => assert_eq!(stats.entries, 2),
        other => panic!("{other:?}"),
    }
}
