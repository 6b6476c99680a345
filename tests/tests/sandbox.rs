//! The self-sandbox alone stops a removal outside the prefixes,
//! even with the policy bypassed and the target's fds already open.

use std::fs;
use std::process::Command;

use nix::errno::Errno;
use vmrm_tests::{binaries, require_root, Fixture};

fn probe(f: &Fixture, mode: &str, target: &std::path::Path) -> serde_json::Value {
    let out = Command::new(binaries::sandbox_probe())
        .arg("--prefix")
        .arg(&f.sticky)
        .arg("--sandbox")
        .arg(mode)
        .arg(target)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
#[ignore = "needs root"]
fn the_sandbox_alone_stops_removal_outside_the_prefixes() {
    require_root();
    let f = Fixture::new();
    let a = f.canary("victim/a");
    let b = f.canary("victim/sub/b");
    // Even as root with every capability, the sandboxed engine cannot
    // remove what lies outside its prefixes.
    let report = probe(&f, "required", &f.outside.join("victim"));
    assert!(
        report["sandbox"]
            .as_str()
            .unwrap()
            .contains("fully enforced"),
        "{report}"
    );
    assert_eq!(report["entries"], 0, "{report}");
    assert_eq!(report["top_removed"], false);
    assert!(
        report["errnos"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e == Errno::EACCES as i32),
        "{report}"
    );
    a.assert_intact();
    b.assert_intact();

    // The control: the same hook without the sandbox does remove it, so the
    // hook really bypasses the policy and the sandbox is what stopped it.
    let report = probe(&f, "off", &f.outside.join("victim"));
    assert_eq!(report["top_removed"], true, "{report}");
    assert!(fs::symlink_metadata(&a.path).is_err());
}

#[test]
#[ignore = "needs root"]
fn inside_the_prefixes_the_sandboxed_engine_still_works() {
    require_root();
    let f = Fixture::new();
    let dir = f.sticky.join("vm-inside");
    fs::create_dir_all(dir.join("sub")).unwrap();
    fs::write(dir.join("sub/file"), b"x").unwrap();
    let report = probe(&f, "required", &dir);
    assert_eq!(report["entries"], 2, "{report}");
    assert_eq!(report["top_removed"], true, "{report}");
}
