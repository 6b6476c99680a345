//! Removal: the checked entry point that judges a request by policy, the
//! race-safe engine (the unchecked core) it drives, and the orphan sweeper
//! that reuses both.

mod checked;
pub(crate) mod engine;
pub(crate) mod sweeper;

pub(crate) use checked::*;
