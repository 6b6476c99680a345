//! Start-up and the run loop: config, socket, privilege drop, sandbox, then
//! serving until SIGTERM/SIGINT, reloading on SIGHUP.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};
use vmrm_policy::{Config, ConfigError, ConfigFile, DEFAULT_CONFIG_PATH};

use crate::cli::{Cli, Command};
use crate::ids::SystemIds;
use crate::listener::{ListenError, Listener};
use crate::privileges::{self, PrivilegeError};
use crate::removal::{PrefixDirs, PrefixOpenError};
use crate::service::{Policy, Service};
use crate::{sandbox, server};

/// Why vmrmd did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error(transparent)]
    Privilege(#[from] PrivilegeError),
    #[error(transparent)]
    Prefix(#[from] PrefixOpenError),
    #[error(transparent)]
    Sandbox(#[from] sandbox::SandboxError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
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
            Some(p) if self.explicit || p.exists() => Some(p),
            _ => None,
        }
    }

    pub fn load(&self) -> Result<Config, ConfigError> {
        let base = match self.file() {
            Some(path) => ConfigFile::read(path)?,
            None => ConfigFile::default(),
        };
        Config::load(base.overlay(self.flags.clone()), &SystemIds)
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
    let held = privileges::drop_privileges(config.user)?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        held = %held,
        socket = %config.socket.display(),
        activated = listener.activated,
        prefixes = %config.prefixes.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(","),
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
    let reach = sandbox::Reach::new(&config, listener.bound_path.as_deref(), source.file());
    let enforced = sandbox::apply(config.sandbox, &reach)?;
    tracing::info!(sandbox = %enforced, "self-sandbox");

    let service = Arc::new(Service::new(Policy { config, prefixes }));
    // Two workers: removals run in place on a worker (block_in_place), and
    // the runtime keeps serving other connections on the other.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .max_blocking_threads(service.limits.max_concurrent_removals + 2)
        .build()
        .map_err(StartError::Runtime)?;
    let result = runtime.block_on(serve(Arc::clone(&service), &listener, source));
    listener.cleanup();
    tracing::info!("vmrmd stopped");
    result
}

async fn serve(
    service: Arc<Service>,
    listener: &Listener,
    source: ConfigSource,
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
                reload(&service, &source);
            }
        })
    };
    let sweeper = tokio::spawn(crate::sweeper::run(Arc::clone(&service)));
    crate::notify::ready();
    let watchdog = crate::notify::spawn_watchdog();
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
        crate::notify::stopping();
    };
    server::serve(service, listener, shutdown).await;
    reloader.abort();
    sweeper.abort();
    if let Some(w) = watchdog {
        w.abort();
    }
    Ok(())
}

/// SIGHUP: load and validate the config again; put it in force only if it
/// is valid, and say loudly when the old one stays.
fn reload(service: &Service, source: &ConfigSource) {
    crate::notify::reloading();
    let result = source.load().map_err(|e| e.to_string()).and_then(|config| {
        let prefixes = PrefixDirs::open(&config).map_err(|e| e.to_string())?;
        Ok(Policy { config, prefixes })
    });
    match result {
        Ok(policy) => {
            let (old, new) = (&service.limits, &policy.config.limits);
            if (
                old.max_connections,
                old.max_connections_per_uid,
                old.max_concurrent_removals,
            ) != (
                new.max_connections,
                new.max_connections_per_uid,
                new.max_concurrent_removals,
            ) || (old.idle_timeout, old.frame_timeout) != (new.idle_timeout, new.frame_timeout)
            {
                tracing::warn!(
                    "changed connection caps, concurrency and timeouts take effect only at restart"
                );
            }
            tracing::info!(
                prefixes = %policy.config.prefixes.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(","),
                "configuration reloaded"
            );
            service.replace_policy(policy);
        }
        Err(e) => tracing::error!(error = %e, "reload failed; KEEPING THE PREVIOUS CONFIGURATION"),
    }
    crate::notify::ready();
}

fn print_config(source: &ConfigSource, c: &Config) {
    match source.file() {
        Some(p) => println!("config file: {}", p.display()),
        None => println!("config file: none (built-in defaults and flags)"),
    }
    println!(
        "socket: {} (mode {:o}{})",
        c.socket.display(),
        c.socket_mode,
        c.socket_group
            .map(|g| format!(", group {g}"))
            .unwrap_or_default()
    );
    for p in &c.prefixes {
        println!("prefix: {p}");
    }
    println!("name prefix: {}", c.name_prefix);
    println!("allow uids: {}", list(&c.allow_uids));
    println!("allow groups: {}", list(&c.allow_groups));
    println!(
        "user when started as root: {} (uid {}, gid {})",
        c.user_spec, c.user.0, c.user.1
    );
    println!(
        "runner users: {}",
        if c.runner_users.is_empty() {
            "none (removals enter only the requester's own directories)".into()
        } else {
            list(&c.runner_users)
        }
    );
    println!("sandbox: {:?}", c.sandbox);
    println!("limits: {:?}", c.limits);
    match c.sweep.interval {
        Some(i) => println!(
            "sweep: every {}s, grace {}s",
            i.as_secs(),
            c.sweep.grace.as_secs()
        ),
        None => println!("sweep: off"),
    }
    println!("configuration is valid");
}

fn list<T: std::fmt::Display>(items: &[T]) -> String {
    if items.is_empty() {
        return "any".into();
    }
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}
