//! Capability names (`--cap-add`, `--cap-drop`) and Docker's default set.

use rustix::thread::CapabilitySet;

/// Capability names by bit number (`CAP_` dropped), as the kernel numbers them.
const NAMES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Docker's default capabilities.
pub const DEFAULT: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// The name of capability `bit`.
pub fn name(bit: u32) -> String {
    NAMES.get(bit as usize).map(|n| format!("CAP_{n}")).unwrap_or_else(|| format!("capability {bit}"))
}

pub(super) fn bit(name: &str) -> Result<CapabilitySet, String> {
    let n = name.trim().to_ascii_uppercase();
    let n = n.strip_prefix("CAP_").unwrap_or(&n);
    NAMES
        .iter()
        .position(|x| *x == n)
        .map(|i| CapabilitySet::from_bits_retain(1 << i))
        .ok_or_else(|| format!("unknown capability {name:?}"))
}

/// The capabilities this process can hand on: its permitted set. A host (or an outer
/// container) whose bounding set lacks some leaves them out of ours too.
pub fn available() -> CapabilitySet {
    rustix::thread::capabilities(None).map(|c| c.permitted).unwrap_or(CapabilitySet::empty())
}

/// Every capability we can hand on (`--privileged`, `--cap-add ALL`).
pub fn all() -> CapabilitySet {
    all_known() & available()
}

fn all_known() -> CapabilitySet {
    CapabilitySet::from_bits_retain((1u64 << NAMES.len()) - 1)
}

/// The default set with `--cap-add` and `--cap-drop` applied (`ALL` allowed in both),
/// within what this process has: defaults and `ALL` quietly take what there is, as a
/// container in a container gets; a capability named in `--cap-add` that we lack is an error.
pub fn effective(add: &[String], drop: &[String]) -> Result<CapabilitySet, String> {
    effective_within(add, drop, available())
}

fn effective_within(add: &[String], drop: &[String], available: CapabilitySet) -> Result<CapabilitySet, String> {
    let mut set = DEFAULT.iter().try_fold(CapabilitySet::empty(), |s, n| bit(n).map(|b| s | b))? & available;
    for d in drop {
        set = if d.eq_ignore_ascii_case("ALL") { CapabilitySet::empty() } else { set - bit(d)? };
    }
    for a in add {
        if a.eq_ignore_ascii_case("ALL") {
            set |= all_known() & available;
            continue;
        }
        let b = bit(a)?;
        if !available.contains(b) {
            return Err(format!(
                "--cap-add {a}: {} is not ours to give (layers itself runs without it: the host's or an outer container's bounding set lacks it)",
                name(b.bits().trailing_zeros())
            ));
        }
        set |= b;
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_adds_and_drops() {
        let d = effective(&[], &[]).unwrap();
        assert_eq!(d.bits(), 0xa80425fb, "Docker's default CapEff");
        let no_chown = effective(&[], &["chown".into()]).unwrap();
        assert!(!no_chown.contains(CapabilitySet::CHOWN));
        let only_admin = effective(&["CAP_SYS_ADMIN".into()], &["ALL".into()]).unwrap();
        assert_eq!(only_admin, CapabilitySet::SYS_ADMIN);
        assert!(effective(&["NOPE".into()], &[]).unwrap_err().contains("NOPE"));
        // Within what the caller has: defaults and ALL shrink, a named one is refused.
        let without_chown_and_resource = all_known() - CapabilitySet::CHOWN - CapabilitySet::SYS_RESOURCE;
        let d = effective_within(&[], &[], without_chown_and_resource).unwrap();
        assert_eq!(d.bits(), 0xa80425fb & !1);
        let all = effective_within(&["ALL".into()], &[], without_chown_and_resource).unwrap();
        assert_eq!(all, without_chown_and_resource);
        let e = effective_within(&["SYS_RESOURCE".into()], &[], without_chown_and_resource).unwrap_err();
        assert!(e.contains("CAP_SYS_RESOURCE is not ours to give"), "{e}");
        assert_eq!(name(21), "CAP_SYS_ADMIN");
    }
}
