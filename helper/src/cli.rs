//! vmrmd's command line. Every setting can also come from the config file;
//! a flag given here wins over the file.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use vmrm_policy::{ConfigFile, IdSpec, LimitsFile, SandboxMode, SweepFile};

/// Signals and files, shown in `--help` and the man page.
const AFTER_HELP: &str = "\
Signals:
  SIGHUP   reload the configuration; an invalid one is refused, loudly, and
           the running one kept
  SIGTERM, SIGINT
           stop accepting, finish removals in flight (30 s at most), exit
Files:
  /etc/vmrm/vmrmd.toml   the configuration (when --config is not given)
  /run/vmrmd/vmrmd.sock  the default socket";

#[derive(Debug, Parser)]
#[command(
    name = "vmrmd",
    version,
    about = "Remove tenants' VM working directories race-safely, with CAP_DAC_OVERRIDE as the only privilege",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// Config file (TOML). Default: /etc/vmrm/vmrmd.toml if it exists,
    /// else built-in defaults.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Listening socket path (when not socket-activated).
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// Socket file mode, in octal (default 666).
    #[arg(long, global = true, value_name = "OCTAL", value_parser = parse_octal)]
    pub socket_mode: Option<u32>,

    /// Group to give the socket file.
    #[arg(long, global = true, value_name = "GROUP")]
    pub socket_group: Option<IdSpec>,

    /// Allowed prefix directory; repeat for several (default /tmp).
    #[arg(long = "prefix", global = true, value_name = "DIR")]
    pub prefixes: Vec<PathBuf>,

    /// Names under a prefix must start with this (default vm-).
    #[arg(long, global = true, value_name = "STR")]
    pub name_prefix: Option<String>,

    /// Only these uids (and --allow-group members) may connect; repeatable.
    #[arg(long = "allow-uid", global = true, value_name = "USER")]
    pub allow_uids: Vec<IdSpec>,

    /// Only members of these groups (and --allow-uid users) may connect.
    #[arg(long = "allow-group", global = true, value_name = "GROUP")]
    pub allow_groups: Vec<IdSpec>,

    /// User to become when started as root (default vmrmd, a dedicated
    /// system account; naming a shared one such as nobody is allowed, with a
    /// warning).
    #[arg(long, global = true, value_name = "USER")]
    pub user: Option<IdSpec>,

    /// User that runs tenants' VMs (e.g. qemu-vm), whose directories a
    /// removal may enter besides the requester's own; repeatable.
    #[arg(long = "runner-user", global = true, value_name = "USER")]
    pub runner_users: Vec<IdSpec>,

    /// Self-sandbox: best-effort, required or off.
    #[arg(long, global = true, value_name = "MODE")]
    pub sandbox: Option<SandboxMode>,

    /// Subordinate uid ranges, as newuidmap reads them (default
    /// /etc/subuid): a peer uid in a range is charged to its owner.
    #[arg(long, global = true, value_name = "PATH")]
    pub subuid_file: Option<PathBuf>,

    /// Connections served at once.
    #[arg(long, global = true, value_name = "N")]
    pub max_connections: Option<usize>,

    /// Connections one peer uid may hold at once.
    #[arg(long, global = true, value_name = "N")]
    pub max_connections_per_uid: Option<usize>,

    /// Removals run at once.
    #[arg(long, global = true, value_name = "N")]
    pub max_concurrent_removals: Option<usize>,

    /// Removals one uid (with its subordinate uids) runs at once
    /// (default: half of --max-concurrent-removals).
    #[arg(long, global = true, value_name = "N")]
    pub max_removals_per_uid: Option<usize>,

    /// Close a connection idle this long.
    #[arg(long, global = true, value_name = "SECS")]
    pub idle_timeout: Option<u64>,

    /// Every frame must arrive (and every response be read) within this.
    #[arg(long, global = true, value_name = "SECS")]
    pub frame_timeout: Option<u64>,

    /// Give up on a removal after this long.
    #[arg(long, global = true, value_name = "SECS")]
    pub removal_deadline: Option<u64>,

    /// End a removal that removes nothing for this long.
    #[arg(long, global = true, value_name = "SECS")]
    pub no_progress: Option<u64>,

    /// Listings of a directory that keeps refilling before giving up.
    #[arg(long, global = true, value_name = "N")]
    pub max_rounds: Option<u32>,

    /// Directory levels a removal descends, at most.
    #[arg(long, global = true, value_name = "N")]
    pub max_depth: Option<usize>,

    /// Report bytes freed, at an fstat per file (true or false; default false).
    #[arg(long, global = true, value_name = "BOOL")]
    pub count_bytes: Option<bool>,

    /// Sweep orphaned workdirs this often (0 or absent: never).
    #[arg(long, global = true, value_name = "SECS")]
    pub sweep_interval: Option<u64>,

    /// Never sweep a workdir younger than this.
    #[arg(long, global = true, value_name = "SECS")]
    pub sweep_grace: Option<u64>,

    /// Workdirs examined per prefix per sweep, at most (default 10000).
    #[arg(long, global = true, value_name = "N")]
    pub sweep_max_candidates: Option<usize>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve requests (the default).
    Run,
    /// Validate the configuration, print it, and exit: 0 when valid.
    CheckConfig,
}

fn parse_octal(s: &str) -> Result<u32, String> {
    let digits = s.trim_start_matches("0o");
    u32::from_str_radix(digits, 8).map_err(|e| format!("{s:?} is not an octal mode: {e}"))
}

impl Cli {
    /// The settings given on the command line, as a config layer.
    pub fn as_config_layer(&self) -> ConfigFile {
        ConfigFile {
            socket: self.socket.clone(),
            socket_mode: self.socket_mode,
            socket_group: self.socket_group.clone(),
            prefixes: some_vec(&self.prefixes),
            name_prefix: self.name_prefix.clone(),
            allow_uids: some_vec(&self.allow_uids),
            allow_groups: some_vec(&self.allow_groups),
            user: self.user.clone(),
            runner_users: some_vec(&self.runner_users),
            sandbox: self.sandbox,
            subuid_file: self.subuid_file.clone(),
            limits: LimitsFile {
                max_connections: self.max_connections,
                max_connections_per_uid: self.max_connections_per_uid,
                max_concurrent_removals: self.max_concurrent_removals,
                max_removals_per_uid: self.max_removals_per_uid,
                idle_timeout_secs: self.idle_timeout,
                frame_timeout_secs: self.frame_timeout,
                max_rounds: self.max_rounds,
                max_depth: self.max_depth,
                count_bytes: self.count_bytes,
                removal_deadline_secs: self.removal_deadline,
                no_progress_secs: self.no_progress,
            },
            sweep: SweepFile {
                interval_secs: self.sweep_interval,
                grace_secs: self.sweep_grace,
                max_candidates: self.sweep_max_candidates,
            },
        }
    }
}

fn some_vec<T: Clone>(v: &[T]) -> Option<Vec<T>> {
    (!v.is_empty()).then(|| v.to_vec())
}
