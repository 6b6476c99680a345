//! vmrmd's configuration: the TOML file, command-line overrides, built-in
//! defaults, and the validated [`Config`] the helper runs on.

//!
//! **Adding a setting** is one line in a `settings!` block below, plus its
//! doc comment: the key (the field's name), its kind (how it is checked,
//! from [`crate::kinds`]), its default, its flag and value name, and
//! whether it is read at `start` only or changes on `reload`. For example,
//! a cap on the entries one removal may delete:
//!
//! ```text
//!         /// Entries one removal deletes, at most.
//!         max_entries: Count<u64> = 10_000_000, flag "max-entries" "N", reload;
//! ```
//!
//! That line gives the `[limits] max_entries` key, the `--max-entries N`
//! flag (with the doc as its help and man page text), the layering of the
//! flag over the file, the check (at least 1, every problem reported), the
//! accessor `config.limits().max_entries()`, its line in `check-config`'s
//! output, and its place in the reload's "needs a restart" report when
//! marked `start`. Then document it in README.md and dist/vmrmd.toml.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::kinds::{
    AnySecs, Count, FilePath, Group, Groups, Mode, NamePrefix, Plain, Prefixes, Resolving, Runners,
    Secs, SecsOrOff, SocketPath, User, Users, Words,
};
use crate::{Gid, Prefix, PrefixError, Uid};

pub use crate::kinds::RunAs;

/// Read when `--config` is not given; its absence means built-in defaults.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/vmrm/vmrmd.toml";
/// Where vmrmd listens unless configured otherwise.
pub const DEFAULT_SOCKET: &str = vmrm_proto::DEFAULT_SOCKET;
/// Anyone may connect: every request is still judged by the peer's kernel
/// credentials and directory ownership. Narrow with `socket_mode`,
/// `socket_group` and the allow-lists.
pub const DEFAULT_SOCKET_MODE: u32 = 0o666;
/// The system temp dir, where `mkdtemp` puts VM workdirs.
pub const DEFAULT_PREFIX: &str = "/tmp";
/// What a workdir's name starts with: `vm-`, as `mkdtemp(prefix="vm-<id8>-")` makes it.
pub const DEFAULT_NAME_PREFIX: &str = "vm-";
/// The user vmrmd switches to when started as root: a dedicated system
/// account, so that no other process shares its uid (a process of the same
/// uid could signal it, `prlimit` it, or stop it).
pub const DEFAULT_USER: &str = "vmrmd";

/// Where `newuidmap` reads the subordinate uid ranges.
pub const DEFAULT_SUBUID_FILE: &str = "/etc/subuid";

/// A user or group named in the config: a number or a name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum IdSpec {
    /// A numeric id, used as is.
    Id(u32),
    /// A name, looked up in the user database.
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
    /// The gid of a group.
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

impl Words for SandboxMode {
    const WORDS: &'static [&'static str] = &["best-effort", "required", "off"];
}

settings! {
    /// vmrmd's settings: the config file's top level (and, parsed from
    /// the command line, the layer of flags over it).
    file ConfigFile;
    /// A configuration that passed validation.
    checked Config, keys "";
    {
        /// Listening socket path (when not socket-activated).
        socket: SocketPath = PathBuf::from(DEFAULT_SOCKET), flag "socket" "PATH", start;
        /// Socket file mode, in octal.
        socket_mode: Mode = DEFAULT_SOCKET_MODE, flag "socket-mode" "OCTAL", start;
        /// Group to give the socket file.
        socket_group: Group, flag "socket-group" "GROUP", start;
        /// Allowed prefix directory; repeat for several. Under the
        /// self-sandbox, one added by a reload is removable only after a restart.
        prefixes: Prefixes = vec![PathBuf::from(DEFAULT_PREFIX)], flag "prefix" "DIR", reload;
        /// Names under a prefix must start with this.
        name_prefix: NamePrefix = DEFAULT_NAME_PREFIX.to_owned(), flag "name-prefix" "STR", reload;
        /// Only these uids (and allowed groups' members) may connect;
        /// repeatable. Empty: no uid restriction.
        allow_uids: Users = Vec::new(), flag "allow-uid" "USER", reload;
        /// Only members of these groups (and allowed uids) may connect;
        /// repeatable. Empty: no group restriction.
        allow_groups: Groups = Vec::new(), flag "allow-group" "GROUP", reload;
        /// User to become when started as root: a dedicated system account
        /// (a shared one such as nobody is allowed, with a warning).
        user: User = IdSpec::Name(DEFAULT_USER.to_owned()), flag "user" "USER", start;
        /// User that runs tenants' VMs (e.g. qemu-vm), whose directories a
        /// removal may enter besides the requester's own; repeatable.
        runner_users: Runners = Vec::new(), flag "runner-user" "USER", reload;
        /// Self-sandbox: best-effort, required or off.
        sandbox: Plain<SandboxMode> = SandboxMode::BestEffort, flag "sandbox" "MODE", start;
        /// Subordinate uid ranges, as newuidmap reads them: a peer uid in a
        /// range is charged to its owner.
        subuid_file: FilePath = PathBuf::from(DEFAULT_SUBUID_FILE), flag "subuid-file" "PATH", reload;
    }
    sections { limits: LimitsFile => Limits, sweep: SweepFile => SweepConfig }
}

settings! {
    /// `[limits]` in the file.
    file LimitsFile;
    /// Caps and timeouts.
    checked Limits, keys "limits.", after Limits::share_removal_slots;
    {
        /// Connections served at once, each by a thread of its own; more
        /// are told "busy" and closed.
        max_connections: Count<usize> = 256, flag "max-connections" "N", start;
        /// Connections one peer uid may hold at once, so that one tenant's
        /// idle connections cannot take every slot from the others.
        max_connections_per_uid: Count<usize> = 32, flag "max-connections-per-uid" "N", start;
        /// Removals run at once; more wait their turn.
        max_concurrent_removals: Count<usize> = 4, flag "max-concurrent-removals" "N", start;
        /// Removals one uid (with its subordinate uids) runs at once, so
        /// that one tenant's many huge removals never hold every slot
        /// (default: half of max_concurrent_removals; never more than it).
        max_removals_per_uid: Count<usize>, flag "max-removals-per-uid" "N", start;
        /// Close a connection idle this long.
        idle_timeout_secs as idle_timeout: Secs = 300, flag "idle-timeout" "SECS", start;
        /// Once a frame starts, all of it must arrive (and a response be
        /// read) within this: a client sending one byte a second is cut.
        frame_timeout_secs as frame_timeout: Secs = 5, flag "frame-timeout" "SECS", start;
        /// Listings of a directory that keeps refilling during removal
        /// before giving up on it.
        max_rounds: Count<u32> = 8, flag "max-rounds" "N", reload;
        /// Directory levels below the top a removal descends, at most: an
        /// operator's limit (the walk is linear at any depth: deep subtrees
        /// are moved up under the top, so Landlock's check stays short).
        max_depth: Count<usize> = 1_000_000, flag "max-depth" "N", reload;
        /// Report bytes freed: fstat each regular file (opened O_PATH, never
        /// crossing a mount) before unlinking it, at about half again the
        /// time on directories of small files (true or false).
        count_bytes: Plain<bool> = false, flag "count-bytes" "BOOL", reload;
        /// Give up on a removal after this long.
        removal_deadline_secs as removal_deadline: Secs = 600, flag "removal-deadline" "SECS", reload;
        /// End a removal that removes nothing for this long (a
        /// no_progress failure) instead of running to its deadline.
        no_progress_secs as no_progress: Secs = 30, flag "no-progress" "SECS", reload;
    }
}

settings! {
    /// `[sweep]` in the file.
    file SweepFile;
    /// The orphan sweeper's settings.
    checked SweepConfig, keys "sweep.";
    {
        /// Sweep orphaned workdirs this often (0: never).
        interval_secs as interval: SecsOrOff = 0, flag "sweep-interval" "SECS", reload;
        /// Never sweep a workdir younger than this.
        grace_secs as grace: AnySecs = 3600, flag "sweep-grace" "SECS", reload;
        /// Workdirs examined per prefix per sweep, at most; each pass goes
        /// on from where the last one stopped, so planted entries cannot
        /// hide an orphan behind them.
        max_candidates: Count<usize> = 10_000, flag "sweep-max-candidates" "N", reload;
    }
}

impl Limits {
    /// Removals per uid default to half the global slots, so another
    /// account always finds one free, and never exceed the global cap.
    fn share_removal_slots(mut self, file: &LimitsFile) -> Limits {
        if file.max_removals_per_uid.is_none() {
            self.max_removals_per_uid = (self.max_concurrent_removals / 2).max(1);
        }
        self.max_removals_per_uid = self.max_removals_per_uid.min(self.max_concurrent_removals);
        self
    }
}

/// Why a configuration is refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path:?}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the kernel answered.
        error: std::io::Error,
    },
    /// Line and column only, and the parser's message with every quoted
    /// word from the file redacted: a config that is really another file
    /// (`/etc/shadow` through a link) must not be echoed into a log.
    #[error("config file {path:?} is not valid at line {line}, column {column}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where the error is: line (from 1).
        line: usize,
        /// Where the error is: column (from 1).
        column: usize,
        /// The parser's message, redacted.
        message: String,
    },
    /// The socket path is relative.
    #[error("socket path {0:?} must be absolute")]
    SocketNotAbsolute(PathBuf),
    /// The socket path does not fit a Unix socket address.
    #[error("socket path {0:?} is longer than the 107 bytes a Unix socket address holds")]
    SocketTooLong(PathBuf),
    /// `socket_mode` has bits beyond the permission bits.
    #[error("socket_mode {0:#o} is not a permission mode (at most 0o777)")]
    SocketMode(u32),
    /// The prefix list is empty.
    #[error("no prefixes configured")]
    NoPrefixes,
    /// A prefix is refused.
    #[error(transparent)]
    Prefix(#[from] PrefixError),
    /// `name_prefix` breaks the name grammar.
    #[error(
        "name_prefix {0:?} must be 1 to 64 characters of [A-Za-z0-9._-], not starting with `.`"
    )]
    NamePrefix(String),
    /// A user the user database does not know.
    #[error("unknown user {0}")]
    UnknownUser(IdSpec),
    /// A group the user database does not know.
    #[error("unknown group {0}")]
    UnknownGroup(IdSpec),
    /// `user` is root.
    #[error("user {0} resolves to uid 0; vmrmd must not keep running as root")]
    RootUser(IdSpec),
    /// A runner user the user database does not know.
    #[error(
        "unknown runner user {0} in runner_users: create it, or remove it from the list \
         (an empty list lets removals enter only the requesting user's own directories)"
    )]
    UnknownRunner(IdSpec),
    /// A runner user that is root or the overflow uid.
    #[error(
        "runner user {0} resolves to uid {1}, which must never be a runner \
         (root owns the system; the overflow uid stands for any unmapped id)"
    )]
    BadRunner(IdSpec, Uid),
    /// A limit set to 0.
    #[error("{0} must be at least 1")]
    ZeroLimit(&'static str),
    /// Every problem found, when there are several.
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
}

impl Config {
    /// Fill defaults, resolve names, and validate everything, including the
    /// prefixes on disk. The helper refuses to start (or to reload) on `Err`,
    /// which lists every problem found.
    pub fn load(file: ConfigFile, ids: &dyn IdResolver) -> Result<Config, ConfigError> {
        let mut cx = Resolving {
            ids,
            errors: Default::default(),
        };
        let config = Config::resolve_section(&file, &mut cx);
        let mut errors = cx.errors;
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
        let mut cx = Resolving {
            ids,
            errors: Default::default(),
        };
        let config = Config::resolve_section(&file, &mut cx);
        cx.errors.finish(config)
    }

    /// The configuration in force, as the TOML file that would give it
    /// (ids as numbers, every default spelled out), for `check-config`.
    pub fn to_toml(&self) -> String {
        let text =
            toml::to_string(&self.to_file()).unwrap_or_else(|e| format!("# cannot render: {e}\n"));
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
}

/// The parser's message with every quoted word that is not one of our keys
/// replaced by `…`: serde quotes the offending value (`invalid type: string
/// "root:$y$..."`), and that value is the file's content.
fn redact(message: &str) -> String {
    let mut known = Vec::new();
    ConfigFile::known_words(&mut known);
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
                out.push_str(if known.contains(&word) { word } else { "…" });
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration;

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
        assert_eq!(c.socket(), Path::new(DEFAULT_SOCKET));
        assert_eq!(c.prefixes(), vec![Prefix::new("/tmp").unwrap()]);
        assert_eq!(c.name_prefix(), "vm-");
        assert_eq!(c.user().ids(), None, "no vmrmd account in the table");
        assert_eq!(c.user().spec(), &IdSpec::Name("vmrmd".into()));
        assert_eq!(c.sandbox(), SandboxMode::BestEffort);
        assert!(c.sweep().interval().is_none());
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
        assert_eq!(c.socket_mode(), 0o660);
        assert_eq!(c.socket_group(), Some(Gid(2000)));
        assert_eq!(c.allow_uids(), vec![Uid(1000), Uid(1001)]);
        assert_eq!(c.allow_groups(), vec![Gid(2000)]);
        assert_eq!(c.user().ids(), Some((Uid(1001), Gid(1001))));
        assert_eq!(c.runner_users(), vec![Uid(1000), Uid(1005)]);
        assert_eq!(c.sandbox(), SandboxMode::Required);
        assert_eq!(c.limits().max_connections(), 10);
        assert_eq!(c.limits().idle_timeout(), Duration::from_secs(30));
        assert_eq!(c.sweep().interval(), Some(Duration::from_secs(60)));
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
                .limits()
                .max_removals_per_uid()
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

    /// Every key of the file as before settings were declared once, in the
    /// same order (a new setting may add keys).
    #[test]
    fn the_file_keys_are_unchanged() {
        let mut words = Vec::new();
        ConfigFile::known_words(&mut words);
        let expected = [
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
            "best-effort",
            "required",
            "off",
            "subuid_file",
            "limits",
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
            "sweep",
            "interval_secs",
            "grace_secs",
            "max_candidates",
        ];
        let kept: Vec<&str> = words
            .iter()
            .copied()
            .filter(|w| expected.contains(w))
            .collect();
        assert_eq!(kept, expected);
    }

    #[test]
    fn defaults_are_unchanged() {
        let c = Config::resolve(ConfigFile::default(), &Table).unwrap();
        assert_eq!(c.socket_mode(), 0o666);
        assert_eq!(c.socket_group(), None);
        assert!(c.allow_uids().is_empty() && c.allow_groups().is_empty());
        assert!(c.runner_users().is_empty());
        assert_eq!(c.subuid_file(), Path::new("/etc/subuid"));
        let l = c.limits();
        assert_eq!(
            (l.max_connections(), l.max_connections_per_uid()),
            (256, 32)
        );
        assert_eq!(
            (l.max_concurrent_removals(), l.max_removals_per_uid()),
            (4, 2)
        );
        assert_eq!(l.idle_timeout(), Duration::from_secs(300));
        assert_eq!(l.frame_timeout(), Duration::from_secs(5));
        assert_eq!((l.max_rounds(), l.max_depth()), (8, 1_000_000));
        assert!(!l.count_bytes());
        assert_eq!(l.removal_deadline(), Duration::from_secs(600));
        assert_eq!(l.no_progress(), Duration::from_secs(30));
        let s = c.sweep();
        assert_eq!(s.interval(), None);
        assert_eq!(s.grace(), Duration::from_secs(3600));
        assert_eq!(s.max_candidates(), 10_000);
    }

    /// What README.md, dist/vmrmd.toml and the reload's log call start-only.
    #[test]
    fn start_only_settings_are_the_documented_ones() {
        assert_eq!(
            Config::start_only_keys(),
            [
                "socket",
                "socket_mode",
                "socket_group",
                "user",
                "sandbox",
                "limits.max_connections",
                "limits.max_connections_per_uid",
                "limits.max_concurrent_removals",
                "limits.max_removals_per_uid",
                "limits.idle_timeout_secs",
                "limits.frame_timeout_secs",
            ]
        );
        let old = Config::resolve(ConfigFile::default(), &Table).unwrap();
        let text = "socket_mode = 0o600\nname_prefix = \"x-\"\n[limits]\nidle_timeout_secs = 9\n\
                    removal_deadline_secs = 9\n[sweep]\ninterval_secs = 9\n";
        let new =
            Config::resolve(ConfigFile::parse(text, Path::new("t")).unwrap(), &Table).unwrap();
        assert_eq!(
            old.start_only_changes(&new),
            ["socket_mode", "limits.idle_timeout_secs"]
        );
        assert!(old.start_only_changes(&old).is_empty());
    }

    #[test]
    fn zero_is_refused_for_every_count_and_timeout_but_sweep_interval_and_grace() {
        for (section, key) in [
            ("limits", "max_connections"),
            ("limits", "max_connections_per_uid"),
            ("limits", "max_concurrent_removals"),
            ("limits", "max_removals_per_uid"),
            ("limits", "idle_timeout_secs"),
            ("limits", "frame_timeout_secs"),
            ("limits", "max_rounds"),
            ("limits", "max_depth"),
            ("limits", "removal_deadline_secs"),
            ("limits", "no_progress_secs"),
            ("sweep", "max_candidates"),
        ] {
            let text = format!("[{section}]\n{key} = 0\n");
            let err = Config::resolve(ConfigFile::parse(&text, Path::new("t")).unwrap(), &Table)
                .unwrap_err()
                .to_string();
            assert_eq!(err, format!("{section}.{key} must be at least 1"));
        }
        let text = "[sweep]\ninterval_secs = 0\ngrace_secs = 0\n";
        let c = Config::resolve(ConfigFile::parse(text, Path::new("t")).unwrap(), &Table).unwrap();
        assert_eq!(c.sweep().interval(), None);
        assert_eq!(c.sweep().grace(), Duration::ZERO);
    }

    #[test]
    fn every_setting_round_trips_through_to_toml() {
        let text = r#"
            socket = "/run/x/x.sock"
            socket_mode = 0o640
            socket_group = "tenants"
            prefixes = ["/tmp", "/var/lib/vms"]
            name_prefix = "box-"
            allow_uids = ["alice", 1001]
            allow_groups = ["tenants", 7]
            user = "bob"
            runner_users = [1005]
            sandbox = "off"
            subuid_file = "/etc/subuid.test"
            [limits]
            max_connections = 10
            max_connections_per_uid = 3
            max_concurrent_removals = 6
            max_removals_per_uid = 5
            idle_timeout_secs = 30
            frame_timeout_secs = 2
            max_rounds = 3
            max_depth = 100
            count_bytes = true
            removal_deadline_secs = 60
            no_progress_secs = 7
            [sweep]
            interval_secs = 60
            grace_secs = 0
            max_candidates = 5
        "#;
        let c = Config::resolve(ConfigFile::parse(text, Path::new("t")).unwrap(), &Table).unwrap();
        let printed = c.to_toml();
        let file = ConfigFile::parse(&printed, Path::new("t")).unwrap();
        // Every key is spelled out, names as numbers.
        assert_eq!(file.socket_group, Some(IdSpec::Id(2000)));
        assert_eq!(file.limits.count_bytes, Some(true));
        assert_eq!(file.sweep.grace_secs, Some(0));
        assert_eq!(Config::resolve(file, &Table).unwrap(), c);
    }

    #[test]
    fn overlay_reaches_into_the_sections() {
        let file = ConfigFile::parse(
            "[limits]\nmax_rounds = 3\nmax_depth = 9\n[sweep]\ngrace_secs = 5\n",
            Path::new("t"),
        )
        .unwrap();
        let mut flags = ConfigFile::default();
        flags.limits.max_depth = Some(10);
        flags.sweep.interval_secs = Some(60);
        let merged = file.overlay(flags);
        assert_eq!(merged.limits.max_rounds, Some(3));
        assert_eq!(merged.limits.max_depth, Some(10));
        assert_eq!(merged.sweep.grace_secs, Some(5));
        assert_eq!(merged.sweep.interval_secs, Some(60));
    }

    #[cfg(feature = "flags")]
    mod flags {
        use super::*;
        use clap::{Args, FromArgMatches};

        fn parse(args: &[&str]) -> Result<ConfigFile, clap::Error> {
            let cmd = ConfigFile::augment_args(clap::Command::new("vmrmd"));
            let matches =
                cmd.try_get_matches_from(std::iter::once("vmrmd").chain(args.iter().copied()))?;
            ConfigFile::from_arg_matches(&matches)
        }

        #[test]
        fn no_flags_is_an_empty_layer() {
            assert_eq!(parse(&[]).unwrap(), ConfigFile::default());
        }

        #[test]
        fn every_flag_sets_its_key() {
            let layer = parse(&[
                "--socket",
                "/run/a.sock",
                "--socket-mode",
                "0o640",
                "--socket-group",
                "tenants",
                "--prefix",
                "/a",
                "--prefix",
                "/b",
                "--name-prefix",
                "x-",
                "--allow-uid",
                "alice",
                "--allow-uid",
                "7",
                "--allow-group",
                "tenants",
                "--user",
                "bob",
                "--runner-user",
                "1005",
                "--sandbox",
                "required",
                "--subuid-file",
                "/etc/s",
                "--max-connections",
                "1",
                "--max-connections-per-uid",
                "2",
                "--max-concurrent-removals",
                "3",
                "--max-removals-per-uid",
                "4",
                "--idle-timeout",
                "5",
                "--frame-timeout",
                "6",
                "--max-rounds",
                "7",
                "--max-depth",
                "8",
                "--count-bytes",
                "true",
                "--removal-deadline",
                "9",
                "--no-progress",
                "10",
                "--sweep-interval",
                "11",
                "--sweep-grace",
                "12",
                "--sweep-max-candidates",
                "13",
            ])
            .unwrap();
            let text =
                "socket = \"/run/a.sock\"\nsocket_mode = 0o640\nsocket_group = \"tenants\"\n\
                prefixes = [\"/a\", \"/b\"]\nname_prefix = \"x-\"\nallow_uids = [\"alice\", 7]\n\
                allow_groups = [\"tenants\"]\nuser = \"bob\"\nrunner_users = [1005]\n\
                sandbox = \"required\"\nsubuid_file = \"/etc/s\"\n[limits]\nmax_connections = 1\n\
                max_connections_per_uid = 2\nmax_concurrent_removals = 3\n\
                max_removals_per_uid = 4\nidle_timeout_secs = 5\nframe_timeout_secs = 6\n\
                max_rounds = 7\nmax_depth = 8\ncount_bytes = true\nremoval_deadline_secs = 9\n\
                no_progress_secs = 10\n[sweep]\ninterval_secs = 11\ngrace_secs = 12\n\
                max_candidates = 13\n";
            assert_eq!(layer, ConfigFile::parse(text, Path::new("t")).unwrap());
        }

        #[test]
        fn bad_flag_values_are_refused_by_the_parser() {
            for args in [
                &["--socket-mode", "9"][..],
                &["--max-connections", "many"],
                &["--sandbox", "maybe"],
                &["--count-bytes", "yes"],
            ] {
                assert!(parse(args).is_err(), "{args:?}");
            }
        }
    }
}
