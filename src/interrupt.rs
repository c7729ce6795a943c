//! A command that stages content (pull, load, import, build, commit) and is stopped
//! by a signal (SIGINT, SIGTERM, even SIGKILL) left what it staged under the store's
//! `tmp/` (up to a layer's worth of bytes; on a tmpfs store, memory) until the next
//! command's sweep. A helper process forked at its start waits for it to end,
//! however it ends, and removes what it staged. A process, not a thread: `build`
//! starts containers, which needs a single-threaded `layers`.

use std::path::Path;

/// Forks the helper for a store at `root`. Only while single-threaded (else nothing
/// is forked: the next command's sweep still removes what is left).
pub fn clean_staging_when_gone(root: &Path) -> anyhow::Result<()> {
    let threads = std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0);
    if threads != 1 {
        return Ok(());
    }
    // Absolute: the helper works from `/`.
    let root = std::path::absolute(root)?;
    let pid = std::process::id();
    crate::run::fork_survivor(move || {
        layers_store::store::remove_staged_by(&root, pid);
    })
}
