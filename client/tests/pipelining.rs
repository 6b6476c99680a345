//! The hello pipelined with the first request, against a fake helper: both
//! clients write them in one write; they read the helper's hello before the
//! answer; a refused version reads as such; and the event-loop halves wait
//! again, instead of blocking, when the helper's hello came alone.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;

use vmrm::{Answer, Client, ClientError, ClientOptions, Outcome, RemovalStats};
use vmrm_proto::{
    decode, encode, write_frame, ClientMessage, ProtocolErrorKind, Request, ServerMessage,
    LENGTH_PREFIX_LEN, PROTOCOL_VERSION,
};

/// A listening socket in a fresh directory.
struct Helper {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    listener: UnixListener,
}

impl Helper {
    fn new() -> Helper {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("s");
        let listener = UnixListener::bind(&socket).unwrap();
        Helper {
            _dir: dir,
            socket,
            listener,
        }
    }
}

/// The messages of one read(2): what the client wrote in one write, since
/// a write this small is queued whole before the read returns.
fn read_once(s: &mut UnixStream) -> Vec<ClientMessage> {
    let mut buf = vec![0u8; 64 * 1024];
    let n = s.read(&mut buf).unwrap();
    let mut rest = &buf[..n];
    let mut messages = Vec::new();
    while !rest.is_empty() {
        let prefix: [u8; LENGTH_PREFIX_LEN] = rest[..LENGTH_PREFIX_LEN].try_into().unwrap();
        let len = u32::from_be_bytes(prefix) as usize;
        let frame = &rest[LENGTH_PREFIX_LEN..LENGTH_PREFIX_LEN + len];
        messages.push(decode(frame).unwrap());
        rest = &rest[LENGTH_PREFIX_LEN + len..];
    }
    messages
}

fn hello_reply() -> ServerMessage {
    ServerMessage::Hello {
        version: PROTOCOL_VERSION,
        server: "fake".into(),
    }
}

fn removed(id: u64) -> ServerMessage {
    ServerMessage::Response {
        id,
        answer: Answer::Removal(Outcome::Removed(RemovalStats {
            entries: 1,
            bytes: 0,
        })),
    }
}

/// Check a first write is our hello then a removal; its request id.
fn hello_then_removal(messages: &[ClientMessage]) -> u64 {
    match messages {
        [ClientMessage::Hello { version }, ClientMessage::Request {
            id,
            request: Request::Remove { .. },
        }] => {
            assert_eq!(*version, PROTOCOL_VERSION);
            *id
        }
        other => panic!("not hello and a removal in one write: {other:?}"),
    }
}

/// A helper like vmrmd: the hello and the answer in one write.
fn answer_pipelined(listener: UnixListener) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let id = hello_then_removal(&read_once(&mut s));
        let mut out = encode(&hello_reply()).unwrap();
        out.extend(encode(&removed(id)).unwrap());
        s.write_all(&out).unwrap();
        // Later requests on the connection: one frame per write.
        while let Ok(Some(frame)) = vmrm_proto::read_frame(&mut s) {
            let ClientMessage::Request { id, .. } = decode(&frame).unwrap() else {
                panic!("a second hello");
            };
            write_frame(&mut s, &removed(id)).unwrap();
        }
    })
}

fn gone(helper: &Helper) -> PathBuf {
    helper.socket.with_file_name("vm-gone")
}

fn options(socket: &Path) -> ClientOptions {
    ClientOptions::with_socket(socket)
}

#[test]
fn the_blocking_client_sends_hello_and_request_in_one_write() {
    let helper = Helper::new();
    let path = gone(&helper);
    let socket = helper.socket.clone();
    let server = answer_pipelined(helper.listener);
    let mut c = Client::with_options(options(&socket));
    // The second removal reuses the connection: no hello.
    for _ in 0..2 {
        assert!(matches!(c.remove(&path).unwrap(), Outcome::Removed(_)));
    }
    drop(c);
    server.join().unwrap();
}

#[test]
fn the_async_client_sends_hello_and_request_in_one_write() {
    let helper = Helper::new();
    let path = gone(&helper);
    let socket = helper.socket.clone();
    let server = answer_pipelined(helper.listener);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let c = vmrm::AsyncClient::with_options(options(&socket));
    for _ in 0..2 {
        let outcome = runtime.block_on(c.remove(&path)).unwrap();
        assert!(matches!(outcome, Outcome::Removed(_)));
    }
    drop(c);
    server.join().unwrap();
}

/// A helper of another protocol version: it refuses the hello, reads no
/// further, and hangs up with the pipelined request unread.
fn refuse_version(listener: UnixListener) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        hello_then_removal(&read_once(&mut s));
        let refusal = ServerMessage::Error {
            kind: ProtocolErrorKind::UnsupportedVersion,
            message: format!(
                "client speaks protocol {PROTOCOL_VERSION}, vmrmd speaks {}",
                PROTOCOL_VERSION + 1
            ),
        };
        write_frame(&mut s, &refusal).unwrap();
    })
}

fn assert_version_refused(result: Result<Outcome, ClientError>) {
    match result {
        Err(
            e @ ClientError::Refused {
                kind: ProtocolErrorKind::UnsupportedVersion,
                ..
            },
        ) => {
            let text = e.to_string();
            assert!(text.contains("UnsupportedVersion"), "{text}");
            assert!(text.contains("vmrmd speaks"), "{text}");
        }
        other => panic!("not a version refusal: {other:?}"),
    }
}

#[test]
fn a_refused_version_reads_as_such_in_both_clients() {
    let helper = Helper::new();
    let path = gone(&helper);
    let socket = helper.socket.clone();
    let server = refuse_version(helper.listener);
    assert_version_refused(Client::with_options(options(&socket)).remove(&path));
    server.join().unwrap();

    let helper = Helper::new();
    let socket = helper.socket.clone();
    let server = refuse_version(helper.listener);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let c = vmrm::AsyncClient::with_options(options(&socket));
    assert_version_refused(runtime.block_on(c.remove(&path)));
    server.join().unwrap();
}

/// The event-loop halves on a helper that sends its hello alone and the
/// answer only later: `finish_remove` must not block on the answer (the
/// event loop would stall) but ask to be called again.
#[test]
fn finish_remove_waits_again_when_the_hello_came_alone() {
    let helper = Helper::new();
    let path = gone(&helper);
    let socket = helper.socket.clone();
    let listener = helper.listener;
    let (hello_sent, hello_was_sent) = mpsc::channel();
    let (answer_now, may_answer) = mpsc::channel::<()>();
    let server = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let id = hello_then_removal(&read_once(&mut s));
        write_frame(&mut s, &hello_reply()).unwrap();
        hello_sent.send(()).unwrap();
        may_answer.recv().unwrap();
        write_frame(&mut s, &removed(id)).unwrap();
    });
    let mut c = Client::with_options(options(&socket));
    let pending = c.send_remove(&path).unwrap();
    hello_was_sent.recv().unwrap();
    let Err(pending) = c.finish_remove(pending).unwrap() else {
        panic!("an answer before the helper sent one");
    };
    answer_now.send(()).unwrap();
    // Now the answer comes; a blocking read of it is what an event loop
    // does once the fd is readable.
    match c.finish_remove(pending).unwrap() {
        Ok(Outcome::Removed(_)) => {}
        other => panic!("{other:?}"),
    }
    server.join().unwrap();
}
