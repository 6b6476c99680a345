//! vmrmd's configuration: the TOML file, command-line overrides, built-in
//! defaults, and the validated [`Config`] the helper runs on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

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
/// The user vmrmd switches to when started as root: a dedicated system
/// account, so that no other process shares its uid (a process of the same
/// uid could signal it, `prlimit` it, or stop it).
pub const DEFAULT_USER: &str = "vmrmd";

/// The config file's keys, the only quoted words a parse error may repeat
/// (anything else quoted came from the file and is redacted).
const KNOWN_KEYS: &[&str] = &[
    "socket",
    "socket_mode",
    "socket_group",
    "prefixes",
    "name_prefix",
    "allow_uids",
    "allow_groups",
    "user",
    "runner_users",
    "sandbox",
    "subuid_file",
    "limits",
    "sweep",
    "max_connections",
    "max_connections_per_uid",
    "max_concurrent_removals",
    "max_removals_per_uid",
    "idle_timeout_secs",
    "frame_timeout_secs",
    "max_rounds",
    "max_depth",
    "count_bytes",
    "removal_deadline_secs",
    "no_progress_secs",
    "interval_secs",
    "grace_secs",
    "max_candidates",
    "best-effort",
    "required",
    "off",
];

/// Where `newuidmap` reads the subordinate uid ranges.
pub const DEFAULT_SUBUID_FILE: &str = "/etc/subuid";

/// A user or group named in the config: a number or a name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
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
    pub runner_users: Option<Vec<IdSpec>>,
    pub sandbox: Option<SandboxMode>,
    pub subuid_file: Option<PathBuf>,
    #[serde(default)]
    pub limits: LimitsFile,
    #[serde(default)]
    pub sweep: SweepFile,
}

/// `[limits]` in the file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
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
    pub no_progress_secs: Option<u64>,
}

/// `[sweep]` in the file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SweepFile {
    pub interval_secs: Option<u64>,
    pub grace_secs: Option<u64>,
    pub max_candidates: Option<usize>,
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
    /// Report bytes freed: before unlinking each regular file, open it
    /// `O_PATH` (never crossing a mount) and `fstat` it. Off by default: it
    /// costs about half again the time of a flat directory of small files.
    pub count_bytes: bool,
    /// Wall-clock bound on one removal.
    pub removal_deadline: Duration,
    /// A removal that removes nothing for this long ends with a
    /// `no_progress` failure instead of running to its deadline.
    pub no_progress: Duration,
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
            count_bytes: false,
            removal_deadline: Duration::from_secs(600),
            no_progress: Duration::from_secs(30),
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
    /// Directories examined per prefix per pass, at most; each pass goes on
    /// from where the last one stopped, so planted entries cannot hide an
    /// orphan behind them.
    pub max_candidates: usize,
}

impl Default for SweepConfig {
    fn default() -> Self {
        SweepConfig {
            interval: None,
            grace: Duration::from_secs(3600),
            max_candidates: 10_000,
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
    /// Who to become when started as root. `None` when the user was not
    /// given and the default account ([`DEFAULT_USER`]) does not exist:
    /// fine for an unprivileged start, refused when started as root.
    pub user: Option<(Uid, Gid)>,
    /// The name or number `user` came from, for messages.
    pub user_spec: IdSpec,
    /// Users that run tenants' VMs (`qemu-vm`): besides the peer's own, the
    /// only directories below the top a removal enters (invariant 8).
    /// Empty (the default) means only the peer's own directories.
    pub runner_users: Vec<Uid>,
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
    #[error("cannot read config file {path:?}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// Line and column only, and the parser's message with every quoted
    /// word from the file redacted: a config that is really another file
    /// (`/etc/shadow` through a link) must not be echoed into a log.
    #[error("config file {path:?} is not valid at line {line}, column {column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
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
    #[error(
        "unknown runner user {0} in runner_users: create it, or remove it from the list \
         (an empty list lets removals enter only the requesting user's own directories)"
    )]
    UnknownRunner(IdSpec),
    #[error(
        "runner user {0} resolves to uid {1}, which must never be a runner \
         (root owns the system; the overflow uid stands for any unmapped id)"
    )]
    BadRunner(IdSpec, Uid),
    #[error("{0} must be at least 1")]
    ZeroLimit(&'static str),
    #[error("{} problems:{}", .0.len(), .0.iter().map(|e| format!("\n  - {e}")).collect::<String>())]
    Several(Vec<ConfigError>),
}

impl ConfigFile {
    /// Parse a config file's text; `path` is for messages.
    pub fn parse(text: &str, path: &Path) -> Result<ConfigFile, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start).min(text.len());
            let before = &text.as_bytes()[..offset];
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            let column = offset
                - before
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |i| i + 1)
                + 1;
            ConfigError::Parse {
                path: path.to_owned(),
                line,
                column,
                message: redact(e.message()),
            }
        })
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
            runner_users: over.runner_users.or(self.runner_users),
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
                no_progress_secs: over
                    .limits
                    .no_progress_secs
                    .or(self.limits.no_progress_secs),
            },
            sweep: SweepFile {
                interval_secs: over.sweep.interval_secs.or(self.sweep.interval_secs),
                grace_secs: over.sweep.grace_secs.or(self.sweep.grace_secs),
                max_candidates: over.sweep.max_candidates.or(self.sweep.max_candidates),
            },
        }
    }
}

/// Collects every error of a config instead of stopping at the first, so
/// an operator fixes them all in one go.
#[derive(Default)]
struct Errors(Vec<ConfigError>);

impl Errors {
    /// The value, or `fallback` after noting the error.
    fn take<T>(&mut self, result: Result<T, impl Into<ConfigError>>, fallback: T) -> T {
        match result {
            Ok(v) => v,
            Err(e) => {
                self.0.push(e.into());
                fallback
            }
        }
    }

    fn push(&mut self, e: impl Into<ConfigError>) {
        self.0.push(e.into());
    }

    fn finish<T>(mut self, value: T) -> Result<T, ConfigError> {
        match self.0.len() {
            0 => Ok(value),
            1 => Err(self.0.remove(0)),
            _ => Err(ConfigError::Several(self.0)),
        }
    }
}

impl Config {
    /// Fill defaults, resolve names, and validate everything, including the
    /// prefixes on disk. The helper refuses to start (or to reload) on `Err`,
    /// which lists every problem found.
    pub fn load(file: ConfigFile, ids: &dyn IdResolver) -> Result<Config, ConfigError> {
        let (config, mut errors) = Config::resolve_collecting(file, ids);
        let mut seen: Vec<(&Prefix, (u64, u64))> = Vec::new();
        for prefix in &config.prefixes {
            let identity = match prefix.check_on_disk() {
                Ok(identity) => identity,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            // The same directory under two names (a bind mount, most often)
            // would be two prefixes with one content: refused, so that the
            // prefix table stays a set and nesting checks mean something.
            if let Some((first, _)) = seen.iter().find(|(_, id)| *id == identity) {
                errors.push(PrefixError::Alias {
                    first: first.path().to_owned(),
                    second: prefix.path().to_owned(),
                });
            }
            seen.push((prefix, identity));
        }
        errors.finish(config)
    }

    /// Everything [`Config::load`] does except looking at the prefixes on disk.
    pub fn resolve(file: ConfigFile, ids: &dyn IdResolver) -> Result<Config, ConfigError> {
        let (config, errors) = Config::resolve_collecting(file, ids);
        errors.finish(config)
    }

    /// The configuration in force, as the TOML file that would give it
    /// (ids as numbers, every default spelled out), for `check-config`.
    pub fn to_toml(&self) -> String {
        let ids = |v: &[u32]| Some(v.iter().map(|&i| IdSpec::Id(i)).collect::<Vec<_>>());
        let l = &self.limits;
        let file = ConfigFile {
            socket: Some(self.socket.clone()),
            socket_mode: Some(self.socket_mode),
            socket_group: self.socket_group.map(|g| IdSpec::Id(g.0)),
            prefixes: Some(self.prefixes.iter().map(|p| p.path().to_owned()).collect()),
            name_prefix: Some(self.name_prefix.clone()),
            allow_uids: ids(&self.allow_uids.iter().map(|u| u.0).collect::<Vec<_>>()),
            allow_groups: ids(&self.allow_groups.iter().map(|g| g.0).collect::<Vec<_>>()),
            user: Some(self.user_spec.clone()),
            runner_users: ids(&self.runner_users.iter().map(|u| u.0).collect::<Vec<_>>()),
            sandbox: Some(self.sandbox),
            subuid_file: Some(self.subuid_file.clone()),
            limits: LimitsFile {
                max_connections: Some(l.max_connections),
                max_connections_per_uid: Some(l.max_connections_per_uid),
                max_concurrent_removals: Some(l.max_concurrent_removals),
                max_removals_per_uid: Some(l.max_removals_per_uid),
                idle_timeout_secs: Some(l.idle_timeout.as_secs()),
                frame_timeout_secs: Some(l.frame_timeout.as_secs()),
                max_rounds: Some(l.max_rounds),
                max_depth: Some(l.max_depth),
                count_bytes: Some(l.count_bytes),
                removal_deadline_secs: Some(l.removal_deadline.as_secs()),
                no_progress_secs: Some(l.no_progress.as_secs()),
            },
            sweep: SweepFile {
                interval_secs: Some(self.sweep.interval.map_or(0, |i| i.as_secs())),
                grace_secs: Some(self.sweep.grace.as_secs()),
                max_candidates: Some(self.sweep.max_candidates),
            },
        };
        let text = toml::to_string(&file).unwrap_or_else(|e| format!("# cannot render: {e}\n"));
        // Modes read best in octal, as the operator wrote them.
        text.lines()
            .map(|line| match line.strip_prefix("socket_mode = ") {
                Some(n) => match n.parse::<u32>() {
                    Ok(mode) => format!("socket_mode = 0o{mode:o}\n"),
                    Err(_) => format!("{line}\n"),
                },
                None => format!("{line}\n"),
            })
            .collect()
    }

    /// A config with defaults standing in for every wrong value, and the
    /// errors found.
    fn resolve_collecting(file: ConfigFile, ids: &dyn IdResolver) -> (Config, Errors) {
        let mut errors = Errors::default();
        let socket = file.socket.unwrap_or_else(|| DEFAULT_SOCKET.into());
        if !socket.is_absolute() {
            errors.push(ConfigError::SocketNotAbsolute(socket.clone()));
        }
        // sun_path holds 108 bytes including the terminating NUL.
        if socket.as_os_str().len() > 107 {
            errors.push(ConfigError::SocketTooLong(socket.clone()));
        }
        let socket_mode = file.socket_mode.unwrap_or(DEFAULT_SOCKET_MODE);
        if socket_mode > 0o777 {
            errors.push(ConfigError::SocketMode(socket_mode));
        }
        let socket_group = file.socket_group.and_then(|g| {
            let gid = ids.group(&g);
            if gid.is_none() {
                errors.push(ConfigError::UnknownGroup(g));
            }
            gid
        });

        let mut prefixes = Vec::new();
        for path in file.prefixes.unwrap_or_else(|| vec![DEFAULT_PREFIX.into()]) {
            if let Some(p) = errors.take(Prefix::new(path).map(Some), None) {
                prefixes.push(p);
            }
        }
        if prefixes.is_empty() && errors.0.is_empty() {
            errors.push(ConfigError::NoPrefixes);
        }
        for (i, a) in prefixes.iter().enumerate() {
            if prefixes[..i].contains(a) {
                errors.push(PrefixError::Duplicate(a.path().to_owned()));
            }
        }
        for outer in &prefixes {
            for inner in &prefixes {
                if outer.contains(inner) {
                    errors.push(PrefixError::Nested {
                        outer: outer.path().to_owned(),
                        inner: inner.path().to_owned(),
                    });
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
            errors.push(ConfigError::NamePrefix(name_prefix.clone()));
        }

        let mut allow_uids = Vec::new();
        for u in file.allow_uids.unwrap_or_default() {
            match ids.user(&u) {
                Some((uid, _)) => allow_uids.push(uid),
                None => errors.push(ConfigError::UnknownUser(u)),
            }
        }
        let mut allow_groups = Vec::new();
        for g in file.allow_groups.unwrap_or_default() {
            match ids.group(&g) {
                Some(gid) => allow_groups.push(gid),
                None => errors.push(ConfigError::UnknownGroup(g)),
            }
        }

        let explicit_user = file.user.is_some();
        let user_spec = file
            .user
            .unwrap_or_else(|| IdSpec::Name(DEFAULT_USER.to_owned()));
        // An explicitly named user must exist; the default account may be
        // missing on a development machine, and is demanded only when vmrmd
        // is started as root (see the helper's privilege drop).
        let mut user = ids.user(&user_spec);
        if user.is_none() && explicit_user {
            errors.push(ConfigError::UnknownUser(user_spec.clone()));
        }
        if user.is_some_and(|(uid, _)| uid == Uid(0)) {
            errors.push(ConfigError::RootUser(user_spec.clone()));
            user = None;
        }

        let runner_users = file
            .runner_users
            .unwrap_or_default()
            .into_iter()
            .filter_map(|spec| match ids.user(&spec) {
                None => {
                    errors.push(ConfigError::UnknownRunner(spec));
                    None
                }
                Some((uid, _)) if uid == Uid(0) || uid == crate::OVERFLOW_UID => {
                    errors.push(ConfigError::BadRunner(spec, uid));
                    None
                }
                Some((uid, _)) => Some(uid),
            })
            .collect::<Vec<_>>();

        let defaults = Limits::default();
        let l = file.limits;
        let mut count =
            |name, value: usize, default: usize| errors.take(nonzero(name, value), default);
        let max_connections = count(
            "limits.max_connections",
            l.max_connections.unwrap_or(defaults.max_connections),
            defaults.max_connections,
        );
        let max_connections_per_uid = count(
            "limits.max_connections_per_uid",
            l.max_connections_per_uid
                .unwrap_or(defaults.max_connections_per_uid),
            defaults.max_connections_per_uid,
        );
        let max_concurrent_removals = count(
            "limits.max_concurrent_removals",
            l.max_concurrent_removals
                .unwrap_or(defaults.max_concurrent_removals),
            defaults.max_concurrent_removals,
        );
        let max_depth = count(
            "limits.max_depth",
            l.max_depth.unwrap_or(defaults.max_depth),
            defaults.max_depth,
        );
        // Default: half the global slots, so another account always finds
        // one free; never more than the global cap.
        let max_removals_per_uid = count(
            "limits.max_removals_per_uid",
            l.max_removals_per_uid
                .unwrap_or((max_concurrent_removals / 2).max(1)),
            1,
        )
        .min(max_concurrent_removals);
        let limits = Limits {
            max_connections,
            max_connections_per_uid,
            max_concurrent_removals,
            max_removals_per_uid,
            idle_timeout: errors.take(
                secs(
                    "limits.idle_timeout_secs",
                    l.idle_timeout_secs,
                    defaults.idle_timeout,
                ),
                defaults.idle_timeout,
            ),
            frame_timeout: errors.take(
                secs(
                    "limits.frame_timeout_secs",
                    l.frame_timeout_secs,
                    defaults.frame_timeout,
                ),
                defaults.frame_timeout,
            ),
            max_rounds: errors.take(
                nonzero(
                    "limits.max_rounds",
                    l.max_rounds.unwrap_or(defaults.max_rounds),
                ),
                defaults.max_rounds,
            ),
            max_depth,
            count_bytes: l.count_bytes.unwrap_or(defaults.count_bytes),
            removal_deadline: errors.take(
                secs(
                    "limits.removal_deadline_secs",
                    l.removal_deadline_secs,
                    defaults.removal_deadline,
                ),
                defaults.removal_deadline,
            ),
            no_progress: errors.take(
                secs(
                    "limits.no_progress_secs",
                    l.no_progress_secs,
                    defaults.no_progress,
                ),
                defaults.no_progress,
            ),
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
            max_candidates: errors.take(
                nonzero(
                    "sweep.max_candidates",
                    file.sweep
                        .max_candidates
                        .unwrap_or(sweep_defaults.max_candidates),
                ),
                sweep_defaults.max_candidates,
            ),
        };

        let config = Config {
            socket,
            socket_mode,
            socket_group,
            prefixes,
            name_prefix,
            allow_uids,
            allow_groups,
            user,
            user_spec,
            runner_users,
            sandbox: file.sandbox.unwrap_or_default(),
            subuid_file: file
                .subuid_file
                .unwrap_or_else(|| PathBuf::from(DEFAULT_SUBUID_FILE)),
            limits,
            sweep,
        };
        (config, errors)
    }
}

/// The parser's message with every quoted word that is not one of our keys
/// replaced by `…`: serde quotes the offending value (`invalid type: string
/// "root:$y$..."`), and that value is the file's content.
fn redact(message: &str) -> String {
    let first_line = message.lines().next().unwrap_or_default();
    let mut out = String::with_capacity(first_line.len());
    let mut rest = first_line;
    while let Some(open) = rest.find(['`', '"', '\'']) {
        let quote = rest[open..].chars().next().unwrap_or('"');
        out.push_str(&rest[..=open]);
        let after = &rest[open + 1..];
        match after.find(quote) {
            Some(close) => {
                let word = &after[..close];
                out.push_str(if KNOWN_KEYS.contains(&word) {
                    word
                } else {
                    "…"
                });
                out.push(quote);
                rest = &after[close + 1..];
            }
            None => {
                out.push('…');
                rest = "";
            }
        }
    }
    out.push_str(rest);
    // Unquoted words can still be content (a bare key the parser names):
    // keep the message short so little can slip through.
    out.chars().take(200).collect()
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
        assert_eq!(c.user, None, "no vmrmd account in the table");
        assert_eq!(c.user_spec, IdSpec::Name("vmrmd".into()));
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
            runner_users = ["alice", 1005]
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
        assert_eq!(c.user, Some((Uid(1001), Gid(1001))));
        assert_eq!(c.runner_users, vec![Uid(1000), Uid(1005)]);
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
            ("prefixes = [\"/tmp\", \"/tmp\"]", "twice"),
            ("name_prefix = \"../\"", "name_prefix"),
            ("name_prefix = \"\"", "name_prefix"),
            ("user = \"root\"", "uid 0"),
            ("user = \"mallory\"", "unknown user mallory"),
            ("allow_groups = [\"nope\"]", "unknown group nope"),
            ("runner_users = [\"qemu\"]", "unknown runner user qemu"),
            ("runner_users = [0]", "must never be a runner"),
            ("runner_users = [65534]", "must never be a runner"),
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
    fn parse_errors_give_line_and_column_but_never_the_content() {
        // What a config symlinked or hard-linked to /etc/shadow would hold.
        let shadow = "root:$y$j9T$SECRETSALT$SECRETHASH:19000:0:99999:7:::\n";
        let err = ConfigFile::parse(shadow, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1, column"), "{err}");
        assert!(!err.contains("SECRET") && !err.contains("root:"), "{err}");

        let typed = "socket = \"/run/a.sock\"\nuser = [\"SECRETVALUE\"]\n";
        let err = ConfigFile::parse(typed, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(!err.contains("SECRETVALUE"), "{err}");

        let unknown = "SECRETKEY = 1\n";
        let err = ConfigFile::parse(unknown, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field"), "{err}");
        assert!(!err.contains("SECRETKEY"), "{err}");
        assert!(err.contains("`socket`"), "keys are named: {err}");
    }

    #[test]
    fn an_explicit_unknown_user_is_an_error_the_default_one_is_not() {
        let file = ConfigFile {
            user: Some(IdSpec::Name("vmrmd".into())),
            ..ConfigFile::default()
        };
        assert!(Config::resolve(file, &Table).is_err());
        assert!(Config::resolve(ConfigFile::default(), &Table).is_ok());
    }

    #[test]
    fn every_error_is_reported_not_only_the_first() {
        let text = "socket = \"rel.sock\"\nuser = \"mallory\"\nallow_groups = [\"nope\"]\n\
                    [limits]\nmax_connections = 0\n";
        let err = ConfigFile::parse(text, Path::new("t.toml"))
            .and_then(|f| Config::resolve(f, &Table))
            .unwrap_err()
            .to_string();
        for expected in [
            "4 problems",
            "must be absolute",
            "unknown user mallory",
            "unknown group nope",
            "limits.max_connections must be at least 1",
        ] {
            assert!(err.contains(expected), "{expected:?} missing from {err}");
        }
    }

    #[test]
    fn the_effective_config_prints_as_toml_that_reads_back_the_same() {
        let text = "socket_mode = 0o660\nprefixes = [\"/tmp\", \"/var/lib/vms\"]\nuser = \"bob\"\n\
                    sandbox = \"required\"\n[sweep]\ninterval_secs = 60\n";
        let c = Config::resolve(ConfigFile::parse(text, Path::new("t")).unwrap(), &Table).unwrap();
        let printed = c.to_toml();
        assert!(printed.contains("socket_mode = 0o660"), "{printed}");
        assert!(printed.contains("sandbox = \"required\""), "{printed}");
        assert!(printed.contains("[limits]"), "{printed}");
        let again = Config::resolve(ConfigFile::parse(&printed, Path::new("t")).unwrap(), &Table);
        assert_eq!(again.unwrap(), c);
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
