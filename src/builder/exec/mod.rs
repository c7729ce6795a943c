//! Running a stage's instructions. Every step's result is an image in the store,
//! found again by the step's cache key: a digest of the parent image's manifest
//! (its layers and config), the instruction after ARG/ENV expansion, and for COPY
//! the digest of the files it selects. RUN runs exactly as `layers run` (a child
//! `layers run` on the step's container, which `commit` then turns into a layer).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command as Process, Stdio};
use std::time::Instant;

use anyhow::{bail, Context};
use layers_store::containers::{CommitOptions, Lifetime, UpperDir};
use layers_store::digest::{Digest, Hasher};
use layers_store::image::{rfc3339, History, ImageConfig, RootFs};
use layers_store::metadata::ImageRow;
use layers_store::mount::{mount_spec, unmount_path, MountOptions};
use layers_store::{Compression, Store};
use serde_json::{json, Map, Value};

use super::context::{self, Attrs, Tree};
use super::frontend::instruction::{Command, CopySpec, Instruction, Located};
use super::frontend::pattern::Patterns;
use super::frontend::words::{expand, expand_words};
use super::throwaway::ThrowawayView;

/// What every step of a build shares.
pub struct Build<'a> {
    pub store: &'a Store,
    pub context: PathBuf,
    pub escape: char,
    pub build_args: BTreeMap<String, String>,
    /// Defaults of the ARGs declared before the first FROM.
    pub global_args: BTreeMap<String, Option<String>>,
    pub no_cache: bool,
    pub quiet: bool,
    pub network: String,
    /// `SOURCE_DATE_EPOCH`: the time of every history entry, and no file newer.
    pub epoch: Option<i64>,
    pub ignore: Patterns,
    /// Results of the stages built so far, by index, and their names.
    pub stages: Vec<(Option<String>, ImageRow)>,
    /// Names the steps' containers apart from another build's.
    pub run_id: String,
    pub steps_done: usize,
    pub steps_total: usize,
}

/// A stage as it goes: its image so far and what the next step sees.
pub struct State {
    /// `None`: `FROM scratch` before any step made an image.
    pub image: Option<ImageRow>,
    pub config: ImageConfig,
    /// ARGs in scope and their values.
    pub args: BTreeMap<String, String>,
    /// Whether this stage set CMD (an ENTRYPOINT then keeps it).
    pub cmd_set: bool,
}

fn obj(config: &mut ImageConfig) -> &mut Map<String, Value> {
    let c = config.config.get_or_insert_with(|| json!({}));
    if !c.is_object() {
        *c = json!({});
    }
    c.as_object_mut().expect("made an object above")
}

fn env_of(config: &ImageConfig) -> Vec<String> {
    config
        .config
        .as_ref()
        .and_then(|c| c["Env"].as_array())
        .map_or_else(Vec::new, |a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
}

fn shell_of(config: &ImageConfig) -> Vec<String> {
    config
        .config
        .as_ref()
        .and_then(|c| c["Shell"].as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
}

impl State {
    /// Looks a name up as the step sees it: ENV first, then ARGs.
    fn lookup(&self, name: &str) -> Option<String> {
        env_of(&self.config)
            .iter()
            .find_map(|e| e.strip_prefix(name).and_then(|r| r.strip_prefix('=')).map(String::from))
            .or_else(|| self.args.get(name).cloned())
    }
}

impl Build<'_> {
    fn now(&self) -> String {
        rfc3339(self.epoch.unwrap_or_else(crate::run::state::now))
    }

    fn say(&self, line: &str) {
        if !self.quiet {
            eprintln!("{line}");
        }
    }

    fn x(&self, state: &State, word: &str) -> anyhow::Result<String> {
        expand(word, self.escape, &|n| state.lookup(n)).map_err(anyhow::Error::msg)
    }

    /// A stage's base: an earlier stage, `scratch`, or an image (pulled when missing).
    pub fn from(&mut self, image: &str, platform: Option<&str>, pull: bool) -> anyhow::Result<State> {
        let empty = || ImageConfig {
            created: None,
            architecture: layers_store::image::host_architecture().to_string(),
            os: "linux".into(),
            variant: None,
            config: Some(json!({"Env": [format!("PATH={}", crate::run::DEFAULT_PATH)]})),
            rootfs: RootFs { kind: "layers".into(), diff_ids: Vec::new() },
            history: Vec::new(),
            extra: Map::new(),
        };
        // As BuildKit and buildah: a base without PATH gets the default one.
        let state = |image: ImageRow, mut config: ImageConfig| {
            let mut env = env_of(&config);
            if !env.iter().any(|e| e.starts_with("PATH=")) {
                env.insert(0, format!("PATH={}", crate::run::DEFAULT_PATH));
                obj(&mut config).insert("Env".into(), json!(env));
            }
            State { image: Some(image), config, args: BTreeMap::new(), cmd_set: false }
        };
        if image.eq_ignore_ascii_case("scratch") {
            return Ok(State { image: None, config: empty(), args: BTreeMap::new(), cmd_set: false });
        }
        if let Some((_, row)) = self.stages.iter().find(|(n, _)| n.as_deref() == Some(&image.to_ascii_lowercase())) {
            let row = row.clone();
            let config = self.config_of(&row)?;
            return Ok(state(row, config));
        }
        let found = self.store.resolve(image).ok();
        let row = match found {
            Some(r) if !pull => r,
            _ => {
                let mut cmd = self.layers();
                cmd.args(["pull", "-q"]);
                if let Some(p) = platform {
                    cmd.args(["--platform", p]);
                }
                let out = cmd.arg(image).stdout(Stdio::null()).output().context("start layers pull")?;
                if !out.status.success() {
                    // The pull's own one-line error says what failed; the step's prefix names the line.
                    let err = String::from_utf8_lossy(&out.stderr);
                    let why = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("failed");
                    bail!("{}", why.strip_prefix("layers: ").unwrap_or(why));
                }
                self.store.resolve(image)?
            }
        };
        let config = self.config_of(&row)?;
        Ok(state(row, config))
    }

    fn config_of(&self, row: &ImageRow) -> anyhow::Result<ImageConfig> {
        serde_json::from_slice(&self.store.read_blob(&row.config, 4 << 20)?)
            .with_context(|| format!("read config {}", row.config))
    }

    /// `layers --root STORE`, for the steps that run as their own process.
    fn layers(&self) -> Process {
        let mut cmd = Process::new(std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe")));
        cmd.arg("--root").arg(self.store.root());
        cmd
    }

    /// The cache key of a step on `state`.
    fn key(&self, state: &State, text: &str, inputs: &str) -> Digest {
        let mut h = Hasher::new();
        let parent = state.image.as_ref().map_or("scratch".to_string(), |i| i.manifest.to_string());
        for part in ["layers-build-v1", &parent, text, inputs] {
            h.update(part.as_bytes());
            h.update(b"\n");
        }
        if state.image.is_none() {
            // A scratch stage's config is not in any image yet.
            h.update(serde_json::to_string(&state.config.config).unwrap_or_default().as_bytes());
        }
        h.finish()
    }

    /// Runs one instruction (after FROM) on `state`.
    pub fn step(&mut self, state: &mut State, at: &Located) -> anyhow::Result<()> {
        self.steps_done += 1;
        let label = format!("STEP {}/{}", self.steps_done, self.steps_total);
        let started = Instant::now();
        match &at.instruction {
            Instruction::Arg { args } => {
                for a in args {
                    let value = match self.build_args.get(&a.name) {
                        Some(v) => Some(v.clone()),
                        None => match &a.default {
                            Some(d) => Some(self.x(state, d)?),
                            None => self.global_args.get(&a.name).cloned().flatten(),
                        },
                    };
                    match value {
                        Some(v) => state.args.insert(a.name.clone(), v),
                        None => state.args.remove(&a.name),
                    };
                }
                self.say(&format!(
                    "{label}: ARG {}",
                    args.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(" ")
                ));
                return Ok(());
            }
            Instruction::Run { command, network, heredocs, mounts, .. } => {
                let (mount_args, targets, _rw_views) = self.run_mounts(state, mounts)?;
                let argv = match command {
                    Command::Exec(argv) => argv.clone(),
                    Command::Shell(text) => {
                        let mut script = text.clone();
                        for h in heredocs {
                            script.push('\n');
                            script.push_str(&h.content);
                            script.push_str(&h.name);
                        }
                        // `RUN <<EOF` alone: the document is the script.
                        if let [h] = heredocs.as_slice() {
                            let opener =
                                text.trim().trim_start_matches("<<").trim_start_matches('-').trim_matches(['"', '\'']);
                            if opener == h.name {
                                script = h.content.clone();
                            }
                        }
                        let mut argv = shell_of(&state.config);
                        argv.push(script);
                        argv
                    }
                };
                let args: Vec<String> = state.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let net = network.clone().unwrap_or_else(|| self.network.clone());
                let text = format!("RUN {}", serde_json::to_string(&argv)?);
                let key = self.key(state, &format!("{text} net={net} mounts={mounts:?}"), &args.join("\n"));
                self.say(&format!("{label}: RUN {}", at_text(command)));
                if self.hit(state, &key)? {
                    return Ok(());
                }
                let parent = self.need_image(state)?;
                let stubs = self.mount_stubs(state, &targets)?;
                let name = format!("layers-build-{}-{}", self.run_id, self.steps_done);
                let mut cmd = self.layers();
                cmd.args(["run", "--ephemeral", "--name", &name, "--net", &net, "--entrypoint", ""]).args(&mount_args);
                for a in &args {
                    if state.lookup(a.split('=').next().unwrap_or_default()).is_some() {
                        cmd.args(["-e", a]);
                    }
                }
                cmd.arg(parent.manifest.hex()).args(&argv);
                if self.quiet {
                    cmd.stdout(Stdio::null());
                }
                let status = cmd.status().context("start layers run")?;
                let c = self.store.resolve_container(&name);
                let result = (|| {
                    if !status.success() {
                        bail!(
                            "RUN {}: the command returned a non-zero code: {}",
                            at_text(command),
                            status.code().unwrap_or(-1)
                        );
                    }
                    let c = self.store.resolve_container(&name)?;
                    let (upper, _) = self.store.container_mount(&c)?.upper.context("container without an upper dir")?;
                    remove_stubs(&upper, &stubs);
                    self.commit_step(state, &name, &format!("RUN {}", at_text(command)), &key)
                })();
                if let Ok(c) = c {
                    let _ = self.store.remove_container(&c);
                }
                result?;
            }
            Instruction::Copy { copy } => {
                if self.copy(state, copy, &label, "COPY")? {
                    return Ok(());
                }
            }
            Instruction::Add { copy, checksum, .. } => {
                let urls =
                    copy.sources.iter().filter(|s| s.starts_with("http://") || s.starts_with("https://")).count();
                if urls > 0 && urls < copy.sources.len() {
                    bail!("ADD: URLs and local sources in one ADD are not supported; split it");
                }
                if urls == 0 && checksum.is_some() {
                    bail!("ADD --checksum is for URL sources");
                }
                let fetched = if urls > 0 { Some(self.download(state, copy, checksum.as_deref())?) } else { None };
                let spec = match &fetched {
                    Some((_, names)) => CopySpec { sources: names.clone(), ..copy.clone() },
                    None => copy.clone(),
                };
                if self.copy_from(state, &spec, &label, "ADD", fetched.as_ref().map(|(d, _)| d.path()))? {
                    return Ok(());
                }
            }
            other => {
                let text = self.configure(state, other)?;
                self.say(&format!("{label}: {text}"));
                let key = self.key(state, &text, "");
                if self.hit(state, &key)? {
                    return Ok(());
                }
                // WORKDIR makes its directory when the image lacks it (as BuildKit does).
                if let Instruction::Workdir { .. } = other {
                    let dir =
                        state.config.config.as_ref().and_then(|c| c["WorkingDir"].as_str()).unwrap_or("/").to_string();
                    if !self.visible(state, &dir)? {
                        self.mkdir_layer(state, &dir, &text, &key)?;
                        self.say(&format!("--> {} ({:.2}s)", short(state), started.elapsed().as_secs_f64()));
                        return Ok(());
                    }
                }
                state.config.history.push(History {
                    created: Some(self.now()),
                    created_by: Some(text),
                    comment: Some("layers build".into()),
                    empty_layer: true,
                });
                state.config.created = Some(self.now());
                let row = self.store.derive_image(state.image.as_ref().map(|i| &i.manifest), &state.config, &[])?;
                self.store.cache_step(&key, &row.manifest)?;
                state.image = Some(row);
            }
        }
        self.say(&format!("--> {} ({:.2}s)", short(state), started.elapsed().as_secs_f64()));
        Ok(())
    }

    /// A cache hit moves the stage onto the cached image.
    fn hit(&self, state: &mut State, key: &Digest) -> anyhow::Result<bool> {
        if self.no_cache {
            return Ok(false);
        }
        let Some(row) = self.store.cached_step(key)? else { return Ok(false) };
        state.config = self.config_of(&row)?;
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

    /// Commits the step's container as the stage's next image.
    fn commit_step(&self, state: &mut State, container: &str, created_by: &str, key: &Digest) -> anyhow::Result<()> {
        let c = self.store.resolve_container(container)?;
        let opts = CommitOptions {
            compression: Compression::Gzip,
            created_by: created_by.to_string(),
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
        self.store.cache_step(key, &row.manifest)?;
        state.config = self.config_of(&row)?;
        state.image = Some(row);
        Ok(())
    }

    /// COPY and ADD; true on a cache hit.
    fn copy(&mut self, state: &mut State, spec: &CopySpec, label: &str, verb: &str) -> anyhow::Result<bool> {
        self.copy_from(state, spec, label, verb, None)
    }

    /// COPY and ADD, with the sources in `fetched` (ADD's downloads) when given.
    fn copy_from(
        &mut self,
        state: &mut State,
        spec: &CopySpec,
        label: &str,
        verb: &str,
        fetched: Option<&std::path::Path>,
    ) -> anyhow::Result<bool> {
        let dest_raw = self.x(state, &spec.dest)?;
        let workdir = state.config.config.as_ref().and_then(|c| c["WorkingDir"].as_str()).unwrap_or("/").to_string();
        let joined = if dest_raw.starts_with('/') { dest_raw.clone() } else { format!("{workdir}/{dest_raw}") };
        let mut dest = format!("/{}", context::clean(&joined).unwrap_or_default().display());
        // `.` and a trailing `/` both mean "into this directory".
        if (dest_raw.ends_with('/') || dest_raw == "." || dest_raw.ends_with("/.")) && !dest.ends_with('/') {
            dest.push('/');
        }
        let attrs = self.attrs(state, spec)?;
        let excludes: Vec<String> = spec.exclude.iter().map(|e| self.x(state, e)).collect::<anyhow::Result<_>>()?;
        let sources: Vec<String> = spec.sources.iter().map(|s| self.x(state, s)).collect::<anyhow::Result<_>>()?;
        // Where the sources come from: heredocs (a scratch dir), another stage or image, or the context.
        let scratch = self.store.scratch_dir("build-copy")?;
        let _cleanup = ScratchDir(scratch.clone());
        let (tree_dir, ignore, name) = if let Some(dir) = fetched {
            (dir.to_path_buf(), Patterns::default(), "downloads".to_string())
        } else if !spec.heredocs.is_empty() {
            for h in &spec.heredocs {
                let content = if h.expand {
                    self.x(state, &format!("\"{}\"", h.content.replace('"', "\\\"")))?
                } else {
                    h.content.clone()
                };
                std::fs::write(scratch.join(&h.name), content)?;
            }
            (scratch.clone(), Patterns::default(), "here-documents".to_string())
        } else if let Some(from) = &spec.from {
            let from = self.x(state, from)?;
            let row = match from.parse::<usize>().ok().and_then(|i| self.stages.get(i)) {
                Some((_, row)) => row.clone(),
                None => match self.stages.iter().find(|(n, _)| n.as_deref() == Some(&from.to_ascii_lowercase())) {
                    Some((_, row)) => row.clone(),
                    None => self.from(&from, None, false)?.image.context("COPY --from=scratch has nothing to copy")?,
                },
            };
            let view = scratch.join("from");
            std::fs::create_dir(&view)?;
            mount_spec(&self.store.image_view(&row.manifest)?, &view, MountOptions::default())
                .with_context(|| format!("mount {from} to copy from it"))?;
            (view, Patterns::default(), format!("image {from}"))
        } else {
            (self.context.clone(), self.ignore.clone(), "build context".to_string())
        };
        let ignore = ignore.with(&excludes);
        let result = (|| {
            let tree = Tree::open(&tree_dir, &name)?;
            let mut selected = Vec::new();
            for s in &sources {
                let s = s.trim_start_matches("<<").trim_matches(['"', '\'']);
                selected.extend(tree.select(s, &ignore)?);
            }
            // ADD extracts local archives (their bytes key the cache; they are unpacked only on a miss).
            let archives: Vec<std::path::PathBuf> = if verb == "ADD" && spec.from.is_none() && spec.heredocs.is_empty()
            {
                selected.iter().filter(|s| context::is_archive(&tree, s)).cloned().collect()
            } else {
                Vec::new()
            };
            let keyed = context::plan(&tree, &selected, &dest, &ignore)?;
            // Only the context's files keep their inodes from one build to the next.
            let known = (spec.from.is_none() && spec.heredocs.is_empty()).then_some(self.store);
            let digest = context::content_digest(&tree, &keyed, attrs, known)?;
            let plan = if archives.is_empty() {
                keyed
            } else {
                let plain: Vec<std::path::PathBuf> =
                    selected.iter().filter(|s| !archives.contains(s)).cloned().collect();
                context::plan(&tree, &plain, &dest, &ignore)?
            };
            let flags: String = [("from", &spec.from), ("chown", &spec.chown), ("chmod", &spec.chmod)]
                .iter()
                .filter_map(|(n, v)| v.as_ref().map(|v| format!("--{n}={v} ")))
                .collect();
            let text = format!("{verb} {flags}{} {dest}", sources.join(" "));
            self.say(&format!("{label}: {text}"));
            let key = self.key(state, &format!("{text} {attrs:?}"), &digest.to_string());
            if self.hit(state, &key)? {
                return Ok(true);
            }
            let parent = self.need_image(state)?;
            let c = self.store.create_container(
                &parent.manifest,
                Some(&format!("layers-build-{}-{}", self.run_id, self.steps_done)),
                "layers-build",
                Lifetime::Ephemeral,
            )?;
            let write = |root: &std::path::Path| -> anyhow::Result<()> {
                context::copy(&tree, &plan, root, attrs)?;
                for (i, a) in archives.iter().enumerate() {
                    let into = scratch.join(format!("archive-{i}"));
                    std::fs::create_dir(&into)?;
                    context::extract(&tree, a, &into).with_context(|| format!("{verb} {}", a.display()))?;
                    let extracted = Tree::open(&into, &format!("archive {}", a.display()))?;
                    let dir = if dest.ends_with('/') { dest.clone() } else { format!("{dest}/") };
                    let mut p = context::plan(&extracted, &[std::path::PathBuf::new()], &dir, &Patterns::default())?;
                    // The archive's top is the destination dir itself, which keeps its own mode.
                    p.items.retain(|(e, _)| !e.rel.as_os_str().is_empty());
                    let keep = Attrs { keep_owner: spec.chown.is_none(), ..attrs };
                    context::copy(&extracted, &p, root, keep)?;
                }
                Ok(())
            };
            let copied = (|| {
                let spec = self.store.container_mount(&c)?;
                if spec.lowers.is_empty() {
                    // Nothing below (scratch): the upper dir is the whole root.
                    let (upper, _) = spec.upper.clone().context("container without an upper dir")?;
                    return write(&upper);
                }
                let merged = self.store.merged_dir(&c);
                mount_spec(&spec, &merged, MountOptions::default())?;
                let copied = write(&merged);
                unmount_path(&merged, false)?;
                copied
            })();
            let result = copied.and_then(|()| self.commit_step(state, &c.name, &text, &key));
            if let Ok(c) = self.store.resolve_container(&c.id) {
                let _ = self.store.remove_container(&c);
            }
            result.map(|()| false)
        })();
        if tree_dir.ends_with("from") {
            let _ = unmount_path(&tree_dir, true);
        }
        result
    }

    /// `RUN --mount=…` as `layers run` options: `type=cache` (a store directory kept
    /// across builds, by `id`, default the target), `type=tmpfs`, `type=bind` (from the
    /// context; read-only, or with `rw` a throwaway copy-on-write view).
    /// Also gives the mount targets, whose stubs [`remove_stubs`] clears after the run,
    /// and the `rw` views, which must live until the step is over.
    #[allow(clippy::type_complexity)]
    fn run_mounts(
        &self,
        state: &State,
        mounts: &[String],
    ) -> anyhow::Result<(Vec<String>, Vec<String>, Vec<ThrowawayView>)> {
        let mut out = Vec::new();
        let mut targets = Vec::new();
        let mut views = Vec::new();
        for m in mounts {
            let m = self.x(state, m)?;
            let mut opts: BTreeMap<&str, &str> = BTreeMap::new();
            for kv in m.split(',') {
                let (k, v) = kv.split_once('=').unwrap_or((kv, "true"));
                opts.insert(k.trim(), v.trim());
            }
            let target = opts.get("target").or(opts.get("dst")).or(opts.get("destination")).copied();
            let Some(target) = target.filter(|t| t.starts_with('/')) else {
                bail!("--mount={m}: needs an absolute target=");
            };
            targets.push(target.to_string());
            match opts.get("type").copied().unwrap_or("bind") {
                "cache" => {
                    let dir = self.store.cache_mount_dir(opts.get("id").copied().unwrap_or(target))?;
                    out.extend(["-v".to_string(), format!("{}:{target}", dir.display())]);
                }
                "tmpfs" => out.extend(["--tmpfs".to_string(), target.to_string()]),
                "bind" if opts.contains_key("from") => {
                    bail!("--mount={m}: bind mounts from a stage are not supported yet")
                }
                "bind" => {
                    let source = context::clean(opts.get("source").or(opts.get("src")).copied().unwrap_or("."))
                        .with_context(|| format!("--mount={m}: the source leaves the build context"))?;
                    let host = self.context.join(source);
                    // Resolved on the host: refuse a source that is (or passes through) a symlink out.
                    let real = host.canonicalize().with_context(|| format!("--mount={m}: source"))?;
                    if !real.starts_with(&self.context) {
                        bail!("--mount={m}: the source leaves the build context");
                    }
                    if opts.get("rw").or(opts.get("readwrite")).is_some() {
                        // Writes reach the step, never the build context (BuildKit's semantics).
                        let view = ThrowawayView::over(self.store, &real).with_context(|| format!("--mount={m}"))?;
                        out.extend(["-v".to_string(), format!("{}:{target}:rw", view.path().display())]);
                        views.push(view);
                    } else {
                        out.extend(["-v".to_string(), format!("{}:{target}:ro", real.display())]);
                    }
                }
                other => bail!("--mount={m}: type {other} is not supported (cache, tmpfs, bind)"),
            }
        }
        Ok((out, targets, views))
    }

    /// The mount targets (and their parents) the image lacks, so `layers run` will make
    /// them: relative paths, deepest first.
    fn mount_stubs(&self, state: &State, targets: &[String]) -> anyhow::Result<Vec<PathBuf>> {
        let mut stubs = Vec::new();
        if targets.is_empty() {
            return Ok(stubs);
        }
        let lowers = match &state.image {
            Some(image) => self.store.lower_dirs(&image.manifest)?,
            None => Vec::new(),
        };
        for target in targets {
            let Some(rel) = context::clean(target) else { continue };
            let mut path = PathBuf::new();
            for part in rel.components() {
                path.push(part);
                if !stubs.contains(&path) && !layers_store::upper::in_lowers(&lowers, &path) {
                    stubs.push(path.clone());
                }
            }
        }
        stubs.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        Ok(stubs)
    }

    /// Whether `path` (absolute) exists in the stage's image.
    fn visible(&self, state: &State, path: &str) -> anyhow::Result<bool> {
        let Some(image) = &state.image else { return Ok(path.trim_matches('/').is_empty()) };
        let lowers = self.store.lower_dirs(&image.manifest)?;
        Ok(layers_store::upper::in_lowers(&lowers, std::path::Path::new(path.trim_start_matches('/'))))
    }

    /// A layer holding just the directory `dir` (and its missing parents).
    fn mkdir_layer(&mut self, state: &mut State, dir: &str, created_by: &str, key: &Digest) -> anyhow::Result<()> {
        let parent = self.need_image(state)?;
        let name = format!("layers-build-{}-{}", self.run_id, self.steps_done);
        let c = self.store.create_container(&parent.manifest, Some(&name), "layers-build", Lifetime::Ephemeral)?;
        let made = (|| {
            let spec = self.store.container_mount(&c)?;
            let rel = context::clean(dir).unwrap_or_default();
            if spec.lowers.is_empty() {
                let (upper, _) = spec.upper.clone().context("container without an upper dir")?;
                return context::make_dir(&upper, &rel);
            }
            let merged = self.store.merged_dir(&c);
            mount_spec(&spec, &merged, MountOptions::default())?;
            let made = context::make_dir(&merged, &rel);
            unmount_path(&merged, false)?;
            made
        })();
        let result = made.and_then(|()| self.commit_step(state, &name, created_by, key));
        if let Ok(c) = self.store.resolve_container(&c.id) {
            let _ = self.store.remove_container(&c);
        }
        result
    }

    /// ADD's URL sources, fetched into a scratch dir (each named by its URL's last path
    /// component, mode 0600 as BuildKit gives them); with `--checksum`, other content fails.
    fn download(
        &self,
        state: &State,
        spec: &CopySpec,
        checksum: Option<&str>,
    ) -> anyhow::Result<(ScratchDir, Vec<String>)> {
        let want = checksum
            .map(|c| self.x(state, c))
            .transpose()?
            .map(|c| Digest::parse(&c).with_context(|| format!("--checksum={c}: want sha256:<64 hex>")))
            .transpose()?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("start runtime")?;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .user_agent(concat!("layers/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(30))
            .read_timeout(crate::registry::stall_timeout())
            .build()?;
        let dir = ScratchDir(self.store.scratch_dir("build-download")?);
        let mut names = Vec::new();
        for url in &spec.sources {
            let url = self.x(state, url)?;
            let name = url
                .split(['?', '#'])
                .next()
                .unwrap_or("")
                .rsplit('/')
                .find(|s| !s.is_empty() && !s.contains(':'))
                .unwrap_or("index.html");
            let body = rt
                .block_on(async { client.get(&url).send().await?.error_for_status()?.bytes().await })
                .with_context(|| format!("ADD {url}"))?;
            let got = Digest::of(&body);
            if let Some(w) = want.filter(|w| *w != got) {
                bail!("ADD {url}: checksum mismatch: want {w}, got {got}");
            }
            let path = dir.path().join(name);
            std::fs::write(&path, &body)?;
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
            names.push(name.to_string());
        }
        Ok((dir, names))
    }

    /// `--chown` and `--chmod` of a COPY.
    fn attrs(&self, state: &State, spec: &CopySpec) -> anyhow::Result<Attrs> {
        let mut attrs = Attrs::default();
        if let Some(m) = &spec.chmod {
            let m = self.x(state, m)?;
            attrs.mode = Some(u32::from_str_radix(&m, 8).with_context(|| format!("--chmod={m}: want an octal mode"))?);
        }
        if let Some(o) = &spec.chown {
            let o = self.x(state, o)?;
            let lowers = match &state.image {
                Some(i) => self.store.lower_dirs(&i.manifest)?,
                None => Vec::new(),
            };
            let (uid, gid) = crate::run::resolve_user(&o, &lowers).map_err(|e| anyhow::anyhow!("--chown={o}: {e}"))?;
            attrs.uid = uid;
            attrs.gid = gid;
        }
        Ok(attrs)
    }

    /// A config-only instruction: changes `state.config`; returns the history text.
    fn configure(&self, state: &mut State, i: &Instruction) -> anyhow::Result<String> {
        let esc = self.escape;
        Ok(match i {
            Instruction::Env { pairs } => {
                let mut text = Vec::new();
                for p in pairs {
                    let (k, v) = (self.x(state, &p.key)?, self.x(state, &p.value)?);
                    let mut env = env_of(&state.config);
                    crate::run::set_env(&mut env, &format!("{k}={v}"));
                    obj(&mut state.config).insert("Env".into(), json!(env));
                    text.push(format!("{k}={v}"));
                }
                format!("ENV {}", text.join(" "))
            }
            Instruction::Label { pairs } => {
                let mut text = Vec::new();
                for p in pairs {
                    let (k, v) = (self.x(state, &p.key)?, self.x(state, &p.value)?);
                    let labels = obj(&mut state.config).entry("Labels").or_insert_with(|| json!({}));
                    if !labels.is_object() {
                        *labels = json!({});
                    }
                    labels[&k] = json!(v);
                    text.push(format!("{k}={v}"));
                }
                format!("LABEL {}", text.join(" "))
            }
            Instruction::Workdir { path } => {
                let p = self.x(state, path)?;
                let base =
                    state.config.config.as_ref().and_then(|c| c["WorkingDir"].as_str()).unwrap_or("/").to_string();
                let joined = if p.starts_with('/') { p } else { format!("{}/{p}", base.trim_end_matches('/')) };
                let cleaned = format!("/{}", context::clean(&joined).unwrap_or_default().display());
                obj(&mut state.config).insert("WorkingDir".into(), json!(cleaned));
                format!("WORKDIR {cleaned}")
            }
            Instruction::User { user } => {
                let u = self.x(state, user)?;
                // A number that is no uid fails here, at its own line, not at the next RUN.
                crate::run::check_user_ids(&u).map_err(anyhow::Error::msg)?;
                obj(&mut state.config).insert("User".into(), json!(u));
                format!("USER {u}")
            }
            Instruction::Expose { ports } => {
                let mut all = Vec::new();
                for p in ports {
                    all.extend(expand_words(p, esc, &|n: &str| state.lookup(n)).map_err(anyhow::Error::msg)?);
                }
                let exposed = obj(&mut state.config).entry("ExposedPorts").or_insert_with(|| json!({}));
                for p in &all {
                    let p = if p.contains('/') { p.clone() } else { format!("{p}/tcp") };
                    exposed[&p] = json!({});
                }
                format!("EXPOSE {}", all.join(" "))
            }
            Instruction::Volume { paths } => {
                let paths: Vec<String> = paths.iter().map(|p| self.x(state, p)).collect::<anyhow::Result<_>>()?;
                let volumes = obj(&mut state.config).entry("Volumes").or_insert_with(|| json!({}));
                for p in &paths {
                    volumes[p] = json!({});
                }
                format!("VOLUME {}", serde_json::to_string(&paths)?)
            }
            Instruction::Stopsignal { signal } => {
                let s = self.x(state, signal)?;
                crate::run::control::parse_signal(&s)?;
                obj(&mut state.config).insert("StopSignal".into(), json!(s));
                format!("STOPSIGNAL {s}")
            }
            Instruction::Shell { argv } => {
                obj(&mut state.config).insert("Shell".into(), json!(argv));
                format!("SHELL {}", serde_json::to_string(argv)?)
            }
            Instruction::Cmd { command } => {
                let argv = self.argv(state, command);
                obj(&mut state.config).insert("Cmd".into(), json!(argv));
                state.cmd_set = true;
                format!("CMD {}", serde_json::to_string(&argv)?)
            }
            Instruction::Entrypoint { command } => {
                let argv = self.argv(state, command);
                obj(&mut state.config).insert("Entrypoint".into(), json!(argv));
                // As Docker: an ENTRYPOINT drops a CMD inherited from the base.
                if !state.cmd_set {
                    obj(&mut state.config).insert("Cmd".into(), Value::Null);
                }
                format!("ENTRYPOINT {}", serde_json::to_string(&argv)?)
            }
            Instruction::Healthcheck { check } => {
                let v = match check {
                    None => json!({"Test": ["NONE"]}),
                    Some(h) => {
                        let test = match &h.command {
                            Command::Shell(s) => json!(["CMD-SHELL", s]),
                            Command::Exec(a) => {
                                let mut t = vec!["CMD".to_string()];
                                t.extend(a.iter().cloned());
                                json!(t)
                            }
                        };
                        let mut v = json!({"Test": test});
                        for (key, d) in [
                            ("Interval", &h.interval),
                            ("Timeout", &h.timeout),
                            ("StartPeriod", &h.start_period),
                            ("StartInterval", &h.start_interval),
                        ] {
                            if let Some(d) = d {
                                v[key] = json!(duration_ns(d)?);
                            }
                        }
                        if let Some(r) = &h.retries {
                            v["Retries"] =
                                json!(r.parse::<u64>().with_context(|| format!("HEALTHCHECK --retries={r}"))?);
                        }
                        v
                    }
                };
                obj(&mut state.config).insert("Healthcheck".into(), v.clone());
                format!("HEALTHCHECK {v}")
            }
            Instruction::Onbuild { text, .. } => {
                let list = obj(&mut state.config).entry("OnBuild").or_insert_with(|| json!([]));
                if let Some(a) = list.as_array_mut() {
                    a.push(json!(text));
                } else {
                    *list = json!([text]);
                }
                format!("ONBUILD {text}")
            }
            Instruction::Maintainer { name } => {
                state.config.extra.insert("author".into(), json!(name));
                format!("MAINTAINER {name}")
            }
            Instruction::From { .. }
            | Instruction::Run { .. }
            | Instruction::Copy { .. }
            | Instruction::Add { .. }
            | Instruction::Arg { .. } => {
                bail!("not a config instruction")
            }
        })
    }

    /// CMD/ENTRYPOINT argv: exec form as is, shell form through the SHELL.
    fn argv(&self, state: &State, c: &Command) -> Vec<String> {
        match c {
            Command::Exec(a) => a.clone(),
            Command::Shell(s) => {
                let mut argv = shell_of(&state.config);
                argv.push(s.clone());
                argv
            }
        }
    }
}

fn at_text(c: &Command) -> String {
    match c {
        Command::Shell(s) => s.clone(),
        Command::Exec(a) => serde_json::to_string(a).unwrap_or_default(),
    }
}

fn short(state: &State) -> String {
    state.image.as_ref().map_or("scratch".into(), |i| i.config.hex()[..12].to_string())
}

/// `30s`, `1m30s`, `500ms` → nanoseconds.
fn duration_ns(d: &str) -> anyhow::Result<u64> {
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = d.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&n) = chars.peek().filter(|n| n.is_ascii_alphabetic()) {
            unit.push(n);
            chars.next();
        }
        let n: f64 = num.parse().with_context(|| format!("duration {d:?}"))?;
        num.clear();
        total += n * match unit.as_str() {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => bail!("duration {d:?}: unknown unit {unit}"),
        };
    }
    if !num.is_empty() {
        bail!("duration {d:?}: a unit is missing (s, m, h...)");
    }
    Ok(total as u64)
}

/// A scratch dir, removed when dropped.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Removes what `layers run` made only to mount over (empty dirs and files the image
/// did not have), as BuildKit does, so a `RUN --mount` leaves no trace in the layer.
/// What the command put there stays. The command may have swapped a parent for a
/// symlink: parents are opened without following any.
fn remove_stubs(upper: &std::path::Path, stubs: &[PathBuf]) {
    use rustix::fs::{openat2, statat, unlinkat, AtFlags, FileType, Mode, OFlags, ResolveFlags};
    let Ok(root) = rustix::fs::open(upper, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()) else {
        return;
    };
    let how = ResolveFlags::NO_SYMLINKS | ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
    for stub in stubs {
        let (Some(parent), Some(name)) = (stub.parent(), stub.file_name()) else { continue };
        let parent = if parent.as_os_str().is_empty() { std::path::Path::new(".") } else { parent };
        let Ok(dir) = openat2(&root, parent, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty(), how)
        else {
            continue;
        };
        let Ok(st) = statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) else { continue };
        // A failed removal (a dir not empty) is the answer we want: the command wrote there.
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                let _ = unlinkat(&dir, name, AtFlags::REMOVEDIR);
            }
            FileType::RegularFile if st.st_size == 0 => {
                let _ = unlinkat(&dir, name, AtFlags::empty());
            }
            _ => {}
        }
    }
}
