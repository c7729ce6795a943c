//! An unknown flag, said as Docker's CLI says it (`unknown flag: --gpus`, and where the
//! help is), on one line; for a flag Docker's verb has, that `layers` does not. clap's own
//! tip (`to pass '--gpus' as a value, use '-- --gpus'`) sends a Docker user the wrong way.

use clap::error::{ContextKind, ContextValue, ErrorKind};

/// Docker 28's flags of `docker run` (and, less the few only run has, `create`).
#[rustfmt::skip]
const RUN: &[&str] = &[
    "--add-host", "--annotation", "-a", "--attach", "--blkio-weight", "--blkio-weight-device",
    "--cap-add", "--cap-drop", "--cgroup-parent", "--cgroupns", "--cidfile", "--cpu-count",
    "--cpu-percent", "--cpu-period", "--cpu-quota", "--cpu-rt-period", "--cpu-rt-runtime", "-c",
    "--cpu-shares", "--cpus", "--cpuset-cpus", "--cpuset-mems", "-d", "--detach", "--detach-keys",
    "--device", "--device-cgroup-rule", "--device-read-bps", "--device-read-iops",
    "--device-write-bps", "--device-write-iops", "--disable-content-trust", "--dns",
    "--dns-option", "--dns-search", "--domainname", "--entrypoint", "-e", "--env", "--env-file",
    "--expose", "--gpus", "--group-add", "--health-cmd", "--health-interval", "--health-retries",
    "--health-start-interval", "--health-start-period", "--health-timeout", "-h", "--hostname",
    "--init", "-i", "--interactive", "--io-maxbandwidth", "--io-maxiops", "--ip", "--ip6", "--ipc",
    "--isolation", "--kernel-memory", "-l", "--label", "--label-file", "--link", "--link-local-ip",
    "--log-driver", "--log-opt", "--mac-address", "-m", "--memory", "--memory-reservation",
    "--memory-swap", "--memory-swappiness", "--mount", "--name", "--network", "--network-alias",
    "--no-healthcheck", "--oom-kill-disable", "--oom-score-adj", "--pid", "--pids-limit",
    "--platform", "--privileged", "-p", "--publish", "-P", "--publish-all", "--pull", "-q",
    "--quiet", "--read-only", "--restart", "--rm", "--runtime", "--security-opt", "--shm-size",
    "--sig-proxy", "--stop-signal", "--stop-timeout", "--storage-opt", "--sysctl", "--tmpfs", "-t",
    "--tty", "--ulimit", "-u", "--user", "--userns", "--uts", "-v", "--volume", "--volume-driver",
    "--volumes-from", "-w", "--workdir",
];

/// `docker build` (buildx, Docker 28's default builder).
#[rustfmt::skip]
const BUILD: &[&str] = &[
    "--add-host", "--allow", "--annotation", "--attest", "--build-arg", "--build-context",
    "--builder", "--cache-from", "--cache-to", "--call", "--cgroup-parent", "--check", "--debug",
    "-f", "--file", "--iidfile", "--label", "--load", "--metadata-file", "--network", "--no-cache",
    "--no-cache-filter", "-o", "--output", "--platform", "--progress", "--provenance", "--pull",
    "--push", "-q", "--quiet", "--sbom", "--secret", "--shm-size", "--ssh", "-t", "--tag",
    "--target", "--ulimit",
];

/// The other verbs' flags, Docker 28's.
#[rustfmt::skip]
const OTHERS: &[(&str, &[&str])] = &[
    ("ps", &["-a", "--all", "-f", "--filter", "--format", "-n", "--last", "-l", "--latest", "--no-trunc", "-q", "--quiet", "-s", "--size"]),
    ("images", &["-a", "--all", "--digests", "-f", "--filter", "--format", "--no-trunc", "-q", "--quiet", "--tree"]),
    ("pull", &["-a", "--all-tags", "--disable-content-trust", "--platform", "-q", "--quiet"]),
    ("push", &["-a", "--all-tags", "--disable-content-trust", "--platform", "-q", "--quiet"]),
    ("exec", &["-d", "--detach", "--detach-keys", "-e", "--env", "--env-file", "-i", "--interactive", "--privileged", "-t", "--tty", "-u", "--user", "-w", "--workdir"]),
    ("logs", &["--details", "-f", "--follow", "--since", "-n", "--tail", "-t", "--timestamps", "--until"]),
    ("rm", &["-f", "--force", "-l", "--link", "-v", "--volumes"]),
    ("rmi", &["-f", "--force", "--no-prune", "--platform"]),
    ("commit", &["-a", "--author", "-c", "--change", "-m", "--message", "-p", "--pause"]),
    ("save", &["-o", "--output", "--platform"]),
    ("load", &["-i", "--input", "-q", "--quiet", "--platform"]),
    ("cp", &["-a", "--archive", "-L", "--follow-link", "-q", "--quiet"]),
    ("inspect", &["-f", "--format", "-s", "--size", "--type"]),
    ("stop", &["-s", "--signal", "-t", "--time", "--timeout"]),
    ("restart", &["-s", "--signal", "-t", "--time", "--timeout"]),
    ("kill", &["-s", "--signal"]),
    ("start", &["-a", "--attach", "--checkpoint", "--checkpoint-dir", "--detach-keys", "-i", "--interactive"]),
    ("login", &["-p", "--password", "--password-stdin", "-u", "--username"]),
    ("import", &["-c", "--change", "-m", "--message", "--platform"]),
    ("history", &["--format", "-H", "--human", "--no-trunc", "--platform", "-q", "--quiet"]),
    ("export", &["-o", "--output"]),
    ("attach", &["--detach-keys", "--no-stdin", "--sig-proxy"]),
    ("stats", &["-a", "--all", "--format", "--no-stream", "--no-trunc"]),
    ("events", &["-f", "--filter", "--format", "--since", "--until"]),
];

/// Docker's flags of `command` (`layers run`, `layers image rm`).
fn docker_flags(command: &str) -> &'static [&'static str] {
    let words: Vec<&str> = command.split(' ').skip(1).collect();
    let verb = match words[..] {
        ["container", "ls" | "list" | "ps"] => "ps",
        ["image", "ls" | "list"] => "images",
        ["image", "rm" | "remove"] => "rmi",
        [.., verb] => verb,
        [] => return &[],
    };
    match verb {
        "run" | "create" => RUN,
        "build" => BUILD,
        _ => OTHERS.iter().find(|(v, _)| *v == verb).map_or(&[], |(_, f)| f),
    }
}

/// Docker's message for an unknown flag, or `None` for any other parse error.
pub fn message(e: &clap::Error) -> Option<String> {
    if e.kind() != ErrorKind::UnknownArgument {
        return None;
    }
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else { return None };
    // `--flag=value` names `--flag`.
    let flag = arg.split_once('=').map_or(arg.as_str(), |(f, _)| f);
    let command = match e.get(ContextKind::Usage) {
        Some(ContextValue::StyledStr(usage)) => command_of(&usage.to_string()),
        _ => "layers".to_string(),
    };
    let docker = if docker_flags(&command).contains(&flag) {
        let verb = command.strip_prefix("layers ").unwrap_or(&command);
        format!(" (Docker's `{verb} {flag}`: not supported by layers)")
    } else {
        String::new()
    };
    Some(format!("unknown flag: {flag}{docker}; see '{command} --help'"))
}

/// `layers image ls` from `Usage: layers image ls [OPTIONS] <IMAGE>`.
fn command_of(usage: &str) -> String {
    let line = usage.lines().next().unwrap_or_default();
    let words = line.trim_start_matches("Usage:").split_whitespace();
    words.take_while(|w| !w.starts_with(['[', '<', '-'])).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_is_read_off_the_usage_line() {
        assert_eq!(command_of("Usage: layers image ls [OPTIONS]"), "layers image ls");
        assert_eq!(command_of("Usage: layers run [OPTIONS] <IMAGE> [COMMAND]..."), "layers run");
        assert_eq!(command_of("Usage: layers --root <DIR> ps"), "layers");
    }

    #[test]
    fn a_management_form_has_its_verbs_flags() {
        assert!(docker_flags("layers container ls").contains(&"--size"));
        assert!(!docker_flags("layers image ls").contains(&"--size"));
        assert!(docker_flags("layers image rm").contains(&"--no-prune"));
        assert!(docker_flags("layers run").contains(&"--gpus"));
        assert!(docker_flags("layers").is_empty());
    }
}
