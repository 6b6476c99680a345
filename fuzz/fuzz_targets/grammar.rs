//! The policy's path grammar: no panic, and whatever it accepts is exactly
//! `<prefix>/<one valid component>`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vmrm_policy::oracle::{check_target, config_with_prefixes};
use vmrm_policy::Config;

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| config_with_prefixes(&["/tmp", "/var/lib/vms"]))
}

fuzz_target!(|data: &[u8]| {
    check_target(config(), data);
    // The same bytes under a prefix, so the fuzzer reaches the name rules.
    let mut under = b"/tmp/".to_vec();
    under.extend_from_slice(data);
    check_target(config(), &under);
});
