//! `layers top CONTAINER [ps OPTIONS]`: the container's processes as the host's `ps`
//! shows them (Docker's way: `ps` runs on the host, its lines kept for the PIDs in
//! the container's cgroup, or its PID namespace where it has no cgroup).

use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use layers_store::Store;

use crate::run::cgroup::{Cgroup, Hierarchy};
use crate::run::state;

// Arguments of `layers top`.
#[derive(Args)]
pub struct TopArgs {
    /// A running container.
    container: String,
    /// Options for ps (default `-ef`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    ps_options: Vec<String>,
}

pub fn top(store: &Store, a: &TopArgs) -> anyhow::Result<ExitCode> {
    let c = store.snapshots().resolve(&a.container)?;
    let Some(running) = state::running(store, &c) else {
        bail!("top {}: container is not running", c.name);
    };
    let pids = match Hierarchy::detect()? {
        // No cgroup of its own (rootless without delegation): the processes in its PID namespace.
        Hierarchy::Unavailable(_) => in_pid_namespace_of(running.pid),
        h => Cgroup::pids_of(&h, &c.id),
    };
    let args: Vec<String> = if a.ps_options.is_empty() { vec!["-ef".into()] } else { a.ps_options.clone() };
    let out = std::process::Command::new("ps")
        .args(&args)
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("top {}: run ps", c.name))?;
    if !out.status.success() {
        bail!("top {}: ps {}: {}", c.name, args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let Some(col) = header.split_whitespace().position(|h| h == "PID") else {
        bail!("top {}: ps {} prints no PID column", c.name, args.join(" "));
    };
    outln!("{header}");
    for l in lines {
        let pid = l.split_whitespace().nth(col).and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            outln!("{l}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The host PIDs of the processes in `pid`'s PID namespace.
fn in_pid_namespace_of(pid: u32) -> Vec<u32> {
    let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/pid")).ok();
    let Some(want) = ns(&pid.to_string()) else { return Vec::new() };
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|p| ns(&p.to_string()).as_ref() == Some(&want))
        .collect()
}
