//! Newtypes for user, group and process ids, so a uid is never passed where
//! a gid is meant.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A user id as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Uid(pub u32);

/// A group id as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Gid(pub u32);

/// A process id as the kernel reports it. Pids are reused, so one proves
/// nothing about who asked; it is logged only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Pid(pub i32);

/// The uid the kernel reports for an id with no mapping in the observer's
/// user namespace (`/proc/sys/kernel/overflowuid`, 65534 unless changed).
/// Many unrelated ids collapse onto it, so it can never prove ownership.
pub const OVERFLOW_UID: Uid = Uid(65534);

/// The group counterpart of [`OVERFLOW_UID`].
pub const OVERFLOW_GID: Gid = Gid(65534);

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for Gid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
