//! `layers run`: a container from an image, in its own namespaces and cgroup, with
//! Docker's default capabilities, as PID 1 of its PID namespace.

pub mod attach;
pub mod caps;
pub mod cgroup;
mod child;
pub(crate) mod console;
pub mod container;
pub mod control;
pub mod detach;
mod kernel;
pub mod log;
mod seccomp;
mod seccomp_profile;
pub mod spec;
pub mod state;
mod step;
mod supervise;
mod sys;
mod users;

use std::os::fd::AsFd;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;

use anyhow::{bail, Context};
use layers_store::{ContainerRow, Store};

pub use child::Bind;
pub use container::Network;
use container::{command, launch};
pub use kernel::fork_survivor;

/// Exit status when the command cannot be executed.
const EXIT_CANNOT_EXEC: u8 = 126;
/// Exit status when the command does not exist.
const EXIT_NOT_FOUND: u8 = 127;

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

pub use spec::DEFAULT_PATH;

/// What `exec` runs in a running container.
pub struct ExecSpec {
    /// Command and arguments.
    pub argv: Vec<String>,
    /// `KEY=VALUE` over the container's environment.
    pub env: Vec<String>,
    /// Working directory (default: the container's).
    pub workdir: Option<String>,
    /// `UID[:GID]` or `NAME[:GROUP]` (default: the container's).
    pub user: Option<String>,
    /// Our stdin passed on.
    pub interactive: bool,
    /// A pty of its own.
    pub tty: bool,
}

/// A process in a running container's namespaces, cgroup, identity and seccomp
/// profile (`layers exec`); returns its exit code as a shell reports it.
pub fn exec_in(store: &Store, c: &ContainerRow, a: &ExecSpec) -> anyhow::Result<u8> {
    let Some(r) = state::running(store, c) else { bail!("exec {}: container is not running", c.name) };
    let user = match &a.user {
        Some(u) => users::resolve(u, &store.container_view(c)?.lowers).map_err(anyhow::Error::msg)?,
        None => r.user.clone(),
    };
    let mut env = r.env.clone();
    layers_store::oci::merge_env(&mut env, a.env.iter().cloned());
    if a.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".to_string());
    }
    let (console, console_child) = console::ends(a.tty, a.interactive)?;
    let process = spec::Process {
        argv: a.argv.clone(),
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
    let outputs = supervise::Outputs { console, ..Default::default() };
    let status = launch(cmd, err_r, &c.name, &process, &image, outputs, |_| {})?;
    Ok(exit_code(status))
}

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

/// The filters of a profile for a container holding `caps` (applied in order; none when unconfined).
pub(crate) fn seccomp_filters(
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

/// The command's status as a shell reports it: its code, or 128 + the signal that killed it.
fn exit_code(status: std::process::ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(sig)) => 128 + sig as u8,
        _ => crate::EXIT_FAILURE,
    }
}
