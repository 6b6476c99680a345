//! vmrmd's command line. Every setting can also come from the config file;
//! a flag given here wins over the file.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use vmrm_policy::ConfigFile;

/// Signals and files, shown in `--help` and the man page.
const AFTER_HELP: &str = "\
Signals:
  SIGHUP   reload the configuration; an invalid one is refused, loudly, and
           the running one kept; settings marked [read at start only]
           keep their running values until a restart
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

    /// Every setting of the config file, as a flag; a flag given wins
    /// over the file. Declared once, in vmrm-policy's config.rs.
    #[command(flatten)]
    pub settings: ConfigFile,

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

impl Cli {
    /// The settings given on the command line, as a config layer.
    pub fn as_config_layer(&self) -> ConfigFile {
        self.settings.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn setting_flags_are_global_and_layer_over_the_file() {
        let cli = Cli::try_parse_from([
            "vmrmd",
            "--socket-mode",
            "640",
            "check-config",
            "--prefix",
            "/a",
            "--prefix",
            "/b",
            "--max-removals-per-uid",
            "3",
            "--runner-user",
            "qemu-vm",
        ])
        .unwrap();
        assert!(matches!(cli.command, Some(Command::CheckConfig)));
        let layer = cli.as_config_layer();
        assert_eq!(
            layer.prefixes,
            Some(vec![PathBuf::from("/a"), PathBuf::from("/b")])
        );
        assert_eq!(layer.limits.max_removals_per_uid, Some(3));
        assert_eq!(layer.runner_users.map(|r| r.len()), Some(1));
        assert_eq!(layer.socket_mode, Some(0o640));
        assert_eq!(layer.socket, None);
    }
}
