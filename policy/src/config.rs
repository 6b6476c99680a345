//! vmrmd's configuration: the TOML file, command-line overrides, built-in
//! defaults, and the validated [`Config`] the helper runs on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::grammar::is_name_byte;
use crate::{Gid, Prefix, PrefixError, Uid};

/// Read when `--config` is not given; its absence means built-in defaults.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/vmrm/vmrmd.toml";
pub const DEFAULT_SOCKET: &str = vmrm_proto::DEFAULT_SOCKET;
/// Anyone may connect: every request is still judged by the peer's kernel
/// credentials and directory ownership. Narrow with `socket_mode`,
/// `socket_group` and the allow-lists.
pub const DEFAULT_SOCKET_MODE: u32 = 0o666;
/// The system temp dir, where `mkdtemp` puts VM workdirs.
pub const DEFAULT_PREFIX: &str = "/tmp";
pub const DEFAULT_NAME_PREFIX: &str = "vm-";
/// The user vmrmd switches to when started as root.
pub const DEFAULT_USER: &str = "nobody";

/// Where `newuidmap` reads the subordinate uid ranges.
pub const DEFAULT_SUBUID_FILE: &str = "/etc/subuid";

/// A user or group named in the config: a number or a name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum IdSpec {
    Id(u32),
    Name(String),
}

impl std::str::FromStr for IdSpec {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.parse::<u32>() {
            Ok(id) => IdSpec::Id(id),
            Err(_) => IdSpec::Name(s.to_owned()),
        })
    }
}

impl std::fmt::Display for IdSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IdSpec::Id(id) => write!(f, "{id}"),
            IdSpec::Name(name) => write!(f, "{name}"),
        }
    }
}

/// Turns user and group names into ids. The helper implements it over the
/// system's user database; tests implement it over a table.
pub trait IdResolver {
    /// The uid and primary gid of a user.
    fn user(&self, spec: &IdSpec) -> Option<(Uid, Gid)>;
    fn group(&self, spec: &IdSpec) -> Option<Gid>;
}

/// Whether vmrmd's self-sandbox (Landlock, seccomp) must be in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SandboxMode {
    /// Apply what the kernel supports, log what is enforced.
    #[default]
    BestEffort,
    /// Refuse to start unless every layer is fully enforced.
    Required,
    /// Do not sandbox (debugging only).
    Off,
}

impl std::str::FromStr for SandboxMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "best-effort" => Ok(SandboxMode::BestEffort),
            "required" => Ok(SandboxMode::Required),
            "off" => Ok(SandboxMode::Off),
            other => Err(format!(
                "unknown sandbox mode {other:?} (best-effort, required, off)"
            )),
        }
    }
}

/// The file format. Every field is optional; missing ones take the
/// command line's value, else the built-in default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub socket: Option<PathBuf>,
    pub socket_mode: Option<u32>,
    pub socket_group: Option<IdSpec>,
    pub prefixes: Option<Vec<PathBuf>>,
    pub name_prefix: Option<String>,
    pub allow_uids: Option<Vec<IdSpec>>,
    pub allow_groups: Option<Vec<IdSpec>>,
    pub user: Option<IdSpec>,
    pub sandbox: Option<SandboxMode>,
    pub subuid_file: Option<PathBuf>,
    #[serde(default)]
    pub limits: LimitsFile,
    #[serde(default)]
    pub sweep: SweepFile,
}

/// `[limits]` in the file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    pub max_connections: Option<usize>,
    pub max_connections_per_uid: Option<usize>,
    pub max_concurrent_removals: Option<usize>,
    pub max_removals_per_uid: Option<usize>,
    pub idle_timeout_secs: Option<u64>,
    pub frame_timeout_secs: Option<u64>,
    pub max_rounds: Option<u32>,
    pub max_depth: Option<usize>,
    pub count_bytes: Option<bool>,
    pub removal_deadline_secs: Option<u64>,
}

/// `[sweep]` in the file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepFile {
    pub interval_secs: Option<u64>,
    pub grace_secs: Option<u64>,
}

/// Caps and timeouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Open client connections at once; more are told "busy" and closed.
    pub max_connections: usize,
    /// Open connections of one peer uid at once, so that one tenant's idle
    /// connections cannot take every slot from the others.
    pub max_connections_per_uid: usize,
    /// Removals running at once; more wait their turn.
    pub max_concurrent_removals: usize,
    /// Removals of one account (a uid, with its subordinate uids) running
    /// at once, so that one tenant's many huge removals never hold every
    /// slot while another tenant waits. At most `max_concurrent_removals`.
    pub max_removals_per_uid: usize,
    /// A connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// Once a frame starts, all of it must arrive (and a response must be
    /// taken) within this long: a client sending one byte a second is cut.
    pub frame_timeout: Duration,
    /// How many times one directory is listed again when it keeps getting
    /// new entries during removal, before the helper gives up on it.
    pub max_rounds: u32,
    /// Directory levels below the top a removal descends, at most. Landlock
    /// checks every removal by walking up to the rule's directory, so under
    /// the sandbox a removal at depth d costs O(d) and a chain O(d²): this
    /// bounds that work (8192 levels: seconds).
    pub max_depth: usize,
    /// Stat each regular file before unlinking it, to report bytes freed.
    /// About a tenth of the time of a flat directory of empty files.
    pub count_bytes: bool,
    /// Wall-clock bound on one removal.
    pub removal_deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 256,
            max_connections_per_uid: 32,
            max_concurrent_removals: 4,
            max_removals_per_uid: 2,
            idle_timeout: Duration::from_secs(300),
            frame_timeout: Duration::from_secs(5),
            max_rounds: 8,
            max_depth: 8192,
            count_bytes: true,
            removal_deadline: Duration::from_secs(600),
        }
    }
}

/// The orphan sweeper's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepConfig {
    /// How often to sweep; `None` turns the sweeper off.
    pub interval: Option<Duration>,
    /// A directory younger than this is never swept.
    pub grace: Duration,
}

impl Default for SweepConfig {
    fn default() -> Self {
        SweepConfig {
            interval: None,
            grace: Duration::from_secs(3600),
        }
    }
}

/// A configuration that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub socket: PathBuf,
    pub socket_mode: u32,
    pub socket_group: Option<Gid>,
    pub prefixes: Vec<Prefix>,
    pub name_prefix: String,
    /// Empty means no uid restriction (see [`crate::authorize_peer`]).
    pub allow_uids: Vec<Uid>,
    /// Empty means no group restriction.
    pub allow_groups: Vec<Gid>,
    /// Who to become when started as root.
    pub user: (Uid, Gid),
    /// The name or number `user` came from, for messages.
    pub user_spec: IdSpec,
    pub sandbox: SandboxMode,
    /// Subordinate uid ranges (`owner:start:count`, as `newuidmap` reads
    /// them): a peer uid inside a range is charged to the range's owner.
    pub subuid_file: PathBuf,
    pub limits: Limits,
    pub sweep: SweepConfig,
}

/// Why a configuration is refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path:?}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path:?} is not valid: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("socket path {0:?} must be absolute")]
    SocketNotAbsolute(PathBuf),
    #[error("socket path {0:?} is longer than the 107 bytes a Unix socket address holds")]
    SocketTooLong(PathBuf),
    #[error("socket_mode {0:#o} is not a permission mode (at most 0o777)")]
    SocketMode(u32),
    #[error("no prefixes configured")]
    NoPrefixes,
    #[error(transparent)]
    Prefix(#[from] PrefixError),
    #[error(
        "name_prefix {0:?} must be 1 to 64 characters of [A-Za-z0-9._-], not starting with `.`"
    )]
    NamePrefix(String),
    #[error("unknown user {0}")]
    UnknownUser(IdSpec),
    #[error("unknown group {0}")]
    UnknownGroup(IdSpec),
    #[error("user {0} resolves to uid 0; vmrmd must not keep running as root")]
    RootUser(IdSpec),
    #[error("limits.{0} must be at least 1")]
    ZeroLimit(&'static str),
}

impl ConfigFile {
    /// Parse a config file's text; `path` is for messages.
    pub fn parse(text: &str, path: &Path) -> Result<ConfigFile, ConfigError> {
        toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// Read and parse a config file.
    pub fn read(path: &Path) -> Result<ConfigFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        ConfigFile::parse(&text, path)
    }

    /// Layer `over` on top of `self`: every field `over` sets wins.
    pub fn overlay(self, over: ConfigFile) -> ConfigFile {
        ConfigFile {
            socket: over.socket.or(self.socket),
            socket_mode: over.socket_mode.or(self.socket_mode),
            socket_group: over.socket_group.or(self.socket_group),
            prefixes: over.prefixes.or(self.prefixes),
            name_prefix: over.name_prefix.or(self.name_prefix),
            allow_uids: over.allow_uids.or(self.allow_uids),
            allow_groups: over.allow_groups.or(self.allow_groups),
            user: over.user.or(self.user),
            sandbox: over.sandbox.or(self.sandbox),
            subuid_file: over.subuid_file.or(self.subuid_file),
            limits: LimitsFile {
                max_connections: over.limits.max_connections.or(self.limits.max_connections),
                max_connections_per_uid: over
                    .limits
                    .max_connections_per_uid
                    .or(self.limits.max_connections_per_uid),
                max_concurrent_removals: over
                    .limits
                    .max_concurrent_removals
                    .or(self.limits.max_concurrent_removals),
                max_removals_per_uid: over
                    .limits
                    .max_removals_per_uid
                    .or(self.limits.max_removals_per_uid),
                idle_timeout_secs: over
                    .limits
                    .idle_timeout_secs
                    .or(self.limits.idle_timeout_secs),
                frame_timeout_secs: over
                    .limits
                    .frame_timeout_secs
                    .or(self.limits.frame_timeout_secs),
                max_rounds: over.limits.max_rounds.or(self.limits.max_rounds),
                max_depth: over.limits.max_depth.or(self.limits.max_depth),
                count_bytes: over.limits.count_bytes.or(self.limits.count_bytes),
                removal_deadline_secs: over
                    .limits
                    .removal_deadline_secs
                    .or(self.limits.removal_deadline_secs),
            },
            sweep: SweepFile {
                interval_secs: over.sweep.interval_secs.or(self.sweep.interval_secs),
                grace_secs: over.sweep.grace_secs.or(self.sweep.grace_secs),
            },
        }
    }
}

impl Config {
    /// Fill defaults, resolve names, and validate everything, including the
    /// prefixes on disk. The helper refuses to start (or to reload) on `Err`.
    pub fn load(file: ConfigFile, ids: &dyn IdResolver) -> Result<Config, ConfigError> {
        let config = Config::resolve(file, ids)?;
        for prefix in &config.prefixes {
            prefix.check_on_disk()?;
        }
        Ok(config)
    }

    /// Everything [`Config::load`] does except looking at the prefixes on disk.
    pub fn resolve(file: ConfigFile, ids: &dyn IdResolver) -> Result<Config, ConfigError> {
        let socket = file.socket.unwrap_or_else(|| DEFAULT_SOCKET.into());
        if !socket.is_absolute() {
            return Err(ConfigError::SocketNotAbsolute(socket));
        }
        // sun_path holds 108 bytes including the terminating NUL.
        if socket.as_os_str().len() > 107 {
            return Err(ConfigError::SocketTooLong(socket));
        }
        let socket_mode = file.socket_mode.unwrap_or(DEFAULT_SOCKET_MODE);
        if socket_mode > 0o777 {
            return Err(ConfigError::SocketMode(socket_mode));
        }
        let socket_group = file
            .socket_group
            .map(|g| ids.group(&g).ok_or(ConfigError::UnknownGroup(g)))
            .transpose()?;

        let prefixes = file
            .prefixes
            .unwrap_or_else(|| vec![DEFAULT_PREFIX.into()])
            .into_iter()
            .map(Prefix::new)
            .collect::<Result<Vec<_>, _>>()?;
        if prefixes.is_empty() {
            return Err(ConfigError::NoPrefixes);
        }
        for outer in &prefixes {
            for inner in &prefixes {
                if outer.contains(inner) {
                    return Err(PrefixError::Nested {
                        outer: outer.path().to_owned(),
                        inner: inner.path().to_owned(),
                    }
                    .into());
                }
            }
        }

        let name_prefix = file
            .name_prefix
            .unwrap_or_else(|| DEFAULT_NAME_PREFIX.to_owned());
        let name_prefix_ok = (1..=64).contains(&name_prefix.len())
            && !name_prefix.starts_with('.')
            && name_prefix.bytes().all(is_name_byte);
        if !name_prefix_ok {
            return Err(ConfigError::NamePrefix(name_prefix));
        }

        let allow_uids = file
            .allow_uids
            .unwrap_or_default()
            .into_iter()
            .map(|u| {
                ids.user(&u)
                    .map(|(uid, _)| uid)
                    .ok_or(ConfigError::UnknownUser(u))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let allow_groups = file
            .allow_groups
            .unwrap_or_default()
            .into_iter()
            .map(|g| ids.group(&g).ok_or(ConfigError::UnknownGroup(g)))
            .collect::<Result<Vec<_>, _>>()?;

        let user_spec = file
            .user
            .unwrap_or_else(|| IdSpec::Name(DEFAULT_USER.to_owned()));
        let user = ids
            .user(&user_spec)
            .ok_or_else(|| ConfigError::UnknownUser(user_spec.clone()))?;
        if user.0 == Uid(0) {
            return Err(ConfigError::RootUser(user_spec));
        }

        let defaults = Limits::default();
        let l = file.limits;
        let max_concurrent_removals = nonzero(
            "max_concurrent_removals",
            l.max_concurrent_removals
                .unwrap_or(defaults.max_concurrent_removals),
        )?;
        // Default: half the global slots, so another account always finds
        // one free; never more than the global cap.
        let max_removals_per_uid = nonzero(
            "max_removals_per_uid",
            l.max_removals_per_uid
                .unwrap_or((max_concurrent_removals / 2).max(1)),
        )?
        .min(max_concurrent_removals);
        let limits = Limits {
            max_connections: nonzero(
                "max_connections",
                l.max_connections.unwrap_or(defaults.max_connections),
            )?,
            max_connections_per_uid: nonzero(
                "max_connections_per_uid",
                l.max_connections_per_uid
                    .unwrap_or(defaults.max_connections_per_uid),
            )?,
            max_concurrent_removals,
            max_removals_per_uid,
            idle_timeout: secs(
                "idle_timeout_secs",
                l.idle_timeout_secs,
                defaults.idle_timeout,
            )?,
            frame_timeout: secs(
                "frame_timeout_secs",
                l.frame_timeout_secs,
                defaults.frame_timeout,
            )?,
            max_rounds: nonzero("max_rounds", l.max_rounds.unwrap_or(defaults.max_rounds))?,
            max_depth: nonzero("max_depth", l.max_depth.unwrap_or(defaults.max_depth))?,
            count_bytes: l.count_bytes.unwrap_or(defaults.count_bytes),
            removal_deadline: secs(
                "removal_deadline_secs",
                l.removal_deadline_secs,
                defaults.removal_deadline,
            )?,
        };

        let sweep_defaults = SweepConfig::default();
        let sweep = SweepConfig {
            interval: file
                .sweep
                .interval_secs
                .filter(|&s| s > 0)
                .map(Duration::from_secs),
            grace: file
                .sweep
                .grace_secs
                .map(Duration::from_secs)
                .unwrap_or(sweep_defaults.grace),
        };

        Ok(Config {
            socket,
            socket_mode,
            socket_group,
            prefixes,
            name_prefix,
            allow_uids,
            allow_groups,
            user,
            user_spec,
            sandbox: file.sandbox.unwrap_or_default(),
            subuid_file: file
                .subuid_file
                .unwrap_or_else(|| PathBuf::from(DEFAULT_SUBUID_FILE)),
            limits,
            sweep,
        })
    }
}

fn nonzero<T: PartialEq + From<u8>>(name: &'static str, value: T) -> Result<T, ConfigError> {
    if value == T::from(0) {
        return Err(ConfigError::ZeroLimit(name));
    }
    Ok(value)
}

fn secs(
    name: &'static str,
    value: Option<u64>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => nonzero(name, v).map(Duration::from_secs),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Resolves `alice`=1000, `bob`=1001, `nobody`=65534 and numbers as
    /// themselves; groups `tenants`=2000.
    pub(crate) struct Table;

    impl IdResolver for Table {
        fn user(&self, spec: &IdSpec) -> Option<(Uid, Gid)> {
            match spec {
                IdSpec::Id(id) => Some((Uid(*id), Gid(*id))),
                IdSpec::Name(n) => match n.as_str() {
                    "alice" => Some((Uid(1000), Gid(1000))),
                    "bob" => Some((Uid(1001), Gid(1001))),
                    "nobody" => Some((Uid(65534), Gid(65534))),
                    "root" => Some((Uid(0), Gid(0))),
                    _ => None,
                },
            }
        }
        fn group(&self, spec: &IdSpec) -> Option<Gid> {
            match spec {
                IdSpec::Id(id) => Some(Gid(*id)),
                IdSpec::Name(n) if n == "tenants" => Some(Gid(2000)),
                IdSpec::Name(_) => None,
            }
        }
    }

    #[test]
    fn defaults() {
        let c = Config::resolve(ConfigFile::default(), &Table).unwrap();
        assert_eq!(c.socket, Path::new(DEFAULT_SOCKET));
        assert_eq!(c.prefixes, vec![Prefix::new("/tmp").unwrap()]);
        assert_eq!(c.name_prefix, "vm-");
        assert_eq!(c.user, (Uid(65534), Gid(65534)));
        assert_eq!(c.sandbox, SandboxMode::BestEffort);
        assert!(c.sweep.interval.is_none());
    }

    #[test]
    fn parses_a_full_file() {
        let text = r#"
            socket = "/run/x/x.sock"
            socket_mode = 0o660
            socket_group = "tenants"
            prefixes = ["/tmp", "/var/lib/vms"]
            name_prefix = "vm-"
            allow_uids = ["alice", 1001]
            allow_groups = ["tenants"]
            user = "bob"
            sandbox = "required"
            [limits]
            max_connections = 10
            idle_timeout_secs = 30
            [sweep]
            interval_secs = 60
            grace_secs = 600
        "#;
        let file = ConfigFile::parse(text, Path::new("test.toml")).unwrap();
        let c = Config::resolve(file, &Table).unwrap();
        assert_eq!(c.socket_mode, 0o660);
        assert_eq!(c.socket_group, Some(Gid(2000)));
        assert_eq!(c.allow_uids, vec![Uid(1000), Uid(1001)]);
        assert_eq!(c.allow_groups, vec![Gid(2000)]);
        assert_eq!(c.user, (Uid(1001), Gid(1001)));
        assert_eq!(c.sandbox, SandboxMode::Required);
        assert_eq!(c.limits.max_connections, 10);
        assert_eq!(c.limits.idle_timeout, Duration::from_secs(30));
        assert_eq!(c.sweep.interval, Some(Duration::from_secs(60)));
    }

    #[test]
    fn refuses_bad_values_with_clear_messages() {
        let cases = [
            ("bogus = 1", "unknown field"),
            ("prefixes = []", "no prefixes"),
            ("prefixes = [\"tmp\"]", "not an absolute path"),
            ("prefixes = [\"/\"]", "is `/`"),
            ("prefixes = [\"/tmp\", \"/tmp/x\"]", "must not nest"),
            ("name_prefix = \"../\"", "name_prefix"),
            ("name_prefix = \"\"", "name_prefix"),
            ("user = \"root\"", "uid 0"),
            ("user = \"mallory\"", "unknown user mallory"),
            ("allow_groups = [\"nope\"]", "unknown group nope"),
            ("socket = \"rel.sock\"", "must be absolute"),
            ("socket_mode = 0o4777", "not a permission mode"),
            (
                "[limits]\nmax_connections = 0",
                "max_connections must be at least 1",
            ),
        ];
        for (text, expected) in cases {
            let err = ConfigFile::parse(text, Path::new("t.toml"))
                .and_then(|f| Config::resolve(f, &Table))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }

    #[test]
    fn removals_per_uid_default_to_half_the_slots_and_never_exceed_them() {
        let per_uid = |text: &str| {
            let file = ConfigFile::parse(text, Path::new("t.toml")).unwrap();
            Config::resolve(file, &Table)
                .unwrap()
                .limits
                .max_removals_per_uid
        };
        assert_eq!(per_uid(""), 2);
        assert_eq!(per_uid("[limits]\nmax_concurrent_removals = 1"), 1);
        assert_eq!(per_uid("[limits]\nmax_concurrent_removals = 9"), 4);
        assert_eq!(
            per_uid("[limits]\nmax_concurrent_removals = 4\nmax_removals_per_uid = 8"),
            4
        );
        assert_eq!(per_uid("[limits]\nmax_removals_per_uid = 1"), 1);
    }

    #[test]
    fn overlay_prefers_the_upper_layer() {
        let file = ConfigFile {
            prefixes: Some(vec!["/a".into()]),
            name_prefix: Some("x-".into()),
            ..ConfigFile::default()
        };
        let flags = ConfigFile {
            prefixes: Some(vec!["/b".into()]),
            ..ConfigFile::default()
        };
        let merged = file.overlay(flags);
        assert_eq!(merged.prefixes, Some(vec![PathBuf::from("/b")]));
        assert_eq!(merged.name_prefix.as_deref(), Some("x-"));
    }
}
