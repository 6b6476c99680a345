//! Rust client errors and helper verdicts as the package's exceptions
//! (defined in Python, `vmrm/_errors.py`, so that they pickle and subclass
//! like any Python exception). Client errors are mapped by variant, never by
//! message text.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyList;
use vmrm::{CleanupError, ClientError, Outcome, WorkDirError};
use vmrm_proto::ProtocolErrorKind;

use crate::results::RemovalStats;

/// What callers do about it: the `.reason` of an `Unavailable`.
const NOT_RUNNING: &str = "not_running";
const CONNECT: &str = "connect";
const CONNECTION_LOST: &str = "connection_lost";
const TIMEOUT: &str = "timeout";
const BUSY: &str = "busy";

const HOW_TO_START: &str = "start it (`systemctl start vmrmd.socket`), or point \
     VMRM_SOCKET (or socket=) at the socket it listens on";

/// Build `vmrm._errors.<name>(*args)` as a PyErr; a failure to build it is
/// itself the error.
fn raise<'py, A>(py: Python<'py>, name: &str, args: A) -> PyErr
where
    A: pyo3::call::PyCallArgs<'py>,
{
    let built = py
        .import("vmrm._errors")
        .and_then(|m| m.getattr(name))
        .and_then(|cls| cls.call1(args));
    match built {
        Ok(value) => PyErr::from_value(value),
        Err(e) => e,
    }
}

fn path_str(path: &Path) -> Option<String> {
    if path.as_os_str().is_empty() {
        None
    } else {
        Some(String::from_utf8_lossy(path.as_os_str().as_bytes()).into_owned())
    }
}

/// A helper verdict other than success, as an exception.
pub(crate) fn from_outcome(path: &Path, outcome: Outcome, took: Duration) -> PyErr {
    Python::attach(|py| from_outcome_in(py, path, outcome, took))
}

fn from_outcome_in(py: Python<'_>, path: &Path, outcome: Outcome, took: Duration) -> PyErr {
    let p = path_str(path);
    let shown = p.clone().unwrap_or_default();
    match outcome {
        Outcome::Denied { reason, message } => {
            raise(py, "Denied", (message, p, reason.as_str().to_owned()))
        }
        Outcome::BadRequest { message } => {
            raise(py, "Denied", (message, p, "bad_request".to_owned()))
        }
        // vmrmd could not take it on (shutting down, an internal fault);
        // nothing was touched: transient, like an unreachable helper.
        Outcome::Unavailable { message } => raise(
            py,
            "Unavailable",
            (
                format!("{shown}: vmrmd cannot serve it now: {message}; retry"),
                p,
                None::<String>,
                "unavailable".to_owned(),
            ),
        ),
        Outcome::NotFound => raise(py, "NotFound", (format!("{shown}: no such directory"), p)),
        Outcome::Failed {
            stats,
            failures,
            omitted,
        } => {
            let list = PyList::empty(py);
            for f in &failures {
                let rel = std::ffi::OsStr::from_bytes(&f.path);
                if let Err(e) = list.append((rel, what(f), f.cause.errno())) {
                    return e;
                }
            }
            let first = failures.first().map_or(String::new(), |f| {
                format!(
                    "; first: {}: {} ({})",
                    if f.path.is_empty() {
                        ".".into()
                    } else {
                        String::from_utf8_lossy(&f.path).into_owned()
                    },
                    what(f),
                    f.cause
                )
            });
            let count = failures.len() as u64 + omitted;
            let message = format!("{shown}: removal incomplete, {count} part(s) remain{first}");
            raise(
                py,
                "RemovalFailed",
                (message, p, list, RemovalStats::of(stats, took), omitted),
            )
        }
        other => raise(
            py,
            "VmrmError",
            (
                format!("{shown}: unexpected answer from vmrmd: {other:?}"),
                p,
            ),
        ),
    }
}

/// A failure's second field in Python: the operation that failed with an
/// errno, or the name of the helper's limit that stopped it (errno None).
fn what(f: &vmrm::Failure) -> &'static str {
    match f.cause.limit() {
        Some(limit) => limit.as_str(),
        None => f.op.as_str(),
    }
}

/// A client error (the helper was not reached or broke the protocol).
pub(crate) fn from_client(socket: &Path, path: Option<&Path>, e: ClientError) -> PyErr {
    Python::attach(|py| from_client_in(py, socket, path, e))
}

fn from_client_in(py: Python<'_>, socket: &Path, path: Option<&Path>, e: ClientError) -> PyErr {
    let p = path.and_then(path_str);
    let unavailable = |message: String, at: &Path, reason: &str| {
        raise(
            py,
            "Unavailable",
            (
                message,
                p.clone(),
                at.display().to_string(),
                reason.to_owned(),
            ),
        )
    };
    match e {
        // `..`: the client may carry more about the socket (where its path
        // came from) than this message needs.
        ClientError::Connect { socket, error, .. } => {
            let s = socket.display();
            match error.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => unavailable(
                    format!(
                        "vmrmd is not running: cannot connect to {s} ({error}); {HOW_TO_START}"
                    ),
                    &socket,
                    NOT_RUNNING,
                ),
                io::ErrorKind::PermissionDenied => unavailable(
                    format!(
                        "cannot connect to vmrmd at {s}: permission denied; this user needs \
                         write access to the socket (its mode or group, see vmrmd --socket-mode \
                         and --socket-group)"
                    ),
                    &socket,
                    CONNECT,
                ),
                _ => unavailable(
                    format!("cannot connect to vmrmd at {s}: {error}; {HOW_TO_START}"),
                    &socket,
                    CONNECT,
                ),
            }
        }
        ClientError::Io { socket, error } => unavailable(
            format!(
                "lost the connection to vmrmd at {}: {error}; it may have restarted: retry",
                socket.display()
            ),
            &socket,
            CONNECTION_LOST,
        ),
        ClientError::Closed { socket } => unavailable(
            format!(
                "vmrmd at {} closed the connection; it may have restarted: retry",
                socket.display()
            ),
            &socket,
            CONNECTION_LOST,
        ),
        ClientError::Timeout {
            socket,
            waiting,
            after,
        } => unavailable(
            format!(
                "vmrmd at {} did not {waiting} within {after:?}; it is overloaded or stuck: \
                 retry later, or pass a longer timeout=",
                socket.display()
            ),
            &socket,
            TIMEOUT,
        ),
        ClientError::Refused {
            socket,
            kind: ProtocolErrorKind::Busy,
            message,
        } => unavailable(
            format!(
                "vmrmd at {} is busy: {message} (its connection cap, or the per-uid connection \
                 cap for this uid, is full); close idle clients of this uid or retry with backoff",
                socket.display()
            ),
            &socket,
            BUSY,
        ),
        ClientError::Refused {
            socket,
            kind: ProtocolErrorKind::Timeout,
            message,
        } => unavailable(
            format!(
                "vmrmd at {} ended the connection: {message}; retry",
                socket.display()
            ),
            &socket,
            TIMEOUT,
        ),
        ClientError::Refused {
            socket,
            kind,
            message,
        } => raise(
            py,
            "VmrmError",
            (
                format!(
                    "vmrmd at {} ended the connection ({kind:?}): {message}; client and \
                     helper versions may differ",
                    socket.display()
                ),
                p,
            ),
        ),
        // vmrmd emptied the directory; our own rmdir of the empty top
        // failed before reaching the kernel.
        e @ ClientError::Local { .. } => raise(py, "VmrmError", (e.to_string(), p)),
        e @ (ClientError::Frame { .. } | ClientError::Unexpected { .. }) => raise(
            py,
            "VmrmError",
            (
                format!("protocol error: {e}; client and helper versions may differ"),
                p,
            ),
        ),
        ClientError::Busy { .. } => raise(
            py,
            "Unavailable",
            (
                format!(
                    "{e} (its connection cap, or the per-uid connection cap for this uid, is \
                     full: close idle clients of this uid or retry with backoff)"
                ),
                p.clone(),
                socket.display().to_string(),
                BUSY.to_owned(),
            ),
        ),
        // A variant this crate does not know yet: the helper was not
        // usable, so it is transient.
        #[allow(unreachable_patterns)]
        other => raise(
            py,
            "Unavailable",
            (
                other.to_string(),
                p.clone(),
                socket.display().to_string(),
                CONNECT.to_owned(),
            ),
        ),
    }
}

/// Why a working directory could not be created.
pub(crate) fn from_workdir(e: WorkDirError) -> PyErr {
    match e {
        WorkDirError::BadVmId(_) | WorkDirError::SocketPathTooLong { .. } => {
            PyValueError::new_err(e.to_string())
        }
        WorkDirError::Create {
            ref base,
            ref error,
        } => PyOSError::new_err((
            error.raw_os_error().unwrap_or(0),
            e.to_string(),
            base.display().to_string(),
        )),
    }
}

/// Why a working directory could not be removed (yet).
pub(crate) fn from_cleanup(socket: &Path, e: CleanupError, took: Duration) -> PyErr {
    match e {
        CleanupError::Local { path, error } => PyOSError::new_err((
            error.raw_os_error().unwrap_or(0),
            format!("cannot remove {}: {error}", path.display()),
            path.display().to_string(),
        )),
        CleanupError::Helper { path, error } => from_client(socket, Some(&path), error),
        CleanupError::NotRemoved { path, outcome } => from_outcome(&path, *outcome, took),
    }
}
