//! Path arguments from Python: str, bytes or os.PathLike, checked before
//! anything is sent.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// `os.fsencode(obj)` as a path: TypeError for anything that is not a path,
/// ValueError for a NUL byte (the kernel would cut the path there, so the
/// helper would be asked about a different one).
pub(crate) fn path_arg(obj: &Bound<'_, PyAny>) -> PyResult<PathBuf> {
    let encoded = obj.py().import("os")?.call_method1("fsencode", (obj,))?;
    let bytes = encoded.cast::<PyBytes>()?.as_bytes();
    if bytes.contains(&0) {
        return Err(PyValueError::new_err(format!(
            "path {:?} contains a NUL byte",
            String::from_utf8_lossy(bytes)
        )));
    }
    if bytes.is_empty() {
        return Err(PyValueError::new_err("empty path"));
    }
    Ok(PathBuf::from(OsString::from_vec(bytes.to_vec())))
}

/// A relative path is taken from the current directory and trailing
/// slashes are dropped, as the `vmrm` CLI does. Nothing else is normalized:
/// `..` and `.` reach vmrmd as written, and are refused there.
pub(crate) fn absolute(path: &Path) -> PathBuf {
    let joined = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let bytes = joined.as_os_str().as_bytes();
    let mut end = bytes.len();
    while end > 1 && bytes[end - 1] == b'/' {
        end -= 1;
    }
    PathBuf::from(std::ffi::OsStr::from_bytes(&bytes[..end]))
}

/// A path argument made absolute: what `remove` sends.
pub(crate) fn removal_path(obj: &Bound<'_, PyAny>) -> PyResult<PathBuf> {
    path_arg(obj).map(|p| absolute(&p))
}
