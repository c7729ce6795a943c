//! `layers build`: flags into a [`BuildRequest`], the image out (`--output`), tags, and
//! the image ID printed.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use layers_store::{Reference, ShortNames, Store};

use super::build_output::{self, Output};
use crate::builder::cache::{CacheFrom, CacheTo};
use crate::builder::scratch::ScratchDir;
use crate::builder::{BuildRequest, Dockerfile};
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
    /// The Dockerfile (default: CONTEXT/Dockerfile; `-`: read from stdin).
    #[arg(short, long)]
    file: Option<PathBuf>,
    /// A secret for `RUN --mount=type=secret`: `id=ID,src=FILE` or `id=ID,env=VAR`
    /// (repeatable); never in a layer, the cache key, the history or the config.
    #[arg(long = "secret", value_name = "SPEC")]
    secrets: Vec<String>,
    /// An ssh agent for `RUN --mount=type=ssh`: `default` ($SSH_AUTH_SOCK) or
    /// `ID=SOCKET` (repeatable).
    #[arg(long = "ssh", value_name = "SPEC")]
    ssh: Vec<String>,
    /// Build for this platform (`linux/amd64`): the machine's own, or one binfmt_misc
    /// has an emulator registered for (its RUN steps run through it).
    #[arg(long, value_name = "PLATFORM")]
    platform: Option<String>,
    /// Write the image ID to this file.
    #[arg(long, value_name = "FILE")]
    iidfile: Option<PathBuf>,
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
    /// `type=tar,dest=FILE` (the root filesystem as a tar), `type=local,dest=DIR` (the
    /// root filesystem as files), or push it: `type=registry[,name=REF]`,
    /// `type=image[,name=REF][,push=true]` (default: the -t names).
    #[arg(short, long)]
    output: Option<String>,
    /// Push the image to its -t names (as `--output type=registry`).
    #[arg(long)]
    push: bool,
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
    /// The build context directory, or `-`: stdin holds a tar of the context (plain,
    /// gzip or zstd), or else a Dockerfile and there is no context.
    context: PathBuf,
}

/// Where the context and the Dockerfile are, with the scratch dir a context read from
/// stdin was extracted into (removed when dropped).
struct Sources {
    context: PathBuf,
    file: Dockerfile,
    _scratch: Option<ScratchDir>,
}

impl BuildArgs {
    /// The context and Dockerfile, from stdin where `-` names it (Docker's `build -`,
    /// `-f -`). A tar on stdin is extracted by the layer unpacker's rules and limits.
    fn sources(&self, store: &Store) -> anyhow::Result<Sources> {
        let dash = |p: &std::path::Path| p.as_os_str() == "-";
        let file_is_stdin = self.file.as_deref().is_some_and(dash);
        if !dash(&self.context) {
            let file = match &self.file {
                _ if file_is_stdin => {
                    Dockerfile::Text { name: "stdin".into(), text: stdin_dockerfile(&mut std::io::stdin())? }
                }
                Some(f) => Dockerfile::Host(f.clone()),
                None => Dockerfile::InContext(PathBuf::from("Dockerfile")),
            };
            return Ok(Sources { context: self.context.clone(), file, _scratch: None });
        }
        if file_is_stdin {
            bail!("build - -f -: stdin cannot hold both the context and the Dockerfile");
        }
        let scratch = ScratchDir(store.scratch_dir("build-stdin")?);
        let mut stdin = std::io::stdin();
        let mut head = Vec::with_capacity(512);
        (&mut stdin).take(512).read_to_end(&mut head).context("read stdin")?;
        let file = if crate::builder::context::starts_a_tar(&head) {
            let input = std::io::Cursor::new(head).chain(stdin);
            crate::builder::context::extract_stream(input, scratch.path(), store.limits())
                .context("build -: read the context tar on stdin")?;
            Dockerfile::InContext(self.file.clone().unwrap_or_else(|| PathBuf::from("Dockerfile")))
        } else if let Some(f) = &self.file {
            bail!("build - -f {}: stdin holds a Dockerfile, not a context to find it in", f.display());
        } else {
            let text = stdin_dockerfile(&mut std::io::Cursor::new(head).chain(stdin))?;
            Dockerfile::Text { name: "stdin".into(), text }
        };
        Ok(Sources { context: scratch.path().to_path_buf(), file, _scratch: Some(scratch) })
    }
}

/// Where the kernel lists its binfmt_misc emulators.
const BINFMT_MISC: &str = "/proc/sys/fs/binfmt_misc";

/// `--platform`: `None` for this machine's own; another one only where binfmt_misc
/// (at `binfmt`) has an emulator enabled for it, said in a line; else refused by name.
fn target_platform(spec: &str, binfmt: &Path, quiet: bool) -> anyhow::Result<Option<String>> {
    use crate::transfer::platform::Platform;
    if spec.contains(',') {
        bail!("--platform {spec}: one platform per build (multi-platform builds are not supported)");
    }
    let want = Platform::parse(spec).with_context(|| format!("--platform {spec}"))?;
    let host = Platform::host();
    if want.os == host.os && want.architecture == host.architecture {
        return Ok(None);
    }
    // qemu-user-static's and binfmt-support's names for the emulators.
    let qemu = match (want.os.as_str(), want.architecture.as_str()) {
        ("linux", "arm64") => "aarch64",
        ("linux", "arm") => "arm",
        ("linux", "amd64") => "x86_64",
        ("linux", "386") => "i386",
        ("linux", "ppc64le") => "ppc64le",
        ("linux", "s390x") => "s390x",
        ("linux", "riscv64") => "riscv64",
        ("linux", "mips64le") => "mips64el",
        _ => bail!("--platform {spec}: not this machine's platform ({host}), and no emulator is known for it"),
    };
    let entry = binfmt.join(format!("qemu-{qemu}"));
    let enabled = std::fs::read_to_string(&entry).is_ok_and(|t| t.lines().next() == Some("enabled"));
    if !enabled {
        bail!(
            "--platform {spec}: not this machine's platform ({host}), and binfmt_misc has no emulator enabled for it \
             ({} missing): install qemu-user-static, or build for {host}",
            entry.display()
        );
    }
    if !quiet {
        eprintln!("building for {want}: its RUN steps run through binfmt_misc's qemu-{qemu}");
    }
    Ok(Some(want.to_string()))
}

/// A Dockerfile from stdin: UTF-8 text within the Dockerfile size limit.
fn stdin_dockerfile(input: &mut impl Read) -> anyhow::Result<String> {
    let bytes = crate::bounded::read_capped(input, crate::bounded::MAX_DOCKERFILE, "the Dockerfile on stdin")?;
    String::from_utf8(bytes).context("the Dockerfile on stdin: not UTF-8 text")
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
    let output = a.output.as_deref().map(Output::parse).transpose()?;
    let push_to = match &output {
        Some(Output::Image { name, push: true }) => build_output::push_targets(
            name.as_deref(),
            &a.tags,
            &format!("--output {}", a.output.as_deref().unwrap_or_default()),
        )?,
        _ if a.push => build_output::push_targets(None, &a.tags, "--push")?,
        _ => Vec::new(),
    };
    let cache_from = a.cache_from.iter().map(|s| CacheFrom::parse(s)).collect::<anyhow::Result<Vec<_>>>()?;
    let secrets = crate::builder::secrets::parse(&a.secrets)?;
    let ssh = crate::builder::secrets::parse_ssh(&a.ssh)?;
    let platform =
        a.platform.as_deref().map(|p| target_platform(p, Path::new(BINFMT_MISC), a.quiet)).transpose()?.flatten();
    let sources = a.sources(store)?;
    let request = BuildRequest {
        context: sources.context.clone(),
        file: sources.file,
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
        // Files need the layers here; an image only pushed (and tagged) does not.
        leave_remote: !push_to.is_empty() && !matches!(output, Some(Output::Files { .. })),
        secrets,
        ssh,
        platform,
    };
    let built = crate::builder::build(store, &request)?;
    let image = built.image.clone();
    for t in &tags {
        store.images().tag(&image.manifest, t)?;
        crate::events::tagged(store, &image, t);
    }
    if let Some(path) = &a.iidfile {
        std::fs::write(path, image.config.to_string()).with_context(|| format!("--iidfile {}", path.display()))?;
    }
    if let Some(o) = &output {
        build_output::write(store, &image, &tags, o)
            .with_context(|| format!("--output {}", a.output.as_deref().unwrap_or_default()))?;
    }
    build_output::push_all(store, &built, &push_to, registries, transfers, a.quiet)?;
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
            eprintln!("Tagged {}", layers_store::familiar(t));
        }
        eprintln!("Built {} in {:.2}s", image.config.short(), started.elapsed().as_secs_f64());
    }
    outln!("{}", image.config);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_platform_is_this_machines_or_one_binfmt_misc_emulates() {
        let binfmt = tempfile::tempdir().unwrap();
        let host = crate::transfer::platform::Platform::host().to_string();
        assert_eq!(target_platform(&host, binfmt.path(), true).unwrap(), None);
        let foreign = if host == "linux/arm64" { "linux/amd64" } else { "linux/arm64" };
        let qemu = if host == "linux/arm64" { "qemu-x86_64" } else { "qemu-aarch64" };
        let err = target_platform(foreign, binfmt.path(), true).unwrap_err().to_string();
        assert!(err.contains("no emulator enabled") && err.contains(qemu), "{err}");
        std::fs::write(binfmt.path().join(qemu), "disabled\ninterpreter /usr/bin/x\n").unwrap();
        assert!(target_platform(foreign, binfmt.path(), true).is_err(), "a disabled one is none");
        std::fs::write(binfmt.path().join(qemu), "enabled\ninterpreter /usr/bin/x\n").unwrap();
        assert_eq!(target_platform(foreign, binfmt.path(), true).unwrap().as_deref(), Some(foreign));
        assert!(target_platform("linux/amd64,linux/arm64", binfmt.path(), true)
            .unwrap_err()
            .to_string()
            .contains("one platform"));
        assert!(target_platform("windows/amd64", binfmt.path(), true).is_err());
    }
}
