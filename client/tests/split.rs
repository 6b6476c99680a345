//! `Client::send_remove` / `finish_remove` (the halves an event loop uses)
//! against a scripted fake helper: answers read in step, one resend when a
//! reused connection turns out dead, and no half-read answer after
//! `abandon`.

use std::os::unix::net::UnixListener;
use std::path::Path;
use std::thread;

use vmrm::{Client, ClientOptions, Outcome, RemovalStats};
use vmrm_proto::{
    decode, read_frame, write_frame, ClientMessage, Request, ServerMessage, PROTOCOL_VERSION,
};

/// What the fake helper does with one connection's requests, in order.
#[derive(Clone, Copy)]
enum Step {
    Answer,
    /// Read the request, hang up without answering.
    HangUp,
}

fn serve(listener: UnixListener, script: Vec<Vec<Step>>) -> thread::JoinHandle<usize> {
    thread::spawn(move || {
        let mut answered = 0;
        for steps in script {
            let (mut s, _) = listener.accept().unwrap();
            let hello: ClientMessage = decode(&read_frame(&mut s).unwrap().unwrap()).unwrap();
            assert!(
                matches!(hello, ClientMessage::Hello { version } if version == PROTOCOL_VERSION)
            );
            let reply = ServerMessage::Hello {
                version: PROTOCOL_VERSION,
                server: "fake".into(),
            };
            // The client pipelines its request behind its hello and may
            // have abandoned it (hung up) before our hello goes out.
            if write_frame(&mut s, &reply).is_err() {
                continue;
            }
            for step in steps {
                let Some(frame) = read_frame(&mut s).unwrap() else {
                    break;
                };
                let ClientMessage::Request { id, request } = decode(&frame).unwrap() else {
                    panic!("not a request");
                };
                assert!(matches!(request, Request::Remove { .. }));
                match step {
                    Step::Answer => {
                        let outcome = Outcome::Removed(RemovalStats {
                            entries: 3,
                            bytes: 0,
                        });
                        // The client may have hung up (abandoned) already.
                        let answer = vmrm::Answer::Removal(outcome);
                        if write_frame(&mut s, &ServerMessage::Response { id, answer }).is_err() {
                            break;
                        }
                        answered += 1;
                    }
                    Step::HangUp => break,
                }
            }
        }
        answered
    })
}

fn client(socket: &Path) -> Client {
    Client::with_options(ClientOptions::with_socket(socket))
}

fn remove(c: &mut Client, path: &Path) -> Outcome {
    let mut pending = c.send_remove(path).unwrap();
    loop {
        assert!(c.as_fd().is_some());
        match c.finish_remove(pending).unwrap() {
            Ok(outcome) => return outcome,
            Err(again) => pending = again,
        }
    }
}

#[test]
fn halves_answer_in_step_and_resend_once_on_a_dead_reused_connection() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("s");
    let listener = UnixListener::bind(&socket).unwrap();
    // Connection 1 answers once, then hangs up on the second request;
    // connection 2 answers the resend and one more.
    let server = serve(
        listener,
        vec![
            vec![Step::Answer, Step::HangUp],
            vec![Step::Answer, Step::Answer],
        ],
    );
    let mut c = client(&socket);
    // A path that does not exist: the Removed answer needs no local finish.
    let path = dir.path().join("vm-gone");
    for _ in 0..3 {
        assert!(matches!(remove(&mut c, &path), Outcome::Removed(s) if s.entries == 3));
    }
    drop(c);
    assert_eq!(server.join().unwrap(), 3);
}

#[test]
fn abandon_drops_the_connection_so_no_stale_answer_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("s");
    let listener = UnixListener::bind(&socket).unwrap();
    let server = serve(listener, vec![vec![Step::Answer], vec![Step::Answer]]);
    let mut c = client(&socket);
    let path = dir.path().join("vm-gone");
    let _pending = c.send_remove(&path).unwrap();
    c.abandon();
    assert!(c.as_fd().is_none());
    // A new connection: its answer is to its own request.
    assert!(matches!(remove(&mut c, &path), Outcome::Removed(_)));
    drop(c);
    // The abandoned answer may or may not have been written before the
    // hang-up was seen; the second connection's was.
    assert!(server.join().unwrap() >= 1);
}
