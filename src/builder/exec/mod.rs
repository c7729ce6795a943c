//! Executing a plan. Every step's result is an image in the store, recorded under the
//! step's key; a step whose key is recorded is not run again. One module per kind of
//! step (`config`, `run`, `copy`); the step-container sequence (create a container on
//! the stage's image, write into it, commit it as the next image, remove it) is
//! [`Executor::in_step_container`], shared by all.

mod config;
mod copy;
mod run;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use layers_store::containers::{CommitOptions, Lifetime, UpperDir};
use layers_store::metadata::ImageRow;
use layers_store::mount::{mount_spec, unmount_path, MountOptions};
use layers_store::oci::{rfc3339, ImageConfig};
use layers_store::{Compression, ContainerRow, Store};

use super::frontend::pattern::Patterns;
use super::plan::{Action, Base, Plan, Step};
pub use super::scratch::ScratchDir;

/// What every step of a build shares.
pub struct Executor<'a> {
    pub store: &'a Store,
    /// The context directory (canonical).
    pub context: PathBuf,
    /// `.dockerignore`.
    pub ignore: Patterns,
    pub no_cache: bool,
    pub quiet: bool,
    /// `SOURCE_DATE_EPOCH`: the time of every history entry, and no file newer.
    pub epoch: Option<i64>,
    /// Names the steps' containers apart from another build's.
    pub run_id: String,
    steps_done: usize,
    steps_total: usize,
    /// The image each planned stage ended with, as they are built.
    images: Vec<ImageRow>,
}

/// A stage as it goes: its image so far and its config.
pub struct State {
    /// `None`: `FROM scratch` before any step made an image.
    pub image: Option<ImageRow>,
    pub config: ImageConfig,
}

impl State {
    /// Takes on the config the plan says the step ends with.
    fn apply(&mut self, step: &Step) {
        self.config.config = Some(step.config.clone());
        if let Some(a) = &step.author {
            self.config.extra.insert("author".into(), serde_json::Value::String(a.clone()));
        }
    }
}

/// A read-only view of an image mounted for a step to read from; unmounted when dropped.
pub struct MountedView(PathBuf);

impl MountedView {
    fn of(store: &Store, image: &ImageRow, at: PathBuf) -> anyhow::Result<MountedView> {
        std::fs::create_dir(&at).with_context(|| format!("make {}", at.display()))?;
        mount_spec(&store.image_view(&image.manifest)?, &at, MountOptions::default())?;
        Ok(MountedView(at))
    }
}

impl Drop for MountedView {
    fn drop(&mut self) {
        let _ = unmount_path(&self.0, true);
    }
}

impl<'a> Executor<'a> {
    /// An executor of `plan`'s steps.
    pub fn new(store: &'a Store, context: PathBuf, ignore: Patterns, plan: &Plan) -> Executor<'a> {
        Executor {
            store,
            context,
            ignore,
            no_cache: false,
            quiet: false,
            epoch: None,
            run_id: format!("{}-{}", std::process::id(), crate::run::state::now()),
            steps_done: 0,
            steps_total: plan.stages.iter().map(|s| s.steps.len() + 1).sum(),
            images: Vec::new(),
        }
    }

    fn now(&self) -> String {
        rfc3339(self.epoch.unwrap_or_else(crate::run::state::now))
    }

    fn say(&self, line: &str) {
        if !self.quiet {
            eprintln!("{line}");
        }
    }

    /// Builds every stage of `plan`; returns the last one's image.
    pub fn execute(&mut self, plan: &Plan) -> anyhow::Result<ImageRow> {
        for stage in &plan.stages {
            self.steps_done += 1;
            self.say(&format!("STEP {}/{}: {}", self.steps_done, self.steps_total, stage.text));
            let mut state = match &stage.base {
                Base::Scratch => State { image: None, config: stage.base_config.clone() },
                Base::Image(row) => State { image: Some(row.clone()), config: stage.base_config.clone() },
                Base::Stage(i) => {
                    let row = self.images[*i].clone();
                    State { config: self.store.config(&row)?, image: Some(row) }
                }
            };
            for step in &stage.steps {
                self.step(plan, &mut state, step).with_context(|| step.at.clone())?;
            }
            let row = match state.image {
                Some(r) => r,
                None => {
                    let mut config = state.config.clone();
                    config.created = Some(self.now());
                    self.store.derive_image(None, &config, &[])?
                }
            };
            self.images.push(row);
        }
        self.images.last().cloned().context("nothing was built")
    }

    /// Runs one step (after FROM) on `state`, or finds it in the cache.
    fn step(&mut self, plan: &Plan, state: &mut State, step: &Step) -> anyhow::Result<()> {
        self.steps_done += 1;
        self.say(&format!("STEP {}/{}: {}", self.steps_done, self.steps_total, step.text));
        let started = Instant::now();
        if let Action::Arg = step.action {
            return Ok(());
        }
        if self.hit(state, step)? {
            return Ok(());
        }
        state.apply(step);
        match &step.action {
            Action::Arg => {}
            Action::Config { mkdir } => config::run(self, state, step, mkdir.as_deref())?,
            Action::Run(r) => run::run(self, state, step, r)?,
            Action::Copy(c) => copy::run(self, plan, state, step, c)?,
        }
        self.say(&format!("--> {} ({:.2}s)", short(state), started.elapsed().as_secs_f64()));
        Ok(())
    }

    /// A cache hit moves the stage onto the cached image.
    fn hit(&self, state: &mut State, step: &Step) -> anyhow::Result<bool> {
        if self.no_cache {
            return Ok(false);
        }
        let Some(row) = self.store.cached_step(&step.key)? else { return Ok(false) };
        state.config = self.store.config(&row)?;
        state.image = Some(row);
        self.say(&format!("--> CACHED {}", short(state)));
        Ok(true)
    }

    /// The stage's image so far (a scratch stage gets an empty one first).
    fn need_image(&self, state: &mut State) -> anyhow::Result<ImageRow> {
        if let Some(i) = &state.image {
            return Ok(i.clone());
        }
        state.config.created = Some(self.now());
        let row = self.store.derive_image(None, &state.config, &[])?;
        state.image = Some(row.clone());
        Ok(row)
    }

    /// The step-container sequence: a container on the stage's image, `work` on it,
    /// committed as the stage's next image under the step's key, removed either way.
    fn in_step_container(
        &self,
        state: &mut State,
        step: &Step,
        work: impl FnOnce(&ContainerRow) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let parent = self.need_image(state)?;
        let name = format!("layers-build-{}-{}", self.run_id, self.steps_done);
        let c = self.store.create_container(&parent.manifest, Some(&name), "layers-build", Lifetime::Ephemeral)?;
        let result = work(&c).and_then(|()| self.commit_step(state, &c, step));
        if let Ok(c) = self.store.resolve_container(&c.id) {
            let _ = self.store.remove_container(&c);
        }
        result
    }

    /// Runs `write` on the container's root filesystem: mounted, or its upper dir alone
    /// when nothing is below (scratch) or `upper_only` (a layer of its own, `--link`).
    fn write_root(
        &self,
        c: &ContainerRow,
        upper_only: bool,
        write: impl FnOnce(&Path) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let spec = self.store.container_mount(c)?;
        if spec.lowers.is_empty() || upper_only {
            let (upper, _) = spec.upper.clone().context("container without an upper dir")?;
            return write(&upper);
        }
        let merged = self.store.merged_dir(c);
        mount_spec(&spec, &merged, MountOptions::default())?;
        let written = write(&merged);
        unmount_path(&merged, false)?;
        written
    }

    /// Commits the step's container as the stage's next image.
    fn commit_step(&self, state: &mut State, c: &ContainerRow, step: &Step) -> anyhow::Result<()> {
        let c = self.store.resolve_container(&c.id)?;
        let opts = CommitOptions {
            compression: Compression::Gzip,
            created_by: step.text.clone(),
            comment: Some("layers build".into()),
            author: None,
            created: self.now(),
            tags: Vec::new(),
            mtime_clamp: self.epoch,
            config: Some(state.config.clone()),
            upper: UpperDir::Move,
        };
        let committed = self.store.commit_container(&c, &opts)?;
        let row = self.store.image(&committed.manifest)?.context("the committed image is gone")?;
        self.store.cache_step(&step.key, &row.manifest)?;
        state.config = self.store.config(&row)?;
        state.image = Some(row);
        Ok(())
    }

    /// Whether `path` (absolute) exists in the stage's image.
    fn visible(&self, state: &State, path: &str) -> anyhow::Result<bool> {
        let Some(image) = &state.image else { return Ok(path.trim_matches('/').is_empty()) };
        let lowers = self.store.lower_dirs(&image.manifest)?;
        Ok(layers_store::upper::in_lowers(&lowers, Path::new(path.trim_start_matches('/'))))
    }
}

fn short(state: &State) -> String {
    state.image.as_ref().map_or("scratch".into(), |i| i.config.hex()[..12].to_string())
}
