//! `layers run`: a container from an image, in its own namespaces and cgroup, with
//! Docker's default capabilities, as PID 1 of its PID namespace.

// The attach socket in the container's own dir.
#[allow(clippy::disallowed_methods)]
pub mod attach;
pub mod caps;
// cgroupfs: the kernel's files under /sys/fs/cgroup, named by the container's ID.
#[allow(clippy::disallowed_methods)]
pub mod cgroup;
// Reads the container's own cgroup files and its /proc/PID/net/dev.
#[allow(clippy::disallowed_methods)]
pub mod cgroup_stats;
// Mount points inside the container's root are resolved by `sys.rs` beneath that
// root (`fsroot::Root`, `O_NOFOLLOW` opens) before anything is mounted on them; the
// joins here only name them.
#[allow(clippy::disallowed_methods)]
mod child;
pub(crate) mod console;
// The container's own dir, named by `container/dir.rs`, and host paths the user
// named for `-v`; the image's files are read through `fsroot` (lowers, copy-up).
#[allow(clippy::disallowed_methods)]
pub mod container;
pub mod control;
// /proc of this process.
#[allow(clippy::disallowed_methods)]
mod kernel;
// The phase file named by the environment, opened once.
#[allow(clippy::disallowed_methods)]
pub mod phases;
// The log files in the container's own dir.
pub mod image_process;
#[allow(clippy::disallowed_methods)]
pub mod log;
mod seccomp;
mod seccomp_profile;
mod step;
mod supervise;
// /proc and cgroupfs files of the kernel; paths in the container's root are opened
// beneath it (`fsroot::Root`) and checked with lstat before use.
#[allow(clippy::disallowed_methods)]
mod sys;
// The container's own dir (a PID file) and /proc: paths of its own.
#[allow(clippy::disallowed_methods)]
mod user_net;
mod users;

use std::os::fd::AsFd;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;

use anyhow::{bail, Context};
use layers_store::{ContainerRow, Store};

pub use child::Bind;
pub use container::files::hosts_text;
use container::process::{command, launch};
pub use container::process::{Ended, Launched};
pub use container::state;
pub use container::Network;
pub use kernel::fork_survivor;

/// Exit status when the command cannot be executed.
const EXIT_CANNOT_EXEC: u8 = 126;
/// Exit status when the command does not exist.
const EXIT_NOT_FOUND: u8 = 127;

pub use image_process::DEFAULT_PATH;

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
/// profile (`layers exec`); returns how it ended.
/// Forked from this process, which no transfer thread may share (`Quiesced`).
pub fn exec_in(
    store: &Store,
    c: &ContainerRow,
    a: &ExecSpec,
    _single_threaded: &crate::transfer::Quiesced,
) -> anyhow::Result<Ended> {
    let Some(r) = state::running(store, c) else { bail!("exec {}: container is not running", c.name) };
    let user = match &a.user {
        Some(u) => match users::resolve(u, &store.snapshots().view(c)?.lowers) {
            Ok(user) => user,
            // dockerd's: the exec's process could not start, 126 (not exec's own failure).
            Err(message) => {
                return Ok(Ended { code: 126, oom_killed: false, memory_limit: None, not_run: Some(message) })
            }
        },
        None => r.user.clone(),
    };
    let mut env = r.env.clone();
    layers_store::images::oci::merge_env(&mut env, a.env.iter().cloned());
    if a.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".to_string());
    }
    let (console, console_child) = console::ends(a.tty, a.interactive)?;
    let process = image_process::Process {
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
    let image =
        store.images().get(&c.image)?.and_then(|i| i.tags.first().cloned()).unwrap_or_else(|| c.image.to_string());
    let outputs = supervise::Outputs { console, ..Default::default() };
    Ok(match launch(cmd, err_r, &c.name, &process, &image, outputs, |_| {})? {
        Launched::Ran(status) => {
            Ended { code: exit_code(status), oom_killed: false, memory_limit: None, not_run: None }
        }
        Launched::NotRun { code, message } => {
            Ended { code, oom_killed: false, memory_limit: None, not_run: Some(message) }
        }
    })
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
    choice: &container::config::Seccomp,
    caps: rustix::thread::CapabilitySet,
) -> anyhow::Result<Vec<seccompiler::BpfProgram>> {
    match choice {
        container::config::Seccomp::Unconfined => Ok(Vec::new()),
        container::config::Seccomp::Default => seccomp::default_profile(caps).map_err(anyhow::Error::msg),
        container::config::Seccomp::File(file) => {
            let json = crate::bounded::read_text_file(file, crate::bounded::MAX_CONFIG, "--security-opt seccomp")?;
            let json = json.as_bytes();
            seccomp_profile::compile(json, caps)
                .map_err(|e| anyhow::anyhow!("--security-opt seccomp={}: {e}", file.display()))
        }
    }
}

/// The command's status as a shell reports it: its code, or 128 + the signal that
/// killed it (a waited-for status is one or the other).
fn exit_code(status: std::process::ExitStatus) -> u8 {
    match status.code() {
        Some(code) => code as u8,
        None => 128u8.wrapping_add(status.signal().unwrap_or(0) as u8),
    }
}
