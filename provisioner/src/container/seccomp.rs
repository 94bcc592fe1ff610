//! The seccomp filter on every container process (its init, inherited by all it forks, and
//! every `ct-exec`), in the spirit of LXC's and Docker's default profiles: a deny list, so a
//! distribution runs unchanged, of the calls that reach kernel state a container does not own
//! or that have been the way into host kernels. Denied calls fail with EPERM (as on a host
//! where the caller lacks the privilege), except `clone3`, which answers ENOSYS because its
//! flags sit in memory the filter cannot read: libc then falls back to `clone`, whose flags it
//! can check.
//!
//! This list is the one place; each entry says why.
//!
//! Installed without `no_new_privs` (so `sudo`, `su`, `passwd` work inside): allowed because
//! the process holds CAP_SYS_ADMIN in its own user namespace at that moment.

use super::ContainerError;
use seccompiler::{BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch};
use std::collections::BTreeMap;

/// Denied outright, with the reason.
pub const DENIED: &[(i64, &str)] = &[
    (libc::SYS_keyctl, "the kernel keyrings are not namespaced: the host's keys"),
    (libc::SYS_add_key, "kernel keyrings (as keyctl)"),
    (libc::SYS_request_key, "kernel keyrings (as keyctl); can also call out to host helpers"),
    (libc::SYS_kexec_load, "replaces the host's kernel"),
    (libc::SYS_kexec_file_load, "replaces the host's kernel"),
    (libc::SYS_init_module, "loads code into the host's kernel"),
    (libc::SYS_finit_module, "loads code into the host's kernel"),
    (libc::SYS_delete_module, "unloads the host's kernel modules"),
    (libc::SYS_open_by_handle_at, "opens files by handle, past the container's root (the 'shocker' escape)"),
    (libc::SYS_bpf, "loads programs into the host's kernel; a large attack surface"),
    (libc::SYS_perf_event_open, "observes the host's kernel and other tenants; a large attack surface"),
    (libc::SYS_userfaultfd, "stalls the kernel at will: the usual tool for kernel race exploits"),
    (libc::SYS_io_uring_setup, "io_uring: a large, often exploited attack surface (as Docker)"),
    (libc::SYS_io_uring_enter, "io_uring (as io_uring_setup)"),
    (libc::SYS_io_uring_register, "io_uring (as io_uring_setup)"),
    (libc::SYS_acct, "process accounting to a file: host-wide"),
    (libc::SYS_swapon, "host-wide swap"),
    (libc::SYS_swapoff, "host-wide swap"),
    (libc::SYS_syslog, "the host kernel's log"),
    (libc::SYS_lookup_dcookie, "kernel profiling internals"),
    (libc::SYS_quotactl, "host filesystem quotas"),
    (libc::SYS_iopl, "raw I/O ports"),
    (libc::SYS_ioperm, "raw I/O ports"),
    (libc::SYS_uselib, "obsolete; old exploit vector"),
    (libc::SYS_fanotify_init, "watches whole filesystems, including the host's mounts"),
];

/// New user namespaces: the road from container root to kernel code normally reserved for
/// real root (nf_tables, mount of more filesystems, ...). No plan allows nesting yet.
const CLONE_NEWUSER: u64 = libc::CLONE_NEWUSER as u64;

fn build(rules: BTreeMap<i64, Vec<SeccompRule>>, errno: u32) -> Result<BpfProgram, ContainerError> {
    let err = |e: String| ContainerError::Init(format!("seccomp filter: {e}"));
    let filter =
        SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(errno), TargetArch::x86_64).map_err(|e| err(e.to_string()))?;
    filter.try_into().map_err(|e: seccompiler::BackendError| err(e.to_string()))
}

/// The two programs: EPERM for [`DENIED`] and CLONE_NEWUSER in `unshare`/`clone`; ENOSYS for
/// `clone3`.
pub fn programs() -> Result<Vec<BpfProgram>, ContainerError> {
    let newuser = |arg: u8| {
        SeccompRule::new(vec![SeccompCondition::new(arg, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(CLONE_NEWUSER), CLONE_NEWUSER)
            .map_err(|e| ContainerError::Init(format!("seccomp rule: {e}")))?])
        .map_err(|e| ContainerError::Init(format!("seccomp rule: {e}")))
    };
    let mut eperm: BTreeMap<i64, Vec<SeccompRule>> = DENIED.iter().map(|(nr, _)| (*nr, vec![])).collect();
    eperm.insert(libc::SYS_unshare, vec![newuser(0)?]);
    eperm.insert(libc::SYS_clone, vec![newuser(0)?]);
    let mut enosys = BTreeMap::new();
    enosys.insert(libc::SYS_clone3, vec![]);
    Ok(vec![build(eperm, libc::EPERM as u32)?, build(enosys, libc::ENOSYS as u32)?])
}

/// Installs the filter on the calling thread (inherited by everything it execs and forks).
/// Without `no_new_privs`: the caller must hold CAP_SYS_ADMIN in its user namespace.
pub fn install(programs: &[BpfProgram]) -> Result<(), ContainerError> {
    for p in programs {
        let prog = libc::sock_fprog { len: p.len() as u16, filter: p.as_ptr() as *mut libc::sock_filter };
        // SAFETY: seccomp(SECCOMP_SET_MODE_FILTER) reads the program we own for the call;
        // `BpfProgram` is a Vec of `sock_filter`-layout instructions.
        let rc = unsafe { libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &prog as *const libc::sock_fprog) };
        if rc != 0 {
            return Err(ContainerError::Sys { what: "install seccomp filter".into(), errno: nix::Error::last() });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_filters_compile_and_every_entry_has_a_reason() {
        assert_eq!(super::programs().unwrap().len(), 2);
        assert!(super::DENIED.iter().all(|(_, why)| why.len() > 8));
    }
}
