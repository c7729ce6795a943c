//! The default seccomp profile: Docker's in effect for what it denies. The
//! syscalls below fail with EPERM unless the container holds the capability that
//! Docker's profile lets them through with; namespace-making `clone` flags need
//! CAP_SYS_ADMIN; `clone3` answers ENOSYS so libc falls back to `clone`, whose flags
//! a filter can see.

use std::collections::BTreeMap;

use rustix::thread::CapabilitySet;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

/// Denied syscalls, each with the capability that allows it (none: always denied).
fn denied() -> Vec<(i64, Option<CapabilitySet>)> {
    let admin = Some(CapabilitySet::SYS_ADMIN);
    let mut v = vec![
        (libc::SYS_add_key, None),
        (libc::SYS_keyctl, None),
        (libc::SYS_request_key, None),
        // Docker's profile has denied io_uring since 25.0: its kernel surface has been
        // a steady source of escapes, and it can act outside the seccomp filter's view.
        (libc::SYS_io_uring_setup, None),
        (libc::SYS_io_uring_enter, None),
        (libc::SYS_io_uring_register, None),
        (libc::SYS_bpf, admin),
        (libc::SYS_perf_event_open, admin),
        (libc::SYS_kexec_load, Some(CapabilitySet::SYS_BOOT)),
        (libc::SYS_kexec_file_load, Some(CapabilitySet::SYS_BOOT)),
        (libc::SYS_reboot, Some(CapabilitySet::SYS_BOOT)),
        (libc::SYS_userfaultfd, admin),
        (libc::SYS_lookup_dcookie, admin),
        (libc::SYS_mount, admin),
        (libc::SYS_umount2, admin),
        (libc::SYS_pivot_root, admin),
        (libc::SYS_unshare, admin),
        (libc::SYS_setns, admin),
        (libc::SYS_swapon, admin),
        (libc::SYS_swapoff, admin),
        (libc::SYS_quotactl, admin),
        (libc::SYS_fanotify_init, admin),
        (libc::SYS_fsopen, admin),
        (libc::SYS_fsconfig, admin),
        (libc::SYS_fsmount, admin),
        (libc::SYS_fspick, admin),
        (libc::SYS_move_mount, admin),
        (libc::SYS_open_tree, admin),
        (libc::SYS_mount_setattr, admin),
        (libc::SYS_syslog, Some(CapabilitySet::SYSLOG)),
        (libc::SYS_init_module, Some(CapabilitySet::SYS_MODULE)),
        (libc::SYS_finit_module, Some(CapabilitySet::SYS_MODULE)),
        (libc::SYS_delete_module, Some(CapabilitySet::SYS_MODULE)),
        (libc::SYS_settimeofday, Some(CapabilitySet::SYS_TIME)),
        (libc::SYS_clock_settime, Some(CapabilitySet::SYS_TIME)),
        (libc::SYS_clock_adjtime, Some(CapabilitySet::SYS_TIME)),
        (libc::SYS_ptrace, Some(CapabilitySet::SYS_PTRACE)),
        (libc::SYS_process_vm_readv, Some(CapabilitySet::SYS_PTRACE)),
        (libc::SYS_process_vm_writev, Some(CapabilitySet::SYS_PTRACE)),
        (libc::SYS_kcmp, Some(CapabilitySet::SYS_PTRACE)),
        (libc::SYS_acct, Some(CapabilitySet::SYS_PACCT)),
        (libc::SYS_mbind, Some(CapabilitySet::SYS_NICE)),
        (libc::SYS_set_mempolicy, Some(CapabilitySet::SYS_NICE)),
        (libc::SYS_move_pages, Some(CapabilitySet::SYS_NICE)),
        (libc::SYS_open_by_handle_at, Some(CapabilitySet::DAC_READ_SEARCH)),
        (libc::SYS_name_to_handle_at, admin),
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend([
        (libc::SYS_iopl, Some(CapabilitySet::SYS_RAWIO)),
        (libc::SYS_ioperm, Some(CapabilitySet::SYS_RAWIO)),
        (libc::SYS_uselib, None),
        (libc::SYS_ustat, None),
        (libc::SYS_sysfs, None),
        (libc::SYS__sysctl, None),
        (libc::SYS_nfsservctl, None),
    ]);
    v
}

const NAMESPACE_FLAGS: [u64; 7] = [
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWCGROUP as u64,
];

fn arch() -> Result<TargetArch, String> {
    std::env::consts::ARCH.try_into().map_err(|e| format!("seccomp: {e:?}"))
}

/// The BPF programs of the default profile for a container holding `caps` (applied in order).
pub fn default_profile(caps: CapabilitySet) -> Result<Vec<BpfProgram>, String> {
    let err = |e: seccompiler::BackendError| format!("seccomp profile: {e}");
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for (nr, cap) in denied() {
        if cap.is_none_or(|c| !caps.contains(c)) {
            rules.insert(nr, Vec::new());
        }
    }
    if !caps.contains(CapabilitySet::SYS_ADMIN) {
        // clone(flags, ...) with any namespace flag: one rule per flag, any matching denies.
        let per_flag = NAMESPACE_FLAGS
            .iter()
            .map(|f| {
                let c =
                    SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(*f), *f).map_err(err)?;
                SeccompRule::new(vec![c]).map_err(err)
            })
            .collect::<Result<Vec<_>, String>>()?;
        rules.insert(libc::SYS_clone, per_flag);
    }
    let deny = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(libc::EPERM as u32), arch()?)
        .map_err(err)?;
    let clone3 = SeccompFilter::new(
        [(libc::SYS_clone3, Vec::new())].into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch()?,
    )
    .map_err(err)?;
    Ok(vec![deny.try_into().map_err(err)?, clone3.try_into().map_err(err)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_open_what_docker_opens() {
        let d = denied();
        let gated = |nr: i64| d.iter().find(|(n, _)| *n == nr).map(|(_, c)| *c);
        assert_eq!(gated(libc::SYS_keyctl), Some(None), "keyctl is always denied");
        assert_eq!(gated(libc::SYS_io_uring_setup), Some(None), "io_uring is always denied");
        assert_eq!(gated(libc::SYS_mount), Some(Some(CapabilitySet::SYS_ADMIN)));
        assert!(default_profile(CapabilitySet::empty()).unwrap().iter().all(|p| !p.is_empty()));
        assert!(default_profile(CapabilitySet::all()).is_ok());
    }
}
