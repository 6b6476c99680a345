//! seccomp: an allow-list of the syscalls vmrmd makes once serving (the
//! async runtime, its blocking pool, the deletion engine, logging, and
//! sd_notify). Anything else fails with EPERM: no exec, no ptrace, no
//! chmod/chown, no link, no rename but RENAME_NOREPLACE, no mount, no setuid, no network but
//! AF_UNIX.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::SandboxError;

/// Allowed without conditions.
const ALLOWED: &[libc::c_long] = &[
    // I/O on fds vmrmd already holds or opens beneath the prefixes.
    libc::SYS_read,
    libc::SYS_readv,
    libc::SYS_write,
    libc::SYS_writev,
    libc::SYS_close,
    libc::SYS_openat,
    libc::SYS_openat2,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_readlinkat,
    libc::SYS_getdents64,
    libc::SYS_lseek,
    libc::SYS_unlinkat,
    libc::SYS_fcntl,
    libc::SYS_ioctl,
    libc::SYS_flock,
    libc::SYS_getcwd,
    // Prefix validation on reload (refuses proc, sysfs and the like).
    libc::SYS_statfs,
    libc::SYS_fstatfs,
    // The event loop and its timers.
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_pwait2,
    libc::SYS_eventfd2,
    libc::SYS_ppoll,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    // Unix sockets: serving, credentials, sd_notify, signal delivery.
    libc::SYS_accept4,
    libc::SYS_recvfrom,
    libc::SYS_recvmsg,
    libc::SYS_sendto,
    libc::SYS_sendmsg,
    libc::SYS_getsockopt,
    libc::SYS_getsockname,
    libc::SYS_getpeername,
    libc::SYS_connect,
    libc::SYS_shutdown,
    libc::SYS_socketpair,
    // Threads of the blocking pool, memory, signals.
    libc::SYS_clone,
    libc::SYS_clone3,
    libc::SYS_futex,
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_brk,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_getrandom,
    libc::SYS_getpid,
    // Who may own the config on reload (root or vmrmd itself).
    libc::SYS_geteuid,
    libc::SYS_gettid,
    libc::SYS_tgkill,
    libc::SYS_prctl,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_restart_syscall,
];

/// Only in x86_64's table.
#[cfg(target_arch = "x86_64")]
const ALLOWED_ARCH: &[libc::c_long] = &[
    libc::SYS_epoll_wait,
    libc::SYS_poll,
    libc::SYS_stat,
    libc::SYS_lstat,
    libc::SYS_readlink,
    libc::SYS_unlink,
    libc::SYS_arch_prctl,
];

#[cfg(not(target_arch = "x86_64"))]
const ALLOWED_ARCH: &[libc::c_long] = &[];

fn target_arch() -> Result<TargetArch, SandboxError> {
    std::env::consts::ARCH
        .try_into()
        .map_err(SandboxError::SeccompBuild)
}

pub(super) fn restrict() -> Result<String, SandboxError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = ALLOWED
        .iter()
        .chain(ALLOWED_ARCH)
        .map(|&nr| (nr, Vec::new()))
        .collect();
    // socket(2) for AF_UNIX only (sd_notify's datagram socket).
    let unix_only = SeccompCondition::new(
        0,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Eq,
        libc::AF_UNIX as u64,
    )
    .and_then(|c| SeccompRule::new(vec![c]))
    .map_err(SandboxError::SeccompBuild)?;
    rules.insert(libc::SYS_socket, vec![unix_only]);
    // renameat2(2) with RENAME_NOREPLACE only: the walk moves deep subtrees
    // up under their top (Landlock confines it to the prefixes); never a
    // rename that replaces or exchanges an entry.
    let noreplace_only = SeccompCondition::new(
        4,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Eq,
        u64::from(libc::RENAME_NOREPLACE),
    )
    .and_then(|c| SeccompRule::new(vec![c]))
    .map_err(SandboxError::SeccompBuild)?;
    rules.insert(libc::SYS_renameat2, vec![noreplace_only]);
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        target_arch()?,
    )
    .map_err(SandboxError::SeccompBuild)?;
    let program: BpfProgram = filter.try_into().map_err(SandboxError::SeccompBuild)?;
    seccompiler::apply_filter(&program).map_err(SandboxError::SeccompApply)?;
    Ok(format!(
        "allow-list of {} syscalls",
        ALLOWED.len() + ALLOWED_ARCH.len() + 2
    ))
}
