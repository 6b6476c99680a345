//! Who the helper thinks is asking. The kernel's credentials taken
//! at connect decide, never what the client becomes later, never a pid,
//! never the overflow uid.

use std::ffi::OsStr;
use std::process::Command;

use vmrm_tests::{daemon::as_user, ids, require_root, tree, Daemon, DaemonOptions, Fixture};

const OVERFLOW: u32 = 65534;

#[test]
#[ignore = "needs root"]
fn the_overflow_uid_never_owns_anything() {
    require_root();
    let f = Fixture::new();
    let d = Daemon::start(&f, DaemonOptions::default());
    // Even a directory that the overflow uid "owns".
    let dir = tree::vm_workdir(&f.sticky, OVERFLOW);
    let before = tree::entries(&dir);
    let (code, stderr) = d.rm_as(OVERFLOW, &dir);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("overflow_uid"), "{stderr}");
    assert_eq!(tree::entries(&dir), before);
}

#[test]
#[ignore = "needs root"]
fn a_client_in_its_own_user_namespace_is_judged_by_its_real_uid() {
    require_root();
    let f = Fixture::new();
    let d = Daemon::start(&f, DaemonOptions::default());
    let root_owned = tree::vm_workdir(&f.sticky, 0);
    let own = tree::vm_workdir(&f.sticky, ids::TENANT_A);
    let before = tree::entries(&root_owned);
    let run = |path: &std::path::Path| {
        // Tenant A becomes "root" in a user namespace of its own.
        let words = as_user(ids::TENANT_A);
        Command::new(&words[0])
            .args(&words[1..])
            .args(["unshare", "--user", "--map-root-user", "--"])
            .arg(vmrm_tests::binaries::vmrm())
            .arg("--socket")
            .arg(&d.socket)
            .arg("rm")
            .arg(path)
            .output()
            .unwrap()
    };
    let probe = run(OsStr::new("/nonexistent").as_ref());
    assert!(
        !String::from_utf8_lossy(&probe.stderr).contains("unshare failed"),
        "unprivileged user namespaces are disabled here: this test cannot run"
    );
    // uid 0 inside its namespace, tenant A to the kernel: not root's.
    let out = run(&root_owned);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("not_owner"));
    assert_eq!(tree::entries(&root_owned), before);
    // Its own directory still goes (and the namespace's "root" finishes the
    // empty top in the sticky prefix, as tenant A).
    let out = run(&own);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!own.exists());
    let last = d.audit().last().cloned().unwrap();
    assert_eq!(last["peer_uid"], ids::TENANT_A);
}

#[test]
#[ignore = "needs root"]
fn credentials_are_those_taken_at_connect() {
    require_root();
    let f = Fixture::new();
    let d = Daemon::start(&f, DaemonOptions::default());
    let a_dir = tree::vm_workdir(&f.sticky, ids::TENANT_A);
    let b_dir = tree::vm_workdir(&f.sticky, ids::TENANT_B);
    let b_before = tree::entries(&b_dir);
    let switch = |connect: u32, request: u32, path: &std::path::Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_cred_switch_client"))
            .arg(&d.socket)
            .arg(connect.to_string())
            .arg(request.to_string())
            .arg(path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Connected as A, then became B: still A to the helper.
    let outcome = switch(ids::TENANT_A, ids::TENANT_B, &b_dir);
    assert!(outcome.contains("NotOwner"), "{outcome}");
    assert_eq!(tree::entries(&b_dir), b_before);
    let outcome = switch(ids::TENANT_A, ids::TENANT_B, &a_dir);
    assert!(outcome.starts_with("Emptied"), "{outcome}");
    // Connected as B, then became root: still B, and B's only.
    let root_dir = tree::vm_workdir(&f.sticky, 0);
    let outcome = switch(ids::TENANT_B, 0, &root_dir);
    assert!(outcome.contains("NotOwner"), "{outcome}");
    // The pid is only logged: the audit line names the connecting uid.
    let audit = d.audit();
    assert!(
        audit
            .iter()
            .filter(|l| l["peer_uid"] == ids::TENANT_A)
            .count()
            >= 2
    );
}
