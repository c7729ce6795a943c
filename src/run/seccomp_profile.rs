//! `--security-opt seccomp=FILE.json`: a profile in Docker's format (what Docker,
//! podman and containerd read: `defaultAction`, `syscalls[]` with `names`, `action`,
//! `errnoRet`, `args`, `includes`/`excludes` by caps, arches and kernel).
//!
//! libseccomp compiles such a profile into one filter; seccompiler's filters have one
//! match and one mismatch action, so the profile becomes several, which the kernel
//! combines by taking the most restrictive answer:
//! - a base filter: any listed syscall (its argument conditions holding) is allowed,
//!   anything else gets `defaultAction` (left out when that is allow);
//! - one filter per other action: its syscalls get that action, anything else is allowed.
//!
//! A call matching no entry gets the default from the base filter; a call matching an
//! entry is allowed by the base filter and gets the entry's action from its own.

use std::collections::BTreeMap;
use std::str::FromStr;

use rustix::thread::CapabilitySet;
use seccompiler::{BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    default_action: String,
    default_errno_ret: Option<u32>,
    #[serde(default)]
    syscalls: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    #[serde(default)]
    names: Vec<String>,
    /// Older profiles name one syscall per entry.
    name: Option<String>,
    action: String,
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<Arg>>,
    #[serde(default)]
    includes: Filter,
    #[serde(default)]
    excludes: Filter,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Arg {
    index: u8,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Option<Vec<String>>,
    #[serde(default)]
    arches: Option<Vec<String>>,
    min_kernel: Option<String>,
}

/// What a profile's entry applies to on this host.
struct Host {
    caps: CapabilitySet,
    arch_names: &'static [&'static str],
    kernel: (u32, u32),
}

fn action(name: &str, errno: Option<u32>) -> Result<SeccompAction, String> {
    Ok(match name {
        "SCMP_ACT_ALLOW" => SeccompAction::Allow,
        "SCMP_ACT_ERRNO" => SeccompAction::Errno(errno.unwrap_or(libc::EPERM as u32)),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => SeccompAction::KillThread,
        "SCMP_ACT_KILL_PROCESS" => SeccompAction::KillProcess,
        "SCMP_ACT_TRAP" => SeccompAction::Trap,
        "SCMP_ACT_LOG" => SeccompAction::Log,
        "SCMP_ACT_TRACE" => SeccompAction::Trace(errno.unwrap_or(0)),
        other => return Err(format!("action {other} is not supported")),
    })
}

fn condition(a: &Arg) -> Result<SeccompCondition, String> {
    let (op, value) = match a.op.as_str() {
        "SCMP_CMP_EQ" => (SeccompCmpOp::Eq, a.value),
        "SCMP_CMP_NE" => (SeccompCmpOp::Ne, a.value),
        "SCMP_CMP_LT" => (SeccompCmpOp::Lt, a.value),
        "SCMP_CMP_LE" => (SeccompCmpOp::Le, a.value),
        "SCMP_CMP_GT" => (SeccompCmpOp::Gt, a.value),
        "SCMP_CMP_GE" => (SeccompCmpOp::Ge, a.value),
        // libseccomp's masked compare: (arg & value) == valueTwo.
        "SCMP_CMP_MASKED_EQ" => (SeccompCmpOp::MaskedEq(a.value), a.value_two),
        other => return Err(format!("argument operator {other} is not supported")),
    };
    SeccompCondition::new(a.index, SeccompCmpArgLen::Qword, op, value).map_err(|e| format!("argument {}: {e}", a.index))
}

impl Host {
    fn current(caps: CapabilitySet) -> Host {
        let arch_names: &'static [&'static str] = match std::env::consts::ARCH {
            "x86_64" => &["amd64", "x86_64", "SCMP_ARCH_X86_64"],
            "aarch64" => &["arm64", "aarch64", "SCMP_ARCH_AARCH64"],
            "riscv64" => &["riscv64", "SCMP_ARCH_RISCV64"],
            _ => &[],
        };
        let release = rustix::system::uname().release().to_string_lossy().into_owned();
        Host { caps, arch_names, kernel: version(&release).unwrap_or((0, 0)) }
    }

    fn applies(&self, e: &Entry) -> Result<bool, String> {
        let holds = |names: &[String]| -> Result<bool, String> {
            names.iter().try_fold(true, |all, n| Ok(all && self.caps.contains(super::caps::bit(n)?)))
        };
        let holds_any = |names: &[String]| -> Result<bool, String> {
            names.iter().try_fold(false, |any, n| Ok(any || self.caps.contains(super::caps::bit(n)?)))
        };
        let on_arch = |names: &[String]| names.iter().any(|n| self.arch_names.contains(&n.as_str()));
        if let Some(caps) = &e.includes.caps {
            if !holds(caps)? {
                return Ok(false);
            }
        }
        if e.includes.arches.as_deref().is_some_and(|a| !on_arch(a)) {
            return Ok(false);
        }
        if let Some(min) = &e.includes.min_kernel {
            if version(min).is_some_and(|v| self.kernel < v) {
                return Ok(false);
            }
        }
        if let Some(caps) = &e.excludes.caps {
            if holds_any(caps)? {
                return Ok(false);
            }
        }
        Ok(!e.excludes.arches.as_deref().is_some_and(on_arch))
    }
}

/// `6.1.0-18-amd64` → (6, 1).
fn version(s: &str) -> Option<(u32, u32)> {
    let mut parts = s.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Syscall → its argument rules; `None` once an entry matches it whatever its arguments.
type Rules = BTreeMap<i64, Option<Vec<SeccompRule>>>;

fn add_rule(rules: &mut Rules, nr: i64, rule: Option<SeccompRule>) {
    let chain = rules.entry(nr).or_insert_with(|| Some(Vec::new()));
    match (chain, rule) {
        (c @ Some(_), None) => *c = None,
        (Some(v), Some(r)) => v.push(r),
        (None, _) => {}
    }
}

/// In seccompiler's terms: an empty chain matches unconditionally.
fn chains(rules: Rules) -> BTreeMap<i64, Vec<SeccompRule>> {
    rules.into_iter().map(|(nr, chain)| (nr, chain.unwrap_or_default())).collect()
}

/// Compiles a Docker-format profile for a container holding `caps`; the programs are applied in order.
pub fn compile(json: &[u8], caps: CapabilitySet) -> Result<Vec<BpfProgram>, String> {
    let profile: Profile = serde_json::from_slice(json).map_err(|e| format!("not a seccomp profile: {e}"))?;
    let default = action(&profile.default_action, profile.default_errno_ret)?;
    let host = Host::current(caps);
    // Per action: syscall number → argument rules.
    let mut by_action: Vec<(SeccompAction, Rules)> = Vec::new();
    let mut listed = Rules::new();
    for (i, e) in profile.syscalls.iter().enumerate() {
        if !host.applies(e).map_err(|m| format!("syscalls[{i}]: {m}"))? {
            continue;
        }
        let act = action(&e.action, e.errno_ret).map_err(|m| format!("syscalls[{i}]: {m}"))?;
        let rule = match e.args.as_deref() {
            None | Some([]) => None,
            Some(args) => {
                let conds = args.iter().map(condition).collect::<Result<Vec<_>, _>>();
                let conds = conds.map_err(|m| format!("syscalls[{i}]: {m}"))?;
                Some(SeccompRule::new(conds).map_err(|m| format!("syscalls[{i}]: {m}"))?)
            }
        };
        let at = match by_action.iter().position(|(a, _)| *a == act) {
            Some(at) => at,
            None => {
                by_action.push((act.clone(), Rules::new()));
                by_action.len() - 1
            }
        };
        // Names this arch does not have are skipped, as libseccomp does.
        let names = e.names.iter().chain(e.name.as_ref());
        for nr in names.filter_map(|n| syscalls::Sysno::from_str(n).ok()).map(|s| s.id() as i64) {
            add_rule(&mut by_action[at].1, nr, rule.clone());
            add_rule(&mut listed, nr, rule.clone());
        }
    }
    let arch = std::env::consts::ARCH.try_into().map_err(|e| format!("seccomp: {e:?}"))?;
    let build = |rules, mismatch, matched| -> Result<BpfProgram, String> {
        seccompiler::SeccompFilter::new(rules, mismatch, matched, arch)
            .and_then(BpfProgram::try_from)
            .map_err(|e| format!("compile seccomp profile: {e}"))
    };
    let mut programs = Vec::new();
    if default != SeccompAction::Allow {
        programs.push(build(chains(listed), default, SeccompAction::Allow)?);
    }
    for (act, rules) in by_action {
        if act != SeccompAction::Allow && !rules.is_empty() {
            programs.push(build(chains(rules), SeccompAction::Allow, act)?);
        }
    }
    Ok(programs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_compile_to_one_filter_per_action_and_refuse_what_they_cannot_express() {
        let allowlist = br#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
            "syscalls": [{"names": ["read", "write", "not_a_syscall"], "action": "SCMP_ACT_ALLOW"},
                         {"names": ["bpf"], "action": "SCMP_ACT_ERRNO", "excludes": {"caps": ["CAP_SYS_ADMIN"]}}]}"#;
        assert_eq!(compile(allowlist, CapabilitySet::empty()).unwrap().len(), 2, "base + the errno filter");
        assert_eq!(compile(allowlist, CapabilitySet::SYS_ADMIN).unwrap().len(), 1, "bpf excluded with the cap");
        let notify =
            br#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]}"#;
        assert_eq!(
            compile(notify, CapabilitySet::empty()).unwrap_err(),
            "syscalls[0]: action SCMP_ACT_NOTIFY is not supported"
        );
        let bad_cap = br#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_LOG", "includes": {"caps": ["CAP_NOPE"]}}]}"#;
        assert!(compile(bad_cap, CapabilitySet::empty()).unwrap_err().contains("CAP_NOPE"));
        assert_eq!(version("6.1.0-18-amd64"), Some((6, 1)));
        assert_eq!(version("4.8"), Some((4, 8)));
    }
}
