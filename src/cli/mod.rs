//! The verbs of the command line, one file per group: each parses its flags and
//! composes the store, the registry client, the builder and the runtime.

pub mod archive;
pub mod ask;
pub mod attach;
pub mod budget;
pub mod build;
pub mod build_output;
pub mod containers;
pub mod control;
pub mod cp;
pub mod df;
pub mod events;
pub mod history;
pub mod images;
pub mod import;
pub mod inspect;
pub mod lifecycle;
pub mod login;
pub mod maintenance;
pub mod management;
pub mod network;
pub mod options;
pub mod port;
pub mod prune;
pub mod ps;
pub mod pull;
pub mod push;
pub mod run;
pub mod stats;
pub mod system;
pub mod top;
pub mod unknown_flag;
pub mod volume;

/// Runs `verb` on every argument, as Docker's `rm`, `rmi`, `stop`, `kill` and `wait`
/// do: a failure is reported on its own line and the rest still go; the exit status
/// says whether any failed.
pub fn each<T>(items: &[T], mut verb: impl FnMut(&T) -> anyhow::Result<()>) -> std::process::ExitCode {
    let mut failed = false;
    for item in items {
        if let Err(e) = verb(item) {
            eprintln!("layers: {}", crate::one_line(&e));
            failed = true;
        }
    }
    if failed {
        std::process::ExitCode::from(crate::EXIT_ERROR)
    } else {
        std::process::ExitCode::SUCCESS
    }
}
