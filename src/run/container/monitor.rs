//! A detached container runs under a monitor of its own (a `layers` process, as
//! conmon is for podman) that waits for it, applies its restart policy, records how it
//! ended and cleans up. The monitor is started with the container's ID alone and reads
//! its `config.json`; it reports "running" or why it could not start over a pipe,
//! and writes anything else it has to say to the container's `monitor.log`.

use std::cell::Cell;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use anyhow::Context;
use layers_store::{ContainerRow, Store};

use super::dir::{ContainerDir, File};

/// The hidden verb that makes a `layers` process a container's monitor.
pub const VERB: &str = "container-monitor";
/// The monitor's descriptor for its report to the process that started it.
const REPORT_FD: i32 = 3;
/// The monitor's descriptor for the creator lock of a container it removes (`--rm`).
const LOCK_FD: i32 = 4;
/// The flag that says a creator lock is passed at [`LOCK_FD`].
pub const LOCK_FLAG: &str = "--creator-lock";
/// The most a report holds (a message and a code).
const MAX_REPORT: u64 = 64 * 1024;

/// What the monitor reports.
#[derive(serde::Serialize, serde::Deserialize)]
enum Message {
    Running,
    Failed { code: u8, message: String },
}

/// How starting a monitor went.
pub enum Started {
    /// The container runs.
    Running,
    /// It did not start: the command's exit code (or `None`: the monitor's own
    /// failure) and why.
    Failed { code: Option<u8>, message: String },
}

/// Starts the monitor of created container `c` and waits until the container runs or
/// has failed to start.
pub fn spawn(store: &Store, c: &ContainerRow) -> anyhow::Result<Started> {
    let exe = std::env::current_exe().context("find the layers binary")?;
    let dir = ContainerDir::of(store, &c.id);
    let log_path = dir.file(File::MonitorLog);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("open {}", log_path.display()))?;
    let root = std::path::absolute(store.root()).context("find the store's path")?;
    let (report_r, report_w) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).context("make the monitor's report pipe")?;
    let mut cmd = Command::new(exe);
    cmd.arg("--root").arg(root).arg(VERB).arg(&c.id);
    let mut fds = vec![(report_w, REPORT_FD)];
    if let Some(lock) = store.snapshots().creator_lock(c) {
        cmd.arg(LOCK_FLAG);
        fds.push((lock, LOCK_FD));
    }
    crate::run::kernel::pass_fds(&mut cmd, fds);
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone().context("open the monitor's log")?)
        .stderr(log)
        // Its own process group: a Ctrl-C or hangup at this terminal is not for it.
        .process_group(0);
    let mut monitor = cmd.spawn().context("start the container's monitor")?;
    // Our end of its pipe goes with `cmd`: EOF then means the monitor has reported or is gone.
    drop(cmd);
    // One message, read up to its end and not to EOF: the monitor may still hold its
    // end (rootless, the report is sent from a fork of it). An unreadable report is no
    // report: the monitor's own end is what then says why.
    let report = std::fs::File::from(report_r).take(MAX_REPORT);
    match serde_json::Deserializer::from_reader(report).into_iter::<Message>().next() {
        Some(Ok(Message::Running)) => Ok(Started::Running),
        Some(Ok(Message::Failed { code, message })) => {
            let _ = monitor.wait();
            Ok(Started::Failed { code: Some(code), message })
        }
        _ => {
            let status = monitor.wait().context("wait for the container's monitor")?;
            Ok(Started::Failed {
                code: None,
                message: format!("its monitor ended ({status}) before the container started: {}", last_line(&log_path)),
            })
        }
    }
}

/// The last line the monitor wrote to its log, for a monitor that died without a report.
fn last_line(path: &std::path::Path) -> String {
    let text = crate::bounded::read_text_file(path, 1 << 20, "monitor log").unwrap_or_default();
    text.lines().last().unwrap_or("(nothing in its log)").trim_start_matches("layers: ").to_string()
}

/// The monitor's end of the report pipe.
pub struct Report(Cell<Option<std::fs::File>>);

impl Report {
    /// In the monitor: the descriptors its starter passed (the creator lock, when
    /// `lock`, is handed to the store to hold for `c`).
    pub fn inherited(store: &Store, c: &ContainerRow, lock: bool) -> anyhow::Result<Report> {
        let fd: OwnedFd = crate::run::kernel::take_passed_fd(REPORT_FD)
            .with_context(|| format!("{VERB}: no report descriptor: this verb is for layers itself"))?;
        if lock {
            let lock = crate::run::kernel::take_passed_fd(LOCK_FD).context("the creator lock was not passed")?;
            store.snapshots().hold_creator_lock(c, lock);
        }
        Ok(Report(Cell::new(Some(std::fs::File::from(fd)))))
    }

    /// The container runs (said once; later restarts say nothing).
    pub fn running(&self) {
        self.send(&Message::Running);
    }

    /// It could not start: `code` is what `run` would exit with.
    pub fn failed(&self, code: u8, message: String) {
        self.send(&Message::Failed { code, message });
    }

    fn send(&self, m: &Message) {
        if let Some(mut f) = self.0.take() {
            let _ = serde_json::to_vec(m).map(|bytes| f.write_all(&bytes));
        }
    }
}
