//! `layers stop`, `kill`, `wait` and `logs`: verbs for a running container.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use layers_store::Store;
use rustix::process::{pidfd_send_signal, Signal};

use crate::json_lines::Follower;
use crate::run::container::lifecycle;
use crate::run::control::{parse_signal, pidfd, stop_signal, wait_exit};
use crate::run::{log, state};

// Arguments of `layers stop`.
#[derive(Args)]
pub struct StopArgs {
    /// Seconds to wait after the stop signal before SIGKILL.
    #[arg(short, long, default_value_t = 10)]
    time: u64,
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
}

// Arguments of `layers kill`.
#[derive(Args)]
pub struct KillArgs {
    /// Signal to send (name or number).
    #[arg(short, long, default_value = "KILL")]
    signal: String,
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
}

// Arguments of `layers pause` and `layers unpause`.
#[derive(Args)]
pub struct PauseArgs {
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
}

// Arguments of `layers wait`.
#[derive(Args)]
pub struct WaitArgs {
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
}

// Arguments of `layers logs`.
#[derive(Args)]
pub struct LogsArgs {
    /// Keep printing new output until the container stops.
    #[arg(short, long)]
    follow: bool,
    /// Only the last N lines (`all`: every line).
    #[arg(short = 'n', long, value_name = "N", default_value = "all")]
    tail: String,
    /// Only lines since a time: RFC 3339, Unix seconds, or a duration before now (`10m`).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only lines before a time (same forms as --since).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Prefix each line with its time (RFC 3339, nanoseconds).
    #[arg(short, long)]
    timestamps: bool,
    /// Container.
    container: String,
}

pub fn stop(store: &Store, a: &StopArgs) -> anyhow::Result<ExitCode> {
    Ok(super::each(&a.containers, |name| {
        let c = store.snapshots().resolve(name)?;
        crate::run::container::lifecycle::stop(store, &c, Duration::from_secs(a.time))?;
        lifecycle::actor(store, &c).record(store, "stop");
        outln!("{name}");
        Ok(())
    }))
}

pub fn kill(store: &Store, a: &KillArgs) -> anyhow::Result<ExitCode> {
    let signal = parse_signal(&a.signal)?;
    Ok(super::each(&a.containers, |name| {
        let c = store.snapshots().resolve(name)?;
        let fd = state::running(store, &c).and_then(|r| pidfd(r.pid));
        let Some(fd) = fd else { bail!("kill {}: container is not running", c.name) };
        // Killed by hand, as stopped by hand: its restart policy leaves it be.
        if signal == Signal::KILL || signal == stop_signal(store, &c) {
            state::request_stop(store, &c.id);
        }
        // Recorded first: the container's `die` may be recorded before this returns.
        lifecycle::actor(store, &c).with("signal", signal.as_raw().to_string()).record(store, "kill");
        pidfd_send_signal(&fd, signal).with_context(|| format!("kill {}", c.name))?;
        if signal == Signal::KILL || signal == stop_signal(store, &c) {
            state::thaw_to_end(&c).with_context(|| format!("kill {}: unpause it", c.name))?;
        }
        outln!("{}", c.name);
        Ok(())
    }))
}

/// `pause` (`paused`: true) and `unpause`: the container's cgroup freezer, as Docker's.
pub fn pause(store: &Store, a: &PauseArgs, paused: bool) -> anyhow::Result<ExitCode> {
    let verb = if paused { "pause" } else { "unpause" };
    Ok(super::each(&a.containers, |name| {
        let c = store.snapshots().resolve(name)?;
        match (state::Status::of(store, &c), paused) {
            (state::Status::Running(_), true) | (state::Status::Paused(_), false) => {}
            (state::Status::Paused(_), true) => bail!("{verb} {}: container is already paused", c.name),
            (state::Status::Running(_), false) => bail!("{verb} {}: container is not paused", c.name),
            _ => bail!("{verb} {}: container is not running", c.name),
        }
        state::set_paused(&c, paused).with_context(|| format!("{verb} {}", c.name))?;
        lifecycle::actor(store, &c).record(store, verb);
        outln!("{name}");
        Ok(())
    }))
}

pub fn wait(store: &Store, a: &WaitArgs) -> anyhow::Result<ExitCode> {
    Ok(super::each(&a.containers, |name| {
        let c = store.snapshots().resolve(name)?;
        // Its PID 1 may have ended already while its monitor still records how.
        if let Some(m) = state::monitor(store, &c) {
            wait_exit(&m, None);
        }
        match state::exited(store, &c) {
            Some(e) => outln!("{}", e.code),
            None if store.snapshots().resolve(&c.id).is_err() => {
                bail!("wait {}: removed when it exited (--rm)", c.name)
            }
            None => bail!("wait {}: container has not run", c.name),
        }
        Ok(())
    }))
}

pub fn logs(store: &Store, a: &LogsArgs) -> anyhow::Result<ExitCode> {
    let c = store.snapshots().resolve(&a.container)?;
    let now = log::now_nanos();
    let since = a.since.as_deref().map(|t| log::parse_since(t, now)).transpose().context("--since")?;
    let until = a.until.as_deref().map(|t| log::parse_since(t, now)).transpose().context("--until")?;
    let tail: Option<usize> = match a.tail.as_str() {
        "all" => None,
        n => Some(n.parse().with_context(|| format!("--tail {n}: a number of lines, or `all`"))?),
    };
    let wanted = |e: &log::Entry| {
        let t = log::nanos(&e.time).unwrap_or(0);
        since.is_none_or(|s| t >= s) && until.is_none_or(|u| t < u)
    };
    // Taken before reading: output written after this is read by following.
    let monitor = if a.follow { state::monitor(store, &c) } else { None };
    let dir = store.snapshots().dir(&c.id);
    let files = log::files(&dir);
    let mut out = Printer { timestamps: a.timestamps };
    // With --tail, only the last N are kept in memory; the log itself is capped.
    let mut last: std::collections::VecDeque<log::Entry> = std::collections::VecDeque::new();
    let read = || format!("logs {}", c.name);
    let mut follower = Follower::after_reading(&files, |e: log::Entry| {
        match tail {
            _ if !wanted(&e) => {}
            None => out.print(&e)?,
            Some(0) => {}
            Some(n) => {
                if last.len() == n {
                    last.pop_front();
                }
                last.push_back(e);
            }
        }
        Ok(())
    })
    .with_context(read)?;
    for e in &last {
        out.print(e)?;
    }
    let Some(monitor) = monitor else { return Ok(ExitCode::SUCCESS) };
    loop {
        let ended = wait_exit(&monitor, Some(Duration::from_millis(100)));
        follower
            .poll(|e: log::Entry| {
                if wanted(&e) {
                    out.print(&e)?;
                }
                Ok(())
            })
            .with_context(read)?;
        if ended {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes log entries to our stdout or stderr, as they were written.
struct Printer {
    timestamps: bool,
}

impl Printer {
    fn print(&mut self, e: &log::Entry) -> anyhow::Result<()> {
        let stamp = if self.timestamps { format!("{} ", e.time) } else { String::new() };
        let written = if e.stream == "stderr" {
            let mut err = std::io::stderr().lock();
            write!(err, "{stamp}{}", e.log)
        } else {
            let mut o = std::io::stdout().lock();
            write!(o, "{stamp}{}", e.log).and_then(|()| o.flush())
        };
        match written {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(141),
            other => other.context("write the log out"),
        }
    }
}
