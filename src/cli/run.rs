//! `layers run` and `layers exec`: flags parsed into the runtime's typed specs.

use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use layers_store::containers::Lifetime;
use layers_store::Store;

use super::options::{ContainerOptions, Restart};
use crate::cli::pull::{image_for_container, PullPolicy};
use crate::registry::config::RegistriesConfig;
use crate::run::{detach, ExecSpec};

/// Arguments of `layers run`.
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

pub fn run(store: &Store, a: &RunArgs, registries: &RegistriesConfig) -> anyhow::Result<ExitCode> {
    let o = &a.options;
    let options = o.resolved()?;
    if a.detach && !detach::is_monitor() {
        // Pulled here, where its progress can be seen; the monitor finds it stored.
        image_for_container(store, &o.image, a.pull, a.platform.as_deref(), registries)?;
        return detach::start();
    }
    if !a.detach && o.restart != Restart::No {
        bail!("--restart {}: only for a detached container (-d), which a monitor can start again", o.restart.name());
    }
    super::lifecycle::check_tty(o.tty, o.interactive && !a.detach)?;
    let policy = if detach::is_monitor() { PullPolicy::Never } else { a.pull };
    let img = image_for_container(store, &o.image, policy, a.platform.as_deref(), registries)?;
    // A container its own `layers run` removes is swept should that process be killed.
    let lifetime = if o.rm { Lifetime::Ephemeral } else { Lifetime::Kept };
    let container = store.create_container(&img.manifest, o.name.as_deref(), &o.image, lifetime)?;
    let mut options = options;
    let result = options
        .attach_volumes(store, &container)
        .and_then(|()| options.save(store, &container.id))
        .and_then(|()| super::lifecycle::run_created(store, &container, &options, a.detach));
    if o.rm {
        let c = store.resolve_container(&container.id)?;
        store.remove_container(&c).with_context(|| format!("remove container {}", c.name))?;
    }
    result.map(ExitCode::from)
}

/// Arguments of `layers exec`.
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
pub fn exec(store: &Store, a: &ExecArgs) -> anyhow::Result<ExitCode> {
    super::lifecycle::check_tty(a.tty, a.interactive)?;
    let c = store.resolve_container(&a.container)?;
    let spec = ExecSpec {
        argv: a.command.clone(),
        env: a.env.clone(),
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        interactive: a.interactive,
        tty: a.tty,
    };
    crate::run::exec_in(store, &c, &spec).map(ExitCode::from)
}
