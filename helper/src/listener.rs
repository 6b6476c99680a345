//! The listening socket: taken from the service manager when it passes one
//! (socket activation), bound by vmrmd itself otherwise.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use vmrm_policy::Config;

use crate::sys;

/// The socket vmrmd serves on.
pub struct Listener {
    pub socket: UnixListener,
    /// Set when vmrmd bound the path itself and so must unlink it on exit.
    pub bound_path: Option<PathBuf>,
    pub activated: bool,
}

/// Why no listening socket could be had.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("the service manager passed {0} sockets; vmrmd takes exactly one")]
    FdCount(usize),
    #[error("the fd the service manager passed is not a listening stream socket: {0}")]
    NotListening(#[source] io::Error),
    #[error("cannot read LISTEN_FDS: {0}")]
    ListenFds(#[source] io::Error),
    #[error("cannot create socket directory {path:?}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0:?} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    #[error("another vmrmd is already serving on {0:?}")]
    InUse(PathBuf),
    #[error("cannot {step} {path:?}: {source}")]
    Socket {
        step: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl Listener {
    /// Use the socket passed by systemd if any, else bind `config.socket`.
    pub fn open(config: &Config) -> Result<Listener, ListenError> {
        let fds: Vec<_> = sd_notify::listen_fds()
            .map_err(ListenError::ListenFds)?
            .collect();
        match fds.as_slice() {
            [] => Listener::bind(config),
            [fd] => {
                let owned =
                    sys::take_inherited_fd(*fd).map_err(|e| ListenError::NotListening(e.into()))?;
                let socket = UnixListener::from(owned);
                Ok(Listener {
                    socket,
                    bound_path: None,
                    activated: true,
                })
            }
            more => Err(ListenError::FdCount(more.len())),
        }
    }

    fn bind(config: &Config) -> Result<Listener, ListenError> {
        let path = &config.socket;
        if let Some(dir) = path.parent() {
            if !dir.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(dir)
                    .map_err(|source| ListenError::Dir {
                        path: dir.to_owned(),
                        source,
                    })?;
            }
        }
        remove_stale(path)?;
        let err = |step| {
            move |source| ListenError::Socket {
                step,
                path: path.clone(),
                source,
            }
        };
        let socket = UnixListener::bind(path).map_err(err("bind"))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(config.socket_mode))
            .map_err(err("set the mode of"))?;
        if let Some(gid) = config.socket_group {
            std::os::unix::fs::chown(path, None, Some(gid.0)).map_err(err("set the group of"))?;
        }
        Ok(Listener {
            socket,
            bound_path: Some(path.clone()),
            activated: false,
        })
    }

    /// Unlink the socket path if vmrmd bound it.
    pub fn cleanup(&self) {
        if let Some(path) = &self.bound_path {
            if let Err(e) = std::fs::remove_file(path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove socket");
            }
        }
    }
}

use std::os::unix::fs::DirBuilderExt;

/// A socket file left by a vmrmd that died is replaced; a live one, or
/// anything that is not a socket, is not.
fn remove_stale(path: &Path) -> Result<(), ListenError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(ListenError::Socket {
                step: "inspect",
                path: path.to_owned(),
                source,
            })
        }
    };
    if !meta.file_type().is_socket() {
        return Err(ListenError::NotASocket(path.to_owned()));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(ListenError::InUse(path.to_owned())),
        Err(_) => std::fs::remove_file(path).map_err(|source| ListenError::Socket {
            step: "remove the stale socket",
            path: path.to_owned(),
            source,
        }),
    }
}
