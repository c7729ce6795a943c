//! `start` (attached, or under a monitor of its own), `restart`, `rename`, and the
//! hidden verb a detached container's monitor runs: the runtime's lifecycle
//! (`run/container/lifecycle.rs`) behind flags.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use layers_store::{ContainerRow, Store};

use crate::run::container::lifecycle::{self, NotStarted};
use crate::run::container::{ContainerConfig, ContainerDir};
use crate::run::state;
use crate::transfer::Transfers;

// Arguments of `layers start`.
#[derive(Args)]
pub struct StartArgs {
    /// Attach to its output (and wait for it, exiting with its code).
    #[arg(short, long)]
    attach: bool,
    /// Attach our stdin as well.
    #[arg(short, long)]
    interactive: bool,
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
}

// Arguments of `layers restart`.
#[derive(Args)]
pub struct RestartArgs {
    /// Seconds to wait for it to stop before SIGKILL.
    #[arg(short, long, default_value_t = 10)]
    time: u64,
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
}

// Arguments of `layers rename`.
#[derive(Args)]
pub struct RenameArgs {
    /// Container.
    container: String,
    /// Its new name.
    name: String,
}

// Arguments of the hidden verb a detached container's monitor runs.
#[derive(Args)]
pub struct MonitorArgs {
    /// Container ID.
    id: String,
    /// Its starter passed the creator lock of a `--rm` container.
    #[arg(long = "creator-lock")]
    creator_lock: bool,
}

/// A detached container's monitor (started by `lifecycle::start_detached`).
pub fn monitor(store: &Store, a: &MonitorArgs, transfers: &Transfers) -> anyhow::Result<ExitCode> {
    lifecycle::serve_monitor(store, &a.id, a.creator_lock, &transfers.quiesce()).map(ExitCode::from)
}

/// `layers start`: each container under a monitor of its own (printing its name, as
/// Docker), or with `-a` attached in this process.
pub fn start(store: &Store, a: &StartArgs, transfers: &Transfers) -> anyhow::Result<ExitCode> {
    if a.attach || a.interactive {
        let [name] = a.containers.as_slice() else { bail!("start -a: one container at a time") };
        let c = store.snapshots().resolve(name)?;
        let mut config = ContainerConfig::load(&ContainerDir::of(store, &c.id), &c.image.to_string())?;
        config.interactive &= a.interactive;
        check_tty(config.tty, config.interactive)?;
        if state::running(store, &c).is_some() {
            // Docker attaches to a container already running.
            return super::attach::attach_to(store, &c, a.interactive, true, None);
        }
        let outcome = lifecycle::run_attached(store, &c, &config, &transfers.quiesce())?;
        if let Some(message) = &outcome.not_run {
            eprintln!("layers: {message}");
        }
        return Ok(ExitCode::from(outcome.code));
    }
    Ok(super::each(&a.containers, |name| {
        let c = store.snapshots().resolve(name)?;
        if state::running(store, &c).is_none() {
            start_detached(store, &c)?;
        }
        outln!("{name}");
        Ok(())
    }))
}

/// Starts `c` under its monitor; a command that could not run is named with its code.
fn start_detached(store: &Store, c: &ContainerRow) -> anyhow::Result<()> {
    lifecycle::start_detached(store, c).map_err(|e| match e.downcast::<NotStarted>() {
        Ok(n) => anyhow::anyhow!("start {}: {} (exit {})", c.name, n.message, n.code),
        Err(e) => e,
    })
}

/// `run -d`'s exit when its container did not start: the command's own code (126,
/// 127, or what it exited with at once), else ours.
pub fn not_started(e: anyhow::Error) -> anyhow::Result<ExitCode> {
    match e.downcast::<NotStarted>() {
        Ok(n) => {
            eprintln!("layers: {}", crate::format::printable(&n.message));
            Ok(ExitCode::from(n.code))
        }
        Err(e) => Err(e),
    }
}

/// `layers restart`: stop (if running), then start under a monitor.
pub fn restart(store: &Store, a: &RestartArgs) -> anyhow::Result<ExitCode> {
    Ok(super::each(&a.containers, |name| {
        let c = store.snapshots().resolve(name)?;
        lifecycle::stop(store, &c, Duration::from_secs(a.time))?;
        start_detached(store, &c)?;
        outln!("{name}");
        Ok(())
    }))
}

/// `layers rename`.
pub fn rename(store: &Store, a: &RenameArgs) -> anyhow::Result<ExitCode> {
    let c = store.snapshots().resolve(&a.container)?;
    store.snapshots().rename(&c, &a.name)?;
    let renamed = layers_store::ContainerRow { name: a.name.clone(), ..c.clone() };
    let actor = crate::run::container::lifecycle::actor(store, &renamed);
    actor.with("oldName", format!("/{}", c.name)).record(store, "rename");
    Ok(ExitCode::SUCCESS)
}

/// Refuses `-it` when our stdin is not a terminal, as Docker does: its bytes would
/// go to a pty that never sees their end (`echo x | run -it IMAGE cat` never ended).
pub fn check_tty(tty: bool, stdin_attached: bool) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    if tty && stdin_attached && !std::io::stdin().is_terminal() {
        bail!("the input device is not a TTY (drop -t, or give -i a terminal)");
    }
    Ok(())
}
