//! What `run` leaves in a container's dir for the other verbs:
//!
//! ```text
//! containers/<id>/
//!   running.json   while it runs: host PIDs of its PID 1 and of the `layers run`
//!                  watching it, and what `exec` needs (user, env, caps, seccomp)
//!   exited.json    once it has stopped: exit code, when, whether memory ran out
//!   log.json…      its output, stdout and stderr apart, each line timed (log.rs)
//!   monitor.log    what the monitor of a detached container said after detaching
//!   monitor.json   the process that runs it and records how it ends, while it lives
//!   options.json   what it was created with (cli/options.rs)
//!   stop-requested a stop was asked for: its restart policy does not start it again
//!   attach.sock    while it runs: where `layers attach` connects (attach.rs)
//! ```

use std::path::PathBuf;

use layers_store::{ContainerRow, Store};

use super::users;

/// A running container's process.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Running {
    /// Host PID of its PID 1.
    pub pid: u32,
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
}

/// The seccomp profile a container runs under.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
pub enum Seccomp {
    Unconfined,
    /// Docker's default, in effect (`seccomp.rs`).
    Default,
    /// A profile in Docker's format.
    File(PathBuf),
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
    read_json(store, id, "restarts.json").unwrap_or(0)
}

/// Records the restart count.
pub fn set_restarts(store: &Store, id: &str, n: u32) {
    let _ = write_json(store, id, "restarts.json", &n);
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
    let _ = write_json(store, id, "monitor.json", &m);
}

/// This process no longer watches the container.
pub fn clear_monitor(store: &Store, id: &str) {
    let _ = std::fs::remove_file(file(store, id, "monitor.json"));
}

/// Asks the monitor not to start the container again (`stop`, `kill`, `rm -f`).
pub fn request_stop(store: &Store, id: &str) {
    let _ = std::fs::write(file(store, id, "stop-requested"), b"");
}

/// Whether a stop was asked for since the container was last started.
pub fn stop_requested(store: &Store, id: &str) -> bool {
    file(store, id, "stop-requested").exists()
}

/// A new start: earlier stop requests are done with.
pub fn clear_stop(store: &Store, id: &str) {
    let _ = std::fs::remove_file(file(store, id, "stop-requested"));
}

fn file(store: &Store, id: &str, name: &str) -> PathBuf {
    store.container_dir(id).join(name)
}

/// What the monitor of a detached container has to say (not the container's output,
/// which is in its log: `log.rs`).
pub fn monitor_log_path(store: &Store, id: &str) -> PathBuf {
    file(store, id, "monitor.log")
}

/// Records that the container is running (replacing how it last ended).
pub fn set_running(store: &Store, id: &str, r: &Running) {
    replace(store, id, ("running.json", r), "exited.json");
}

/// Records that the container has stopped.
pub fn set_exited(store: &Store, id: &str, e: &Exited) {
    replace(store, id, ("exited.json", e), "running.json");
}

/// Writes `value` as the container's `name` record, whole (renamed into place).
pub fn write_json<T: serde::Serialize>(store: &Store, id: &str, name: &str, value: &T) -> std::io::Result<()> {
    let tmp = file(store, id, &format!(".{name}.tmp"));
    std::fs::write(&tmp, serde_json::to_vec(value)?)?;
    std::fs::rename(&tmp, file(store, id, name))
}

/// The container's `name` record, if it has a readable one.
pub fn read_json<T: serde::de::DeserializeOwned>(store: &Store, id: &str, name: &str) -> Option<T> {
    let f = std::fs::File::open(file(store, id, name)).ok()?;
    // Written by us, yet bounded like any file read.
    serde_json::from_reader(std::io::Read::take(std::io::BufReader::new(f), 1 << 20)).ok()
}

/// Writes the new record whole (renamed into place), then removes the old one: a
/// reader in between sees both, never neither (`wait` would say "has not run").
fn replace<T: serde::Serialize>(store: &Store, id: &str, (name, value): (&str, &T), old: &str) {
    let _ = write_json(store, id, name, value);
    let _ = std::fs::remove_file(file(store, id, old));
}

/// The running state of a container, if its process is alive (its cgroup names the container).
pub fn running(store: &Store, c: &ContainerRow) -> Option<Running> {
    let r: Running = read_json(store, &c.id, "running.json")?;
    let cgroups = std::fs::read_to_string(format!("/proc/{}/cgroup", r.pid)).ok()?;
    cgroups.contains(&c.id).then_some(r)
}

/// The `layers run` that watches the container and records how it ends, while it
/// lives: between its PID 1's death and that record, only this says "not yet".
pub fn monitor(store: &Store, c: &ContainerRow) -> Option<std::os::fd::OwnedFd> {
    live_monitor(store, c).map(|(_, fd)| fd)
}

/// The monitor's record, while the process it names lives.
fn live_monitor(store: &Store, c: &ContainerRow) -> Option<(Monitor, std::os::fd::OwnedFd)> {
    let m = read_json::<Monitor>(store, &c.id, "monitor.json").or_else(|| {
        let r: Running = read_json(store, &c.id, "running.json")?;
        Some(Monitor { pid: r.monitor, start: r.monitor_start, restarting: false })
    })?;
    let fd = super::control::pidfd(m.pid)?;
    // Checked after the pidfd is open: the fd then holds that very process.
    (start_time(m.pid) == Some(m.start)).then_some((m, fd))
}

/// When process `pid` started, in clock ticks after boot (field 22 of /proc/PID/stat).
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from its end.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// Where a container is in its life, as `ps` and `inspect` name it.
pub enum Status {
    /// Never started.
    Created,
    Running(Running),
    /// Ended, and its monitor is about to start it again (its restart policy).
    Restarting(Exited),
    Exited(Exited),
}

impl Status {
    /// The container's status now.
    pub fn of(store: &Store, c: &ContainerRow) -> Status {
        if let Some(r) = running(store, c) {
            return Status::Running(r);
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

    /// Docker's name for it: `created`, `running`, `restarting`, `exited`.
    pub fn name(&self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running(_) => "running",
            Status::Restarting(_) => "restarting",
            Status::Exited(_) => "exited",
        }
    }

    /// Its process, while it runs.
    pub fn running(&self) -> Option<&Running> {
        match self {
            Status::Running(r) => Some(r),
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

/// A container that was started and whose monitor is gone with no record of how it
/// ended: the monitor was killed (SIGKILL leaves it no moment to record anything),
/// and its PID 1 with it. It shows as exited (137, as a kill) with the reason; its
/// restart policy is not applied by whatever command notices (`layers start` it).
fn lost(store: &Store, c: &ContainerRow) -> Option<Exited> {
    let path = file(store, &c.id, "running.json");
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
    read_json(store, &c.id, "exited.json")
}
