//! For the identity tests: `cred_switch_client <socket> <connect-uid>
//! <request-uid> <path>` connects to vmrmd with effective uid
//! `connect-uid`, then switches its effective uid to `request-uid` and only
//! then sends a remove request for `path`. Prints the outcome as Debug.
//! vmrmd must judge the request by the credentials taken at connect.
//! Must be started as root (it needs to switch uids).

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;

use nix::unistd::{seteuid, Uid};
use vmrm_proto::{
    decode, encode, read_frame, ClientMessage, Request, ServerMessage, PROTOCOL_VERSION,
};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, socket, connect_uid, request_uid, path] = args.as_slice() else {
        eprintln!("usage: cred_switch_client <socket> <connect-uid> <request-uid> <path>");
        std::process::exit(2);
    };
    let uid = |s: &str| Uid::from_raw(s.parse().unwrap_or_else(|_| std::process::exit(2)));
    seteuid(uid(connect_uid)).unwrap_or_else(|e| fail(&format!("seteuid: {e}")));
    let mut stream = UnixStream::connect(socket).unwrap_or_else(|e| fail(&format!("connect: {e}")));
    seteuid(Uid::from_raw(0)).unwrap_or_else(|e| fail(&format!("seteuid 0: {e}")));
    seteuid(uid(request_uid)).unwrap_or_else(|e| fail(&format!("seteuid: {e}")));
    let send = |s: &mut UnixStream, m: &ClientMessage| {
        s.write_all(&encode(m).unwrap_or_else(|e| fail(&e.to_string())))
            .unwrap_or_else(|e| fail(&e.to_string()))
    };
    send(
        &mut stream,
        &ClientMessage::Hello {
            version: PROTOCOL_VERSION,
        },
    );
    let _hello = read_frame(&mut stream);
    let request = Request::Remove {
        path: std::path::Path::new(path).as_os_str().as_bytes().to_vec(),
    };
    send(&mut stream, &ClientMessage::Request { id: 1, request });
    let payload = read_frame(&mut stream)
        .unwrap_or_else(|e| fail(&e.to_string()))
        .unwrap_or_else(|| fail("closed"));
    match decode::<ServerMessage>(&payload) {
        Ok(ServerMessage::Response {
            answer: vmrm_proto::Answer::Removal(outcome),
            ..
        }) => println!("{outcome:?}"),
        other => fail(&format!("{other:?}")),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("cred_switch_client: {msg}");
    std::process::exit(1)
}
