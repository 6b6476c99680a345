//! Start-up and the run loop: config, socket, privilege drop, sandbox, then
//! serving until SIGTERM/SIGINT, reloading on SIGHUP.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use vmrm_policy::{Config, ConfigError, ConfigFile, PrefixError, DEFAULT_CONFIG_PATH};

use crate::removal::{PrefixDirs, PrefixOpenError};
use crate::sandbox;
use crate::serving::server;
use crate::serving::service::{Policy, Service};
use crate::startup::cli::{Cli, Command};
use crate::startup::listener::{ListenError, Listener};
use crate::startup::privileges::{self, PrivilegeError};
use crate::startup::trusted::{self, Owners, TrustError};
use crate::startup::user_database::SystemIds;

/// Threads of the blocking pool beyond one per connection: the sweeper's
/// pass, and a connection's thread that is still returning to the pool
/// when the connection that replaces it is admitted.
const BLOCKING_SPARE: usize = 4;

/// How long, after the drain, connection threads get to finish what they
/// were writing (a removal's end line after its answer) before vmrmd exits.
const SETTLE: Duration = Duration::from_millis(500);

/// Why vmrmd did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("refusing the config file: {0}")]
    ConfigTrust(TrustError),
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error(transparent)]
    Privilege(#[from] PrivilegeError),
    #[error(transparent)]
    Prefix(#[from] PrefixOpenError),
    #[error(transparent)]
    Sandbox(#[from] sandbox::SandboxError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

// Not `#[from]`, which would also make the trust error the `source()`: the
// message already carries it (one convention throughout: the cause is in
// the message, never also in `source()`).
impl From<TrustError> for StartError {
    fn from(e: TrustError) -> StartError {
        StartError::ConfigTrust(e)
    }
}

/// Where the config comes from: a file (explicit, or the default path when
/// it exists) under the command-line flags. Kept for SIGHUP reloads.
pub struct ConfigSource {
    file: Option<PathBuf>,
    explicit: bool,
    flags: ConfigFile,
}

impl ConfigSource {
    pub fn from_cli(cli: &Cli) -> ConfigSource {
        ConfigSource {
            file: Some(
                cli.config
                    .clone()
                    .unwrap_or_else(|| DEFAULT_CONFIG_PATH.into()),
            ),
            explicit: cli.config.is_some(),
            flags: cli.as_config_layer(),
        }
    }

    /// The file in use, if any.
    pub fn file(&self) -> Option<&Path> {
        match &self.file {
            // lstat: a dangling symlink at the default path is refused, not
            // silently taken for "no file".
            Some(p) if self.explicit || p.symlink_metadata().is_ok() => Some(p),
            _ => None,
        }
    }

    /// Read (through [`trusted::read_config`]: owned by root or vmrmd's
    /// uid, not writable by others, no symlink), parse and validate. The same
    /// checks run at start and on every reload.
    pub fn load(&self) -> Result<Config, StartError> {
        let base = match self.file() {
            Some(path) => {
                let text = trusted::read_config(path, &Owners::root_and_self(None))?;
                ConfigFile::parse(&text, path)?
            }
            None => ConfigFile::default(),
        };
        Ok(Config::load(base.overlay(self.flags.clone()), &SystemIds)?)
    }
}

pub fn run(cli: Cli) -> Result<(), StartError> {
    privileges::refuse_at_secure()?;
    let source = ConfigSource::from_cli(&cli);
    let config = source.load()?;
    if matches!(cli.command, Some(Command::CheckConfig)) {
        print_config(&source, &config);
        for warning in PrefixDirs::open(&config)?.mount_warnings(&config) {
            println!("warning: {warning}");
        }
        return Ok(());
    }

    let listener = Listener::open(&config)?;
    let prefixes = PrefixDirs::open(&config)?;
    let held = privileges::drop_privileges(config.user().ids(), &config.user().spec().to_string())?;
    if held.uid == vmrm_policy::OVERFLOW_UID {
        tracing::warn!(
            uid = held.uid.0,
            "RUNNING AS A SHARED ACCOUNT (nobody): any other process of this uid can signal, \
             prlimit or stop vmrmd and stall every tenant; create a dedicated account: \
             useradd --system --no-create-home --shell /usr/sbin/nologin vmrmd"
        );
    }
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        held = %held,
        socket = %config.socket().display(),
        activated = listener.activated,
        prefixes = %config.prefixes().iter().map(|p| p.to_string()).collect::<Vec<_>>().join(","),
        "vmrmd starting"
    );
    if !held.can_override_dac() {
        tracing::warn!(
            uid = held.uid.0,
            "running without CAP_DAC_OVERRIDE: vmrmd can remove only what uid {} could remove \
             itself (fine for development, not for removing other users' files)",
            held.uid
        );
    }
    let (socket_dir, socket_dir_parent) = match &listener.dir {
        Some(dir) => (
            Some(dir.fd.try_clone().map_err(StartError::Runtime)?),
            match dir.created {
                true => Some(dir.parent.try_clone().map_err(StartError::Runtime)?),
                false => None,
            },
        ),
        None => (None, None),
    };
    let reach = sandbox::Reach::new(&config, socket_dir, socket_dir_parent, source.file());
    let enforced = sandbox::apply(config.sandbox(), &reach)?;
    tracing::info!(sandbox = %enforced, "self-sandbox");

    // What a reload compares with: start-only settings stay as they were here.
    let started = config.clone();
    let service = Arc::new(Service::new(Policy { config, prefixes }));
    // One worker accepts, refuses, reloads and sweeps; every admitted
    // connection is served by a thread of the blocking pool of its own
    // (serving/connection.rs), and the sweeper's passes take one more.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("vmrmd-serve")
        .enable_all()
        .max_blocking_threads(service.limits.max_connections() + BLOCKING_SPARE)
        .build()
        .map_err(StartError::Runtime)?;
    let result = runtime.block_on(serve(Arc::clone(&service), &listener, source, started));
    // The drain has waited for every removal in flight; what is left are
    // connection threads writing a removal's end line, or waiting for their
    // client's next request, which no one will serve now.
    runtime.shutdown_timeout(SETTLE);
    listener.cleanup();
    tracing::info!("vmrmd stopped");
    result
}

async fn serve(
    service: Arc<Service>,
    listener: &Listener,
    source: ConfigSource,
    started: Config,
) -> Result<(), StartError> {
    let std_listener = listener.socket.try_clone().map_err(StartError::Runtime)?;
    std_listener
        .set_nonblocking(true)
        .map_err(StartError::Runtime)?;
    let listener = tokio::net::UnixListener::from_std(std_listener).map_err(StartError::Runtime)?;
    let mut term = signal(SignalKind::terminate()).map_err(StartError::Runtime)?;
    let mut int = signal(SignalKind::interrupt()).map_err(StartError::Runtime)?;
    let mut hup = signal(SignalKind::hangup()).map_err(StartError::Runtime)?;

    let reloader = {
        let service = Arc::clone(&service);
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                reload(&service, &source, &started);
            }
        })
    };
    let sweeper = tokio::spawn(crate::removal::sweeper::run(Arc::clone(&service)));
    crate::startup::notify::ready();
    let watchdog = crate::startup::notify::spawn_watchdog();
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
        crate::startup::notify::stopping();
    };
    // The accept loop runs as a task on the runtime's workers, not on this
    // thread (which `block_on` parks outside the workers): a connection is
    // then accepted and served by the worker that epoll woke, with no
    // wake-up of a second thread in between (one wake-up latency less per
    // connection on an idle machine, measured with `perf sched`).
    let accepting = tokio::spawn(server::serve(service, listener, shutdown));
    if let Err(e) = accepting.await {
        tracing::error!(error = %e, "the accept loop ended abnormally");
    }
    reloader.abort();
    sweeper.abort();
    if let Some(w) = watchdog {
        w.abort();
    }
    Ok(())
}

/// SIGHUP: load and validate the config again; put it in force only if it
/// is valid, and say loudly when the old one stays. Start-only settings
/// (socket, user, sandbox, connection and removal caps, connection
/// timeouts) keep the values vmrmd `started` with; the log names each one
/// that now differs.
fn reload(service: &Service, source: &ConfigSource, started: &Config) {
    crate::startup::notify::reloading();
    let result = source
        .load()
        .map_err(|e| explain_reload_error(&e))
        .and_then(|config| {
            let prefixes = PrefixDirs::open(&config).map_err(|e| e.to_string())?;
            Ok(Policy { config, prefixes })
        });
    match result {
        Ok(policy) => {
            let pending = started.start_only_changes(&policy.config);
            if !pending.is_empty() {
                tracing::warn!(
                    settings = %pending.join(","),
                    "these settings are read at start only: the running values stay until \
                     vmrmd is restarted (systemctl restart vmrmd)"
                );
            }
            let current = service.policy();
            let added: Vec<String> = policy
                .config
                .prefixes()
                .iter()
                .filter(|p| !current.config.prefixes().contains(p))
                .map(|p| p.to_string())
                .collect();
            if !added.is_empty() && current.config.sandbox() != vmrm_policy::SandboxMode::Off {
                // Landlock's rules were fixed at start: removals beneath a
                // new prefix would fail with EACCES until a restart.
                tracing::warn!(
                    added = %added.join(","),
                    "new prefixes are outside vmrmd's self-sandbox until it is restarted \
                     (systemctl restart vmrmd); removals beneath them fail with EACCES until then"
                );
            }
            tracing::info!(
                prefixes = %policy.config.prefixes().iter().map(|p| p.to_string()).collect::<Vec<_>>().join(","),
                "configuration reloaded"
            );
            service.replace_policy(policy);
        }
        Err(e) => tracing::error!(error = %e, "reload failed; KEEPING THE PREVIOUS CONFIGURATION"),
    }
    crate::startup::notify::ready();
}

/// A reload failure, with a hint when the cause is the self-sandbox: an
/// EACCES under Landlock means the new config or a prefix is outside what
/// vmrmd may reach since start, which only a restart changes.
fn explain_reload_error(e: &StartError) -> String {
    let io = match e {
        StartError::Config(ConfigError::Read { error, .. })
        | StartError::Config(ConfigError::Prefix(PrefixError::Inaccessible { error, .. }))
        | StartError::ConfigTrust(TrustError::Open { error, .. })
        | StartError::Prefix(PrefixOpenError { error, .. }) => Some(error),
        _ => None,
    };
    let denied =
        io.and_then(std::io::Error::raw_os_error) == Some(rustix::io::Errno::ACCESS.raw_os_error());
    if denied {
        format!(
            "{e} (EACCES from vmrmd's self-sandbox, most likely: since start vmrmd may read only \
             its config file and the user database, and reach only the prefixes it started with; \
             restart vmrmd (systemctl restart vmrmd) to use a new file location or new prefixes)"
        )
    } else {
        e.to_string()
    }
}

/// `check-config`: the effective configuration as the TOML file that would
/// give it (defaults and flags included), so it can be compared with what
/// the operator meant, or copied.
fn print_config(source: &ConfigSource, c: &Config) {
    match source.file() {
        Some(p) => println!(
            "# config file: {}, under the command-line flags",
            p.display()
        ),
        None => println!("# config file: none (built-in defaults and flags)"),
    }
    if c.user().ids().is_none() {
        println!(
            "# user {} does not exist: create it \
             (useradd --system --no-create-home --shell /usr/sbin/nologin {}), \
             or set user; starting as root is refused until then",
            c.user().spec(),
            c.user().spec()
        );
    }
    print!("{}", c.to_toml());
    println!("# configuration is valid");
}
