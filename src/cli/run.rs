//! `layers run` and `layers exec`: flags parsed into the runtime's typed specs.

use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use layers_store::snapshots::containers::Lifetime;
use layers_store::Store;

use super::options::ContainerOptions;
use crate::registry::config::RegistriesConfig;
use crate::run::container::config::Restart;
use crate::run::container::lifecycle;
use crate::run::ExecSpec;
use crate::transfer::obtain::{self, PullPolicy};
use crate::transfer::Transfers;

// Arguments of `layers run`.
#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub options: ContainerOptions,
    /// Run in the background and print the container ID (output goes to `layers logs`).
    #[arg(short, long)]
    detach: bool,
    /// Pull the image first: `missing` (when not in the store), `always`, `never`.
    #[arg(long, value_enum, default_value_t)]
    pull: PullPolicy,
    /// Platform to pull for: os/arch[/variant].
    #[arg(long)]
    platform: Option<String>,
}

pub fn run(
    store: &Store,
    a: &RunArgs,
    registries: &RegistriesConfig,
    transfers: &Transfers,
) -> anyhow::Result<ExitCode> {
    crate::run::phases::mark("store opened");
    let o = &a.options;
    let config = o.to_config(store)?;
    if !a.detach && o.restart != Restart::No {
        bail!("--restart {}: only for a detached container (-d), which a monitor can start again", o.restart.name());
    }
    super::lifecycle::check_tty(o.tty, o.interactive && !a.detach)?;
    let img = image_for_container(store, &o.image, a.pull, a.platform.as_deref(), registries, transfers)?;
    crate::run::phases::mark("image found");
    // A container its own `layers run` (or, detached, its monitor) removes is swept
    // should that process be killed.
    let lifetime = if o.rm { Lifetime::Ephemeral } else { Lifetime::Kept };
    let (c, config) = lifecycle::create(store, &img, o.name.as_deref(), config, lifetime)?;
    crate::run::phases::mark("container created");
    if a.detach {
        let started = lifecycle::start_detached(store, &c);
        if started.is_err() && store.snapshots().resolve(&c.id).is_ok() && o.rm {
            lifecycle::remove(store, &c)?;
        }
        return match started {
            Ok(()) => {
                outln!("{}", c.id);
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => super::lifecycle::not_started(e),
        };
    }
    let outcome = lifecycle::run_attached(store, &c, &config, &transfers.quiesce())?;
    if let Some(message) = &outcome.not_run {
        eprintln!("layers: {message}");
    }
    Ok(ExitCode::from(outcome.code))
}

// Arguments of `layers exec`.
#[derive(Args)]
pub struct ExecArgs {
    /// Set an environment variable.
    #[arg(short, long)]
    env: Vec<String>,
    /// Working directory inside.
    #[arg(short, long)]
    workdir: Option<String>,
    /// User inside: UID[:GID] or NAME[:GROUP].
    #[arg(short, long)]
    user: Option<String>,
    /// Keep standard input open.
    #[arg(short, long)]
    interactive: bool,
    /// Give the process a terminal.
    #[arg(short, long)]
    tty: bool,
    /// A running container.
    container: String,
    /// Command and arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// `layers exec`.
pub fn exec(store: &Store, a: &ExecArgs, transfers: &Transfers) -> anyhow::Result<ExitCode> {
    super::lifecycle::check_tty(a.tty, a.interactive)?;
    let c = store.snapshots().resolve(&a.container)?;
    if matches!(crate::run::state::Status::of(store, &c), crate::run::state::Status::Paused(_)) {
        anyhow::bail!("exec {}: container is paused, unpause it first", c.name);
    }
    let spec = ExecSpec {
        argv: a.command.clone(),
        env: a.env.clone(),
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        interactive: a.interactive,
        tty: a.tty,
    };
    let ended = crate::run::exec_in(store, &c, &spec, &transfers.quiesce())?;
    if let Some(message) = &ended.not_run {
        eprintln!("layers: {message}");
        // dockerd gives an exec whose command could not start 126, found or not
        // (moby daemon/exec.go), where `run` tells 126 and 127 apart.
        return Ok(ExitCode::from(126));
    }
    Ok(ExitCode::from(ended.code))
}

/// The image `run` and `create` start from: stored, or pulled as `--pull` says, with
/// `pull`'s progress after Docker's "Unable to find image" line.
pub fn image_for_container(
    store: &Store,
    name: &str,
    policy: PullPolicy,
    platform: Option<&str>,
    registries: &RegistriesConfig,
    transfers: &Transfers,
) -> anyhow::Result<layers_store::meta::ImageRow> {
    let puller = obtain::Puller::auto(transfers, registries);
    let want = obtain::Want { name, platform, policy };
    let (row, _) = obtain::image(store, &puller, &want, &|missing| {
        if missing {
            eprintln!("Unable to find image '{name}' locally");
        }
    })?;
    Ok(row)
}
