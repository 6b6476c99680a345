//! Framing: garbage, oversized and truncated frames get an error and
//! the helper keeps serving everyone else.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use vmrm_proto::{
    decode, encode, read_frame, ClientMessage, ProtocolErrorKind, Request, ServerMessage,
    PROTOCOL_VERSION,
};
use vmrm_tests::{ids, require_root, tree, Daemon, DaemonOptions, Fixture};

fn raw(d: &Daemon) -> UnixStream {
    let s = UnixStream::connect(&d.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Read the helper's error frame, then expect the connection closed.
fn expect_error(s: &mut UnixStream) -> ProtocolErrorKind {
    let payload = read_frame(s).unwrap().expect("an error frame before close");
    let kind = match decode::<ServerMessage>(&payload).unwrap() {
        ServerMessage::Error { kind, .. } => kind,
        other => panic!("{other:?}"),
    };
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty(), "bytes after the error frame");
    kind
}

fn hello(s: &mut UnixStream) {
    s.write_all(
        &encode(&ClientMessage::Hello {
            version: PROTOCOL_VERSION,
        })
        .unwrap(),
    )
    .unwrap();
    let payload = read_frame(s).unwrap().unwrap();
    assert!(matches!(
        decode::<ServerMessage>(&payload).unwrap(),
        ServerMessage::Hello { .. }
    ));
}

/// Another client, and a tenant removal, still work.
fn still_serving(f: &Fixture, d: &Daemon) {
    assert!(d.client().ping().unwrap().starts_with("vmrmd"));
    let dir = tree::vm_workdir(&f.sticky, ids::TENANT_A);
    let (code, stderr) = d.rm_as(ids::TENANT_A, &dir);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
#[ignore = "needs root"]
fn bad_frames_get_an_error_and_the_helper_keeps_serving() {
    require_root();
    let f = Fixture::new();
    let d = Daemon::start(
        &f,
        DaemonOptions {
            args: vec!["--frame-timeout".into(), "1".into()],
            ..Default::default()
        },
    );

    // A held-open connection that sent half a frame must not block others.
    let mut stalled = raw(&d);
    stalled.write_all(&[0, 0, 0, 100, 1, 2, 3]).unwrap();

    // Garbage payload in a well-formed frame.
    let mut s = raw(&d);
    s.write_all(&[0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff])
        .unwrap();
    assert_eq!(expect_error(&mut s), ProtocolErrorKind::MalformedFrame);
    still_serving(&f, &d);

    // Random bytes.
    let mut s = raw(&d);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let _ = expect_error(&mut s);
    still_serving(&f, &d);

    // A declared length far over the maximum: refused before reading it.
    let mut s = raw(&d);
    s.write_all(&u32::MAX.to_be_bytes()).unwrap();
    assert_eq!(expect_error(&mut s), ProtocolErrorKind::FrameTooLarge);
    still_serving(&f, &d);

    // Trailing bytes after a valid message.
    let mut s = raw(&d);
    let mut frame = encode(&ClientMessage::Hello {
        version: PROTOCOL_VERSION,
    })
    .unwrap();
    frame.push(0);
    let len = u32::try_from(frame.len() - 4).unwrap();
    frame[..4].copy_from_slice(&len.to_be_bytes());
    s.write_all(&frame).unwrap();
    assert_eq!(expect_error(&mut s), ProtocolErrorKind::MalformedFrame);

    // An unknown version, and the previous one: a version-1 client's hello
    // (bytes as it sends them) gets "unsupported version", not garbage.
    let mut s = raw(&d);
    s.write_all(&encode(&ClientMessage::Hello { version: 999 }).unwrap())
        .unwrap();
    assert_eq!(expect_error(&mut s), ProtocolErrorKind::UnsupportedVersion);
    let mut s = raw(&d);
    s.write_all(&[0, 0, 0, 2, 0, 1]).unwrap();
    assert_eq!(expect_error(&mut s), ProtocolErrorKind::UnsupportedVersion);

    // A request before the hello.
    let mut s = raw(&d);
    let req = ClientMessage::Request {
        id: 1,
        request: Request::Ping,
    };
    s.write_all(&encode(&req).unwrap()).unwrap();
    assert_eq!(expect_error(&mut s), ProtocolErrorKind::UnexpectedMessage);

    // A frame truncated by the client closing: nothing to answer, no harm.
    let mut s = raw(&d);
    hello(&mut s);
    let frame = encode(&ClientMessage::Request {
        id: 2,
        request: Request::Ping,
    })
    .unwrap();
    s.write_all(&frame[..frame.len() - 1]).unwrap();
    drop(s);
    still_serving(&f, &d);

    // The stalled half frame is cut by the frame timeout.
    assert_eq!(expect_error(&mut stalled), ProtocolErrorKind::Timeout);

    // Many requests on one connection, matched by id.
    let mut s = raw(&d);
    hello(&mut s);
    for id in 10..20 {
        let frame = encode(&ClientMessage::Request {
            id,
            request: Request::Ping,
        })
        .unwrap();
        s.write_all(&frame).unwrap();
        match decode::<ServerMessage>(&read_frame(&mut s).unwrap().unwrap()).unwrap() {
            ServerMessage::Response { id: got, .. } => assert_eq!(got, id),
            other => panic!("{other:?}"),
        }
    }
    still_serving(&f, &d);
}

#[test]
#[ignore = "needs root"]
fn over_the_connection_cap_clients_are_told_busy() {
    require_root();
    let f = Fixture::new();
    let d = Daemon::start(
        &f,
        DaemonOptions {
            args: vec![
                "--max-connections".into(),
                "4".into(),
                "--idle-timeout".into(),
                "2".into(),
            ],
            ..Default::default()
        },
    );
    // Let the readiness probe's connection release its slot.
    d.wait_connections_closed();
    let mut held: Vec<UnixStream> = (0..4).map(|_| raw(&d)).collect();
    for s in &mut held {
        hello(s);
    }
    let mut extra = raw(&d);
    assert_eq!(expect_error(&mut extra), ProtocolErrorKind::Busy);
    // Idle connections are closed after the idle timeout, freeing slots.
    for s in &mut held {
        assert_eq!(expect_error(s), ProtocolErrorKind::Timeout);
    }
    still_serving(&f, &d);
}
