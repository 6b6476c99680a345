//! The `WorkDir` type as a service uses it: created by the tenant, filled by
//! `qemu-vm`, cleaned up through vmrmd (blocking and async).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::lchown;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use vmrm_tests::{daemon::as_user, ids, require_root, Daemon, DaemonOptions, Fixture};

fn probe(mode: &str) {
    let f = Fixture::new();
    let d = Daemon::start(&f, DaemonOptions::default());
    let words = as_user(ids::TENANT_A);
    let mut child = Command::new(&words[0])
        .args(&words[1..])
        .arg(env!("CARGO_BIN_EXE_workdir_probe"))
        .arg(&f.sticky)
        .arg(&d.socket)
        .arg(mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let dir = PathBuf::from(line.trim());
    assert!(dir.starts_with(&f.sticky), "{line}");
    let name = dir.file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with("vm-probe012-"), "{name}");
    // QEMU, as another user, fills the directory.
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    for name in ["overlay.qcow2", "console.log", "qmp.sock"] {
        std::fs::write(dir.join(name), b"x").unwrap();
        lchown(dir.join(name), Some(ids::QEMU_VM), Some(ids::QEMU_VM)).unwrap();
    }
    std::fs::create_dir(dir.join("private")).unwrap();
    lchown(dir.join("private"), Some(ids::QEMU_VM), Some(ids::QEMU_VM)).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{rest}");
    assert_eq!(rest.trim(), "cleaned");
    assert!(!dir.exists());
}

#[test]
#[ignore = "needs root"]
fn workdir_cleanup_goes_through_the_helper() {
    require_root();
    probe("blocking");
}

#[test]
#[ignore = "needs root"]
fn workdir_async_cleanup_goes_through_the_helper() {
    require_root();
    probe("async");
}
