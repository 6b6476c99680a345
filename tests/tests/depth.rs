//! Bounded fds at any depth: a 5,000-level tree is removed while the helper may hold
//! at most 64 fds.

use vmrm_tests::{ids, require_root, tree, Daemon, DaemonOptions, Fixture};

#[test]
#[ignore = "needs root"]
fn a_5000_level_tree_is_removed_with_64_fds() {
    require_root();
    let f = Fixture::new();
    let d = Daemon::start(
        &f,
        DaemonOptions {
            nofile: Some(64),
            ..Default::default()
        },
    );
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{}/limits", d.pid()))
            .unwrap()
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap()
            .split_whitespace()
            .nth(3),
        Some("64")
    );
    let dir = tree::empty_workdir(&f.plain, ids::TENANT_A);
    tree::chain_owned(&dir, 5000, Some(ids::TENANT_A));
    let (code, stderr) = d.rm_as(ids::TENANT_A, &dir);
    assert_eq!(code, 0, "{stderr}\n{}", d.log());
    assert!(!dir.exists());
    assert_eq!(d.audit().last().unwrap()["entries"], 5002);
}
