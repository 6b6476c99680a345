//! Start-up and the run loop: the command line, logging, vmrmd's own files
//! reached through checked fds, the listening socket, the privilege drop,
//! and the service manager's notifications.

pub(crate) mod cli;
pub(crate) mod daemon;
pub(crate) mod listener;
pub(crate) mod logging;
pub(crate) mod notify;
pub(crate) mod privileges;
pub(crate) mod trusted;
pub(crate) mod user_database;
