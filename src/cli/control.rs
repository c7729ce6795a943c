//! `layers stop`, `kill`, `wait` and `logs`: verbs for a running container.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use layers_store::Store;
use rustix::process::{pidfd_send_signal, Signal};

use crate::run::control::{parse_signal, pidfd, stop_signal, wait_exit};
use crate::run::state;

/// Arguments of `layers stop`.
#[derive(Args)]
pub struct StopArgs {
    /// Seconds to wait after the stop signal before SIGKILL.
    #[arg(short, long, default_value_t = 10)]
    time: u64,
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Arguments of `layers kill`.
#[derive(Args)]
pub struct KillArgs {
    /// Signal to send (name or number).
    #[arg(short, long, default_value = "KILL")]
    signal: String,
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Arguments of `layers wait`.
#[derive(Args)]
pub struct WaitArgs {
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Arguments of `layers logs`.
#[derive(Args)]
pub struct LogsArgs {
    /// Keep printing new output until the container stops.
    #[arg(short, long)]
    follow: bool,
    /// Container.
    container: String,
}

pub fn stop(store: &Store, a: &StopArgs) -> anyhow::Result<ExitCode> {
    Ok(super::each(&a.containers, |name| {
        let c = store.resolve_container(name)?;
        if let Some(fd) = state::running(store, &c).and_then(|r| pidfd(r.pid)) {
            let _ = pidfd_send_signal(&fd, stop_signal(store, &c));
            if !wait_exit(&fd, Some(Duration::from_secs(a.time))) {
                pidfd_send_signal(&fd, Signal::KILL).with_context(|| format!("stop {}: kill it", c.name))?;
                wait_exit(&fd, None);
            }
        }
        // Its `layers run` records the exit and cleans up: done when it is.
        if let Some(m) = state::monitor(store, &c) {
            wait_exit(&m, Some(Duration::from_secs(10)));
        }
        outln!("{}", c.name);
        Ok(())
    }))
}

pub fn kill(store: &Store, a: &KillArgs) -> anyhow::Result<ExitCode> {
    let signal = parse_signal(&a.signal)?;
    Ok(super::each(&a.containers, |name| {
        let c = store.resolve_container(name)?;
        let fd = state::running(store, &c).and_then(|r| pidfd(r.pid));
        let Some(fd) = fd else { bail!("kill {}: container is not running", c.name) };
        pidfd_send_signal(&fd, signal).with_context(|| format!("kill {}", c.name))?;
        outln!("{}", c.name);
        Ok(())
    }))
}

pub fn wait(store: &Store, a: &WaitArgs) -> anyhow::Result<ExitCode> {
    Ok(super::each(&a.containers, |name| {
        let c = store.resolve_container(name)?;
        // Its PID 1 may have ended already while its monitor still records how.
        if let Some(m) = state::monitor(store, &c) {
            wait_exit(&m, None);
        }
        match state::exited(store, &c) {
            Some(e) => outln!("{}", e.code),
            None if store.resolve_container(&c.id).is_err() => bail!("wait {}: removed when it exited (--rm)", c.name),
            None => bail!("wait {}: container has not run", c.name),
        }
        Ok(())
    }))
}

pub fn logs(store: &Store, a: &LogsArgs) -> anyhow::Result<ExitCode> {
    use std::io::Read;
    let c = store.resolve_container(&a.container)?;
    let path = state::log_path(store, &c.id);
    let mut log = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ExitCode::SUCCESS),
        Err(e) => return Err(e).with_context(|| format!("logs {}: read {}", c.name, path.display())),
    };
    let monitor = if a.follow { state::running(store, &c).and_then(|r| pidfd(r.monitor)) } else { None };
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = log.read(&mut buf).with_context(|| format!("logs {}: read {}", c.name, path.display()))?;
        if n > 0 {
            if out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
                break;
            }
            continue;
        }
        // At the end: done, unless following a container that still runs.
        match &monitor {
            Some(m) if !wait_exit(m, Some(Duration::from_millis(100))) => {}
            Some(_) => {
                // One last read for what it wrote as it ended.
                let mut tail = Vec::new();
                let _ = log.read_to_end(&mut tail);
                let _ = out.write_all(&tail).and_then(|()| out.flush());
                break;
            }
            None => break,
        }
    }
    Ok(ExitCode::SUCCESS)
}
