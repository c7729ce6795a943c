//! `layers run -d`: the container runs under a `layers run` of its own (the monitor,
//! as conmon is for podman) that waits for it, records how it ended and cleans up.
//! The command the user typed starts the monitor, waits until the container has
//! started (or failed to), prints its ID and leaves.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode, Stdio};

use anyhow::Context;

/// Set in the monitor's environment: "you are the monitor, not the front".
const MONITOR_ENV: &str = "LAYERS_DETACHED_MONITOR";

/// Whether this `layers run -d` is the monitor.
pub fn is_monitor() -> bool {
    std::env::var_os(MONITOR_ENV).is_some()
}

/// How starting a monitor went.
pub enum Started {
    /// The container runs: its ID.
    Running(String),
    /// The monitor gave up: its exit code and what it said.
    Failed { code: u8, stderr: String },
}

/// The front: starts the monitor with the same arguments and reports as `docker run -d` does.
pub fn start() -> anyhow::Result<ExitCode> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    match spawn_monitor(&args)? {
        Started::Running(id) => {
            outln!("{id}");
            Ok(ExitCode::SUCCESS)
        }
        Started::Failed { code, stderr } => {
            eprint!("{stderr}");
            Ok(ExitCode::from(code))
        }
    }
}

/// Starts `layers ARGS` as a container's monitor, in a process group of its own, and
/// waits until the container has started (or failed to).
pub fn spawn_monitor<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> anyhow::Result<Started> {
    let exe = std::env::current_exe().context("find the layers binary")?;
    let mut monitor = Command::new(exe)
        .args(args)
        .env(MONITOR_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: a Ctrl-C or hangup at this terminal is not for it.
        .process_group(0)
        .spawn()
        .context("start the container's monitor")?;
    // Both pipes reach EOF when the container has started (the monitor moves its output
    // to the log) or when the monitor gave up.
    let (mut id, mut err) = (String::new(), String::new());
    if let Some(mut out) = monitor.stdout.take() {
        let _ = out.read_to_string(&mut id);
    }
    if let Some(mut e) = monitor.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    if !id.trim().is_empty() {
        return Ok(Started::Running(id.trim().to_string()));
    }
    let status = monitor.wait().context("wait for the container's monitor")?;
    Ok(Started::Failed { code: status.code().unwrap_or(crate::EXIT_FAILURE as i32) as u8, stderr: err })
}

/// In the monitor, once the container runs: tell the front its ID, then write
/// anything more of ours (an out-of-memory report...) to `own_log` in its dir.
pub fn started(id: &str, own_log: &std::path::Path) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{id}").and_then(|()| out.flush());
    let file = std::fs::OpenOptions::new().create(true).append(true).open(own_log);
    let null = std::fs::OpenOptions::new().write(true).open("/dev/null");
    if let Ok(f) = file.or(null) {
        let _ = rustix::stdio::dup2_stdout(&f);
        let _ = rustix::stdio::dup2_stderr(&f);
    }
}
