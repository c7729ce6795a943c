//! `layers build`: a Dockerfile to an image, in three phases. The frontend parses
//! it into typed instructions (`frontend/`); the plan resolves the stages the target
//! needs and computes every step's inputs and cache key before anything runs
//! (`plan/`); the executor looks each key up or runs the step and records its image
//! under it (`exec/`). RUN steps go through the runtime's own `run_container`; FROM
//! pulls through the pull code; nothing is re-executed as a child `layers`.

// A cache directory the user named (`type=local`), reached through `fsroot::UserDir`;
// the store's scratch dirs.
#[allow(clippy::disallowed_methods)]
pub mod cache;
pub mod changes;
pub mod context;
pub mod exec;
pub mod frontend;
pub mod plan;
// The store's own scratch dirs.
#[allow(clippy::disallowed_methods)]
pub mod scratch;
// The store's own scratch dir, and a file the user named.
#[allow(clippy::disallowed_methods)]
pub mod secrets;
// A scratch dir of the store's over a bind source already resolved beneath its root.
#[allow(clippy::disallowed_methods)]
mod throwaway;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use layers_store::meta::ImageRow;
use layers_store::Store;

use crate::registry::config::RegistriesConfig;
use crate::run::Network;
use crate::transfer::obtain;
use frontend::instruction::{self, Instruction};
use frontend::{pattern, words};

/// Build args every Dockerfile has without declaring them (Docker's proxy variables).
const PREDEFINED_ARGS: [&str; 5] = ["HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY"];

/// The ARGs before the first FROM, with their values.
fn global_args(
    globals: &[&instruction::Located],
    build_args: &BTreeMap<String, String>,
    escape: char,
) -> anyhow::Result<BTreeMap<String, Option<String>>> {
    let mut out = BTreeMap::new();
    for g in globals {
        if let Instruction::Arg { args } = &g.instruction {
            for d in args {
                let value = match (build_args.get(&d.name), &d.default) {
                    (Some(v), _) => Some(v.clone()),
                    (None, Some(def)) => Some(
                        words::expand(def, escape, &|n: &str| out.get(n).cloned().flatten())
                            .map_err(anyhow::Error::msg)?,
                    ),
                    (None, None) => None,
                };
                out.insert(d.name.clone(), value);
            }
        }
    }
    Ok(out)
}

/// What to build and how.
pub struct BuildRequest<'a> {
    /// The context directory.
    pub context: PathBuf,
    /// Where the Dockerfile is.
    pub file: Dockerfile,
    /// `--build-arg`s.
    pub build_args: BTreeMap<String, String>,
    /// The stage to build (default: the last).
    pub target: Option<String>,
    /// Look nothing up in the cache.
    pub no_cache: bool,
    /// Pull the images FROM and `COPY --from` name even when stored.
    pub pull: bool,
    /// Print nothing but errors.
    pub quiet: bool,
    /// How the pulls of base images show their progress (`--progress`, `-q`).
    pub progress: crate::transfer::progress::Shown,
    /// RUN's network when a step names none.
    pub network: Network,
    /// Where registries are (FROM pulls).
    pub registries: &'a RegistriesConfig,
    /// Runs the pulls and cache reads; quiesced before each RUN.
    pub transfers: &'a crate::transfer::Transfers,
    /// Shared caches to look steps up in, in order.
    pub cache_from: Vec<cache::CacheFrom>,
    /// `--label`s: set on the final image's config after its last step, over its LABELs.
    pub labels: BTreeMap<String, String>,
    /// The image is only pushed (and tagged): a final image from a registry cache may
    /// be recorded as remote, its layers left in the registry (`build --push`).
    pub leave_remote: bool,
    /// `--secret`s, by id.
    pub secrets: secrets::Secrets,
    /// `--ssh` agents, by id.
    pub ssh: secrets::SshAgents,
    /// `--platform` when not this machine's (emulated through binfmt_misc): what a
    /// FROM without `--platform` pulls.
    pub platform: Option<String>,
}

/// Where a build's Dockerfile is.
pub enum Dockerfile {
    /// A path in the context (`Dockerfile`, or `-f` into a context read from stdin),
    /// read beneath it like any context file.
    InContext(PathBuf),
    /// A host path the user named (`-f`).
    Host(PathBuf),
    /// Text already read (`-f -`, `build -`), and its name for messages.
    Text { name: String, text: String },
}

/// What a build made: the image, and what `--cache-to` exports.
pub struct Built {
    pub image: ImageRow,
    made: Vec<exec::Made>,
    imported: cache::Imported,
    /// The target stage's index in the plan.
    target: usize,
    /// The layers of the images stages start from (FROM an image): not the build's own.
    base_layers: std::collections::BTreeSet<layers_store::DiffId>,
    /// The ids of the cache mounts its RUN steps use, in the order first used.
    cache_mounts: Vec<String>,
}

impl Built {
    /// The repositories of `registry` that the build's imported caches came from.
    pub fn cache_repositories(&self, registry: &str) -> Vec<String> {
        self.imported.repositories_on(registry)
    }

    /// The registries the build's imported caches came from.
    pub fn cache_registries(&self) -> Vec<String> {
        self.imported.registries()
    }

    /// Writes the build's steps to a shared cache.
    pub fn export(
        &self,
        store: &Store,
        registries: &RegistriesConfig,
        transfers: &crate::transfer::Transfers,
        to: &cache::CacheTo,
    ) -> anyhow::Result<cache::Exported> {
        let built = cache::Steps {
            made: &self.made,
            target: self.target,
            base_layers: &self.base_layers,
            mounts: &self.cache_mounts,
        };
        cache::export(store, registries, transfers, &self.imported, &built, to)
    }
}

/// `TARGETPLATFORM`, `TARGETOS`, `TARGETARCH`, `TARGETVARIANT` (of `target`, else this
/// machine's) and the `BUILD…` four (this machine's), as BuildKit defines them.
fn platform_args(target: Option<&str>) -> BTreeMap<String, String> {
    use crate::transfer::platform::Platform;
    let host = Platform::host();
    let target = target.and_then(|t| Platform::parse(t).ok()).unwrap_or_else(|| host.clone());
    let mut args = BTreeMap::new();
    for (prefix, p) in [("TARGET", &target), ("BUILD", &host)] {
        args.insert(format!("{prefix}PLATFORM"), p.to_string());
        args.insert(format!("{prefix}OS"), p.os.clone());
        args.insert(format!("{prefix}ARCH"), p.architecture.clone());
        args.insert(format!("{prefix}VARIANT"), p.variant.clone().unwrap_or_default());
    }
    args
}

/// Builds `a`: the image of the target stage, and what a cache export needs.
// The build context is a dir the user named (canonicalized once, then read through
// `fsroot::Tree`); the Dockerfile's path is joined for messages only.
#[allow(clippy::disallowed_methods)]
pub fn build(store: &Store, a: &BuildRequest) -> anyhow::Result<Built> {
    let context = a.context.canonicalize().with_context(|| format!("build context {}", a.context.display()))?;
    let context_tree = layers_store::fsroot::Tree::open(&context, "build context")?;
    // A `-f` path is the user's own choice; the default Dockerfile is a context file like any other.
    let (file, text) = match &a.file {
        Dockerfile::Host(f) => {
            (f.display().to_string(), crate::bounded::read_text_file(f, crate::bounded::MAX_DOCKERFILE, "Dockerfile")?)
        }
        Dockerfile::InContext(rel) => {
            let file = context.join(rel).display().to_string();
            let bytes = context_tree
                .read_small(rel, crate::bounded::MAX_DOCKERFILE)?
                .with_context(|| format!("read {file}: no such file or directory"))?;
            let text = String::from_utf8(bytes).with_context(|| format!("{file}: not UTF-8 text"))?;
            (file, text)
        }
        Dockerfile::Text { name, text } => (name.clone(), text.clone()),
    };
    let parsed = instruction::parse(&file, &text)?;
    if let Some(s) = parsed.syntax.as_deref().filter(|s| !s.starts_with("docker/dockerfile")) {
        eprintln!("layers: ignoring `# syntax={s}`: layers builds with its own Dockerfile frontend");
    }
    let stages = plan::split(&parsed.instructions);
    if stages.stages.is_empty() {
        bail!("{file}: no FROM instruction");
    }
    // BuildKit's automatic platform args, for an `ARG TARGETARCH` (etc.) to pick up
    // unless a --build-arg gives it.
    let mut build_args = platform_args(a.platform.as_deref());
    build_args.extend(a.build_args.iter().map(|(k, v)| (k.clone(), v.clone())));
    let global_args = global_args(&stages.globals, &build_args, parsed.escape)?;
    let target = match &a.target {
        Some(t) => stages
            .stages
            .iter()
            .position(|s| s.1.as_deref() == Some(&t.to_ascii_lowercase()))
            .with_context(|| format!("--target {t}: no stage of that name"))?,
        None => stages.stages.len() - 1,
    };
    let need = plan::needed(&stages, target);
    // As Docker: a --build-arg no ARG of the built stages declares is a likely typo.
    let declared: Vec<&str> = stages
        .globals
        .iter()
        .copied()
        .chain(stages.stages.iter().zip(&need).filter(|(_, n)| **n).flat_map(|(s, _)| s.2.iter()))
        .filter_map(|l| match &l.instruction {
            Instruction::Arg { args } => Some(args.iter().map(|a| a.name.as_str())),
            _ => None,
        })
        .flatten()
        .collect();
    let unused: Vec<&str> = a
        .build_args
        .keys()
        .map(String::as_str)
        .filter(|k| !declared.contains(k) && !PREDEFINED_ARGS.contains(&k.to_ascii_uppercase().as_str()))
        .collect();
    if !unused.is_empty() && !a.quiet {
        eprintln!("[Warning] One or more build-args [{}] were not consumed", unused.join(" "));
    }
    let ignore = match context_tree.read_small(Path::new(".dockerignore"), crate::bounded::MAX_DOCKERFILE)? {
        Some(t) => pattern::Patterns::parse(&String::from_utf8_lossy(&t)),
        None => pattern::Patterns::default(),
    };
    let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => Some(v.parse::<i64>().with_context(|| format!("SOURCE_DATE_EPOCH={v}: want seconds since 1970"))?),
        Err(_) => None,
    };
    // A base not stored is pulled with its progress shown (bars on a terminal, a
    // line per layer when piped) after the line saying why: a 20 s pull is not a hang.
    // (the image, whether it was pulled now)
    let puller = obtain::Puller { transfers: a.transfers, registries: a.registries, shown: a.progress };
    let policy = if a.pull { obtain::PullPolicy::Always } else { obtain::PullPolicy::Missing };
    let obtain = |image: &str, platform: Option<&str>, why: &str| -> anyhow::Result<(ImageRow, bool)> {
        let want = obtain::Want { name: image, platform, policy };
        let (row, pulled) = obtain::image(store, &puller, &want, &|_| {
            if !a.quiet {
                eprintln!("{why}");
            }
        })?;
        // A stored base is used now (a pull records its own use).
        if !pulled {
            store.images().touch(&row.manifest)?;
        }
        Ok((row, pulled))
    };
    let base = |image: &str, platform: Option<&str>, why: &str| {
        obtain(image, platform.or(a.platform.as_deref()), why).map(|(row, _)| row)
    };
    // With a shared cache, a FROM image not stored is only read from its registry:
    // if every step of its stage hits, its layers are never fetched.
    let from = |image: &str, platform: Option<&str>, why: &str| -> anyhow::Result<plan::Found> {
        let platform = platform.or(a.platform.as_deref());
        if a.cache_from.is_empty() || (!a.pull && store.images().resolve(image).is_ok()) {
            let (row, pulled) = obtain(image, platform, why)?;
            return Ok(plan::Found { image: plan::FromImage::Stored(row), pulled });
        }
        let remote = crate::transfer::pull::remote_image(a.transfers, image, platform, a.registries, true)?;
        Ok(plan::Found { image: plan::FromImage::Remote(Box::new(remote)), pulled: false })
    };
    let inputs = plan::Inputs {
        store,
        from: &from,
        context_tree: &context_tree,
        ignore: ignore.clone(),
        escape: parsed.escape,
        build_args: build_args.clone(),
        global_args,
        network: a.network.clone(),
        base: &base,
        max_download: store.limits().max_bytes,
        transfers: a.transfers,
    };
    // The cache's manifest and config are fetched while the plan hashes the context.
    let (plan, imported) = std::thread::scope(|s| {
        let loading = s.spawn(|| {
            let say = |l: &str| {
                if !a.quiet {
                    eprintln!("{l}");
                }
            };
            cache::Imported::load(
                &a.cache_from,
                a.registries,
                a.transfers,
                &|w| eprintln!("layers: warning: {w}"),
                &say,
            )
        });
        (plan::plan(&inputs, &file, &stages, &need), loading.join())
    });
    let plan = plan?;
    // A remote FROM image a step needs after all, pulled: the image planned on, or an error.
    let pull_base =
        |reference: &str, platform: Option<&str>, manifest: &layers_store::Digest| -> anyhow::Result<ImageRow> {
            let got = crate::transfer::pull::pull_image(
                a.transfers,
                store.reopen()?,
                reference,
                platform,
                a.registries,
                true,
                a.progress,
            )?;
            if got != *manifest {
                bail!("FROM {reference}: it names {got} now, not {manifest} the build was planned on; build again");
            }
            store.images().touch(&got)?;
            Ok(store.images().resolve(&got.to_string())?)
        };
    let mut cache = imported.map_err(|_| anyhow::anyhow!("reading --cache-from panicked"))?;
    // A cache source whose blobs fail midway is dropped and the build runs again
    // without it: what ran is in the store by then, so the rerun costs the steps the
    // failed source had covered.
    let (mut image, made) = loop {
        let mut x = exec::Executor::new(store, a.transfers, context.clone(), ignore.clone(), &plan);
        x.pull_base = Some(&pull_base);
        x.no_cache = a.no_cache;
        x.quiet = a.quiet;
        x.epoch = epoch;
        x.leave_remote = a.leave_remote;
        x.secrets = a.secrets.clone();
        x.ssh = a.ssh.clone();
        x.cache = std::mem::take(&mut cache);
        let result = x.execute(&plan);
        cache = std::mem::take(&mut x.cache);
        match result {
            Ok(image) => break (image, std::mem::take(&mut x.made)),
            Err(e) => match e.downcast_ref::<cache::SourceFailed>() {
                Some(failed) => {
                    eprintln!("layers: warning: {failed}; building without it");
                    cache.without(failed.index);
                }
                None => return Err(e),
            },
        }
    };
    if !a.labels.is_empty() {
        image = labelled(store, image, &a.labels)?;
    }
    let base_layers = plan
        .stages
        .iter()
        .filter(|s| !matches!(s.base, plan::Base::Stage(_) | plan::Base::Scratch))
        .flat_map(|s| s.base_config.rootfs.diff_ids.iter().copied())
        .collect();
    let mut cache_mounts: Vec<String> = Vec::new();
    for step in plan.stages.iter().flat_map(|s| &s.steps) {
        if let plan::Action::Run(r) = &step.action {
            for m in &r.mounts {
                if let plan::RunMount::Cache { id, .. } = m {
                    if !cache_mounts.contains(id) {
                        cache_mounts.push(id.clone());
                    }
                }
            }
        }
    }
    Ok(Built { image, made, imported: cache, target: plan.stages.len() - 1, base_layers, cache_mounts })
}

/// `image` with `labels` set in its config, as BuildKit applies `--label`: no history
/// entry, no new layer, the same image when the labels are already there.
fn labelled(store: &Store, image: ImageRow, labels: &BTreeMap<String, String>) -> anyhow::Result<ImageRow> {
    let mut config = store.images().config(&image)?;
    let set = config.config.get_or_insert_with(Default::default).labels.get_or_insert_with(Default::default);
    if labels.iter().all(|(k, v)| set.get(k) == Some(v)) {
        return Ok(image);
    }
    set.extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(store.images().derive(Some(&image.manifest), &config, &[])?)
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // the golden files are the repository's own
mod golden {
    //! `fixtures/dockerfile/<case>/{Dockerfile,expected}`: what the parser makes of
    //! each case, one JSON instruction per line, or `error: FILE:LINE:COLUMN: MESSAGE`.
    //! `LAYERS_BLESS=1 cargo test golden` rewrites the expected files (read the diff!).

    use std::path::Path;

    fn render(text: &str) -> String {
        match super::frontend::instruction::parse("Dockerfile", text) {
            Ok(d) => {
                let mut out = String::new();
                if let Some(s) = &d.syntax {
                    out.push_str(&format!("# syntax={s}\n"));
                }
                if d.escape != '\\' {
                    out.push_str(&format!("# escape={}\n", d.escape));
                }
                for i in &d.instructions {
                    out.push_str(&serde_json::to_string(i).expect("instructions serialize"));
                    out.push('\n');
                }
                out
            }
            Err(e) => format!("error: {e}\n"),
        }
    }

    #[test]
    fn every_case_parses_as_expected() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/dockerfile");
        let bless = std::env::var_os("LAYERS_BLESS").is_some();
        let mut cases: Vec<_> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).collect();
        cases.sort();
        assert!(cases.len() >= 30, "at least 30 golden cases, found {}", cases.len());
        let mut failed = Vec::new();
        for case in &cases {
            let text = std::fs::read_to_string(case.join("Dockerfile")).unwrap();
            let got = render(&text);
            let expected_path = case.join("expected");
            if bless {
                std::fs::write(&expected_path, &got).unwrap();
                continue;
            }
            let want = std::fs::read_to_string(&expected_path).unwrap_or_default();
            if got != want {
                failed.push(format!("{}:\n--- want\n{want}--- got\n{got}", case.display()));
            }
        }
        assert!(failed.is_empty(), "{}", failed.join("\n"));
    }
}
