//! Least privilege: vmrmd holds CAP_DAC_OVERRIDE alone, with no_new_privs,
//! however it was started.

use vmrm_tests::{ids, require_root, tree, Daemon, DaemonOptions, Fixture};

/// CAP_DAC_OVERRIDE is capability 1.
const DAC_OVERRIDE_ONLY: &str = "0000000000000002";

fn assert_least_privilege(d: &Daemon) {
    for field in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(d.status_field(field), DAC_OVERRIDE_ONLY, "{field}");
    }
    assert_eq!(d.status_field("CapInh"), "0000000000000000");
    assert_eq!(d.status_field("CapAmb"), "0000000000000000");
    assert_eq!(d.status_field("NoNewPrivs"), "1");
    let uid = ids::HELPER.to_string();
    let uids: Vec<String> = d
        .status_field("Uid")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(uids, vec![uid.clone(), uid.clone(), uid.clone(), uid]);
    let groups = d.status_field("Groups");
    assert!(groups.is_empty(), "supplementary groups kept: {groups}");
    assert!(
        d.log().contains("effective=cap_dac_override"),
        "{}",
        d.log()
    );
}

#[test]
#[ignore = "needs root"]
fn started_through_setpriv_it_holds_dac_override_alone() {
    require_root();
    let f = Fixture::new();
    let d = Daemon::start(&f, DaemonOptions::default());
    assert_least_privilege(&d);
}

#[test]
#[ignore = "needs root"]
fn started_as_root_it_drops_to_its_user_and_dac_override_alone() {
    require_root();
    let f = Fixture::new();
    let d = Daemon::start(
        &f,
        DaemonOptions {
            as_root: true,
            ..Default::default()
        },
    );
    assert_least_privilege(&d);
    // And it still does its job on other users' files.
    let dir = tree::vm_workdir(&f.plain, ids::TENANT_A);
    let (code, stderr) = d.rm_as(ids::TENANT_A, &dir);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
#[ignore = "needs root"]
fn without_dac_override_it_serves_and_warns() {
    require_root();
    let f = Fixture::new();
    // Without CAP_DAC_OVERRIDE it needs a socket directory of its own.
    std::os::unix::fs::lchown(f.base().join("run"), Some(ids::HELPER), None).unwrap();
    let d = Daemon::start(
        &f,
        DaemonOptions {
            no_caps: true,
            ..Default::default()
        },
    );
    assert_eq!(d.status_field("CapEff"), "0000000000000000");
    assert!(
        d.log().contains("running without CAP_DAC_OVERRIDE"),
        "{}",
        d.log()
    );
    // It serves: a request for another user's files is judged and tried,
    // and fails truthfully on what its own uid cannot remove.
    let dir = tree::vm_workdir(&f.plain, ids::TENANT_A);
    let (code, stderr) = d.rm_as(ids::TENANT_A, &dir);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("Permission denied"), "{stderr}");
}
