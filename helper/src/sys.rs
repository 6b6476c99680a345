//! The helper's only unsafe code: kernel interfaces that neither nix nor
//! rustix wraps.

#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd};

use rustix::io::Errno;
use vmrm_policy::Gid;

/// The peer's supplementary groups, as the kernel recorded them at
/// `connect` (SO_PEERGROUPS, Linux 4.13+).
pub fn peer_groups(sock: BorrowedFd<'_>) -> Result<Vec<Gid>, Errno> {
    // NGROUPS_MAX is 65536; start small and grow to what the kernel asks.
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = libc::socklen_t::try_from(groups.len() * std::mem::size_of::<libc::gid_t>())
            .map_err(|_| Errno::RANGE)?;
        // SAFETY: `groups` is a live, writable buffer of `len` bytes; the
        // kernel writes at most `len` bytes and stores the size it needs (or
        // wrote) in `len`. `sock` is a valid fd for the call's duration.
        let rc = unsafe {
            libc::getsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let count = len as usize / std::mem::size_of::<libc::gid_t>();
        if rc == 0 {
            groups.truncate(count);
            return Ok(groups.into_iter().map(Gid).collect());
        }
        let err =
            Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
        if err == Errno::RANGE && count > groups.len() && count <= 65536 {
            groups.resize(count, 0);
            continue;
        }
        return Err(err);
    }
}

/// Take ownership of a listening socket the service manager passed us
/// (`LISTEN_FDS`, fds from 3 up). Checked to be a listening stream socket
/// before it is used.
pub fn take_inherited_fd(fd: std::os::fd::RawFd) -> Result<std::os::fd::OwnedFd, Errno> {
    use std::os::fd::{AsFd, FromRawFd};
    // Only fds the service manager documented as ours, never 0-2.
    if fd < 3 {
        return Err(Errno::BADF);
    }
    // Is it open at all? F_GETFD fails with EBADF otherwise.
    // SAFETY: `fd` is only borrowed for the duration of this call, and
    // fcntl(F_GETFD) has no memory effects; an unowned or closed fd makes
    // it fail with EBADF, which we return.
    let rc = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if rc < 0 {
        return Err(Errno::BADF);
    }
    // SAFETY: per sd_listen_fds(3) the fds from LISTEN_FDS are handed to
    // this process and nothing else in it owns them; sd_notify::listen_fds
    // has checked LISTEN_PID is us. We take ownership exactly once.
    let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let is_listening_stream = rustix::net::sockopt::socket_type(owned.as_fd())
        .map(|t| t == rustix::net::SocketType::STREAM)
        .unwrap_or(false)
        && rustix::net::sockopt::socket_acceptconn(owned.as_fd()).unwrap_or(false);
    if !is_listening_stream {
        return Err(Errno::NOTSOCK);
    }
    Ok(owned)
}
