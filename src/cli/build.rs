//! `layers build`: flags into a [`BuildRequest`], the image out (`--output`), tags, and
//! the image ID printed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use layers_store::meta::ImageRow;
use layers_store::{Reference, ShortNames, Store};

use crate::builder::cache::{CacheFrom, CacheTo};
use crate::builder::BuildRequest;
use crate::registry::config::RegistriesConfig;
use crate::run::Network;

/// `--progress`, as BuildKit's: the steps are lines in every mode; a base image's
/// pull shows bars on a terminal (`auto`), lines (`plain`), or bars, a terminal
/// required (`tty`).
#[derive(Clone, Copy, ValueEnum)]
enum ProgressMode {
    Auto,
    Plain,
    Tty,
}

// Arguments of `layers build`.
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
    /// Pull the images FROM and `COPY --from` name even when stored.
    #[arg(long)]
    pull: bool,
    /// Print only the image ID.
    #[arg(short, long)]
    quiet: bool,
    /// Progress output: `auto` (bars for a pull on a terminal), `plain` (lines only)
    /// or `tty` (bars; stderr must be a terminal). Steps are lines in every mode.
    #[arg(long, value_enum, default_value = "auto")]
    progress: ProgressMode,
    /// RUN's network: `host` (the default, as buildah's chroot isolation; `default` is
    /// the same), `bridge` (root: the default bridge, as `run` has it) or `none`.
    #[arg(long, value_parser = parse_network, default_value = "host")]
    network: Network,
    /// Also write the image out: `type=oci,dest=DIR|FILE`, `type=docker-archive,dest=FILE`,
    /// `type=tar,dest=FILE` (the root filesystem as a tar) or `type=local,dest=DIR` (the
    /// root filesystem as files).
    #[arg(short, long)]
    output: Option<String>,
    /// A shared cache to write the build's steps to: `REF` or
    /// `type=registry,ref=REF[,mode=min|max]` (a registry, the default type), or
    /// `type=local,dest=DIR[,mode=min|max]`.
    #[arg(long = "cache-to", value_name = "SPEC")]
    cache_to: Vec<String>,
    /// Set a label on the image (KEY=VALUE; repeatable), over the Dockerfile's LABELs.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// A shared cache to look steps up in: `REF` or `type=registry,ref=REF` (a registry,
    /// the default type), or `type=local,src=DIR` (repeatable, tried in order).
    #[arg(long = "cache-from", value_name = "SPEC")]
    cache_from: Vec<String>,
    /// The build context directory.
    context: PathBuf,
}

fn parse_network(s: &str) -> Result<Network, String> {
    match s {
        "default" | "host" => Ok(Network::Host),
        "none" => Ok(Network::None),
        "bridge" => {
            if !layers_store::layer::encoding::in_initial_user_namespace() {
                return Err("bridge: bridges need root (a rootless build's RUN steps use host or none)".into());
            }
            Ok(Network::Bridge("bridge".into()))
        }
        other => Err(format!("{other}: use host (default), bridge or none")),
    }
}

/// `--output type=…,dest=…`.
fn write_output(store: &Store, image: &ImageRow, tags: &[String], spec: &str) -> anyhow::Result<()> {
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
    let images = [layers_store::archive::layout::SaveImage { manifest: image.manifest, names: tags.to_vec() }];
    use crate::cli::archive::{export_local, export_view, write_images, SaveFormat};
    match kind {
        Some("oci") => write_images(store, &images, dest, SaveFormat::Oci),
        Some("docker-archive" | "docker") => write_images(store, &images, dest, SaveFormat::DockerArchive),
        Some("tar") => export_view(store, &store.snapshots().image_view(&image.manifest)?, dest),
        Some("local") => export_local(store, &store.snapshots().image_view(&image.manifest)?, Path::new(dest)),
        Some(other) => bail!("--output {spec}: type {other} is not supported (oci, docker-archive, tar, local)"),
        None => bail!("--output {spec}: type= is missing"),
    }
    .with_context(|| format!("--output {spec}"))
}

/// `layers build`.
pub fn build(
    store: &Store,
    a: &BuildArgs,
    registries: &RegistriesConfig,
    transfers: &crate::transfer::Transfers,
) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let progress = match a.progress {
        _ if a.quiet => crate::transfer::progress::Shown::Quiet,
        ProgressMode::Plain => crate::transfer::progress::Shown::Lines,
        ProgressMode::Auto => crate::transfer::progress::Shown::Auto,
        ProgressMode::Tty if std::io::IsTerminal::is_terminal(&std::io::stderr()) => {
            crate::transfer::progress::Shown::Auto
        }
        ProgressMode::Tty => bail!("--progress tty: stderr is not a terminal (use auto or plain)"),
    };
    let tags = a
        .tags
        .iter()
        .map(|t| {
            Reference::parse(t, ShortNames::Local)?
                .tagged_name()
                .with_context(|| format!("-t {t}: give a name, not a digest"))
        })
        .collect::<anyhow::Result<Vec<String>>>()?;
    let mut build_args = BTreeMap::new();
    for b in &a.build_args {
        match b.split_once('=') {
            Some((k, v)) => build_args.insert(k.to_string(), v.to_string()),
            None => build_args.insert(b.clone(), std::env::var(b).unwrap_or_default()),
        };
    }
    let cache_to = a.cache_to.iter().map(|s| CacheTo::parse(s)).collect::<anyhow::Result<Vec<_>>>()?;
    let cache_from = a.cache_from.iter().map(|s| CacheFrom::parse(s)).collect::<anyhow::Result<Vec<_>>>()?;
    let request = BuildRequest {
        context: a.context.clone(),
        file: a.file.clone(),
        build_args,
        target: a.target.clone(),
        no_cache: a.no_cache,
        pull: a.pull,
        quiet: a.quiet,
        progress,
        transfers,
        network: a.network.clone(),
        registries,
        cache_from,
        labels: super::options::parse_labels(&a.labels)?,
    };
    let built = crate::builder::build(store, &request)?;
    let image = built.image.clone();
    for t in &tags {
        store.images().tag(&image.manifest, t)?;
    }
    if let Some(o) = &a.output {
        write_output(store, &image, &tags, o)?;
    }
    // After the image is tagged: a failed export leaves the build's result in the store.
    for (to, spec) in cache_to.iter().zip(&a.cache_to) {
        let exported = match built.export(store, registries, transfers, to) {
            Ok(e) => e,
            // BuildKit's ignore-error: a cache outage must not fail the job.
            Err(e) if to.ignore_error => {
                eprintln!("layers: warning: --cache-to {spec}: {}; ignored (ignore-error=true)", crate::one_line(&e));
                continue;
            }
            Err(e) => return Err(e.context(format!("--cache-to {spec}"))),
        };
        if !a.quiet {
            for note in &exported.notes {
                eprintln!("{note}");
            }
            eprintln!("exported {exported} to {}", to.name());
        }
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
