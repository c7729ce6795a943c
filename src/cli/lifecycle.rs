//! A created container's life: `start` (attached, or under a monitor of its own),
//! `restart`, `rename`, and the restart policy, which the monitor carries out.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use layers_store::{ContainerRow, Store};

use super::options::{ContainerOptions, Mount};
use crate::run::container::{self, Output};
use crate::run::{detach, state};

/// Arguments of `layers start`.
#[derive(Args)]
pub struct StartArgs {
    /// Attach to its output (and wait for it, exiting with its code).
    #[arg(short, long)]
    attach: bool,
    /// Attach our stdin as well.
    #[arg(short, long)]
    interactive: bool,
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Arguments of `layers restart`.
#[derive(Args)]
pub struct RestartArgs {
    /// Seconds to wait for it to stop before SIGKILL.
    #[arg(short, long, default_value_t = 10)]
    time: u64,
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Arguments of `layers rename`.
#[derive(Args)]
pub struct RenameArgs {
    /// Container.
    container: String,
    /// Its new name.
    name: String,
}

/// Restarts wait 100 ms, then twice as long each time, up to this (as Docker).
const MAX_RESTART_DELAY: Duration = Duration::from_secs(60);
/// A run at least this long resets the delay.
const RAN_LONG_ENOUGH: Duration = Duration::from_secs(10);

/// Runs a created container once (attached: its output is ours too), or, under a
/// monitor (`detached`), again and again as its restart policy says until it stops
/// for good or is asked to. Returns how its last run exited.
pub fn run_created(store: &Store, c: &ContainerRow, o: &ContainerOptions, detached: bool) -> anyhow::Result<u8> {
    let img = store
        .image(&c.image)?
        .with_context(|| format!("start {}: its image {} is gone from the store", c.name, c.image))?;
    let config = store.config(&img).with_context(|| format!("read config of {}", o.image))?.config.unwrap_or_default();
    populate_volumes(store, c, o, &img)?;
    let log = o.log_options()?;
    state::set_monitor(store, &c.id, false);
    state::clear_stop(store, &c.id);
    state::set_restarts(store, &c.id, 0);
    let mut restarts = 0;
    let mut delay = Duration::from_millis(100);
    let result = loop {
        let began = Instant::now();
        let spec = o.spec(store, c.short_id(), Output::Logged { log, echo: !detached });
        let ended = match spec.and_then(|spec| container::run_container(store, c, &config, &o.image, &spec)) {
            Ok(e) => e,
            Err(e) => break Err(e),
        };
        if ended.oom_killed {
            let limit = ended.memory_limit.map(|m| format!(" (limit {})", o.memory.clone().unwrap_or(m.to_string())));
            eprintln!("layers: container killed: out of memory{}", limit.unwrap_or_default());
        }
        if !detached || state::stop_requested(store, &c.id) || !o.restart.again(ended.code, restarts) {
            break Ok(ended.code);
        }
        state::set_monitor(store, &c.id, true);
        if began.elapsed() >= RAN_LONG_ENOUGH {
            delay = Duration::from_millis(100);
        }
        // Waiting to restart, a stop still ends it.
        let until = Instant::now() + delay;
        while Instant::now() < until && !state::stop_requested(store, &c.id) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if state::stop_requested(store, &c.id) {
            break Ok(ended.code);
        }
        delay = (delay * 2).min(MAX_RESTART_DELAY);
        restarts += 1;
        state::set_restarts(store, &c.id, restarts);
        state::set_monitor(store, &c.id, false);
    };
    state::clear_monitor(store, &c.id);
    result
}

/// Docker's copy-up: an empty volume mounted where the image has a directory is first
/// filled with that directory's content (owners and modes kept; `nocopy` skips it).
/// The image's tree is read beneath its root (`RESOLVE_IN_ROOT`): no symlink in the
/// image leads the copy out of it.
fn populate_volumes(
    store: &Store,
    c: &ContainerRow,
    o: &ContainerOptions,
    image: &layers_store::metadata::ImageRow,
) -> anyhow::Result<()> {
    use crate::builder::context::{self, Attrs, Tree};
    for m in o.mounts()? {
        let Mount::Volume { name: Some(name), target, nocopy: false, .. } = m else { continue };
        let data = store.volume_path(&name);
        let empty = std::fs::read_dir(&data).with_context(|| format!("read volume {name}"))?.next().is_none();
        if !empty {
            continue;
        }
        let scratch = store.scratch_dir("volume-copy")?;
        let filled = (|| {
            let view = crate::builder::exec::MountedView::of(store, image, scratch.join("view"))?;
            let tree = Tree::open(view.path(), &format!("image of {}", c.name))?;
            let rel = std::path::PathBuf::from(target.trim_start_matches('/'));
            if rel.as_os_str().is_empty() || !tree.is_dir(&rel) {
                return Ok(());
            }
            let plan = context::plan(&tree, &[rel], "/", &Default::default())?;
            context::copy(&tree, &plan, &data, Attrs::kept())
        })();
        let _ = std::fs::remove_dir_all(&scratch);
        filled.with_context(|| format!("fill volume {name} from the image's {target}"))?;
    }
    Ok(())
}

/// `layers start`: each container under a monitor of its own (printing its name, as
/// Docker), or with `-a` attached in this process.
pub fn start(store: &Store, a: &StartArgs) -> anyhow::Result<ExitCode> {
    if detach::is_monitor() {
        // The monitor of one container (see below).
        let c = store.resolve_container(&a.containers[0])?;
        let o = ContainerOptions::load(store, &c.id, &c.image.to_string());
        let code = run_created(store, &c, &o, true)?;
        return finish(store, &c, &o, code).map(|()| ExitCode::from(code));
    }
    if a.attach || a.interactive {
        let [name] = a.containers.as_slice() else { bail!("start -a: one container at a time") };
        let c = store.resolve_container(name)?;
        let mut o = ContainerOptions::load(store, &c.id, &c.image.to_string());
        o.interactive &= a.interactive;
        check_tty(o.tty, o.interactive)?;
        if state::running(store, &c).is_some() {
            // Docker attaches to a container already running.
            return super::attach::attach_to(store, &c, a.interactive, true, None);
        }
        let code = run_created(store, &c, &o, false)?;
        finish(store, &c, &o, code)?;
        return Ok(ExitCode::from(code));
    }
    Ok(super::each(&a.containers, |name| {
        let c = store.resolve_container(name)?;
        if state::running(store, &c).is_none() {
            start_detached(store, &c)?;
        }
        outln!("{name}");
        Ok(())
    }))
}

/// Starts a monitor for `c` (`layers start ID`, as the monitor) and waits until the
/// container runs or has failed to.
fn start_detached(store: &Store, c: &ContainerRow) -> anyhow::Result<()> {
    let args = [std::ffi::OsStr::new("--root"), store.root().as_os_str(), "start".as_ref(), c.id.as_ref()];
    let out = detach::spawn_monitor(&args)?;
    match out {
        detach::Started::Running(_) => Ok(()),
        detach::Started::Failed { code, stderr } => {
            bail!("start {}: {} (exit {code})", c.name, stderr.trim().trim_start_matches("layers: "))
        }
    }
}

/// After the last run: `--rm` removes the container.
fn finish(store: &Store, c: &ContainerRow, o: &ContainerOptions, _code: u8) -> anyhow::Result<()> {
    if o.rm {
        let c = store.resolve_container(&c.id)?;
        store.remove_container(&c).with_context(|| format!("remove container {}", c.name))?;
    }
    Ok(())
}

/// `layers restart`: stop (if running), then start under a monitor.
pub fn restart(store: &Store, a: &RestartArgs) -> anyhow::Result<ExitCode> {
    Ok(super::each(&a.containers, |name| {
        let c = store.resolve_container(name)?;
        super::control::stop_one(store, &c, Duration::from_secs(a.time))?;
        start_detached(store, &c)?;
        outln!("{name}");
        Ok(())
    }))
}

/// `layers rename`.
pub fn rename(store: &Store, a: &RenameArgs) -> anyhow::Result<ExitCode> {
    let c = store.resolve_container(&a.container)?;
    store.rename_container(&c, &a.name)?;
    Ok(ExitCode::SUCCESS)
}

/// Refuses `-it` when our stdin is not a terminal, as Docker does: its bytes would
/// go to a pty that never sees their end (`echo x | run -it IMAGE cat` never ended).
pub fn check_tty(tty: bool, stdin_attached: bool) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    if tty && stdin_attached && !std::io::stdin().is_terminal() {
        bail!("the input device is not a TTY (drop -t, or give -i a terminal)");
    }
    Ok(())
}
