//! The grammar's property oracle, shared by the property tests (stable, in
//! CI) and the fuzz targets (nightly, `cargo fuzz`): whatever
//! [`Config::target`] accepts is exactly `<prefix>/<one valid component>`.

use std::path::PathBuf;

use crate::grammar::is_name_byte;
use crate::{Config, ConfigFile, Gid, IdResolver, IdSpec, Uid};

/// Resolves numeric ids only, without touching the system's user database.
pub struct NumericIds;

impl IdResolver for NumericIds {
    fn user(&self, spec: &IdSpec) -> Option<(Uid, Gid)> {
        match spec {
            IdSpec::Id(id) => Some((Uid(*id), Gid(*id))),
            IdSpec::Name(_) => None,
        }
    }

    fn group(&self, spec: &IdSpec) -> Option<Gid> {
        match spec {
            IdSpec::Id(id) => Some(Gid(*id)),
            IdSpec::Name(_) => None,
        }
    }
}

/// A config with these prefixes and the default name prefix, built without
/// looking at the disk.
pub fn config_with_prefixes(prefixes: &[&str]) -> Config {
    let file = ConfigFile {
        prefixes: Some(prefixes.iter().map(PathBuf::from).collect()),
        user: Some(IdSpec::Id(65534)),
        ..ConfigFile::default()
    };
    match Config::resolve(file, &NumericIds) {
        Ok(config) => config,
        Err(e) => panic!("oracle config {prefixes:?}: {e}"),
    }
}

/// Judge `path` and panic if an accepted path is anything but
/// `<prefix>/<one component>` of the name grammar.
pub fn check_target(config: &Config, path: &[u8]) {
    let Ok(target) = config.target(path) else {
        return;
    };
    let prefix = config.prefixes()[target.prefix_index].as_bytes();
    let mut rebuilt = prefix.to_vec();
    rebuilt.push(b'/');
    rebuilt.extend_from_slice(target.name);
    assert_eq!(rebuilt, path, "accepted path is not prefix/name");
    let name = target.name;
    assert!(
        name.len() > config.name_prefix().len()
            && name.starts_with(config.name_prefix().as_bytes()),
        "accepted name without the name prefix: {}",
        name.escape_ascii()
    );
    assert!(
        name.iter().all(|&b| is_name_byte(b)),
        "accepted name outside [A-Za-z0-9._-]: {}",
        name.escape_ascii()
    );
    assert!(name != b"." && name != b"..", "accepted . or ..");
    assert!(name.len() <= 255, "accepted a name over NAME_MAX");
}
