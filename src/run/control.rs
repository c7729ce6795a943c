//! Signalling and waiting for a container some `layers run` (often a detached one) is
//! running, through pidfds, so a recycled PID can never be hit.

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use anyhow::Context;
use layers_store::{ContainerRow, Store};
use rustix::process::{pidfd_open, pidfd_send_signal, Pid, PidfdFlags, Signal};

/// A pidfd for a host PID.
pub fn pidfd(pid: u32) -> Option<OwnedFd> {
    pidfd_open(Pid::from_raw(pid as i32)?, PidfdFlags::empty()).ok()
}

/// Waits until the process behind `fd` ends, or `limit` passes; true if it ended.
pub fn wait_exit(fd: &OwnedFd, limit: Option<Duration>) -> bool {
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
pub fn stop_signal(store: &Store, c: &ContainerRow) -> Signal {
    let configured = || -> Option<Signal> {
        let image = store.images().get(&c.image).ok()??;
        parse_signal(&store.images().config(&image).ok()?.config?.stop_signal?).ok()
    };
    configured().unwrap_or(Signal::TERM)
}

/// For `rm -f`: SIGKILL the container's PID 1 (`pid`), `thaw` it (a paused
/// container's processes act on the signal only when thawed), and wait until its
/// monitor (`monitor`, the `layers run` that cleans up after it) is gone too.
pub fn kill_and_wait(pid: u32, monitor: u32, thaw: impl FnOnce() -> anyhow::Result<()>) {
    let monitor = pidfd(monitor);
    if let Some(fd) = pidfd(pid) {
        if pidfd_send_signal(&fd, Signal::KILL).is_ok() {
            let _ = thaw();
            wait_exit(&fd, Some(Duration::from_secs(10)));
        }
    }
    if let Some(m) = monitor {
        wait_exit(&m, Some(Duration::from_secs(10)));
    }
}
