//! `LAYERS_PHASES=FILE`: when a container starts and ends, each phase's end is
//! appended to FILE as `NAME SECONDS` (CLOCK_REALTIME, the clock of bash's
//! `$EPOCHREALTIME`), by `layers` and by the container's first process up to its
//! exec. `bench/run.sh` reads them into its per-phase breakdown. Unset, a mark costs
//! one load.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::OnceLock;

/// The file, opened on the first mark (before any fork, so the child has it too; it
/// is close-on-exec, so the command never does).
static SINK: OnceLock<Option<OwnedFd>> = OnceLock::new();

fn sink() -> Option<&'static OwnedFd> {
    SINK.get_or_init(|| {
        let path = std::env::var_os("LAYERS_PHASES")?;
        let f = std::fs::OpenOptions::new().create(true).append(true).open(path).ok()?;
        Some(OwnedFd::from(f))
    })
    .as_ref()
}

/// Records that phase `name` ended now.
pub fn mark(name: &str) {
    let Some(fd) = sink() else { return };
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    // One write(2) per line: lines from the parent and the child never interleave.
    let mut line = Vec::with_capacity(64);
    let _ = writeln!(line, "{name} {}.{:09}", now.tv_sec, now.tv_nsec);
    let _ = rustix::io::write(fd, &line);
}
