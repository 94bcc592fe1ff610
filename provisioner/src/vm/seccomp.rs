//! The VMM's seccomp filter: after setup it may only run guests, talk on its control socket
//! and write its logs. Anything else (opening a file, exec, a new socket, ptrace…) kills the
//! whole VMM process with SIGSYS, and nothing else on the host.
//!
//! The list was taken from `strace -f` of `provisioner vm run` over a boot, a pause/resume
//! and a shutdown; keep it that small.

use seccompiler::{BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch};
use std::collections::BTreeMap;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SeccompError {
    #[error("cannot build the seccomp filter: {0}")]
    Build(seccompiler::BackendError),
    #[error("cannot set no_new_privs: {0}")]
    NoNewPrivs(std::io::Error),
    #[error("cannot install the seccomp filter: {0}")]
    Install(seccompiler::Error),
    #[error("cannot drop capabilities: {0}")]
    Capabilities(std::io::Error),
}

/// System calls the VMM uses once running.
pub const ALLOWED: &[i64] = &[
    // vCPUs, irqfds and the devices
    libc::SYS_ioctl,
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_fsync,
    // virtio-blk: writes, flush, discard (punching holes)
    libc::SYS_pwrite64,
    libc::SYS_fdatasync,
    libc::SYS_fallocate,
    // rotating the serial log (and virtio-blk reads) (devices::RotatingLog): copy it aside, empty it
    libc::SYS_pread64,
    libc::SYS_ftruncate,
    // threads, locks, memory
    libc::SYS_futex,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_brk,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_clock_nanosleep,
    libc::SYS_clock_gettime,
    libc::SYS_gettid,
    libc::SYS_getpid,
    // pause: kicking vCPU threads out of KVM_RUN
    libc::SYS_tgkill,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigprocmask,
    libc::SYS_sigaltstack,
    // the control socket
    libc::SYS_accept4,
    libc::SYS_recvfrom,
    libc::SYS_sendto,
    libc::SYS_close,
    libc::SYS_fcntl,
    // ending
    libc::SYS_exit,
    libc::SYS_exit_group,
];

/// The one `prctl` allowed: `PR_GET_SECCOMP`, a read-only query with which the control thread
/// checks it runs confined before it answers (see `control::serve`).
pub const ALLOWED_PRCTL: libc::c_int = libc::PR_GET_SECCOMP;

pub fn program() -> Result<BpfProgram, SeccompError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = ALLOWED.iter().map(|s| (*s, vec![])).collect();
    let get_seccomp = SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, ALLOWED_PRCTL as u64)
        .and_then(|c| SeccompRule::new(vec![c]))
        .map_err(SeccompError::Build)?;
    rules.insert(libc::SYS_prctl, vec![get_seccomp]);
    let filter =
        SeccompFilter::new(rules, SeccompAction::KillProcess, SeccompAction::Allow, TargetArch::x86_64).map_err(SeccompError::Build)?;
    filter.try_into().map_err(SeccompError::Build)
}

/// Drops every capability of every thread (the VMM runs as root to open /dev/kvm, lock
/// memory and join its cgroup, and needs none of it once set up), and makes the process
/// non-dumpable so no other process of the same user can ptrace it or read its memory.
/// Capabilities are per thread: every thread of the VMM calls this before the filter goes on.
pub fn drop_capabilities() -> Result<(), SeccompError> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    // SAFETY: PR_SET_DUMPABLE takes integers only.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(SeccompError::Capabilities(std::io::Error::last_os_error()));
    }
    let mut header = Header { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let data = [Data::default(); 2];
    // SAFETY: capset with a v3 header and two zeroed data words, as capset(2) specifies; it
    // only lowers this thread's capability sets.
    if unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) } != 0 {
        return Err(SeccompError::Capabilities(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Sets no_new_privs and installs the filter on every thread of the process.
pub fn install() -> Result<(), SeccompError> {
    let prog = program()?;
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS) takes integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(SeccompError::NoNewPrivs(std::io::Error::last_os_error()));
    }
    seccompiler::apply_filter_all_threads(&prog).map_err(SeccompError::Install)
}
