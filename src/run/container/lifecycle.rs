//! A container's life: created with its config, run attached or under a monitor of
//! its own (started again as its restart policy says), stopped, removed.

use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use layers_store::meta::ImageRow;
use layers_store::snapshots::containers::Lifetime;
use layers_store::{ContainerRow, Store};
use rustix::process::{pidfd_send_signal, Signal};

use super::config::{ContainerConfig, Flag, Source};
use super::dir::ContainerDir;
use super::monitor::{self, Report, Started};
use super::process::{self, Output};
use super::state;
use crate::events::Actor;
use crate::run::control::{pidfd, stop_signal, wait_exit};
use crate::transfer::Quiesced;

/// Restarts wait 100 ms, then twice as long each time, up to this (as Docker).
const MAX_RESTART_DELAY: Duration = Duration::from_secs(60);
/// A run at least this long resets the delay.
const RAN_LONG_ENOUGH: Duration = Duration::from_secs(10);

/// Creates a container named `name` on `image` with `config`: its host paths readied,
/// its volumes made (an anonymous one gets its name here) and its config kept, which
/// is returned with it. On failure nothing of it is left.
pub fn create(
    store: &Store,
    image: &ImageRow,
    name: Option<&str>,
    mut config: ContainerConfig,
    lifetime: Lifetime,
) -> anyhow::Result<(ContainerRow, ContainerConfig)> {
    config.check()?;
    config.prepare_mounts()?;
    let c = match name {
        Some(n) => store.snapshots().create(&image.manifest, Some(n), &config.image, lifetime)?,
        None => create_unnamed(store, image, &config.image, lifetime)?,
    };
    let made = attach_volumes(store, &c, &mut config).and_then(|()| config.save(&ContainerDir::of(store, &c.id)));
    if let Err(e) = made {
        let _ = store.snapshots().remove(&c);
        return Err(e);
    }
    Actor::container(&c, &config.image, &config.labels).record(store, "create");
    Ok((c, config))
}

/// A container with a Docker-style random name (`adjective_surname`), drawn again
/// while the one drawn is taken; after a few draws a number is appended, as Docker does.
fn create_unnamed(store: &Store, image: &ImageRow, base: &str, lifetime: Lifetime) -> anyhow::Result<ContainerRow> {
    for attempt in 0..16 {
        let mut name = super::names::random();
        if attempt >= 8 {
            name = format!("{name}{attempt}");
        }
        match store.snapshots().create(&image.manifest, Some(&name), base, lifetime) {
            Err(e) if e.kind() == layers_store::ErrorKind::AlreadyExists => continue,
            made => return Ok(made?),
        }
    }
    bail!("create container: no free name found in 16 draws; give one with --name")
}

/// Makes the named volumes that do not exist yet, names the anonymous ones, and
/// records that `c` mounts them.
fn attach_volumes(store: &Store, c: &ContainerRow, config: &mut ContainerConfig) -> anyhow::Result<()> {
    for m in config.mounts.iter_mut() {
        let Source::Volume { name, nocopy } = &mut m.source else { continue };
        let (row, _) = store.volumes().create(name.as_deref(), &Default::default())?;
        store.volumes().attach(c, &row.name)?;
        if let Flag::Volume(text) = &mut m.flag {
            let mut opts = vec![if m.read_only { "ro" } else { "rw" }];
            if *nocopy {
                opts.push("nocopy");
            }
            *text = format!("{}:{}:{}", row.name, m.target, opts.join(","));
        }
        *name = Some(row.name);
    }
    Ok(())
}

/// How a container's last run ended.
pub struct Outcome {
    /// Its exit code as a shell reports it.
    pub code: u8,
    /// Why its command could not be run, when it could not.
    pub not_run: Option<String>,
}

/// Runs created `c` with `config` (as kept, stdin attached only if the caller asks)
/// once with our terminal (its output is ours too). Removed after when `--rm`.
pub fn run_attached(
    store: &Store,
    c: &ContainerRow,
    config: &ContainerConfig,
    q: &Quiesced,
) -> anyhow::Result<Outcome> {
    let outcome = run_created(store, c, config, None, q);
    finish(store, c, config)?;
    crate::run::phases::mark("removed (--rm)");
    outcome
}

/// Starts created `c` under a monitor of its own and waits until it runs or has failed
/// to start: `Err` names why (the command's own code, 126 or 127, in `NotStarted`).
pub fn start_detached(store: &Store, c: &ContainerRow) -> anyhow::Result<()> {
    match monitor::spawn(store, c)? {
        Started::Running => Ok(()),
        Started::Failed { code: Some(code), message } => Err(NotStarted { code, message }.into()),
        Started::Failed { code: None, message } => bail!("start {}: {message}", c.name),
    }
}

/// A detached container's command could not be run: the code `run` exits with.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct NotStarted {
    /// 126 (not runnable), 127 (not found), or what it exited with at once.
    pub code: u8,
    pub message: String,
}

/// In a container's monitor (the hidden verb that [`start_detached`] runs): runs it
/// as its restart policy says until it stops for good or is asked to; `lock`: its
/// starter passed the creator lock of a `--rm` container. Returns its last exit code.
pub fn serve_monitor(store: &Store, id: &str, lock: bool, q: &Quiesced) -> anyhow::Result<u8> {
    let c = store.snapshots().resolve(id)?;
    let report = Rc::new(Report::inherited(store, &c, lock)?);
    let config = match ContainerConfig::load(&ContainerDir::of(store, &c.id), &c.image.to_string()) {
        Ok(config) => config,
        Err(e) => {
            report.failed(125, format!("{e:#}"));
            return Err(e);
        }
    };
    let outcome = run_created(store, &c, &config, Some(Rc::clone(&report)), q);
    match &outcome {
        Ok(Outcome { code, not_run: Some(message) }) => report.failed(*code, message.clone()),
        Err(e) => report.failed(125, format!("{e:#}")),
        Ok(_) => {}
    }
    finish(store, &c, &config)?;
    outcome.map(|o| o.code)
}

/// Runs created `c` once (attached: `report` is `None`), or under its monitor again
/// and again as its restart policy says. Returns how its last run ended.
fn run_created(
    store: &Store,
    c: &ContainerRow,
    config: &ContainerConfig,
    report: Option<Rc<Report>>,
    q: &Quiesced,
) -> anyhow::Result<Outcome> {
    let detached = report.is_some();
    let img = store
        .images()
        .get(&c.image)?
        .with_context(|| format!("start {}: its image {} is gone from the store", c.name, c.image))?;
    let image_config = store
        .images()
        .config(&img)
        .with_context(|| format!("read config of {}", config.image))?
        .config
        .unwrap_or_default();
    crate::run::phases::mark("image config read");
    populate_volumes(store, c, config, &img)?;
    state::set_monitor(store, &c.id, false);
    state::clear_stop(store, &c.id);
    state::set_restarts(store, &c.id, 0);
    crate::run::phases::mark("state reset");
    let actor = Actor::container(c, &config.image, &config.labels);
    let mut restarts = 0;
    let mut delay = Duration::from_millis(100);
    let result = loop {
        let began = Instant::now();
        let spec = config.spec(store, c.short_id(), Output::Logged { log: config.log, echo: !detached });
        let spec = spec.map(|s| process::RunSpec { report: report.clone(), events: Some(actor.clone()), ..s });
        let ended = match spec.and_then(|s| process::run_container(store, c, &image_config, &config.image, &s, q)) {
            Ok(e) => e,
            Err(e) => break Err(e),
        };
        if ended.oom_killed {
            let limit =
                ended.memory_limit.map(|m| format!(" (limit {})", config.memory_text().unwrap_or(m.to_string())));
            eprintln!("layers: container killed: out of memory{}", limit.unwrap_or_default());
        }
        let stop = ended.not_run.is_some() || !detached || state::stop_requested(store, &c.id);
        if stop || !config.restart.again(ended.code, restarts) {
            break Ok(Outcome { code: ended.code, not_run: ended.not_run });
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
            break Ok(Outcome { code: ended.code, not_run: None });
        }
        delay = (delay * 2).min(MAX_RESTART_DELAY);
        restarts += 1;
        state::set_restarts(store, &c.id, restarts);
        state::set_monitor(store, &c.id, false);
    };
    state::clear_monitor(store, &c.id);
    result
}

/// After the last run: `--rm` removes the container.
fn finish(store: &Store, c: &ContainerRow, config: &ContainerConfig) -> anyhow::Result<()> {
    if config.auto_remove {
        remove(store, c)?;
    }
    Ok(())
}

/// Removes `c` (stopped) with its dirs.
pub fn remove(store: &Store, c: &ContainerRow) -> anyhow::Result<()> {
    let c = store.snapshots().resolve(&c.id)?;
    destroy(store, &c).with_context(|| format!("remove container {}", c.name))
}

/// Removes container `c`'s row and dirs, and records its `destroy`.
pub fn destroy(store: &Store, c: &ContainerRow) -> layers_store::Result<()> {
    // Read before its dir (and the config in it) goes.
    let actor = actor(store, c);
    store.snapshots().remove(c)?;
    actor.record(store, "destroy");
    Ok(())
}

/// Container `c` as its events name it, from its kept config (the image as the
/// user named it, its labels).
pub fn actor(store: &Store, c: &ContainerRow) -> Actor {
    let image = c.image.to_string();
    match ContainerConfig::load(&ContainerDir::of(store, &c.id), &image) {
        Ok(config) => Actor::container(c, &config.image, &config.labels),
        Err(_) => Actor::container(c, &image, &Default::default()),
    }
}

/// Stops `c`: its stop signal, then SIGKILL after `grace`; its restart policy does not
/// start it again. Returns once its monitor has recorded how it ended.
pub fn stop(store: &Store, c: &ContainerRow, grace: Duration) -> anyhow::Result<()> {
    state::request_stop(store, &c.id);
    if let Some(fd) = state::running(store, c).and_then(|r| pidfd(r.pid)) {
        let signal = stop_signal(store, c);
        let actor = actor(store, c);
        actor.clone().with("signal", signal.as_raw().to_string()).record(store, "kill");
        let _ = pidfd_send_signal(&fd, signal);
        state::thaw_to_end(c).with_context(|| format!("stop {}: unpause it", c.name))?;
        if !wait_exit(&fd, Some(grace)) {
            actor.with("signal", Signal::KILL.as_raw().to_string()).record(store, "kill");
            pidfd_send_signal(&fd, Signal::KILL).with_context(|| format!("stop {}: kill it", c.name))?;
            wait_exit(&fd, None);
        }
    }
    if let Some(m) = state::monitor(store, c) {
        wait_exit(&m, Some(Duration::from_secs(10)));
    }
    Ok(())
}

/// Docker's copy-up: an empty volume mounted where the image has a directory is first
/// filled with that directory's content (owners and modes kept; `nocopy` skips it).
/// The image's tree is read beneath its root (`RESOLVE_IN_ROOT`): no symlink in the
/// image leads the copy out of it.
fn populate_volumes(store: &Store, c: &ContainerRow, config: &ContainerConfig, image: &ImageRow) -> anyhow::Result<()> {
    use layers_store::fsroot::{self, Attrs, Tree};
    for m in &config.mounts {
        let Source::Volume { name: Some(name), nocopy: false } = &m.source else { continue };
        let data = store.volumes().path(name);
        let empty = std::fs::read_dir(&data).with_context(|| format!("read volume {name}"))?.next().is_none();
        if !empty {
            continue;
        }
        let scratch = store.scratch_dir("volume-copy")?;
        let filled = (|| -> anyhow::Result<()> {
            let view = store.snapshots().mount_view(&image.manifest, scratch.join("view"))?;
            let tree = Tree::open(view.path(), &format!("image of {}", c.name))?;
            let rel = std::path::PathBuf::from(m.target.trim_start_matches('/'));
            if rel.as_os_str().is_empty() || !tree.is_dir(&rel) {
                return Ok(());
            }
            let plan = fsroot::plan(&tree, &[rel], "/", &fsroot::Everything)?;
            Ok(fsroot::copy(&tree, &plan, &data, Attrs::kept())?)
        })();
        let _ = std::fs::remove_dir_all(&scratch);
        filled.with_context(|| format!("fill volume {name} from the image's {}", m.target))?;
    }
    Ok(())
}
