//! The fuzz targets' oracles as short stable property tests, run in CI (the
//! long runs are `cargo +nightly fuzz`, see SECURITY.md): arbitrary bytes
//! through frame decoding and request handling never panic, and any remove
//! request the grammar accepts is exactly `<prefix>/<one valid component>`.

use std::sync::OnceLock;

use proptest::prelude::*;
use vmrm_policy::oracle::{check_target, config_with_prefixes};
use vmrm_policy::Config;
use vmrm_proto::{decode, encode, read_frame, ClientMessage, Request, ServerMessage};

/// Bytes biased towards what matters: slashes, dots, the name prefix, NUL.
fn pathish() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            Just(b'/'),
            Just(b'.'),
            Just(b'v'),
            Just(b'm'),
            Just(b'-'),
            Just(0u8),
            Just(b'\n'),
            any::<u8>()
        ],
        0..40,
    )
}

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| config_with_prefixes(&["/tmp", "/var/lib/vms"]))
}

fn handle(data: &[u8]) {
    if let Ok(Some(payload)) = read_frame(&mut &data[..]) {
        let _ = decode::<ClientMessage>(&payload);
    }
    if let Ok(msg) = decode::<ClientMessage>(data) {
        let frame = encode(&msg).unwrap();
        let again = read_frame(&mut &frame[..]).unwrap().unwrap();
        assert_eq!(decode::<ClientMessage>(&again).unwrap(), msg);
        if let ClientMessage::Request {
            request: Request::Remove { path },
            ..
        } = &msg
        {
            check_target(config(), path);
        }
    }
    let _ = decode::<ServerMessage>(data);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn random_frames_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        handle(&data);
    }

    #[test]
    fn remove_requests_obey_the_grammar(path in pathish(), id: u64, under_prefix: bool) {
        let path = if under_prefix { [b"/tmp/".as_slice(), &path].concat() } else { path };
        let frame = encode(&ClientMessage::Request { id, request: Request::Remove { path } }).unwrap();
        handle(&frame[4..]);
        handle(&frame);
    }
}
