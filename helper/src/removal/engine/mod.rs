//! The race-safe deletion engine: the unchecked core that empties and removes
//! a directory tree through directory fds.
//!
//! It trusts its caller to have opened the right top directory and to have
//! authorized the removal ([`crate::removal`] is the checked entry point).
//! From that fd down it never follows a symlink, never crosses a mount,
//! never opens a non-directory, never changes an inode's mode or owner,
//! never enters a directory owned by anyone but the peer or a runner user,
//! and holds a bounded number of fds and bytes of memory whatever the tree.

mod descend;
mod fanout;
mod owners;
mod report;
mod steal;
mod top;
mod walk;

pub use fanout::empty_tree_parallel;
pub use owners::Owners;
pub use report::Report;
pub use top::{open_top, remove_top, OpenTopError, TopDir, TopRemoval};
pub use walk::{empty_tree, Listing, WalkOptions};

#[cfg(test)]
mod tests;
