//! `layers stop`, `kill`, `wait` and `logs`: verbs for a container some `layers run`
//! (often a detached one) is running. Signals go through a pidfd, so a recycled PID
//! can never be hit.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use layers_store::{ContainerRow, Store};
use rustix::process::{pidfd_open, pidfd_send_signal, Pid, PidfdFlags, Signal};

use super::state;

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

/// A pidfd for a host PID.
fn pidfd(pid: u32) -> Option<OwnedFd> {
    pidfd_open(Pid::from_raw(pid as i32)?, PidfdFlags::empty()).ok()
}

/// Waits until the process behind `fd` ends, or `limit` passes; true if it ended.
fn wait_exit(fd: &OwnedFd, limit: Option<Duration>) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let deadline = limit.map(|l| Instant::now() + l);
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let timeout = left.map(|l| Timespec { tv_sec: l.as_secs() as i64, tv_nsec: l.subsec_nanos() as i64 });
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        match poll(&mut fds, timeout.as_ref()) {
            Ok(n) if n > 0 => return true,
            Ok(_) if left.is_some_and(|l| l.is_zero()) => return false,
            _ => {}
        }
    }
}

/// Parses `KILL`, `SIGKILL`, `9`.
pub fn parse_signal(s: &str) -> anyhow::Result<Signal> {
    const NAMES: [(&str, Signal); 16] = [
        ("HUP", Signal::HUP),
        ("INT", Signal::INT),
        ("QUIT", Signal::QUIT),
        ("ABRT", Signal::ABORT),
        ("KILL", Signal::KILL),
        ("USR1", Signal::USR1),
        ("SEGV", Signal::SEGV),
        ("USR2", Signal::USR2),
        ("PIPE", Signal::PIPE),
        ("ALRM", Signal::ALARM),
        ("TERM", Signal::TERM),
        ("CONT", Signal::CONT),
        ("STOP", Signal::STOP),
        ("TSTP", Signal::TSTP),
        ("WINCH", Signal::WINCH),
        ("PWR", Signal::POWER),
    ];
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Ok(n) = name.parse::<i32>() {
        return Signal::from_named_raw(n).with_context(|| format!("signal {s}: no such signal number"));
    }
    NAMES.iter().find(|(n, _)| *n == name).map(|(_, sig)| *sig).with_context(|| format!("signal {s}: unknown name"))
}

/// The image's `StopSignal`, else SIGTERM.
fn stop_signal(store: &Store, c: &ContainerRow) -> Signal {
    let configured = || -> Option<Signal> {
        let image = store.image(&c.image).ok()??;
        parse_signal(&store.config(&image).ok()?.config?.stop_signal?).ok()
    };
    configured().unwrap_or(Signal::TERM)
}

pub fn stop(store: &Store, a: &StopArgs) -> anyhow::Result<ExitCode> {
    for name in &a.containers {
        let c = store.resolve_container(name)?;
        if let Some(r) = state::running(store, &c) {
            let (Some(fd), monitor) = (pidfd(r.pid), pidfd(r.monitor)) else { continue };
            let _ = pidfd_send_signal(&fd, stop_signal(store, &c));
            if !wait_exit(&fd, Some(Duration::from_secs(a.time))) {
                pidfd_send_signal(&fd, Signal::KILL).with_context(|| format!("stop {}: kill it", c.name))?;
                wait_exit(&fd, None);
            }
            // Its `layers run` records the exit and cleans up: done when it is.
            if let Some(m) = monitor {
                wait_exit(&m, Some(Duration::from_secs(10)));
            }
        }
        outln!("{}", c.name);
    }
    Ok(ExitCode::SUCCESS)
}

/// For `rm -f`: SIGKILL the container and wait until its `layers run` has cleaned up.
pub fn kill_and_wait(r: &state::Running) {
    let monitor = pidfd(r.monitor);
    if let Some(fd) = pidfd(r.pid) {
        if pidfd_send_signal(&fd, Signal::KILL).is_ok() {
            wait_exit(&fd, Some(Duration::from_secs(10)));
        }
    }
    if let Some(m) = monitor {
        wait_exit(&m, Some(Duration::from_secs(10)));
    }
}

pub fn kill(store: &Store, a: &KillArgs) -> anyhow::Result<ExitCode> {
    let signal = parse_signal(&a.signal)?;
    for name in &a.containers {
        let c = store.resolve_container(name)?;
        let fd = state::running(store, &c).and_then(|r| pidfd(r.pid));
        let Some(fd) = fd else { bail!("kill {}: container is not running", c.name) };
        pidfd_send_signal(&fd, signal).with_context(|| format!("kill {}", c.name))?;
        outln!("{}", c.name);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn wait(store: &Store, a: &WaitArgs) -> anyhow::Result<ExitCode> {
    for name in &a.containers {
        let c = store.resolve_container(name)?;
        if let Some(m) = state::running(store, &c).and_then(|r| pidfd(r.monitor)) {
            wait_exit(&m, None);
        }
        match state::exited(store, &c) {
            Some(e) => outln!("{}", e.code),
            None if store.resolve_container(&c.id).is_err() => bail!("wait {}: removed when it exited (--rm)", c.name),
            None => bail!("wait {}: container has not run", c.name),
        }
    }
    Ok(ExitCode::SUCCESS)
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
