//! Landlock: the only filesystem access left is listing, removing and moving
//! directories beneath the prefixes, removing the socket vmrmd bound, and reading its config
//! file and the user and group databases (for SIGHUP reloads). No TCP.

use landlock::{
    path_beneath_rules, Access, AccessFs, AccessNet, CompatLevel, Compatible, LandlockStatus,
    PathBeneath, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};

use std::path::Path;

use super::{Reach, SandboxError};

/// The newest ABI whose rights this file was written and tested against.
const TARGET_ABI: ABI = ABI::V6;

/// What a reload may read of the config: its dedicated directory
/// (`/etc/vmrm/`, as installed), so that a file replaced by an editor's
/// rename (a new inode) is still readable; anywhere else only the file
/// itself, since with CAP_DAC_OVERRIDE read access to a shared directory
/// such as `/etc` would cover `/etc/shadow`.
fn config_readable(file: &Path) -> &Path {
    match file.parent() {
        Some(dir) if dir.file_name().is_some_and(|n| n == CONFIG_DIR_NAME) => dir,
        _ => file,
    }
}

/// The name of vmrmd's dedicated config directory.
const CONFIG_DIR_NAME: &str = "vmrm";

/// Files a reload may read besides the config file.
const ID_DATABASES: &[&str] = &["/etc/passwd", "/etc/group", "/etc/nsswitch.conf"];

pub(super) fn restrict(reach: &Reach, required: bool) -> Result<String, SandboxError> {
    let level = if required {
        CompatLevel::HardRequirement
    } else {
        CompatLevel::BestEffort
    };
    // Listing and removing, plus moving a directory within the prefixes
    // (REFER, MAKE_DIR at the destination): the walk moves deep subtrees up
    // under their top so that Landlock's check, which walks up to the rule,
    // costs O(16) per operation instead of O(depth). SECURITY.md argues why
    // this widening is safe.
    let remove = AccessFs::ReadDir
        | AccessFs::RemoveDir
        | AccessFs::RemoveFile
        | AccessFs::Refer
        | AccessFs::MakeDir;
    let read_file = AccessFs::ReadFile;
    let mut ruleset = Ruleset::default()
        .set_compatibility(level)
        .handle_access(AccessFs::from_all(TARGET_ABI))
        .and_then(|r| r.handle_access(AccessNet::from_all(TARGET_ABI)))
        .and_then(|r| r.scope(Scope::from_all(TARGET_ABI)))
        .and_then(|r| r.create())
        .map_err(SandboxError::Landlock)?
        .add_rules(path_beneath_rules(&reach.prefixes, remove))
        .map_err(SandboxError::Landlock)?;
    if let Some(dir) = &reach.socket_dir {
        ruleset = ruleset
            .add_rule(PathBeneath::new(dir, AccessFs::RemoveFile))
            .map_err(SandboxError::Landlock)?;
    }
    // Removing empty directories beneath the parent of a socket directory
    // vmrmd made itself, so that it leaves none behind; only ever empty
    // ones (rmdir), and only when vmrmd created it.
    if let Some(parent) = &reach.socket_dir_parent {
        ruleset = ruleset
            .add_rule(PathBeneath::new(parent, AccessFs::RemoveDir))
            .map_err(SandboxError::Landlock)?;
    }
    // Reading is best effort even when required: a missing nsswitch.conf is
    // no reason to refuse to start.
    let config_reach = reach.config_file.as_deref().map(config_readable);
    let readable: Vec<&Path> = config_reach
        .iter()
        .copied()
        .chain(ID_DATABASES.iter().map(Path::new))
        .chain([reach.subuid_file.as_path()])
        .filter(|p| p.exists())
        .collect();
    ruleset = ruleset
        .add_rules(path_beneath_rules(readable, read_file))
        .map_err(SandboxError::Landlock)?;
    let status = ruleset.restrict_self().map_err(SandboxError::Landlock)?;
    let state = match status.ruleset {
        RulesetStatus::FullyEnforced => "fully enforced",
        RulesetStatus::PartiallyEnforced => "partially enforced",
        RulesetStatus::NotEnforced => "not enforced",
    };
    let report = match status.landlock {
        LandlockStatus::Available { effective_abi, .. } => {
            format!("{state}, ABI {}", effective_abi as u32)
        }
        LandlockStatus::NotEnabled => format!("{state}, disabled at boot"),
        LandlockStatus::NotImplemented => format!("{state}, not in this kernel"),
    };
    if required && status.ruleset != RulesetStatus::FullyEnforced {
        return Err(SandboxError::NotEnforced(format!("Landlock is {report}")));
    }
    Ok(report)
}
