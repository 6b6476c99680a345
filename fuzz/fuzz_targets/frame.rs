//! Frame decoding and request handling: arbitrary bytes through the frame
//! reader and the payload decoder; every decoded message re-encodes to
//! itself; every decoded remove request goes through the policy grammar
//! with its oracle.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vmrm_policy::oracle::{check_target, config_with_prefixes};
use vmrm_policy::Config;
use vmrm_proto::{decode, encode, read_frame, ClientMessage, Request, ServerMessage};

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| config_with_prefixes(&["/tmp", "/var/lib/vms"]))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(payload)) = read_frame(&mut &data[..]) {
        assert!(payload.len() <= vmrm_proto::MAX_FRAME_LEN);
        let _ = decode::<ClientMessage>(&payload);
    }
    if let Ok(msg) = decode::<ClientMessage>(data) {
        let frame = encode(&msg).expect("a decoded message re-encodes");
        let again = read_frame(&mut &frame[..]).expect("own frame reads").expect("not empty");
        assert_eq!(decode::<ClientMessage>(&again).expect("own frame decodes"), msg);
        if let ClientMessage::Request {
            request: Request::Remove { path },
            ..
        } = &msg
        {
            check_target(config(), path);
        }
    }
    let _ = decode::<ServerMessage>(data);
});
