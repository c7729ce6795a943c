//! A container: its typed config, its dir, its state, and its life (create, run
//! attached or under a monitor, restart policy, stop, remove), callable without the
//! command line.
//!
//! A container's dir, `<root>/containers/<id>/` (0700), holds:
//!
//! ```text
//! upper/ work/ merged/  its overlay: changes, overlay's work dir, the mount point (the store's)
//! ephemeral             a `--rm` or build-step container: locked while its creator lives (the store's)
//! config.json           what it was created with (config.rs; older stores' options.json
//!                       is converted when the store is opened)
//! init/                 lower dir over the image with the mount points run needs (files.rs)
//! hostname hosts resolv.conf   mounted on the same files in its /etc (files.rs)
//! running.json          while it runs: host PIDs of its PID 1 and of its monitor, and
//!                       what `exec` needs (user, env, caps, seccomp) (state.rs)
//! exited.json           once it has stopped: exit code, when, whether memory ran out
//! restarts.json         times its restart policy started it again since `start`
//! monitor.json          the process that runs it and records how it ends, while it lives
//! monitor.log           what a detached container's monitor said (monitor.rs)
//! stop-requested        a stop was asked for: its restart policy does not start it again
//! attach.sock           while it runs: where `layers attach` connects (run/attach.rs)
//! log.json log.json.N   its output, stdout and stderr apart, each line timed (run/log.rs)
//! ```
//!
//! `dir.rs` names each of them; nothing else spells a file name.

pub mod config;
pub mod dir;
pub mod files;
pub mod lifecycle;
pub mod monitor;
pub mod names;
pub mod network;
pub mod process;
pub mod state;

pub use config::ContainerConfig;
pub use dir::ContainerDir;
pub use network::Network;
pub use process::{run_container, Output, RunSpec};
