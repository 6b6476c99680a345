//! The wire-format test vectors of PROTOCOL.md: each message in
//! `tests/vectors.txt` encodes to exactly those bytes and decodes back, and
//! every vector line appears verbatim in PROTOCOL.md, so the document cannot
//! drift from the code. `VMRM_BLESS=1` rewrites vectors.txt from the code.

use std::fmt::Write as _;
use std::path::Path;

use vmrm_proto::{
    decode, encode, Answer, Cause, ClientMessage, DenyReason, FailedOp, Failure, Limit, Outcome,
    ProtocolErrorKind, RemovalStats, Request, ServerMessage, Stats, VerdictCounts,
    LENGTH_PREFIX_LEN,
};

enum Msg {
    C(ClientMessage),
    S(ServerMessage),
}

fn resp(id: u64, answer: Answer) -> Msg {
    Msg::S(ServerMessage::Response { id, answer })
}

fn removal(id: u64, outcome: Outcome) -> Msg {
    resp(id, Answer::Removal(outcome))
}

fn req(id: u64, request: Request) -> Msg {
    Msg::C(ClientMessage::Request { id, request })
}

fn vectors() -> Vec<(&'static str, Msg)> {
    vec![
        ("client-hello", Msg::C(ClientMessage::Hello { version: 2 })),
        (
            "server-hello",
            Msg::S(ServerMessage::Hello {
                version: 2,
                server: "vmrmd 0.1.0".into(),
            }),
        ),
        (
            "request-remove",
            req(
                1,
                Request::Remove {
                    path: b"/tmp/vm-3f2a9c1e-k2j4x8q0".to_vec(),
                },
            ),
        ),
        ("request-ping", req(2, Request::Ping)),
        ("request-stats", req(300, Request::Stats)),
        (
            "response-removed",
            removal(
                1,
                Outcome::Removed(RemovalStats {
                    entries: 9,
                    bytes: 81920,
                }),
            ),
        ),
        (
            "response-emptied",
            removal(
                1,
                Outcome::Emptied(RemovalStats {
                    entries: 8,
                    bytes: 81920,
                }),
            ),
        ),
        ("response-not-found", removal(1, Outcome::NotFound)),
        (
            "response-denied",
            removal(
                1,
                Outcome::Denied {
                    reason: DenyReason::NotOwner,
                    message: "not yours".into(),
                },
            ),
        ),
        (
            "response-failed",
            removal(
                1,
                Outcome::Failed {
                    stats: RemovalStats {
                        entries: 7,
                        bytes: 4096,
                    },
                    failures: vec![
                        Failure {
                            path: b"mnt".to_vec(),
                            path_truncated: false,
                            op: FailedOp::Open,
                            cause: Cause::Limit(Limit::MountPoint),
                        },
                        Failure {
                            path: b"frozen.img".to_vec(),
                            path_truncated: false,
                            op: FailedOp::Unlink,
                            cause: Cause::Errno(1),
                        },
                        Failure {
                            path: b"project".to_vec(),
                            path_truncated: false,
                            op: FailedOp::Open,
                            cause: Cause::Limit(Limit::ForeignOwner { owner: 1001 }),
                        },
                    ],
                    omitted: 0,
                },
            ),
        ),
        (
            "response-bad-request",
            removal(
                1,
                Outcome::BadRequest {
                    message: "too long".into(),
                },
            ),
        ),
        (
            "response-unavailable",
            removal(
                1,
                Outcome::Unavailable {
                    message: "shutting down".into(),
                },
            ),
        ),
        (
            "response-pong",
            resp(
                2,
                Answer::Pong {
                    server: "vmrmd 0.1.0".into(),
                },
            ),
        ),
        (
            "response-stats",
            resp(
                300,
                Answer::Stats(Stats {
                    uptime_secs: 3600,
                    verdicts: VerdictCounts {
                        removed: 5,
                        emptied: 1,
                        not_found: 0,
                        denied: 2,
                        failed: 0,
                        bad_request: 0,
                        unavailable: 0,
                    },
                    entries_removed: 45,
                    bytes_freed: 409600,
                    errors: 0,
                    connections_accepted: 3,
                    connections_refused: 0,
                    latency_us: [250, 400, 900, 1200],
                }),
            ),
        ),
        (
            "response-stats-denied",
            resp(
                300,
                Answer::Denied {
                    reason: DenyReason::PeerNotAllowed,
                    message: "no".into(),
                },
            ),
        ),
        (
            "error-busy",
            Msg::S(ServerMessage::Error {
                kind: ProtocolErrorKind::Busy,
                message: "busy".into(),
            }),
        ),
        (
            "error-unsupported-version",
            Msg::S(ServerMessage::Error {
                kind: ProtocolErrorKind::UnsupportedVersion,
                message: "v2?".into(),
            }),
        ),
    ]
}

fn frame(m: &Msg) -> Vec<u8> {
    match m {
        Msg::C(c) => encode(c).unwrap(),
        Msg::S(s) => encode(s).unwrap(),
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        write!(out, "{b:02x}").unwrap();
    }
    out
}

fn unhex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

fn file() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors.txt")
}

fn render() -> String {
    vectors()
        .iter()
        .map(|(name, m)| format!("{name}: {}\n", hex(&frame(m))))
        .collect()
}

#[test]
fn vectors_match_the_encoder_and_decode_back() {
    if std::env::var_os("VMRM_BLESS").is_some() {
        std::fs::write(file(), render()).unwrap();
    }
    let text = std::fs::read_to_string(file()).unwrap();
    let all = vectors();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), all.len(), "one line per vector");
    for ((name, m), line) in all.iter().zip(lines) {
        let (got_name, bytes) = line.split_once(": ").unwrap();
        assert_eq!(got_name, *name);
        let bytes = unhex(bytes);
        assert_eq!(bytes, frame(m), "{name}: the encoder disagrees");
        let len = u32::from_be_bytes(bytes[..LENGTH_PREFIX_LEN].try_into().unwrap()) as usize;
        assert_eq!(
            len,
            bytes.len() - LENGTH_PREFIX_LEN,
            "{name}: length prefix"
        );
        let payload = &bytes[LENGTH_PREFIX_LEN..];
        match m {
            Msg::C(c) => assert_eq!(&decode::<ClientMessage>(payload).unwrap(), c, "{name}"),
            Msg::S(s) => assert_eq!(&decode::<ServerMessage>(payload).unwrap(), s, "{name}"),
        }
    }
}

#[test]
fn protocol_md_shows_every_vector_verbatim() {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../PROTOCOL.md");
    let doc = std::fs::read_to_string(doc).unwrap();
    for line in render().lines() {
        assert!(
            doc.lines().any(|l| l.trim() == line),
            "PROTOCOL.md lacks the vector line\n{line}"
        );
    }
}
