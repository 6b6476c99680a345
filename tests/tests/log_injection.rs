//! Log injection: paths with newlines, escapes and control bytes give one
//! well-formed JSON audit line each.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use vmrm_tests::{require_root, Daemon, DaemonOptions, Fixture};

#[test]
#[ignore = "needs root"]
fn hostile_paths_give_one_escaped_audit_line_each() {
    require_root();
    let f = Fixture::new();
    let d = Daemon::start(&f, DaemonOptions::default());
    let sticky = f.sticky.as_os_str().as_bytes();
    let tails: Vec<&[u8]> = vec![
        b"/vm-a\n{\"verdict\":\"removed\",\"path\":\"/etc\"}",
        b"/vm-b\r\nforged: line",
        b"/vm-c\x1b[31mred\x1b[0m\x07",
        b"/vm-d\0hidden",
        b"/vm-e\xff\xfe",
        "/vm-f\u{2028}\u{2029}\u{202e}".as_bytes(),
        b"/vm-g\t\x08\x7f",
        b"\n",
    ];
    let mut client = d.client();
    for tail in &tails {
        let path = [sticky, tail].concat();
        let _ = client.remove(Path::new(OsStr::from_bytes(&path))).unwrap();
    }
    let log = d.settled_log();
    let audit: Vec<&str> = log.lines().filter(|l| l.contains("vmrmd::audit")).collect();
    assert_eq!(audit.len(), tails.len(), "{log}");
    for (line, tail) in audit.iter().zip(&tails) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let path = v["path"].as_str().unwrap();
        assert!(
            path.bytes().all(|b| (0x20..0x7f).contains(&b)),
            "unescaped byte in {path:?}"
        );
        // Exactly the bytes asked for, spelled out.
        let expected = [sticky, tail].concat().escape_ascii().to_string();
        assert_eq!(path, expected);
        assert_eq!(v["verdict"], "denied");
    }
    assert!(audit[0].contains(r"/vm-a\\n{"), "{}", audit[0]);
}
