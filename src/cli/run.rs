//! `layers run` and `layers exec`: flags parsed into the runtime's typed specs.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use layers_store::containers::Lifetime;
use layers_store::Store;

use crate::cli::pull::{image_for_container, PullPolicy};
use crate::registry::config::RegistriesConfig;
use crate::run::container::{self, Output, RunSpec};
use crate::run::log::LogOptions;
use crate::run::{caps, cgroup, detach, spec, state, Bind, ExecSpec, Network};

/// Arguments of `layers run`.
#[derive(Args)]
pub struct RunArgs {
    /// Remove the container (upper dir, cgroup) when it exits.
    #[arg(long)]
    rm: bool,
    /// Kept after it exits, but removed by the next sweep (`layers build`'s steps,
    /// which commit the container and then remove it).
    #[arg(long, hide = true)]
    ephemeral: bool,
    /// Container name.
    #[arg(long)]
    name: Option<String>,
    /// Memory limit (`100M`, `1g`).
    #[arg(short, long)]
    memory: Option<String>,
    /// Memory plus swap (`-1`: unlimited swap); default: no swap beyond --memory.
    #[arg(long, allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// Most processes at once.
    #[arg(long)]
    pids_limit: Option<u64>,
    /// CPUs (`0.5`, `2`).
    #[arg(long)]
    cpus: Option<f64>,
    /// Host name inside (default: the container's short ID).
    #[arg(long)]
    hostname: Option<String>,
    /// `none` (own namespace, only `lo`) or `host`.
    #[arg(long, alias = "network", value_parser = net_flag, default_value = "none")]
    net: Network,
    /// Set an environment variable (`KEY=VALUE`, or `KEY` to pass the host's).
    #[arg(short, long)]
    env: Vec<String>,
    /// Read environment variables from a file.
    #[arg(long)]
    env_file: Vec<PathBuf>,
    /// Working directory inside.
    #[arg(short, long)]
    workdir: Option<String>,
    /// User inside: UID[:GID] or NAME[:GROUP].
    #[arg(short, long)]
    user: Option<String>,
    /// Replace the image's entrypoint (`""` clears it).
    #[arg(long)]
    entrypoint: Option<String>,
    /// Add capabilities (`ALL` for every one).
    #[arg(long)]
    cap_add: Vec<String>,
    /// Drop capabilities (`ALL` for every one).
    #[arg(long)]
    cap_drop: Vec<String>,
    /// Keep every capability, no /proc masks, no no_new_privs.
    #[arg(long)]
    privileged: bool,
    /// Bind mount a host path: HOST:CONTAINER[:ro|rw].
    #[arg(short, long)]
    volume: Vec<String>,
    /// Mount a tmpfs: CONTAINER[:OPTIONS] (e.g. `/run:size=64m`).
    #[arg(long)]
    tmpfs: Vec<String>,
    /// Mount the root filesystem read-only.
    #[arg(long)]
    read_only: bool,
    /// `seccomp=unconfined` turns the default seccomp profile off.
    #[arg(long)]
    security_opt: Vec<String>,
    /// Keep standard input open.
    #[arg(short, long)]
    interactive: bool,
    /// Give the container a terminal (a pty of its own; ours goes raw with -i).
    #[arg(short, long)]
    tty: bool,
    /// Run a small init as PID 1 that reaps zombies and forwards signals.
    #[arg(long)]
    init: bool,
    /// Log options: `max-size=SIZE` (default 10m), `max-file=N` (default 3).
    #[arg(long)]
    log_opt: Vec<String>,
    /// Run in the background and print the container ID (output goes to `layers logs`).
    #[arg(short, long)]
    detach: bool,
    /// Pull the image first: `missing` (when not in the store), `always`, `never`.
    #[arg(long, value_enum, default_value_t)]
    pull: PullPolicy,
    /// Platform to pull for: os/arch[/variant].
    #[arg(long)]
    platform: Option<String>,
    /// Image name or ID.
    image: String,
    /// Command and arguments (default: the image's entrypoint and cmd).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

fn net_flag(s: &str) -> Result<Network, String> {
    match s {
        "none" => Ok(Network::None),
        "host" => Ok(Network::Host),
        other => Err(format!("--net {other}: only `none` and `host` are supported")),
    }
}

fn limits(a: &RunArgs) -> anyhow::Result<cgroup::Limits> {
    let memory = a.memory.as_deref().map(cgroup::parse_bytes).transpose().map_err(anyhow::Error::msg)?;
    let memory_swap = match a.memory_swap.as_deref() {
        Some("-1") => Some(-1),
        Some(s) => Some(cgroup::parse_bytes(s).map_err(anyhow::Error::msg)? as i64),
        None => None,
    };
    if memory_swap.is_some() && memory.is_none() {
        bail!("--memory-swap needs --memory");
    }
    if a.cpus.is_some_and(|c| !(c.is_finite() && c > 0.0)) {
        bail!("--cpus must be a positive number");
    }
    Ok(cgroup::Limits { memory, memory_swap, pids: a.pids_limit, cpus: a.cpus })
}

pub fn run(store: &Store, a: &RunArgs, registries: &RegistriesConfig) -> anyhow::Result<ExitCode> {
    if a.detach && !detach::is_monitor() {
        // Pulled here, where its progress can be seen; the monitor finds it stored.
        image_for_container(store, &a.image, a.pull, a.platform.as_deref(), registries)?;
        return detach::start();
    }
    check_tty(a.tty, a.interactive && !a.detach)?;
    let limits = limits(a)?;
    let caps = if a.privileged {
        caps::all()
    } else {
        caps::effective(&a.cap_add, &a.cap_drop).map_err(anyhow::Error::msg)?
    };
    let policy = if detach::is_monitor() { PullPolicy::Never } else { a.pull };
    let img = image_for_container(store, &a.image, policy, a.platform.as_deref(), registries)?;
    let config = store.config(&img).with_context(|| format!("read config of {}", a.image))?;
    let mut env_args = Vec::new();
    for f in &a.env_file {
        let text = crate::bounded::read_text_file(f, crate::bounded::MAX_ENV_FILE, "env file")?;
        env_args.extend(spec::env_file(&text));
    }
    env_args.extend(a.env.iter().cloned());
    let log_options = LogOptions::parse(&a.log_opt)?;
    let binds = a.volume.iter().map(|v| volume(v)).collect::<anyhow::Result<Vec<_>>>()?;
    // Detached: the container's output goes to its log, opened once the container exists.
    let mut spec = RunSpec {
        overrides: spec::Overrides {
            entrypoint: a.entrypoint.clone(),
            cmd: a.command.clone(),
            env: env_args,
            workdir: a.workdir.clone(),
            user: a.user.clone(),
            hostname: String::new(),
        },
        network: a.net,
        binds,
        tmpfs: a.tmpfs.iter().map(|t| tmpfs(t)).collect::<anyhow::Result<_>>()?,
        limits,
        caps,
        seccomp: seccomp_choice(&a.security_opt, a.privileged)?,
        privileged: a.privileged,
        read_only: a.read_only,
        init: a.init,
        tty: a.tty,
        interactive: a.interactive,
        output: Output::Inherit,
    };

    // A container its own `layers run` removes is swept should that process be killed.
    let lifetime = if a.rm || a.ephemeral { Lifetime::Ephemeral } else { Lifetime::Kept };
    let container = store.create_container(&img.manifest, a.name.as_deref(), &a.image, lifetime)?;
    spec.overrides.hostname = a.hostname.clone().unwrap_or_else(|| container.short_id().to_string());
    let result = (|| {
        spec.output = Output::Logged { log: log_options, echo: !a.detach };
        let config = config.config.clone().unwrap_or_default();
        let ended = container::run_container(store, &container, &config, &a.image, &spec)?;
        if ended.oom_killed {
            let limit = ended.memory_limit.map(|m| format!(" (limit {})", a.memory.clone().unwrap_or(m.to_string())));
            eprintln!("layers: container killed: out of memory{}", limit.unwrap_or_default());
        }
        Ok(ended.code)
    })();
    if a.rm {
        let c = store.resolve_container(&container.id)?;
        store.remove_container(&c).with_context(|| format!("remove container {}", c.name))?;
    }
    result.map(ExitCode::from)
}

/// Parses `-v HOST:CONTAINER[:ro|rw]`; a missing host dir is created, as Docker does.
fn volume(spec: &str) -> anyhow::Result<Bind> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (host, target, mode) = match parts.as_slice() {
        [h, t] => (*h, *t, "rw"),
        [h, t, m] => (*h, *t, *m),
        _ => bail!("-v {spec}: want HOST:CONTAINER[:ro|rw]"),
    };
    let read_only = match mode {
        "ro" => true,
        "rw" => false,
        other => bail!("-v {spec}: unknown mode {other:?} (ro or rw)"),
    };
    if !host.starts_with('/') || !target.starts_with('/') {
        bail!("-v {spec}: both paths must be absolute (named volumes are not supported)");
    }
    if !std::path::Path::new(host).exists() {
        std::fs::create_dir_all(host).with_context(|| format!("-v {spec}: create {host}"))?;
    }
    Ok(Bind { host: PathBuf::from(host), target: target.to_string(), read_only })
}

/// Parses `--tmpfs CONTAINER[:OPTIONS]` (default options: Docker's `mode=1777`).
fn tmpfs(spec: &str) -> anyhow::Result<(String, String)> {
    let (target, options) = spec.split_once(':').unwrap_or((spec, "mode=1777"));
    if !target.starts_with('/') {
        bail!("--tmpfs {spec}: the path must be absolute");
    }
    Ok((target.to_string(), options.to_string()))
}

/// Which seccomp profile `--security-opt` (and `--privileged`) choose.
fn seccomp_choice(security_opt: &[String], privileged: bool) -> anyhow::Result<state::Seccomp> {
    let mut choice = state::Seccomp::Default;
    for o in security_opt {
        choice = match o.split_once(['=', ':']) {
            Some(("seccomp", "unconfined")) => state::Seccomp::Unconfined,
            Some(("seccomp", file)) => state::Seccomp::File(PathBuf::from(file)),
            _ => bail!("--security-opt {o}: unknown option (supported: seccomp=unconfined, seccomp=PROFILE.json)"),
        };
    }
    Ok(if privileged { state::Seccomp::Unconfined } else { choice })
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

/// Refuses `-it` when our stdin is not a terminal, as Docker does: its bytes would
/// go to a pty that never sees their end (`echo x | run -it IMAGE cat` never ended).
fn check_tty(tty: bool, stdin_attached: bool) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    if tty && stdin_attached && !std::io::stdin().is_terminal() {
        bail!("the input device is not a TTY (drop -t, or give -i a terminal)");
    }
    Ok(())
}

/// `layers exec`.
pub fn exec(store: &Store, a: &ExecArgs) -> anyhow::Result<ExitCode> {
    check_tty(a.tty, a.interactive)?;
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
