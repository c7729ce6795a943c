//! Executing a plan. Every step's result is an image in the store, recorded under the
//! step's key; a step whose key is recorded is not run again. One module per kind of
//! step (`config`, `run`, `copy`); the step-container sequence (create a container on
//! the stage's image, write into it, commit it as the next image, remove it) is
//! [`Executor::in_step_container`], shared by all.

mod config;
// Scratch dirs of the store's (here-documents, downloads, archive extraction, views);
// sources and destinations are reached through `fsroot`.
#[allow(clippy::disallowed_methods)]
mod copy;
// Scratch dirs and views of the store's, and a cache-mount dir named by its digest;
// bind sources are resolved beneath their root (`fsroot::resolve_dest`) before the join.
#[allow(clippy::disallowed_methods)]
mod run;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use layers_store::images::oci::{rfc3339, ImageConfig};
use layers_store::meta::ImageRow;
use layers_store::snapshots::commit::{CommitOptions, UpperDir};
use layers_store::snapshots::containers::Lifetime;
use layers_store::snapshots::mount::{mount_spec, unmount_path, MountOptions};
use layers_store::{Compression, ContainerRow, Store};

use super::cache::Imported;
use super::frontend::pattern::Patterns;
use super::plan::{Action, Base, Plan, ReadSet, Step};
pub use super::scratch::ScratchDir;
use layers_store::content::digest::Digest;

/// What every step of a build shares.
pub struct Executor<'a> {
    pub store: &'a Store,
    /// Pulls and cache fetches run here; quiesced before a RUN starts its container.
    pub transfers: &'a crate::transfer::Transfers,
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
    /// Steps of `--cache-from` sources.
    pub cache: Imported,
    steps_done: usize,
    steps_total: usize,
    /// How each planned stage ended, as they are built.
    stages: Vec<State>,
    /// Every step that made an image, in order: what `--cache-to` exports.
    pub made: Vec<Made>,
    /// Pulls a FROM image planned as remote (`Base::Remote`).
    pub pull_base: Option<PullBase<'a>>,
    /// The stages whose images the target's image is made of: their imported
    /// steps' layers are fetched as soon as they hit (unless `leave_remote`).
    final_chain: Vec<bool>,
    /// A target image from a registry cache is recorded as remote, not fetched.
    pub leave_remote: bool,
    /// `--secret`s, by id, for `RUN --mount=type=secret`.
    pub secrets: crate::builder::secrets::Secrets,
    /// `--ssh` agents, by id, for `RUN --mount=type=ssh`.
    pub ssh: crate::builder::secrets::SshAgents,
}

pub use super::cache::Made;

/// A stage as it goes: its image so far and its config.
#[derive(Clone)]
pub struct State {
    /// `None`: `FROM scratch` before any step made an image, or an imported step
    /// not made locally yet (`pending`).
    pub image: Option<ImageRow>,
    /// What the stage is at when its image is not here yet, until it is needed.
    pub pending: Option<Pending>,
    pub config: ImageConfig,
    /// The stage's base image's layers: every image of the stage starts with them.
    pub base: Vec<layers_store::DiffId>,
}

impl State {
    /// Takes on the config the plan says the step ends with: a config step's change
    /// replayed, a RUN's or COPY's config as planned.
    fn apply(&mut self, step: &Step) -> anyhow::Result<()> {
        match (&step.action, &step.config) {
            (Action::Config { change, .. }, _) => {
                let mut author = None;
                change.apply(self.config.config.get_or_insert_with(Default::default), &mut author)?;
            }
            (_, Some(c)) => self.config.config = Some(c.clone()),
            (_, None) => {}
        }
        if let Some(a) = &step.author {
            self.config.extra.insert("author".into(), serde_json::Value::String(a.clone()));
        }
        Ok(())
    }
}

/// Whether an imported record can be what `steps` make of `state`: its layers start
/// with the stage's base image's and extend its parent's record (when imported) by
/// at most one, its runtime config is the one the instructions make of the parent's
/// (a record that drops the base's layers, or a USER step that changes Env, is
/// someone else's writing, not a cache).
fn fits(
    state: &State,
    steps: &[Step],
    cached: &crate::builder::cache::CachedStep,
    parent: Option<&crate::builder::cache::CachedStep>,
) -> Result<(), String> {
    let child = &cached.config.rootfs.diff_ids;
    // Every image of a stage starts with its base image's layers; the layers of the
    // stage's own steps may differ from machine to machine (a RUN is not
    // reproducible), so past the base only the parent's record, if imported, says.
    if !child.starts_with(&state.base) {
        return Err(format!("its layers do not start with the base image's {} layer(s)", state.base.len()));
    }
    if let Some(p) = parent.map(|p| &p.config.rootfs.diff_ids) {
        if !child.starts_with(p) {
            return Err(format!("its layers do not start with its parent record's {} layer(s)", p.len()));
        }
        if child.len() > p.len() + 1 {
            return Err(format!("it adds {} layers; a step adds at most one", child.len() - p.len()));
        }
    }
    let mut expected = state.clone();
    for s in steps {
        expected.apply(s).map_err(|e| e.to_string())?;
    }
    if expected.config.config != cached.config.config {
        return Err("its config is not what the instruction makes of its parent's".into());
    }
    Ok(())
}

/// An image a stage is at and that is not in the store yet.
#[derive(Clone)]
pub enum Pending {
    /// An imported cache's step, by key.
    Cached(Digest),
    /// A FROM image in a registry (pulled by `reference`, expected to be `manifest`).
    Base { reference: String, platform: Option<String>, manifest: Digest },
}

/// Pulls a FROM image a step needs after all: reference, platform, the manifest planned on.
pub type PullBase<'a> = &'a dyn Fn(&str, Option<&str>, &Digest) -> anyhow::Result<ImageRow>;

impl<'a> Executor<'a> {
    /// An executor of `plan`'s steps.
    pub fn new(
        store: &'a Store,
        transfers: &'a crate::transfer::Transfers,
        context: PathBuf,
        ignore: Patterns,
        plan: &Plan,
    ) -> Executor<'a> {
        Executor {
            store,
            transfers,
            context,
            ignore,
            no_cache: false,
            quiet: false,
            epoch: None,
            run_id: format!("{}-{}", std::process::id(), layers_store::meta::now()),
            cache: Imported::default(),
            steps_done: 0,
            steps_total: plan.stages.iter().map(|s| s.steps.len() + 1).sum(),
            stages: Vec::new(),
            made: Vec::new(),
            pull_base: None,
            final_chain: Vec::new(),
            leave_remote: false,
            secrets: Default::default(),
            ssh: Default::default(),
        }
    }

    fn now(&self) -> String {
        rfc3339(self.epoch.unwrap_or_else(layers_store::meta::now))
    }

    fn say(&self, line: &str) {
        if !self.quiet {
            eprintln!("{line}");
        }
    }

    /// Builds every stage of `plan`; returns the last one's image.
    pub fn execute(&mut self, plan: &Plan) -> anyhow::Result<ImageRow> {
        self.final_chain = vec![false; plan.stages.len()];
        let mut at = plan.stages.len().checked_sub(1);
        while let Some(i) = at.filter(|i| !self.final_chain[*i]) {
            self.final_chain[i] = true;
            at = match plan.stages[i].base {
                Base::Stage(b) => Some(b),
                _ => None,
            };
        }
        for (index, stage) in plan.stages.iter().enumerate() {
            self.steps_done += 1;
            if !stage.announced {
                self.say(&format!("STEP {}/{}: {}", self.steps_done, self.steps_total, stage.text));
            }
            let base = stage.base_config.rootfs.diff_ids.clone();
            let mut state = match &stage.base {
                Base::Scratch => State { image: None, pending: None, config: stage.base_config.clone(), base },
                Base::Image(row) => {
                    State { image: Some(row.clone()), pending: None, config: stage.base_config.clone(), base }
                }
                Base::Remote { reference, platform, manifest } => State {
                    image: None,
                    pending: Some(Pending::Base {
                        reference: reference.clone(),
                        platform: platform.clone(),
                        manifest: *manifest,
                    }),
                    config: stage.base_config.clone(),
                    base,
                },
                Base::Stage(i) => self.stages[*i].clone(),
            };
            // Config steps replay their changes onto this.
            state.config.config = Some(stage.start_config.clone());
            let mut k = 0;
            while k < stage.steps.len() {
                let group = config_group(&stage.steps[k..]);
                if group > 1 {
                    self.config_steps(index, &mut state, &stage.steps[k..k + group])?;
                } else {
                    let step = &stage.steps[k];
                    self.step(plan, index, &mut state, step).with_context(|| step.at.clone())?;
                }
                k += group.max(1);
            }
            self.stages.push(state);
        }
        // The target's image is made here; the stages behind it only where a step needed them.
        let mut last = self.stages.pop().context("nothing was built")?;
        if let (true, Some(Pending::Cached(key))) = (self.leave_remote, &last.pending) {
            // Its layers stay in the cache's registry: a push mounts them from there.
            if let Some(row) = self.cache.record_remote(self.store, key)? {
                last.image = Some(row);
                last.pending = None;
            }
        }
        self.materialize(&mut last)?;
        match last.image {
            Some(r) => Ok(r),
            None => {
                let mut config = last.config.clone();
                config.created = Some(self.now());
                Ok(self.store.images().derive(None, &config, &[])?)
            }
        }
    }

    /// Makes the image the stage is at if it is not here yet (an imported step's, or
    /// a FROM image's pulled).
    fn materialize(&self, state: &mut State) -> anyhow::Result<()> {
        match state.pending.take() {
            None => {}
            Some(Pending::Cached(key)) => state.image = Some(self.cache.materialize(self.store, &key)?),
            Some(Pending::Base { reference, platform, manifest }) => {
                let pull = self.pull_base.context("a remote FROM image and no way to pull it")?;
                state.image = Some(pull(&reference, platform.as_deref(), &manifest)?);
            }
        }
        Ok(())
    }

    /// The image planned stage `i` ended with, made here if it came from the cache.
    fn stage_image(&self, i: usize) -> anyhow::Result<ImageRow> {
        let mut state = self.stages.get(i).context("a stage not built yet")?.clone();
        self.materialize(&mut state)?;
        state.image.context("the stage made no image")
    }

    /// Runs one step (after FROM) on `state`, or finds it in the cache.
    fn step(&mut self, plan: &Plan, stage: usize, state: &mut State, step: &Step) -> anyhow::Result<()> {
        self.steps_done += 1;
        self.say(&format!("STEP {}/{}: {}", self.steps_done, self.steps_total, step.text));
        let started = Instant::now();
        if let Action::Arg = step.action {
            return Ok(());
        }
        if self.hit(state, std::slice::from_ref(step), self.final_chain.get(stage).copied().unwrap_or(false))? {
            self.say(&format!("--> CACHED {}", self.cached_id(state, step)));
        } else {
            if !self.no_cache {
                if let Some(why) = self.explain(step)? {
                    self.say(&format!("--> cache miss: {}", crate::format::printable(&why)));
                }
            }
            // What the step builds on is needed here now.
            self.materialize(state)?;
            state.apply(step)?;
            match &step.action {
                Action::Arg => {}
                Action::Config { mkdir, .. } => config::run(self, state, step, mkdir.as_deref(), true)?,
                Action::Run(r) => run::run(self, state, step, r)?,
                Action::Copy(c) => copy::run(self, plan, state, step, c)?,
            }
            self.say(&format!("--> {} ({:.2}s)", short(state), started.elapsed().as_secs_f64()));
            self.remember(step)?;
        }
        // A hit or a run leaves the stage on a cached step or an image.
        self.made_by(stage, state, step)
    }

    /// A run of config steps (ARGs among them), as one: the last one's key is looked up
    /// (it covers all of them); on a miss each is applied in turn to the config in
    /// memory and one image records them all, so N such lines cost N history entries,
    /// not N images of growing configs. A WORKDIR whose directory is missing still
    /// makes its layer where it stands.
    fn config_steps(&mut self, stage: usize, state: &mut State, steps: &[Step]) -> anyhow::Result<()> {
        let Some(last) = steps.last() else { return Ok(()) };
        let needed = self.final_chain.get(stage).copied().unwrap_or(false);
        let start = self.steps_done;
        if self.hit(state, steps, needed)? {
            let id = self.cached_id(state, last);
            for (i, step) in steps.iter().enumerate() {
                self.say(&format!("STEP {}/{}: {}", start + i + 1, self.steps_total, step.text));
                if !matches!(step.action, Action::Arg) {
                    self.say(&format!("--> CACHED {id}"));
                }
            }
            self.steps_done += steps.len();
            return self.made_by(stage, state, last);
        }
        self.materialize(state)?;
        let mut explained = self.no_cache;
        for step in steps {
            self.steps_done += 1;
            self.say(&format!("STEP {}/{}: {}", self.steps_done, self.steps_total, step.text));
            let Action::Config { mkdir, .. } = &step.action else { continue };
            let started = Instant::now();
            // The steps before the one that changed were built before, as they are.
            if !explained && !self.seen(step)? {
                if let Some(why) = self.explain(step)? {
                    self.say(&format!("--> cache miss: {}", crate::format::printable(&why)));
                    explained = true;
                }
            }
            state.apply(step).with_context(|| step.at.clone())?;
            let record = std::ptr::eq(step, last);
            let image = state.image.as_ref().map(|i| i.manifest);
            config::run(self, state, step, mkdir.as_deref(), record).with_context(|| step.at.clone())?;
            let made = if record || state.image.as_ref().map(|i| i.manifest) != image {
                short(state)
            } else {
                format!("applied, recorded with step {}", start + steps.len())
            };
            self.say(&format!("--> {made} ({:.2}s)", started.elapsed().as_secs_f64()));
            self.remember(step)?;
        }
        self.made_by(stage, state, last)
    }

    /// Whether a config step was recorded before as it is now (same parent, same
    /// instruction: its key), here or in an imported cache.
    fn seen(&self, step: &Step) -> anyhow::Result<bool> {
        let here = self.store.build_cache().steps_like(&step.parent, &step.text)?.iter().any(|r| r.0 == step.key);
        Ok(here
            || self
                .cache
                .like(&step.parent, &step.text)
                .iter()
                .any(|r| r.parent == step.parent && r.instruction == step.text))
    }

    /// Notes that `step` left the stage at its image (or imported key), for `--cache-to`.
    fn made_by(&mut self, stage: usize, state: &State, step: &Step) -> anyhow::Result<()> {
        let image = match (&state.image, &state.pending) {
            (_, Some(Pending::Cached(key))) => Err(*key),
            (Some(row), None) => Ok(row.clone()),
            (_, Some(Pending::Base { .. })) | (None, None) => return Ok(()),
        };
        let inputs = step.inputs.clone();
        self.made.push(Made { stage, key: step.key, parent: step.parent, text: step.text.clone(), inputs, image });
        Ok(())
    }

    /// Keeps what the step read, to explain a later miss of it (not for steps that
    /// read more than a bound's worth of files: those are explained as a whole).
    fn remember(&self, step: &Step) -> anyhow::Result<()> {
        let inputs = if step.inputs.len() <= MAX_INPUTS { step.inputs.as_slice() } else { &[] };
        self.store.build_cache().record_inputs(&step.key, &step.parent, &step.text, &serde_json::to_string(inputs)?)?;
        Ok(())
    }

    /// Why a step missed, from an earlier record of it: on the same parent with the
    /// same instruction, the first input that differs; on the same parent, a changed
    /// instruction; with the same instruction, a changed base image.
    fn explain(&self, step: &Step) -> anyhow::Result<Option<String>> {
        let mut records: Vec<Earlier> = Vec::new();
        for (_, parent, instruction, inputs) in self.store.build_cache().steps_like(&step.parent, &step.text)? {
            records.push((parent, instruction, serde_json::from_str(&inputs).unwrap_or_default()));
        }
        for r in self.cache.like(&step.parent, &step.text) {
            records.push((r.parent, r.instruction.clone(), r.inputs.clone()));
        }
        let same = |r: &&Earlier| r.0 == step.parent && r.1 == step.text;
        if let Some((_, _, old)) = records.iter().find(same) {
            return Ok(Some(first_difference(&step.inputs, old)));
        }
        let verb = |t: &str| t.split_whitespace().next().unwrap_or_default().to_string();
        if let Some((_, was, _)) = records.iter().find(|r| r.0 == step.parent && verb(&r.1) == verb(&step.text)) {
            return Ok(Some(format!("the instruction changed (was: {was})")));
        }
        let base = step.inputs.first().filter(|(n, _)| n.starts_with("base image "));
        if let Some((name, value)) = base {
            let changed =
                records.iter().any(|r| r.1 == step.text && r.2.first().is_some_and(|(n, v)| n == name && v != value));
            if changed {
                return Ok(Some(format!("{} changed", name)));
            }
        }
        Ok(None)
    }

    /// A cache hit moves the stage onto the cached image: one of this store's, else one
    /// of an imported cache (made here only when a later step needs it).
    /// `needed`: the step's image will be needed here (a step of the target's stages).
    /// `steps`: the step looked up last, after the config steps grouped with it.
    fn hit(&self, state: &mut State, steps: &[Step], needed: bool) -> anyhow::Result<bool> {
        let Some(step) = steps.last() else { return Ok(false) };
        if self.no_cache {
            return Ok(false);
        }
        if let Some(row) = self.store.build_cache().step(&step.key)? {
            self.store.images().touch(&row.manifest)?;
            state.config = self.store.images().config(&row)?;
            state.image = Some(row);
            state.pending = None;
        } else if let Some(cached) = self.cache.find(&step.key) {
            if let Err(why) = fits(state, steps, cached, self.cache.find(&cached.record.parent)) {
                // Debug quoting escapes whatever control characters the record holds.
                let what = &cached.record.instruction;
                eprintln!("layers: warning: --cache-from: the record of {what:?} is not used: {why}");
                return Ok(false);
            }
            state.config = cached.config.clone();
            state.image = None;
            state.pending = Some(Pending::Cached(step.key));
            // With `leave_remote` the layers may never be needed: fetched if a later step misses.
            if needed && !self.leave_remote {
                self.cache.prefetch(self.store, &step.key);
            }
        } else {
            return Ok(false);
        }
        Ok(true)
    }

    /// The image ID a hit of `step` left the stage at.
    fn cached_id(&self, state: &State, step: &Step) -> String {
        match self.cache.find(&step.key).filter(|_| state.pending.is_some()) {
            // An imported step's image ID is its config's digest.
            Some(c) => Digest::of(c.record.config.as_bytes()).hex()[..12].to_string(),
            None => short(state),
        }
    }

    /// The stage's image so far (a scratch stage gets an empty one first).
    fn need_image(&self, state: &mut State) -> anyhow::Result<ImageRow> {
        if let Some(i) = &state.image {
            return Ok(i.clone());
        }
        state.config.created = Some(self.now());
        let row = self.store.images().derive(None, &state.config, &[])?;
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
        let c = self.store.snapshots().create(&parent.manifest, Some(&name), "layers-build", Lifetime::Ephemeral)?;
        let result = work(&c).and_then(|()| self.commit_step(state, &c, step));
        if let Ok(c) = self.store.snapshots().resolve(&c.id) {
            let _ = self.store.snapshots().remove(&c);
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
        let spec = self.store.snapshots().mount_spec(c)?;
        if spec.lowers.is_empty() || upper_only {
            let (upper, _) = spec.upper.clone().context("container without an upper dir")?;
            return write(&upper);
        }
        let merged = self.store.snapshots().merged_dir(c);
        mount_spec(&spec, &merged, MountOptions::default())?;
        let written = write(&merged);
        unmount_path(&merged, false)?;
        written
    }

    /// Commits the step's container as the stage's next image.
    fn commit_step(&self, state: &mut State, c: &ContainerRow, step: &Step) -> anyhow::Result<()> {
        let c = self.store.snapshots().resolve(&c.id)?;
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
        let committed = self.store.snapshots().commit(&c, &opts)?;
        let row = self.store.images().get(&committed.manifest)?.context("the committed image is gone")?;
        self.store.build_cache().record(&step.key, &row.manifest)?;
        state.config = self.store.images().config(&row)?;
        state.image = Some(row);
        Ok(())
    }

    /// Whether `path` (absolute) exists in the stage's image.
    fn visible(&self, state: &State, path: &str) -> anyhow::Result<bool> {
        let Some(image) = &state.image else { return Ok(path.trim_matches('/').is_empty()) };
        let lowers = self.store.snapshots().lower_dirs(&image.manifest)?;
        Ok(layers_store::fsroot::lowers::in_lowers(&lowers, Path::new(path.trim_start_matches('/'))))
    }
}

/// How many steps from the start of `steps` go as one run of config steps: the
/// config steps (and ARGs) up to the last config step before anything else; 0 or 1
/// when the first step is no config step or stands alone.
fn config_group(steps: &[Step]) -> usize {
    let mut end = 0;
    for (i, s) in steps.iter().enumerate() {
        match s.action {
            Action::Config { .. } => end = i + 1,
            Action::Arg if i > 0 => {}
            _ => break,
        }
    }
    end
}

/// An earlier record of a step: its parent, instruction and what it read.
type Earlier = (Digest, String, ReadSet);

/// Most inputs a step's record keeps (a COPY of a large tree is explained as a whole).
const MAX_INPUTS: usize = 10_000;

/// The first input of `new` whose digest differs from `old`'s, or that is new, or the
/// first of `old` that is gone.
fn first_difference(new: &[(String, String)], old: &[(String, String)]) -> String {
    if old.is_empty() && !new.is_empty() {
        return "its inputs changed".to_string();
    }
    let before: std::collections::HashMap<&str, &str> = old.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    for (name, value) in new {
        match before.get(name.as_str()) {
            Some(v) if v == value => {}
            Some(_) => return format!("{name} changed"),
            None => return format!("{name} is new"),
        }
    }
    let now: std::collections::HashSet<&str> = new.iter().map(|(n, _)| n.as_str()).collect();
    match old.iter().find(|(n, _)| !now.contains(n.as_str())) {
        Some((name, _)) => format!("{name} is gone"),
        None => "its inputs changed".to_string(),
    }
}

fn short(state: &State) -> String {
    match &state.image {
        Some(i) => i.config.hex()[..12].to_string(),
        None => "scratch".into(),
    }
}
