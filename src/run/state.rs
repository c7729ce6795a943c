//! What `run` leaves in a container's dir for the other verbs:
//!
//! ```text
//! containers/<id>/
//!   running.json   while it runs: host PIDs of its PID 1 and of the `layers run`
//!                  watching it, and what `exec` needs (user, env, caps, seccomp)
//!   exited.json    once it has stopped: exit code, when, whether memory ran out
//!   log            output of a detached (`-d`) container
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
    pub user: users::User,
    pub env: Vec<String>,
    pub cwd: String,
    pub caps: u64,
    pub privileged: bool,
    pub seccomp: Seccomp,
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
}

fn file(store: &Store, id: &str, name: &str) -> PathBuf {
    store.container_dir(id).join(name)
}

/// The log of a detached container.
pub fn log_path(store: &Store, id: &str) -> PathBuf {
    file(store, id, "log")
}

/// Records that the container is running (replacing how it last ended).
pub fn set_running(store: &Store, id: &str, r: &Running) {
    let _ = std::fs::remove_file(file(store, id, "exited.json"));
    let _ = std::fs::write(file(store, id, "running.json"), serde_json::to_vec(r).unwrap_or_default());
}

/// Records that the container has stopped.
pub fn set_exited(store: &Store, id: &str, e: &Exited) {
    let _ = std::fs::remove_file(file(store, id, "running.json"));
    let _ = std::fs::write(file(store, id, "exited.json"), serde_json::to_vec(e).unwrap_or_default());
}

/// The running state of a container, if its process is alive (its cgroup names the container).
pub fn running(store: &Store, c: &ContainerRow) -> Option<Running> {
    let bytes = std::fs::read(file(store, &c.id, "running.json")).ok()?;
    let r: Running = serde_json::from_slice(&bytes).ok()?;
    let cgroups = std::fs::read_to_string(format!("/proc/{}/cgroup", r.pid)).ok()?;
    cgroups.contains(&c.id).then_some(r)
}

/// How the container's last run ended, if it has run and stopped.
pub fn exited(store: &Store, c: &ContainerRow) -> Option<Exited> {
    serde_json::from_slice(&std::fs::read(file(store, &c.id, "exited.json")).ok()?).ok()
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
