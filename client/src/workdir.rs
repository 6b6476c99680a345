//! The per-VM working directory: created atomically as
//! `<base>/vm-<id8>-XXXXXXXX` (mode 0700), holding the overlay image, the
//! console log and the VM's sockets, and removed idempotently, through vmrmd
//! when it holds files of another user (such as `qemu-vm`).

use std::fs::Permissions;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{flock, openat, FlockOperation, Mode, OFlags, CWD};
use vmrm_proto::Outcome;

use crate::{Client, ClientError, ClientOptions};

/// Longest socket path a `sockaddr_un` holds: 108 bytes of `sun_path`
/// including the terminating NUL.
pub const SUN_PATH_MAX: usize = 107;

const OVERLAY: &str = "overlay.qcow2";
const CONSOLE_LOG: &str = "console.log";
const CMD_SOCKET: &str = "cmd.sock";
const EVENT_SOCKET: &str = "event.sock";
const QMP_SOCKET: &str = "qmp.sock";
const GVPROXY_SOCKET: &str = "gvproxy.sock";
/// The longest of the socket names above.
const LONGEST_SOCKET: &str = GVPROXY_SOCKET;

/// Length of `vm-<id8>-XXXXXXXX` (at most: a short id makes it shorter).
const NAME_LEN: usize = 3 + 8 + 1 + 8;

/// Why a working directory could not be created.
#[derive(Debug, thiserror::Error)]
pub enum WorkDirError {
    /// The vm id has no letter or digit to build the name from.
    #[error("vm id {0:?} has no character of [A-Za-z0-9] to name the directory with")]
    BadVmId(String),
    /// The base directory is too long for the sockets inside to be bound.
    #[error(
        "socket paths under {base:?} would be {len} bytes, over the {SUN_PATH_MAX}-byte limit of a \
         Unix socket address; use a shorter base directory"
    )]
    SocketPathTooLong {
        /// The base directory asked for.
        base: PathBuf,
        /// The longest socket path's length, in bytes.
        len: usize,
    },
    /// The kernel refused to create the directory.
    #[error("cannot create a working directory in {base:?}: {error}")]
    Create {
        /// The base directory asked for.
        base: PathBuf,
        /// What the kernel answered.
        error: io::Error,
    },
}

/// Why a working directory could not be removed (yet). Cleanup may be
/// called again.
#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    /// Removing with the caller's own rights failed (a refused permission
    /// is not this error: it hands the removal to vmrmd).
    #[error("cannot remove {path:?}: {error}")]
    Local {
        /// The working directory.
        path: PathBuf,
        /// What the kernel answered.
        error: io::Error,
    },
    /// vmrmd could not be asked, or did not answer (the error says which).
    #[error("cannot remove {path:?}: {error}")]
    Helper {
        /// The working directory.
        path: PathBuf,
        /// What went wrong talking to vmrmd.
        error: ClientError,
    },
    /// vmrmd answered, and the directory is still there: refused, failed
    /// in part, or not served now (the outcome says which).
    #[error("cannot remove {path:?}: {outcome}")]
    NotRemoved {
        /// The working directory.
        path: PathBuf,
        /// vmrmd's answer.
        outcome: Box<Outcome>,
    },
}

/// Configures a [`WorkDir`] before creating it.
#[derive(Debug, Clone)]
pub struct WorkDirBuilder {
    vm_id: String,
    base: PathBuf,
    custom_overlay: Option<PathBuf>,
    uses_helper: bool,
    client: ClientOptions,
}

impl WorkDirBuilder {
    /// Where to create the directory (default: the system temp dir).
    pub fn base(mut self, base: impl Into<PathBuf>) -> Self {
        self.base = base.into();
        self
    }

    /// Use this overlay image path instead of one inside the directory.
    pub fn custom_overlay(mut self, path: impl Into<PathBuf>) -> Self {
        self.custom_overlay = Some(path.into());
        self
    }

    /// Whether files of another user will end up inside, so cleanup must go
    /// through vmrmd (it also falls back to vmrmd when a local removal is
    /// refused).
    pub fn uses_helper(mut self, yes: bool) -> Self {
        self.uses_helper = yes;
        self
    }

    /// How to reach vmrmd (default: `$VMRM_SOCKET` or the default socket).
    pub fn client_options(mut self, options: ClientOptions) -> Self {
        self.client = options;
        self
    }

    /// Create the directory: atomic, mode 0700, unique name, locked.
    pub fn create(self) -> Result<WorkDir, WorkDirError> {
        let id8: String = self
            .vm_id
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(8)
            .collect();
        if id8.is_empty() {
            return Err(WorkDirError::BadVmId(self.vm_id));
        }
        // Refuse before creating anything: every socket path must fit.
        let longest =
            self.base.as_os_str().as_bytes().len() + 1 + NAME_LEN + 1 + LONGEST_SOCKET.len();
        if longest > SUN_PATH_MAX {
            return Err(WorkDirError::SocketPathTooLong {
                base: self.base,
                len: longest,
            });
        }
        let create = |error| WorkDirError::Create {
            base: self.base.clone(),
            error,
        };
        let path = tempfile::Builder::new()
            .prefix(&format!("vm-{id8}-"))
            .rand_bytes(8)
            .permissions(Permissions::from_mode(0o700))
            .tempdir_in(&self.base)
            .map_err(create)?
            .keep();
        let lock = lock(&path).map_err(create)?;
        tracing::debug!(vm_id = %self.vm_id, path = %path.display(), "created VM working directory");
        Ok(WorkDir {
            vm_id: self.vm_id,
            path,
            custom_overlay: self.custom_overlay,
            uses_helper: self.uses_helper,
            client: self.client,
            lock: Some(lock),
            cleaned: false,
            keep: false,
        })
    }
}

/// Hold an exclusive `flock` on the directory for as long as the WorkDir
/// lives: vmrmd's orphan sweeper removes only directories whose lock it can
/// take, so a live VM's directory is never swept.
fn lock(path: &Path) -> io::Result<OwnedFd> {
    let fd = openat(
        CWD,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    flock(&fd, FlockOperation::NonBlockingLockExclusive)?;
    Ok(fd)
}

/// One VM's working directory. Dropping it cleans up (blocking, best
/// effort); call [`WorkDir::cleanup`] to see errors, or [`WorkDir::keep`].
#[derive(Debug)]
pub struct WorkDir {
    vm_id: String,
    path: PathBuf,
    custom_overlay: Option<PathBuf>,
    uses_helper: bool,
    client: ClientOptions,
    lock: Option<OwnedFd>,
    cleaned: bool,
    keep: bool,
}

impl WorkDir {
    /// Start configuring a working directory for `vm_id`; the first eight
    /// alphanumeric characters of the id name it.
    pub fn builder(vm_id: impl Into<String>) -> WorkDirBuilder {
        WorkDirBuilder {
            vm_id: vm_id.into(),
            base: std::env::temp_dir(),
            custom_overlay: None,
            uses_helper: false,
            client: ClientOptions::default(),
        }
    }

    /// Create a working directory in the system temp dir with defaults.
    pub fn create(vm_id: impl Into<String>) -> Result<WorkDir, WorkDirError> {
        WorkDir::builder(vm_id).create()
    }

    /// The vm id the directory was named after.
    pub fn vm_id(&self) -> &str {
        &self.vm_id
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The qcow2 overlay: the custom path if one was set, else inside.
    pub fn overlay_image(&self) -> PathBuf {
        self.custom_overlay
            .clone()
            .unwrap_or_else(|| self.path.join(OVERLAY))
    }

    /// QEMU's serial console log.
    pub fn console_log(&self) -> PathBuf {
        self.path.join(CONSOLE_LOG)
    }

    /// Command channel socket.
    pub fn cmd_socket(&self) -> PathBuf {
        self.path.join(CMD_SOCKET)
    }

    /// Event channel socket.
    pub fn event_socket(&self) -> PathBuf {
        self.path.join(EVENT_SOCKET)
    }

    /// QMP control socket.
    pub fn qmp_socket(&self) -> PathBuf {
        self.path.join(QMP_SOCKET)
    }

    /// gvproxy network socket.
    pub fn gvproxy_socket(&self) -> PathBuf {
        self.path.join(GVPROXY_SOCKET)
    }

    /// Whether cleanup goes through vmrmd.
    pub fn uses_helper(&self) -> bool {
        self.uses_helper
    }

    /// Send cleanup through vmrmd (`true`) or try the caller's own rights
    /// first (`false`).
    pub fn set_uses_helper(&mut self, yes: bool) {
        self.uses_helper = yes;
    }

    /// Whether the directory has been removed.
    pub fn is_cleaned_up(&self) -> bool {
        self.cleaned
    }

    /// Leave the directory in place when this value is dropped.
    ///
    /// Its lock stays held until this process exits (the lock's fd is
    /// deliberately left open), so vmrmd's orphan sweeper leaves the
    /// directory alone while the process lives, as it did before `keep`;
    /// once the process exits, the directory is an orphan like any other
    /// and is swept after the grace period. Costs one fd per kept directory.
    pub fn keep(mut self) -> PathBuf {
        self.keep = true;
        if let Some(lock) = self.lock.take() {
            // The attack this prevents: a kept directory was unlocked, and
            // the sweeper emptied it while its process still used it.
            let _ = std::os::fd::IntoRawFd::into_raw_fd(lock);
        }
        self.path.clone()
    }

    /// Remove the directory and everything in it. Idempotent: once it has
    /// succeeded it does nothing; after an error it can be called again.
    pub fn cleanup(&mut self) -> Result<(), CleanupError> {
        if self.cleaned {
            return Ok(());
        }
        self.remove_now()?;
        self.cleaned = true;
        self.lock = None;
        tracing::debug!(vm_id = %self.vm_id, path = %self.path.display(), "VM working directory removed");
        Ok(())
    }

    /// [`WorkDir::cleanup`] for async code: the local removal runs on the
    /// blocking pool, the helper is asked through [`crate::AsyncClient`].
    #[cfg(feature = "tokio")]
    pub async fn cleanup_async(&mut self) -> Result<(), CleanupError> {
        if self.cleaned {
            return Ok(());
        }
        let local_refused = if self.uses_helper {
            true
        } else {
            let path = self.path.clone();
            let joined = tokio::task::spawn_blocking(move || remove_locally(&path)).await;
            match joined {
                Ok(Ok(())) => false,
                Ok(Err(e)) if e.kind() == io::ErrorKind::PermissionDenied => true,
                Ok(Err(e)) => {
                    return Err(CleanupError::Local {
                        path: self.path.clone(),
                        error: e,
                    })
                }
                Err(e) => {
                    return Err(CleanupError::Local {
                        path: self.path.clone(),
                        error: io::Error::other(e),
                    })
                }
            }
        };
        if local_refused {
            let client = crate::AsyncClient::with_options(self.client.clone());
            let outcome = client.remove(&self.path).await;
            self.judge(outcome)?;
        }
        self.cleaned = true;
        self.lock = None;
        Ok(())
    }

    fn remove_now(&mut self) -> Result<(), CleanupError> {
        if !self.uses_helper {
            match remove_locally(&self.path) {
                Ok(()) => return Ok(()),
                // Another user's files inside: only the helper can finish.
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {}
                Err(e) => {
                    return Err(CleanupError::Local {
                        path: self.path.clone(),
                        error: e,
                    })
                }
            }
        }
        let outcome = Client::with_options(self.client.clone()).remove(&self.path);
        self.judge(outcome)
    }

    fn judge(&self, outcome: Result<Outcome, ClientError>) -> Result<(), CleanupError> {
        match outcome {
            Ok(Outcome::Removed(_) | Outcome::NotFound) => Ok(()),
            Ok(other) => Err(CleanupError::NotRemoved {
                path: self.path.clone(),
                outcome: Box::new(other),
            }),
            Err(error) => Err(CleanupError::Helper {
                path: self.path.clone(),
                error,
            }),
        }
    }
}

/// Remove with the caller's own rights; a missing directory is success.
fn remove_locally(path: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.cleaned || self.keep {
            return;
        }
        if let Err(e) = self.cleanup() {
            tracing::warn!(vm_id = %self.vm_id, error = %e, "VM working directory left behind");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_removal_reads_as_what_failed_not_as_a_refusal() {
        use vmrm_proto::{Cause, FailedOp, Failure, Limit, RemovalStats};
        let e = CleanupError::NotRemoved {
            path: "/tmp/vm-x".into(),
            outcome: Box::new(Outcome::Failed {
                stats: RemovalStats::default(),
                failures: vec![Failure {
                    path: b"a/project".to_vec(),
                    path_truncated: false,
                    op: FailedOp::Open,
                    cause: Cause::Limit(Limit::ForeignOwner { owner: 1001 }),
                }],
                omitted: 1,
            }),
        };
        assert_eq!(
            e.to_string(),
            "cannot remove \"/tmp/vm-x\": 2 parts could not be removed; first: open \
             'a/project': owned by uid 1001, neither the caller nor a runner user; left untouched"
        );
    }

    #[test]
    fn creates_a_private_directory_with_the_expected_name() {
        let base = tempfile::tempdir().unwrap();
        let mut wd = WorkDir::builder("3f2a9c1e-aaaa-bbbb")
            .base(base.path())
            .create()
            .unwrap();
        let name = wd.path().file_name().unwrap().to_str().unwrap().to_owned();
        assert!(name.starts_with("vm-3f2a9c1e-"), "{name}");
        assert_eq!(name.len(), NAME_LEN);
        assert!(
            name[12..].chars().all(|c| c.is_ascii_alphanumeric()),
            "{name}"
        );
        let mode = std::fs::metadata(wd.path()).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o700);
        assert_eq!(wd.qmp_socket(), wd.path().join("qmp.sock"));
        assert_eq!(wd.overlay_image(), wd.path().join("overlay.qcow2"));
        std::fs::write(wd.console_log(), b"boot").unwrap();
        wd.cleanup().unwrap();
        assert!(!wd.path().exists());
        wd.cleanup().unwrap();
    }

    #[test]
    fn refuses_a_base_whose_socket_paths_would_not_fit() {
        let long = PathBuf::from(format!("/tmp/{}", "x".repeat(80)));
        match WorkDir::builder("abc").base(&long).create() {
            Err(WorkDirError::SocketPathTooLong { len, .. }) => assert!(len > SUN_PATH_MAX),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn socket_paths_fit_at_the_limit() {
        // The longest base that fits: every socket path is <= 107 bytes.
        let base_len = SUN_PATH_MAX - (1 + NAME_LEN + 1 + LONGEST_SOCKET.len());
        let root = tempfile::tempdir().unwrap();
        let mut base = root.path().to_path_buf();
        let pad = base_len - base.as_os_str().len() - 1;
        base.push("b".repeat(pad));
        std::fs::create_dir(&base).unwrap();
        let wd = WorkDir::builder("id").base(&base).create().unwrap();
        for s in [
            wd.cmd_socket(),
            wd.event_socket(),
            wd.qmp_socket(),
            wd.gvproxy_socket(),
        ] {
            assert!(s.as_os_str().len() <= SUN_PATH_MAX);
            let _l = std::os::unix::net::UnixListener::bind(&s).unwrap();
        }
    }

    #[test]
    fn refuses_an_id_without_usable_characters() {
        assert!(matches!(
            WorkDir::create("--//"),
            Err(WorkDirError::BadVmId(_))
        ));
    }

    #[test]
    fn drop_cleans_up_and_keep_does_not() {
        let base = tempfile::tempdir().unwrap();
        let wd = WorkDir::builder("dropme")
            .base(base.path())
            .create()
            .unwrap();
        let path = wd.path().to_owned();
        drop(wd);
        assert!(!path.exists());
        let wd = WorkDir::builder("keepme")
            .base(base.path())
            .create()
            .unwrap();
        let kept = wd.keep();
        assert!(kept.exists());
        // The attack: keep() dropped the lock, and the sweeper emptied the
        // directory while its process still used it. The lock stays held.
        let other = openat(
            CWD,
            &kept,
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        assert_eq!(
            flock(&other, FlockOperation::NonBlockingLockExclusive),
            Err(rustix::io::Errno::WOULDBLOCK),
            "a kept WorkDir's lock was released"
        );
    }
}
