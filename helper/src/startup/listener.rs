//! The listening socket: taken from the service manager when it passes one
//! (socket activation), bound by vmrmd itself otherwise.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

use rustix::fs::{statat, unlinkat, AtFlags, FileType};
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
use vmrm_policy::{Config, Gid};

use crate::startup::trusted::{self, Owners, TrustError, TrustedDir};
use crate::sys;

/// The socket vmrmd serves on.
pub struct Listener {
    pub socket: UnixListener,
    /// Set when vmrmd bound the path itself and so must unlink it on exit.
    pub bound_path: Option<PathBuf>,
    /// The checked socket directory, when vmrmd bound the socket: the
    /// socket is unlinked through it, never by path.
    pub dir: Option<TrustedDir>,
    pub activated: bool,
}

/// Why no listening socket could be had.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("the service manager passed {0} sockets; vmrmd takes exactly one")]
    FdCount(usize),
    #[error("the fd the service manager passed is not a listening stream socket: {0}")]
    NotListening(io::Error),
    #[error("cannot read LISTEN_FDS: {0}")]
    ListenFds(io::Error),
    #[error("refusing the socket directory: {0}")]
    Dir(TrustError),
    #[error("socket path {0:?} names no file in a directory")]
    NoName(PathBuf),
    #[error(
        "socket {path:?} came out with mode {got:04o} and group {gid}, not mode {want:04o}{group}; \
         vmrmd sets both at bind and never by path"
    )]
    Attributes {
        path: PathBuf,
        got: u32,
        want: u32,
        gid: Gid,
        group: String,
    },
    #[error("{0:?} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    #[error("another vmrmd is already serving on {0:?}")]
    InUse(PathBuf),
    #[error("cannot {step} {path:?}: {error}")]
    Socket {
        step: &'static str,
        path: PathBuf,
        error: io::Error,
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
                    dir: None,
                    activated: true,
                })
            }
            more => Err(ListenError::FdCount(more.len())),
        }
    }

    /// Bind `config.socket` with nothing done by path as root: the directory
    /// is opened (or made) through checked ancestors, the socket's mode is
    /// set by the umask at `bind` and its group by the fs gid at `bind`, and
    /// bind itself goes through the directory fd. Nothing is chmod-ed or
    /// chown-ed afterwards, so a swapped-in symlink has nothing to catch.
    fn bind(config: &Config) -> Result<Listener, ListenError> {
        let path = config.socket();
        let (Some(dir_path), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(ListenError::NoName(path.to_owned()));
        };
        let owners = Owners::root_and_self(config.user().ids().map(|(u, _)| u));
        let dir = trusted::open_dir(dir_path, &owners, true).map_err(ListenError::Dir)?;
        remove_stale(&dir.fd, name, path)?;
        let err = |step| {
            move |error: rustix::io::Errno| ListenError::Socket {
                step,
                path: path.to_owned(),
                error: error.into(),
            }
        };
        let fd = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC,
            None,
        )
        .map_err(err("create a socket for"))?;
        let addr = SocketAddrUnix::new(address(&dir.fd, name, path)).map_err(err("address"))?;
        bind_with_attributes(&fd, &addr, config).map_err(err("bind"))?;
        verify_attributes(&dir.fd, name, path, config)?;
        // -1: the kernel's maximum (net.core.somaxconn), as std's
        // UnixListener::bind asks on Linux; floods are bounded by the caps.
        rustix::net::listen(&fd, -1).map_err(err("listen on"))?;
        Ok(Listener {
            socket: UnixListener::from(fd),
            bound_path: Some(path.to_owned()),
            dir: Some(dir),
            activated: false,
        })
    }

    /// Unlink the socket if vmrmd bound it, through the directory fd; and
    /// the directory too when vmrmd created it and it is now empty.
    pub fn cleanup(&self) {
        let (Some(path), Some(dir)) = (&self.bound_path, &self.dir) else {
            return;
        };
        let Some(name) = path.file_name() else {
            return;
        };
        if let Err(e) = unlinkat(&dir.fd, name, AtFlags::empty()) {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove socket");
        }
        if dir.created {
            let dir_name = path.parent().and_then(|p| p.file_name());
            if let Some(dir_name) = dir_name {
                // Best effort: the sandbox may forbid it, or something else
                // may have been put there.
                let _ = unlinkat(&dir.parent, dir_name, AtFlags::REMOVEDIR);
            }
        }
    }
}

/// `bind` with the socket's mode from the umask and its group from the fs
/// gid, both restored right after. vmrmd is single-threaded here, so the
/// process-wide umask affects nothing else.
fn bind_with_attributes(
    fd: &OwnedFd,
    addr: &SocketAddrUnix,
    config: &Config,
) -> Result<(), rustix::io::Errno> {
    let mask = nix::sys::stat::Mode::from_bits_truncate(!config.socket_mode() & 0o777);
    let old_mask = nix::sys::stat::umask(mask);
    let old_fsgid = config
        .socket_group()
        .map(|g| nix::unistd::setfsgid(nix::unistd::Gid::from_raw(g.0)));
    let result = rustix::net::bind(fd, addr);
    if let Some(old) = old_fsgid {
        nix::unistd::setfsgid(old);
    }
    nix::sys::stat::umask(old_mask);
    result
}

/// The kernel's word on what `bind` made: the configured mode and group,
/// else refuse (without a chmod or chown to "fix" it).
fn verify_attributes(
    dir: &OwnedFd,
    name: &OsStr,
    path: &std::path::Path,
    config: &Config,
) -> Result<(), ListenError> {
    let stat = statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| ListenError::Socket {
        step: "inspect",
        path: path.to_owned(),
        error: e.into(),
    })?;
    let mode = stat.st_mode & 0o7777;
    let gid = Gid(stat.st_gid);
    let group_ok = config.socket_group().is_none_or(|g| g == gid);
    if mode != config.socket_mode()
        || !group_ok
        || FileType::from_raw_mode(stat.st_mode) != FileType::Socket
    {
        let _ = unlinkat(dir, name, AtFlags::empty());
        return Err(ListenError::Attributes {
            path: path.to_owned(),
            got: mode,
            want: config.socket_mode(),
            gid,
            group: config
                .socket_group()
                .map(|g| format!(" and group {g} (is vmrmd a member?)"))
                .unwrap_or_default(),
        });
    }
    Ok(())
}

/// The path to bind or connect to: through the checked directory fd
/// (`/proc/self/fd/N/name`), or, past the 107 bytes of `sun_path`, the
/// configured path itself, whose ancestors were checked to be changeable by
/// no one but root and vmrmd.
fn address(dir: &OwnedFd, name: &OsStr, path: &std::path::Path) -> PathBuf {
    let through = trusted::through_fd(&dir.as_fd(), name);
    if through.as_os_str().len() <= 107 {
        through
    } else {
        path.to_owned()
    }
}

/// A socket file left by a vmrmd that died is replaced; a live one, or
/// anything that is not a socket, is not. Looked at and removed through the
/// checked directory fd.
fn remove_stale(dir: &OwnedFd, name: &OsStr, path: &std::path::Path) -> Result<(), ListenError> {
    let stat = match statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => stat,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => {
            return Err(ListenError::Socket {
                step: "inspect",
                path: path.to_owned(),
                error: e.into(),
            })
        }
    };
    if FileType::from_raw_mode(stat.st_mode) != FileType::Socket {
        return Err(ListenError::NotASocket(path.to_owned()));
    }
    match UnixStream::connect(address(dir, name, path)) {
        Ok(_) => Err(ListenError::InUse(path.to_owned())),
        Err(_) => unlinkat(dir, name, AtFlags::empty()).map_err(|e| ListenError::Socket {
            step: "remove the stale socket",
            path: path.to_owned(),
            error: e.into(),
        }),
    }
}
