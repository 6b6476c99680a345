//! What a user reads when something goes wrong: each message says what
//! happened and what to do, and each outcome has its own exit status.

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::process::{Command, Output, Stdio};

use nix::errno::Errno;
use vmrm::{ClientError, SocketOrigin};
use vmrm_proto::{encode, ClientMessage, PROTOCOL_VERSION};
use vmrm_tests::{binaries, ids, require_root, Daemon, DaemonOptions, Fixture};

fn vmrm(args: &[&OsStr], env: Option<&OsStr>) -> Output {
    let mut cmd = Command::new(binaries::vmrm());
    cmd.args(args)
        .stdin(Stdio::null())
        .env_remove("VMRM_SOCKET");
    if let Some(socket) = env {
        cmd.env("VMRM_SOCKET", socket);
    }
    cmd.output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn unreachable_names_the_socket_given_with_the_flag_and_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("absent.sock");
    let out = vmrm(
        &[
            OsStr::new("--socket"),
            socket.as_os_str(),
            OsStr::new("ping"),
        ],
        None,
    );
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(5), "{text}");
    assert!(text.contains(&*socket.to_string_lossy()), "{text}");
    assert!(text.contains("given with --socket"), "{text}");
    assert!(text.contains("systemctl status vmrmd.socket"), "{text}");
}

#[test]
fn unreachable_names_the_socket_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("absent.sock");
    let out = vmrm(
        &[OsStr::new("rm"), OsStr::new("/tmp/vm-absent")],
        Some(socket.as_os_str()),
    );
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(5), "{text}");
    assert!(text.contains(&*socket.to_string_lossy()), "{text}");
    assert!(text.contains("from $VMRM_SOCKET"), "{text}");
    assert!(text.contains("systemctl status vmrmd.socket"), "{text}");
}

#[test]
fn unreachable_names_the_built_in_default() {
    let options = vmrm::ClientOptions::default();
    // Only meaningful where the environment does not choose a socket.
    if std::env::var_os("VMRM_SOCKET").is_none() {
        assert_eq!(options.socket_origin, SocketOrigin::Default);
    }
    let error = ClientError::Connect {
        socket: vmrm_proto::DEFAULT_SOCKET.into(),
        origin: SocketOrigin::Default,
        error: std::io::Error::from(Errno::ENOENT),
    };
    let text = error.to_string();
    assert!(text.contains(vmrm_proto::DEFAULT_SOCKET), "{text}");
    assert!(text.contains("built-in default"), "{text}");
    assert!(text.contains("--socket or $VMRM_SOCKET"), "{text}");
    assert!(text.contains("systemctl status vmrmd.socket"), "{text}");
}

#[test]
fn a_socket_without_permission_points_at_its_group() {
    let error = ClientError::Connect {
        socket: "/run/vmrmd/vmrmd.sock".into(),
        origin: SocketOrigin::Default,
        error: std::io::Error::from(Errno::EACCES),
    };
    let text = error.to_string();
    assert!(text.contains("Permission denied"), "{text}");
    assert!(text.contains("vmrm"), "{text}");
    assert!(text.contains("group"), "{text}");
}

/// Hold `n` handshaken connections as the test's uid (root).
fn hold(d: &Daemon, n: usize) -> Vec<UnixStream> {
    let hello = encode(&ClientMessage::Hello {
        version: PROTOCOL_VERSION,
    })
    .unwrap();
    (0..n)
        .map(|_| {
            let mut s = UnixStream::connect(&d.socket).unwrap();
            s.write_all(&hello).unwrap();
            let _ = vmrm_proto::read_frame(&mut s).unwrap();
            s
        })
        .collect()
}

fn daemon_with(f: &Fixture, args: &[&str]) -> Daemon {
    let d = Daemon::start(
        f,
        DaemonOptions {
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            ..Default::default()
        },
    );
    // Let the readiness probe's connection release its slot.
    d.wait_connections_closed();
    d
}

/// The attack: a uid fills its connection cap, and its next client used to
/// read `Broken pipe (os error 32)`, since vmrmd refuses without reading
/// the hello. It must read "busy", which limit, and that retrying helps.
#[test]
#[ignore = "needs root"]
fn busy_per_uid_says_which_limit_and_exits_6() {
    require_root();
    let f = Fixture::new();
    let d = daemon_with(&f, &["--max-connections-per-uid", "2"]);
    let _held = hold(&d, 2);
    for _ in 0..5 {
        let out = vmrm(
            &[
                OsStr::new("--socket"),
                d.socket.as_os_str(),
                OsStr::new("ping"),
            ],
            None,
        );
        let text = stderr(&out);
        assert_eq!(out.status.code(), Some(6), "{text}");
        assert!(text.contains("busy"), "{text}");
        assert!(text.contains("uid"), "which limit: {text}");
        assert!(text.contains("retry later"), "{text}");
        assert!(!text.contains("Broken pipe"), "{text}");
    }
    // The library says the same, in its blocking and async clients.
    match d.client().ping() {
        Err(ClientError::Busy { message, .. }) => assert!(message.contains("uid"), "{message}"),
        other => panic!("{other:?}"),
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = vmrm::AsyncClient::with_options(vmrm::ClientOptions::with_socket(&d.socket));
    match runtime.block_on(client.ping()) {
        Err(ClientError::Busy { message, .. }) => assert!(message.contains("uid"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[test]
#[ignore = "needs root"]
fn busy_everyone_says_which_limit_and_json_says_busy() {
    require_root();
    let f = Fixture::new();
    let d = daemon_with(&f, &["--max-connections", "2"]);
    let _held = hold(&d, 2);
    let dir = f.sticky.join("vm-busy-00000000");
    let out = d.vmrm_as(
        ids::TENANT_A,
        &[OsStr::new("rm"), OsStr::new("--json"), dir.as_os_str()],
    );
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(6), "{text}");
    assert!(text.contains("connection limit"), "which limit: {text}");
    assert!(text.contains("retry later"), "{text}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["result"], "busy", "{json}");
}

#[test]
fn rm_help_documents_recursive_and_its_short_forms() {
    let out = vmrm(&[OsStr::new("rm"), OsStr::new("--help")], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("-r, --recursive"), "{text}");
    assert!(text.contains("-R"), "{text}");
    assert!(text.contains("6  busy"), "{text}");
}

/// "bytes" used to be unnamed: it is the allocated size of what the removal
/// freed, and the JSON says so.
#[test]
#[ignore = "needs root"]
fn json_names_allocated_bytes() {
    require_root();
    let f = Fixture::new();
    let d = Daemon::start(&f, DaemonOptions::default());
    let dir = vmrm_tests::tree::vm_workdir(&f.plain, ids::TENANT_A);
    let out = d.vmrm_as(
        ids::TENANT_A,
        &[OsStr::new("rm"), OsStr::new("--json"), dir.as_os_str()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["result"], "removed", "{json}");
    assert!(json["allocated_bytes"].as_u64().is_some(), "{json}");
    assert!(json.get("bytes").is_none(), "{json}");
}

/// The CLI pipelines its removal behind its hello. A helper of another
/// protocol version refuses the hello and never reads the removal; the
/// user reads that the versions differ (not a broken pipe or a reset), and
/// the status is 5, unreachable.
#[test]
fn a_helper_of_another_version_is_named_and_exits_5() {
    use vmrm_proto::{ProtocolErrorKind, ServerMessage};
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("other-version.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let helper = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let hello = vmrm_proto::read_frame(&mut s).unwrap().unwrap();
        assert!(matches!(
            vmrm_proto::decode(&hello).unwrap(),
            ClientMessage::Hello { .. }
        ));
        let refusal = ServerMessage::Error {
            kind: ProtocolErrorKind::UnsupportedVersion,
            message: format!(
                "client speaks protocol {PROTOCOL_VERSION}, vmrmd speaks {}",
                PROTOCOL_VERSION + 1
            ),
        };
        vmrm_proto::write_frame(&mut s, &refusal).unwrap();
        // Hang up with the pipelined removal unread, as vmrmd does.
    });
    let out = vmrm(
        &[
            OsStr::new("--socket"),
            socket.as_os_str(),
            OsStr::new("rm"),
            OsStr::new("/tmp/vm-other-version"),
        ],
        None,
    );
    helper.join().unwrap();
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(5), "{text}");
    assert!(text.contains("UnsupportedVersion"), "{text}");
    assert!(text.contains("vmrmd speaks"), "{text}");
    assert!(!text.contains("reset"), "{text}");
}
