//! `layers run`: a container from an image, in its own namespaces and cgroup, with
//! Docker's default capabilities, as PID 1 of its PID namespace.

mod caps;
pub mod cgroup;
mod child;
mod console;
pub mod container;
pub mod control;
mod detach;
mod kernel;
mod seccomp;
mod seccomp_profile;
pub mod spec;
pub mod state;
mod supervise;
mod sys;
mod users;

use std::os::fd::AsFd;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use layers_store::containers::Lifetime;
use layers_store::Store;

pub use child::Volume as Bind;
pub use container::Network;
use container::{command, launch, Output, RunSpec};

/// Exit status when the command cannot be executed.
const EXIT_CANNOT_EXEC: u8 = 126;
/// Exit status when the command does not exist.
const EXIT_NOT_FOUND: u8 = 127;

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
    /// Run in the background and print the container ID (output goes to `layers logs`).
    #[arg(short, long)]
    detach: bool,
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

/// Docker's "init layer": a lower dir between the image and the container's upper
/// dir holding the mount points `run` needs (`/etc/hosts`... and `/proc`, `/sys`,
/// `/dev` when the image lacks them), so they never show in `diff` or `commit`.
fn init_layer(dir: &std::path::Path, lowers: &[PathBuf]) -> anyhow::Result<PathBuf> {
    let init = dir.join("init");
    let visible_dir = |rel: &str| {
        let rel = std::path::Path::new(rel);
        layers_store::upper::in_lowers(lowers, rel)
            && lowers
                .iter()
                .map(|l| l.join(rel))
                .find_map(|p| std::fs::symlink_metadata(p).ok())
                .is_some_and(|m| m.is_dir())
    };
    let absent = |rel: &str| !layers_store::upper::in_lowers(lowers, std::path::Path::new(rel));
    let mk = |rel: &str| std::fs::create_dir_all(init.join(rel)).with_context(|| format!("create init layer {rel}"));
    mk("")?;
    for d in ["proc", "sys", "dev"] {
        if absent(d) {
            mk(d)?;
        }
    }
    // Only into a real /etc: a dir here would hide an image's /etc symlink.
    if visible_dir("etc") || absent("etc") {
        mk("etc")?;
        for f in ["hosts", "hostname", "resolv.conf"] {
            if absent(&format!("etc/{f}")) {
                std::fs::write(init.join("etc").join(f), "").with_context(|| format!("create init layer etc/{f}"))?;
            }
        }
    }
    Ok(init)
}

/// `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf` for the container, in its dir.
fn etc_files(dir: &std::path::Path, hostname: &str) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let hosts = format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n");
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut out = Vec::new();
    for (name, content) in [("hostname", format!("{hostname}\n")), ("hosts", hosts), ("resolv.conf", resolv)] {
        let p = dir.join(name);
        std::fs::write(&p, content).with_context(|| format!("write {}", p.display()))?;
        out.push((p, format!("etc/{name}")));
    }
    Ok(out)
}

pub fn run(store: &Store, a: &RunArgs) -> anyhow::Result<ExitCode> {
    if a.detach && !detach::is_monitor() {
        return detach::start();
    }
    let limits = limits(a)?;
    let caps = caps::effective(&a.cap_add, &a.cap_drop).map_err(anyhow::Error::msg)?;
    let img = store.resolve(&a.image)?;
    let config = store.config(&img).with_context(|| format!("read config of {}", a.image))?;
    let mut env_args = Vec::new();
    for f in &a.env_file {
        let text = crate::bounded::read_text_file(f, crate::bounded::MAX_ENV_FILE, "env file")?;
        env_args.extend(spec::env_file(&text));
    }
    env_args.extend(a.env.iter().cloned());
    let mut binds = a.volume.iter().map(|v| volume(v)).collect::<anyhow::Result<Vec<_>>>()?;
    for b in &mut binds {
        if !b.host.exists() {
            std::fs::create_dir_all(&b.host).with_context(|| format!("-v: create {}", b.host.display()))?;
        }
    }
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
        if a.detach {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(state::log_path(store, &container.id))
                .context("open container log")?;
            spec.output = Output::Log(log);
        }
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

pub use spec::DEFAULT_PATH;

/// `USER[:GROUP]` (names or numbers) as the image's `/etc/passwd` and `/etc/group` in
/// `layers` (top first) resolve it: (uid, gid).
pub fn resolve_user(spec: &str, layers: &[PathBuf]) -> Result<(u32, u32), String> {
    users::resolve(spec, layers).map(|u| (u.uid, u.gid))
}

/// Refuses a `USER[:GROUP]` whose numeric parts are not valid uids or gids.
pub fn check_user_ids(spec: &str) -> Result<(), String> {
    users::check_ids(spec)
}

/// Removes a container's cgroup if a killed `layers run` left it behind.
pub fn remove_leftover_cgroup(id: &str) {
    if let Ok(h) = cgroup::Hierarchy::detect() {
        cgroup::Cgroup::remove_leftover(&h, id);
    }
}

/// Parses `-v HOST:CONTAINER[:ro|rw]`; a missing host dir is created, as Docker does.
fn volume(spec: &str) -> anyhow::Result<child::Volume> {
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
    Ok(child::Volume { host: PathBuf::from(host), target: target.to_string(), read_only })
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

/// The filters of a profile for a container holding `caps` (applied in order; none when unconfined).
fn seccomp_filters(
    choice: &state::Seccomp,
    caps: rustix::thread::CapabilitySet,
) -> anyhow::Result<Vec<seccompiler::BpfProgram>> {
    match choice {
        state::Seccomp::Unconfined => Ok(Vec::new()),
        state::Seccomp::Default => seccomp::default_profile(caps).map_err(anyhow::Error::msg),
        state::Seccomp::File(file) => {
            let json = crate::bounded::read_text_file(file, crate::bounded::MAX_CONFIG, "--security-opt seccomp")?;
            let json = json.as_bytes();
            seccomp_profile::compile(json, caps)
                .map_err(|e| anyhow::anyhow!("--security-opt seccomp={}: {e}", file.display()))
        }
    }
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

/// `layers exec`: a process in a running container's namespaces, cgroup, identity and seccomp profile.
pub fn exec(store: &Store, a: &ExecArgs) -> anyhow::Result<ExitCode> {
    let c = store.resolve_container(&a.container)?;
    let Some(r) = state::running(store, &c) else { bail!("exec {}: container is not running", c.name) };
    let user = match &a.user {
        Some(u) => users::resolve(u, &store.container_view(&c)?.lowers).map_err(anyhow::Error::msg)?,
        None => r.user.clone(),
    };
    let mut env = r.env.clone();
    for e in &a.env {
        spec::set_env(&mut env, e);
    }
    if a.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".to_string());
    }
    let (console, console_child) = console::ends(a.tty, a.interactive)?;
    let process = spec::Process {
        argv: a.command.clone(),
        env: env.clone(),
        cwd: a.workdir.clone().unwrap_or(r.cwd.clone()),
        user: String::new(),
    };
    let caps = rustix::thread::CapabilitySet::from_bits_retain(r.caps);
    let seccomp = seccomp_filters(&r.seccomp, caps)?;
    let pid = rustix::process::Pid::from_raw(r.pid as i32).context("container pid")?;
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
        .with_context(|| format!("exec {}: open its process", c.name))?;
    // Children from here on are born in the container's PID namespace.
    rustix::thread::move_into_thread_name_spaces(pidfd.as_fd(), rustix::thread::ThreadNameSpaceType::PROCESS_ID)
        .with_context(|| format!("exec {}: join its PID namespace", c.name))?;
    let join = child::JoinSetup {
        cgroup_procs: cgroup::Cgroup::procs_files_of(&cgroup::Hierarchy::detect()?, &c.id),
        pidfd,
        user,
        cwd: process.cwd.clone(),
        caps,
        privileged: r.privileged,
        seccomp,
        console: console_child,
    };
    let (err_r, err_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).context("make error pipe")?;
    let mut cmd = command(&process, &env, a.interactive);
    kernel::pre_exec(&mut cmd, move || child::join_in_child(&join, &err_w));
    let image = store.image(&c.image)?.and_then(|i| i.tags.first().cloned()).unwrap_or_else(|| c.image.to_string());
    let status = launch(cmd, err_r, console, &c.name, &process, &image, |_| {})?;
    Ok(ExitCode::from(exit_code(status)))
}

/// The command's status as a shell reports it: its code, or 128 + the signal that killed it.
fn exit_code(status: std::process::ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(sig)) => 128 + sig as u8,
        _ => crate::EXIT_FAILURE,
    }
}
