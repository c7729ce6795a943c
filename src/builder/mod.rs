//! `layers build`: a Dockerfile to an image, one layer (or config change) per
//! instruction, with a content-keyed cache. Parse (`dockerfile`, `instruction`,
//! `words`) → stages (only those the target needs) → steps (`exec`).

pub mod context;
pub mod exec;
pub mod frontend;
mod throwaway;

use frontend::{instruction, pattern, words};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use layers_store::{Reference, ShortNames, Store};

use instruction::{Instruction, Located};

/// Arguments of `layers build`.
#[derive(Args)]
pub struct BuildArgs {
    /// Name the image (several allowed).
    #[arg(short, long = "tag")]
    tags: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile).
    #[arg(short, long)]
    file: Option<PathBuf>,
    /// A build-time variable: KEY=VALUE, or KEY to take the host's.
    #[arg(long = "build-arg")]
    build_args: Vec<String>,
    /// Build this stage (and what it needs), not the last.
    #[arg(long)]
    target: Option<String>,
    /// Run every step, looking nothing up in the cache.
    #[arg(long)]
    no_cache: bool,
    /// Pull the FROM images even when stored.
    #[arg(long)]
    pull: bool,
    /// Print only the image ID.
    #[arg(short, long)]
    quiet: bool,
    /// Progress output: `auto` or `plain` (the same here: one line per step).
    #[arg(long, default_value = "auto")]
    progress: String,
    /// RUN's network: `none` or `host`.
    #[arg(long, default_value = "none")]
    network: String,
    /// Also write the image out: `type=oci,dest=DIR|FILE`, `type=docker-archive,dest=FILE`
    /// or `type=tar,dest=FILE` (the root filesystem).
    #[arg(short, long)]
    output: Option<String>,
    /// The build context directory.
    context: PathBuf,
}

/// One stage: its FROM and what follows.
struct Stage<'a> {
    from: &'a Located,
    name: Option<String>,
    steps: &'a [Located],
}

fn stages(instructions: &[Located]) -> (Vec<&Located>, Vec<Stage<'_>>) {
    let first = instructions
        .iter()
        .position(|l| matches!(l.instruction, Instruction::From { .. }))
        .unwrap_or(instructions.len());
    let globals = instructions[..first].iter().collect();
    let mut out = Vec::new();
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
        out.push(Stage { from: &instructions[i], name, steps: &instructions[i + 1..end] });
        i = end;
    }
    (globals, out)
}

/// The stages `target` needs, by index: earlier stages named by FROM or `COPY --from`.
fn needed(stages: &[Stage], target: usize) -> Vec<bool> {
    let mut need = vec![false; stages.len()];
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if need[i] {
            continue;
        }
        need[i] = true;
        let refs = std::iter::once(stages[i].from).chain(stages[i].steps).filter_map(|l| match &l.instruction {
            Instruction::From { image, .. } => Some(image.clone()),
            Instruction::Copy { copy } | Instruction::Add { copy, .. } => copy.from.clone(),
            _ => None,
        });
        for r in refs {
            let by_name = stages[..i].iter().position(|s| s.name.as_deref() == Some(&r.to_ascii_lowercase()));
            let by_index = r.parse::<usize>().ok().filter(|n| *n < i);
            if let Some(j) = by_name.or(by_index) {
                todo.push(j);
            }
        }
    }
    need
}

/// Build args every Dockerfile has without declaring them (Docker's proxy variables).
const PREDEFINED_ARGS: [&str; 5] = ["HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY"];

/// `--output type=…,dest=…`.
fn write_output(
    store: &Store,
    image: &layers_store::metadata::ImageRow,
    tags: &[String],
    spec: &str,
) -> anyhow::Result<()> {
    let mut kind = None;
    let mut dest = None;
    for kv in spec.split(',') {
        match kv.split_once('=') {
            Some(("type", t)) => kind = Some(t),
            Some(("dest", d)) => dest = Some(d),
            _ => bail!("--output {spec}: want type=oci|docker-archive|tar|local,dest=PATH"),
        }
    }
    let dest = dest.with_context(|| format!("--output {spec}: dest= is missing"))?;
    let images = [layers_store::layout::SaveImage { manifest: image.manifest, names: tags.to_vec() }];
    use crate::cli::archive::{export_local, export_view, write_images, SaveFormat};
    match kind {
        Some("oci") => write_images(store, &images, dest, SaveFormat::Oci),
        Some("docker-archive" | "docker") => write_images(store, &images, dest, SaveFormat::DockerArchive),
        Some("tar") => export_view(store, &store.image_view(&image.manifest)?, dest),
        Some("local") => export_local(store, &store.image_view(&image.manifest)?, Path::new(dest)),
        Some(other) => bail!("--output {spec}: type {other} is not supported (oci, docker-archive, tar, local)"),
        None => bail!("--output {spec}: type= is missing"),
    }
    .with_context(|| format!("--output {spec}"))
}

pub fn build(store: &Store, a: &BuildArgs) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let context = a.context.canonicalize().with_context(|| format!("build context {}", a.context.display()))?;
    let context_tree = context::Tree::open(&context, "build context")?;
    // A `-f` path is the user's own choice; the default Dockerfile is a context file like any other.
    let (file, text) = match &a.file {
        Some(f) => (f.clone(), crate::bounded::read_text_file(f, crate::bounded::MAX_DOCKERFILE, "Dockerfile")?),
        None => {
            let file = context.join("Dockerfile");
            let bytes = context_tree
                .read_small(Path::new("Dockerfile"), crate::bounded::MAX_DOCKERFILE)?
                .with_context(|| format!("read {}: no such file or directory", file.display()))?;
            (file.clone(), String::from_utf8(bytes).with_context(|| format!("{}: not UTF-8 text", file.display()))?)
        }
    };
    let parsed = instruction::parse(&file.display().to_string(), &text)?;
    if let Some(s) = parsed.syntax.as_deref().filter(|s| !s.starts_with("docker/dockerfile")) {
        eprintln!("layers: ignoring `# syntax={s}`: layers builds with its own Dockerfile frontend");
    }
    let tags = a
        .tags
        .iter()
        .map(|t| {
            Reference::parse(t, ShortNames::Local)?
                .tagged_name()
                .with_context(|| format!("-t {t}: give a name, not a digest"))
        })
        .collect::<anyhow::Result<Vec<String>>>()?;
    let network = match a.network.as_str() {
        "none" | "host" => a.network.clone(),
        other => bail!("--network {other}: only `none` and `host` are supported"),
    };
    if !matches!(a.progress.as_str(), "auto" | "plain" | "tty") {
        bail!("--progress {}: use auto or plain", a.progress);
    }
    let mut build_args = BTreeMap::new();
    for b in &a.build_args {
        match b.split_once('=') {
            Some((k, v)) => build_args.insert(k.to_string(), v.to_string()),
            None => build_args.insert(b.clone(), std::env::var(b).unwrap_or_default()),
        };
    }
    let (globals, stages) = stages(&parsed.instructions);
    let mut global_args = BTreeMap::new();
    for g in &globals {
        if let Instruction::Arg { args } = &g.instruction {
            for d in args {
                let value = match (build_args.get(&d.name), &d.default) {
                    (Some(v), _) => Some(v.clone()),
                    (None, Some(def)) => Some(
                        words::expand(def, parsed.escape, &|n: &str| global_args.get(n).cloned().flatten())
                            .map_err(anyhow::Error::msg)?,
                    ),
                    (None, None) => None,
                };
                global_args.insert(d.name.clone(), value);
            }
        }
    }
    let target = match &a.target {
        Some(t) => stages
            .iter()
            .position(|s| s.name.as_deref() == Some(&t.to_ascii_lowercase()))
            .with_context(|| format!("--target {t}: no stage of that name"))?,
        None => stages.len() - 1,
    };
    let need = needed(&stages, target);
    // As Docker: a --build-arg no ARG of the built stages declares is a likely typo.
    let declared: Vec<&str> = globals
        .iter()
        .copied()
        .chain(stages.iter().zip(&need).filter(|(_, n)| **n).flat_map(|(s, _)| s.steps.iter()))
        .filter_map(|l| match &l.instruction {
            Instruction::Arg { args } => Some(args.iter().map(|a| a.name.as_str())),
            _ => None,
        })
        .flatten()
        .collect();
    let unused: Vec<&str> = build_args
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
    let steps_total = stages.iter().zip(&need).filter(|(_, n)| **n).map(|(s, _)| s.steps.len() + 1).sum();
    let mut b = exec::Build {
        store,
        context,
        escape: parsed.escape,
        build_args,
        global_args,
        no_cache: a.no_cache,
        quiet: a.quiet,
        network,
        epoch,
        ignore,
        stages: Vec::new(),
        run_id: format!("{}-{}", std::process::id(), crate::run::state::now()),
        steps_done: 0,
        steps_total,
    };
    let mut last = None;
    for (i, stage) in stages.iter().enumerate() {
        if !need[i] {
            // Keep indexes aligned for `COPY --from=N`: a stage not built is never referenced.
            continue;
        }
        let Instruction::From { image, platform, .. } = &stage.from.instruction else {
            unreachable!("stages start at FROM")
        };
        let env = |n: &str| b.global_args.get(n).cloned().flatten();
        let image = words::expand(image, parsed.escape, &env).map_err(anyhow::Error::msg)?;
        b.steps_done += 1;
        if !a.quiet {
            eprintln!(
                "STEP {}/{}: FROM {image}{}",
                b.steps_done,
                b.steps_total,
                stage.name.as_ref().map(|n| format!(" AS {n}")).unwrap_or_default()
            );
        }
        let mut state = b
            .from(&image, platform.as_deref(), a.pull)
            .with_context(|| format!("{}:{}: FROM {image}", file.display(), stage.from.pos))?;
        // The base's ONBUILD triggers run first, and do not pass on to this image.
        let triggers: Vec<String> = state
            .config
            .config
            .as_mut()
            .and_then(|c| c.as_object_mut())
            .and_then(|c| c.remove("OnBuild"))
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        b.steps_total += triggers.len();
        for t in &triggers {
            let step = instruction::parse_one(&format!("ONBUILD trigger of {image}"), t, parsed.escape)?;
            b.step(&mut state, &step).with_context(|| format!("ONBUILD {t} (from {image})"))?;
        }
        for step in stage.steps {
            b.step(&mut state, step).with_context(|| format!("{}:{}", file.display(), step.pos))?;
        }
        let row = match state.image {
            Some(r) => r,
            None => {
                let mut config = state.config.clone();
                config.created = Some(layers_store::image::rfc3339(epoch.unwrap_or_else(crate::run::state::now)));
                store.derive_image(None, &config, &[])?
            }
        };
        while b.stages.len() < i {
            b.stages.push((None, row.clone()));
        }
        b.stages.push((stage.name.clone(), row.clone()));
        last = Some(row);
    }
    let image = last.context("nothing was built")?;
    for t in &tags {
        store.tag(&image.manifest, t)?;
    }
    if let Some(o) = &a.output {
        write_output(store, &image, &tags, o)?;
    }
    if !a.quiet {
        for t in &tags {
            eprintln!("Tagged {t}");
        }
        eprintln!("Built {} in {:.2}s", image.config.short(), started.elapsed().as_secs_f64());
    }
    outln!("{}", image.config);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod golden {
    //! `fixtures/dockerfile/<case>/{Dockerfile,expected}`: what the parser makes of
    //! each case, one JSON instruction per line, or `error: FILE:LINE:COLUMN: MESSAGE`.
    //! `LAYERS_BLESS=1 cargo test golden` rewrites the expected files (read the diff!).

    use std::path::Path;

    fn render(text: &str) -> String {
        match super::instruction::parse("Dockerfile", text) {
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
