//! vmrmd: the helper daemon that removes tenants' VM working directories.
pub mod engine;
pub mod removal;
