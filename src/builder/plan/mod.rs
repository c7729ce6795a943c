//! The plan of a build: the stages the target needs, and for each step what it does,
//! what it reads and its cache key, all computed before any step runs (base images
//! are resolved, pulled when missing, and `ADD` URLs fetched, since keys cover them).

pub(crate) mod config;
// A here-document written into a scratch dir of the store's.
#[allow(clippy::disallowed_methods)]
pub mod copy;
pub mod key;
mod run;

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use layers_store::content::digest::Digest;
use layers_store::images::oci::{host_architecture, ImageConfig, RootFs, RuntimeConfig};
use layers_store::meta::ImageRow;
use layers_store::Store;

pub use config::shell_of;
pub use copy::{CopyStep, Source};
pub use run::{MountFrom, RunMount, RunStep};

use super::frontend::instruction::{self, Instruction, Located};
use super::frontend::pattern::Patterns;
use super::frontend::words;
use crate::run::Network;
use key::Key;
use layers_store::fsroot::Tree;

/// What a step reads, by name (a file, a build arg, a mount, the base), each with a digest.
pub type ReadSet = Vec<(String, String)>;

/// What planning reads besides the Dockerfile.
pub struct Inputs<'a> {
    pub store: &'a Store,
    pub context_tree: &'a Tree,
    /// `.dockerignore`.
    pub ignore: Patterns,
    pub escape: char,
    pub build_args: BTreeMap<String, String>,
    /// The ARGs declared before the first FROM, with their values.
    pub global_args: BTreeMap<String, Option<String>>,
    /// RUN's network when a step names none.
    pub network: Network,
    /// Finds a base image: stored, or pulled (`platform`, `always`); a pull first
    /// prints the line given, then its progress.
    pub base: Finder<'a, ImageRow>,
    /// Finds a FROM image: stored, pulled (after printing the line given, and
    /// saying so in `Found::pulled`), or only read from its registry (`Remote`).
    pub from: Finder<'a, Found>,
    /// `--max-layer-size`: the cap on an `ADD` URL's body too.
    pub max_download: u64,
    /// Runs `ADD` URL downloads.
    pub transfers: &'a crate::transfer::Transfers,
}

/// A planned build.
pub struct Plan {
    /// The stages to build, in Dockerfile order.
    pub stages: Vec<Stage>,
    /// Where `ADD` put the URLs it fetched; removed with the plan.
    pub downloads: Vec<super::scratch::ScratchDir>,
}

/// Finds an image by (name, platform); the third argument is the line a pull prints first.
pub type Finder<'a, T> = &'a dyn Fn(&str, Option<&str>, &str) -> anyhow::Result<T>;

/// What a FROM names, found, and whether a pull printed its STEP line already.
pub struct Found {
    pub image: FromImage,
    pub pulled: bool,
}

/// What a FROM names, found.
pub enum FromImage {
    Stored(ImageRow),
    Remote(Box<crate::transfer::pull::RemoteImage>),
}

/// Where a stage starts.
pub enum Base {
    Scratch,
    Image(ImageRow),
    /// An image in a registry, known by its manifest and config: pulled only if a
    /// step of the stage runs (with `--cache-from`, every step may hit).
    Remote {
        reference: String,
        platform: Option<String>,
        manifest: Digest,
    },
    /// An earlier stage of the plan, by index.
    Stage(usize),
}

/// One stage to build.
pub struct Stage {
    pub name: Option<String>,
    /// `FROM …` as shown.
    pub text: String,
    pub base: Base,
    /// The base's config (for an earlier stage: as that stage ends).
    pub base_config: ImageConfig,
    pub base_key: Digest,
    pub steps: Vec<Step>,
    /// Its `STEP n/N: FROM …` line was printed while planning, before the pull of its
    /// base (which would otherwise look like a silent hang).
    pub announced: bool,
    /// The runtime config its steps start from (the base's, with a default PATH and
    /// without its ONBUILD triggers), and the one it ends with.
    pub start_config: RuntimeConfig,
    pub end_config: RuntimeConfig,
}

impl Stage {
    /// The key of the image the stage ends with.
    pub fn key(&self) -> Digest {
        self.steps.last().map_or(self.base_key, |s| s.key)
    }
}

/// One step after FROM.
pub struct Step {
    /// The instruction as shown and recorded in history.
    pub text: String,
    /// `FILE:LINE`, for errors.
    pub at: String,
    pub key: Digest,
    /// The key of the step before it (or of the stage's base).
    pub parent: Digest,
    /// What it reads, by name (a file, a build arg, a mount, the base), each with a
    /// digest: compared with an earlier record of the step to explain a miss.
    pub inputs: ReadSet,
    pub action: Action,
    /// The runtime config after a RUN, COPY or ADD (a config step holds its change
    /// instead, an ARG nothing: see `config::Change`).
    pub config: Option<RuntimeConfig>,
    /// `MAINTAINER`, as of this step.
    pub author: Option<String>,
}

/// What a step does.
pub enum Action {
    /// Sets ARGs for later steps; makes no image.
    Arg,
    /// Changes only the config; WORKDIR also makes `mkdir` when the image lacks it.
    Config {
        change: config::Change,
        mkdir: Option<String>,
    },
    Run(RunStep),
    Copy(CopyStep),
}

/// What a stage's steps see as they are planned: the config so far and the ARGs.
pub struct Scope {
    pub config: RuntimeConfig,
    pub args: BTreeMap<String, String>,
    /// Whether this stage set CMD (an ENTRYPOINT then keeps it).
    pub cmd_set: bool,
    pub author: Option<String>,
    escape: char,
}

impl Scope {
    /// A scope for `--change` instructions on `config`: no ARGs, Dockerfile's escape.
    pub fn for_changes(config: RuntimeConfig) -> Scope {
        Scope { config, args: BTreeMap::new(), cmd_set: false, author: None, escape: '\\' }
    }

    /// A name as a step sees it: ENV first, then ARGs.
    fn lookup(&self, name: &str) -> Option<String> {
        self.config.env_var(name).map(str::to_string).or_else(|| self.args.get(name).cloned())
    }

    /// `$VAR` expansion of one word.
    pub fn expand(&self, word: &str) -> anyhow::Result<String> {
        words::expand(word, self.escape, &|n| self.lookup(n)).map_err(anyhow::Error::msg)
    }

    /// `$VAR` expansion splitting into words.
    pub fn expand_words(&self, word: &str) -> anyhow::Result<Vec<String>> {
        words::expand_words(word, self.escape, &|n| self.lookup(n)).map_err(anyhow::Error::msg)
    }
}

/// The Dockerfile split at FROM: the global instructions and the stages.
pub struct Stages<'a> {
    pub globals: Vec<&'a Located>,
    pub stages: Vec<(&'a Located, Option<String>, &'a [Located])>,
}

/// Splits the instructions at each FROM.
pub fn split(instructions: &[Located]) -> Stages<'_> {
    let first = instructions
        .iter()
        .position(|l| matches!(l.instruction, Instruction::From { .. }))
        .unwrap_or(instructions.len());
    let mut stages = Vec::new();
    let mut i = first;
    while i < instructions.len() {
        let end = instructions[i + 1..]
            .iter()
            .position(|l| matches!(l.instruction, Instruction::From { .. }))
            .map_or(instructions.len(), |p| i + 1 + p);
        let name = match &instructions[i].instruction {
            Instruction::From { alias, .. } => alias.clone(),
            _ => None,
        };
        stages.push((&instructions[i], name, &instructions[i + 1..end]));
        i = end;
    }
    Stages { globals: instructions[..first].iter().collect(), stages }
}

/// The stages `target` needs, by index: earlier stages named by FROM or `COPY --from`.
pub fn needed(stages: &Stages, target: usize) -> Vec<bool> {
    let mut need = vec![false; stages.stages.len()];
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if need[i] {
            continue;
        }
        need[i] = true;
        let (from, _, steps) = stages.stages[i];
        let refs = std::iter::once(from).chain(steps).flat_map(|l| match &l.instruction {
            Instruction::From { image, .. } => vec![image.clone()],
            Instruction::Copy { copy } | Instruction::Add { copy, .. } => copy.from.iter().cloned().collect(),
            // A mount from a stage needs that stage built too.
            Instruction::Run { mounts, .. } => {
                mounts.iter().filter_map(|m| run::mount_from(m)).map(String::from).collect()
            }
            _ => Vec::new(),
        });
        for r in refs {
            if let Some(j) = stage_ref(stages, i, &r) {
                todo.push(j);
            }
        }
    }
    need
}

/// The earlier stage (than `before`) that `r` names, by name or index.
fn stage_ref(stages: &Stages, before: usize, r: &str) -> Option<usize> {
    let by_name = stages.stages[..before].iter().position(|s| s.1.as_deref() == Some(&r.to_ascii_lowercase()));
    by_name.or(r.parse::<usize>().ok().filter(|n| *n < before))
}

/// An image config for `FROM scratch`.
fn scratch_config() -> ImageConfig {
    ImageConfig {
        created: None,
        architecture: host_architecture().to_string(),
        os: "linux".into(),
        variant: None,
        config: Some(RuntimeConfig {
            env: Some(vec![format!("PATH={}", crate::run::DEFAULT_PATH)]),
            ..Default::default()
        }),
        rootfs: RootFs { kind: "layers".into(), diff_ids: Vec::new() },
        history: Vec::new(),
        extra: serde_json::Map::new(),
    }
}

/// Plans `target` and the stages it needs.
pub fn plan(inputs: &Inputs, file: &str, stages: &Stages, need: &[bool]) -> anyhow::Result<Plan> {
    let mut plan = Plan { stages: Vec::new(), downloads: Vec::new() };
    // Dockerfile stage index → plan index.
    let mut planned: Vec<Option<usize>> = vec![None; stages.stages.len()];
    for (i, (from, name, steps)) in stages.stages.iter().enumerate() {
        if !need[i] {
            continue;
        }
        let Instruction::From { image, platform, .. } = &from.instruction else { unreachable!("stages start at FROM") };
        let globals = |n: &str| inputs.global_args.get(n).cloned().flatten();
        let image = words::expand(image, inputs.escape, &globals).map_err(anyhow::Error::msg)?;
        let at = format!("{file}:{}", from.pos);
        let text = format!("FROM {image}{}", name.as_ref().map(|n| format!(" AS {n}")).unwrap_or_default());
        let mut announced = false;
        let (base, base_config, base_key) = if image.eq_ignore_ascii_case("scratch") {
            (
                Base::Scratch,
                scratch_config(),
                Key::new("scratch", None).field("architecture", host_architecture()).finish(),
            )
        } else if let Some(j) = stage_ref(stages, i, &image).filter(|j| name_matches(stages, *j, &image)) {
            let p = planned[j].context("a stage used before it is planned")?;
            let s: &Stage = &plan.stages[p];
            let mut config = s.base_config.clone();
            config.config = Some(s.end_config.clone());
            (Base::Stage(p), config, s.key())
        } else {
            // Numbered as the executor will number it; the total counts this and later
            // stages' lines (their bases' ONBUILD triggers are not known yet).
            let done: usize = plan.stages.iter().map(|s| s.steps.len() + 1).sum();
            let left: usize = (i..stages.stages.len()).filter(|j| need[*j]).map(|j| stages.stages[j].2.len() + 1).sum();
            let line = format!("STEP {}/{}: {text}", done + 1, done + left);
            let found =
                (inputs.from)(&image, platform.as_deref(), &line).with_context(|| format!("{at}: FROM {image}"))?;
            announced = found.pulled;
            let (base, config, manifest) = match found.image {
                FromImage::Stored(row) => {
                    let config = inputs.store.images().config(&row).with_context(|| format!("{at}: FROM {image}"))?;
                    let manifest = row.manifest;
                    (Base::Image(row), config, manifest)
                }
                FromImage::Remote(r) => {
                    let base =
                        Base::Remote { reference: image.clone(), platform: platform.clone(), manifest: r.manifest };
                    (base, r.config, r.manifest)
                }
            };
            let key = Key::new("from-image", None).field("manifest", &manifest.to_string()).finish();
            (base, config, key)
        };
        let mut rt = base_config.config.clone().unwrap_or_default();
        // As BuildKit and buildah: a base without PATH gets the default one.
        if rt.env_var("PATH").is_none() {
            rt.env.get_or_insert_with(Vec::new).insert(0, format!("PATH={}", crate::run::DEFAULT_PATH));
        }
        // The base's ONBUILD triggers run first, and do not pass on to this image.
        let triggers = rt.on_build.take().unwrap_or_default();
        let mut scope =
            Scope { config: rt, args: BTreeMap::new(), cmd_set: false, author: None, escape: inputs.escape };
        let mut stage = Stage {
            name: name.clone(),
            text,
            base,
            base_config,
            base_key,
            steps: Vec::new(),
            announced,
            start_config: scope.config.clone(),
            end_config: RuntimeConfig::default(),
        };
        let mut parsed_triggers = Vec::new();
        for t in &triggers {
            let step = instruction::parse_one(&format!("ONBUILD trigger of {image}"), t, inputs.escape)?;
            parsed_triggers.push((step, format!("ONBUILD {t} (from {image})")));
        }
        let own = steps.iter().map(|l| (l.clone(), format!("{file}:{}", l.pos)));
        for (located, at) in parsed_triggers.into_iter().chain(own) {
            let parent = stage.key();
            let mut step = plan_step(inputs, &mut plan, &planned, stages, i, &mut scope, &located, parent)
                .with_context(|| at.clone())?;
            let first_image = !matches!(step.action, Action::Arg)
                && stage.steps.iter().all(|s: &Step| matches!(s.action, Action::Arg));
            if first_image {
                // The base is what the stage's first image-making step reads before anything else.
                step.inputs.insert(0, (format!("base image {image}"), stage.base_key.to_string()));
            }
            stage.steps.push(Step { at, ..step });
        }
        stage.end_config = scope.config;
        planned[i] = Some(plan.stages.len());
        plan.stages.push(stage);
    }
    Ok(plan)
}

/// Whether stage `j` is what `image` names (a stage name shadows an image of that name).
fn name_matches(stages: &Stages, j: usize, image: &str) -> bool {
    stages.stages[j].1.as_deref() == Some(&image.to_ascii_lowercase())
}

/// Plans one instruction on `scope`, keyed on `parent`.
#[allow(clippy::too_many_arguments)]
fn plan_step(
    inputs: &Inputs,
    plan: &mut Plan,
    planned: &[Option<usize>],
    stages: &Stages,
    stage: usize,
    scope: &mut Scope,
    at: &Located,
    parent: Digest,
) -> anyhow::Result<Step> {
    let step = |text: String, key: Digest, action: Action, scope: &Scope| Step {
        text,
        at: String::new(),
        key,
        parent,
        inputs: Vec::new(),
        config: matches!(action, Action::Run(_) | Action::Copy(_)).then(|| scope.config.clone()),
        action,
        author: scope.author.clone(),
    };
    let keys: Vec<Digest> = plan.stages.iter().map(Stage::key).collect();
    let from_stage = |r: &str| -> Option<(usize, Digest)> {
        stage_ref(stages, stage, r).and_then(|j| planned[j]).map(|p| (p, keys[p]))
    };
    match &at.instruction {
        Instruction::Arg { args } => {
            for a in args {
                let value = match inputs.build_args.get(&a.name) {
                    Some(v) => Some(v.clone()),
                    None => match &a.default {
                        Some(d) => Some(scope.expand(d)?),
                        None => inputs.global_args.get(&a.name).cloned().flatten(),
                    },
                };
                match value {
                    Some(v) => scope.args.insert(a.name.clone(), v),
                    None => scope.args.remove(&a.name),
                };
            }
            let names: Vec<&str> = args.iter().map(|a| a.name.as_str()).collect();
            Ok(step(format!("ARG {}", names.join(" ")), parent, Action::Arg, scope))
        }
        Instruction::Run { .. } => {
            let (text, run, key, read) = run::plan(inputs, scope, &at.instruction, &parent, &from_stage)?;
            Ok(Step { inputs: read, ..step(text, key, Action::Run(run), scope) })
        }
        Instruction::Copy { copy } => {
            let (text, c, key, read) =
                copy::plan(inputs, &mut plan.downloads, scope, copy, "COPY", None, &parent, &from_stage)?;
            Ok(Step { inputs: read, ..step(text, key, Action::Copy(c), scope) })
        }
        Instruction::Add { copy, checksum, keep_git_dir } => {
            if *keep_git_dir {
                bail!("ADD --keep-git-dir: git sources are not supported");
            }
            let (text, c, key, read) = copy::plan(
                inputs,
                &mut plan.downloads,
                scope,
                copy,
                "ADD",
                Some(checksum.as_deref()),
                &parent,
                &from_stage,
            )?;
            Ok(Step { inputs: read, ..step(text, key, Action::Copy(c), scope) })
        }
        other => {
            let (text, change) = config::apply(scope, other)?;
            let key = Key::new("config", Some(&parent)).field("text", &text).finish();
            let mkdir = matches!(other, Instruction::Workdir { .. }).then(|| scope.config.working_dir().to_string());
            Ok(step(text, key, Action::Config { change, mkdir }, scope))
        }
    }
}

#[cfg(test)]
// Tests build their contexts by path.
#[allow(clippy::disallowed_methods)]
mod tests;
