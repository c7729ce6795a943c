//! Where a container is in its life, as its files in its dir record it (`dir.rs`):
//! running, exited, restarting, and the process that watches it.

use layers_store::{ContainerRow, Store};

use super::config::Seccomp;
use super::dir::{ContainerDir, File};
use crate::run::users;

/// A running container's process.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Running {
    /// Host PID of its PID 1.
    pub pid: u32,
    /// When its PID 1 started (clock ticks after boot): with `pid`, it names that one
    /// process where no cgroup of the container does (rootless without delegation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_start: Option<u64>,
    /// Host PID of the `layers run` that waits for it (and cleans up after it).
    pub monitor: u32,
    /// When the monitor started (clock ticks after boot, /proc/PID/stat): its PID,
    /// once it has ended, may be another process's.
    #[serde(default)]
    pub monitor_start: u64,
    pub user: users::User,
    pub env: Vec<String>,
    pub cwd: String,
    pub caps: u64,
    pub privileged: bool,
    pub seccomp: Seccomp,
    /// When it started, seconds since the epoch.
    #[serde(default)]
    pub started: i64,
    /// Its address on a bridge network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Its published ports, host ports resolved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<crate::network::ports::PortMap>,
}

/// How a container's last run ended.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Exited {
    pub code: u8,
    /// Seconds since the epoch.
    pub finished: i64,
    pub oom_killed: bool,
    /// Why it ended when no exit status says (its monitor was killed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Times the restart policy has started the container again since `start`.
pub fn restarts(store: &Store, id: &str) -> u32 {
    ContainerDir::of(store, id).read_json(File::Restarts).unwrap_or(0)
}

/// Records the restart count.
pub fn set_restarts(store: &Store, id: &str, n: u32) {
    let _ = ContainerDir::of(store, id).write_json(File::Restarts, &n);
}

/// The process that runs a container and records how it ends (a `layers run`, or
/// the monitor of a detached one), for as long as it does.
#[derive(serde::Serialize, serde::Deserialize)]
struct Monitor {
    pid: u32,
    /// When it started: its PID, once it has ended, may be another process's.
    start: u64,
    /// Waiting to start the container again (its restart policy said so): only then
    /// is an ended container `restarting`, not while its monitor cleans up.
    #[serde(default)]
    restarting: bool,
}

/// Records this process as the container's monitor; `restarting`: it is about to
/// start the container again.
pub fn set_monitor(store: &Store, id: &str, restarting: bool) {
    let me = std::process::id();
    let m = Monitor { pid: me, start: start_time(me).unwrap_or_default(), restarting };
    let _ = ContainerDir::of(store, id).write_json(File::Monitor, &m);
}

/// This process no longer watches the container.
pub fn clear_monitor(store: &Store, id: &str) {
    ContainerDir::of(store, id).remove(File::Monitor);
}

/// Asks the monitor not to start the container again (`stop`, `kill`, `rm -f`).
pub fn request_stop(store: &Store, id: &str) {
    ContainerDir::of(store, id).touch(File::StopRequested);
}

/// Whether a stop was asked for since the container was last started.
pub fn stop_requested(store: &Store, id: &str) -> bool {
    ContainerDir::of(store, id).has(File::StopRequested)
}

/// A new start: earlier stop requests are done with.
pub fn clear_stop(store: &Store, id: &str) {
    ContainerDir::of(store, id).remove(File::StopRequested);
}

/// Records that the container is running (replacing how it last ended).
pub fn set_running(store: &Store, id: &str, r: &Running) {
    ContainerDir::of(store, id).replace((File::Running, r), File::Exited);
}

/// Records that the container has stopped.
pub fn set_exited(store: &Store, id: &str, e: &Exited) {
    ContainerDir::of(store, id).replace((File::Exited, e), File::Running);
}

/// The running state of a container, if its process is alive: its cgroup names the
/// container, or (with no cgroup of its own) it started when the record says.
pub fn running(store: &Store, c: &ContainerRow) -> Option<Running> {
    let r: Running = ContainerDir::of(store, &c.id).read_json(File::Running)?;
    let cgroups = std::fs::read_to_string(format!("/proc/{}/cgroup", r.pid)).ok()?;
    let alive = cgroups.contains(&c.id) || r.pid_start.is_some_and(|s| living_since(r.pid) == Some(s));
    alive.then_some(r)
}

/// The `layers run` that watches the container and records how it ends, while it
/// lives: between its PID 1's death and that record, only this says "not yet".
pub fn monitor(store: &Store, c: &ContainerRow) -> Option<std::os::fd::OwnedFd> {
    live_monitor(store, c).map(|(_, fd)| fd)
}

/// The monitor's record, while the process it names lives.
fn live_monitor(store: &Store, c: &ContainerRow) -> Option<(Monitor, std::os::fd::OwnedFd)> {
    let dir = ContainerDir::of(store, &c.id);
    let m = dir.read_json::<Monitor>(File::Monitor).or_else(|| {
        let r: Running = dir.read_json(File::Running)?;
        Some(Monitor { pid: r.monitor, start: r.monitor_start, restarting: false })
    })?;
    let fd = crate::run::control::pidfd(m.pid)?;
    // Checked after the pidfd is open: the fd then holds that very process.
    (start_time(m.pid) == Some(m.start)).then_some((m, fd))
}

/// When process `pid` started, if it has not ended (a zombie has: it only waits to be reaped).
fn living_since(pid: u32) -> Option<u64> {
    let (state, start) = stat(pid)?;
    (!matches!(state.as_str(), "Z" | "X" | "x")).then_some(start)
}

/// When process `pid` started, in clock ticks after boot (field 22 of /proc/PID/stat).
pub fn start_time(pid: u32) -> Option<u64> {
    stat(pid).map(|(_, start)| start)
}

/// Process `pid`'s state (field 3 of /proc/PID/stat) and start time (field 22), from one read.
fn stat(pid: u32) -> Option<(String, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from its end.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.to_string();
    Some((state, fields.nth(18)?.parse().ok()?))
}

/// Where a container is in its life, as `ps` and `inspect` name it.
pub enum Status {
    /// Never started.
    Created,
    Running(Running),
    /// Running, its processes frozen (`pause`).
    Paused(Running),
    /// Ended, and its monitor is about to start it again (its restart policy).
    Restarting(Exited),
    Exited(Exited),
}

impl Status {
    /// The container's status now.
    pub fn of(store: &Store, c: &ContainerRow) -> Status {
        if let Some(r) = running(store, c) {
            return if paused(c) { Status::Paused(r) } else { Status::Running(r) };
        }
        match exited(store, c) {
            Some(e) if live_monitor(store, c).is_some_and(|(m, _)| m.restarting) => Status::Restarting(e),
            Some(e) => Status::Exited(e),
            None => match lost(store, c) {
                Some(e) => Status::Exited(e),
                None => Status::Created,
            },
        }
    }

    /// Docker's name for it: `created`, `running`, `paused`, `restarting`, `exited`.
    pub fn name(&self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running(_) => "running",
            Status::Paused(_) => "paused",
            Status::Restarting(_) => "restarting",
            Status::Exited(_) => "exited",
        }
    }

    /// Its process, while it runs.
    pub fn running(&self) -> Option<&Running> {
        match self {
            Status::Running(r) | Status::Paused(r) => Some(r),
            _ => None,
        }
    }

    /// How its last run ended, once it has.
    pub fn exited(&self) -> Option<&Exited> {
        match self {
            Status::Restarting(e) | Status::Exited(e) => Some(e),
            _ => None,
        }
    }
}

/// Whether the running container `c`'s processes are frozen (`pause`).
pub fn paused(c: &ContainerRow) -> bool {
    use crate::run::cgroup::{Cgroup, Hierarchy};
    Hierarchy::detect().is_ok_and(|h| Cgroup::is_frozen(&h, &c.id))
}

/// Freezes or thaws the running container `c`'s processes (`pause`, `unpause`).
pub fn set_paused(c: &ContainerRow, paused: bool) -> anyhow::Result<()> {
    use crate::run::cgroup::{Cgroup, Hierarchy};
    Cgroup::set_frozen(&Hierarchy::detect()?, &c.id, paused)
}

/// Thaws `c` if it is paused, so a signal just sent to end it is acted on (v1's
/// freezer holds even SIGKILL until the processes are thawed), as Docker's stop and
/// kill end a paused container.
pub fn thaw_to_end(c: &ContainerRow) -> anyhow::Result<()> {
    if paused(c) {
        set_paused(c, false)?;
    }
    Ok(())
}

/// A container that was started and whose monitor is gone with no record of how it
/// ended: the monitor was killed (SIGKILL leaves it no moment to record anything),
/// and its PID 1 with it. It shows as exited (137, as a kill) with the reason; its
/// restart policy is not applied by whatever command notices (`layers start` it).
fn lost(store: &Store, c: &ContainerRow) -> Option<Exited> {
    let path = ContainerDir::of(store, &c.id).file(File::Running);
    let since = std::fs::metadata(&path).ok()?.modified().ok()?;
    if monitor(store, c).is_some() {
        return None;
    }
    let finished = since.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    Some(Exited {
        code: 137,
        finished,
        oom_killed: false,
        error: Some("its monitor was killed, and it with it; its restart policy was not applied".into()),
    })
}

/// How the container's last run ended, if it has run and stopped.
pub fn exited(store: &Store, c: &ContainerRow) -> Option<Exited> {
    ContainerDir::of(store, &c.id).read_json(File::Exited)
}
