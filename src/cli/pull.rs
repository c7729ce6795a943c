//! `layers pull`.

use std::process::ExitCode;

use clap::Args;
use layers_store::Store;

use crate::registry::config::RegistriesConfig;

/// Arguments of `layers pull`.
#[derive(Args)]
pub struct PullArgs {
    /// Image to pull: NAME[:TAG][@DIGEST].
    reference: String,
    /// Platform to pick from a multi-platform image: os/arch[/variant].
    #[arg(long)]
    platform: Option<String>,
    /// Print only the manifest digest.
    #[arg(short, long)]
    quiet: bool,
    /// Verify TLS certificates (`--tls-verify=false` for self-signed registries).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    tls_verify: bool,
}

pub fn run(store: &Store, a: &PullArgs, registries: &RegistriesConfig) -> anyhow::Result<ExitCode> {
    let digest = crate::pull::pull_image(
        store.reopen()?,
        &a.reference,
        a.platform.as_deref(),
        registries,
        a.tls_verify,
        crate::progress::Shown::quiet_or_auto(a.quiet),
    )?;
    outln!("{digest}");
    Ok(ExitCode::SUCCESS)
}

/// When `run` and `create` pull their image, as Docker's `--pull`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum PullPolicy {
    /// When the store does not have it.
    #[default]
    Missing,
    /// Every time (a tag may have moved).
    Always,
    /// Never: a missing image is an error.
    Never,
}

/// The image `name` in the store, pulled first as `policy` says, with `pull`'s progress.
pub fn image_for_container(
    store: &Store,
    name: &str,
    policy: PullPolicy,
    platform: Option<&str>,
    registries: &RegistriesConfig,
) -> anyhow::Result<layers_store::metadata::ImageRow> {
    use layers_store::{ErrorKind, Reference, ShortNames};
    let local = store.resolve(name);
    let mut missing = matches!(&local, Err(e) if e.kind() == ErrorKind::NotFound);
    let mut local = local.map_err(anyhow::Error::new);
    // A stored image of another platform is not the one asked for: Docker pulls the
    // platform asked for (or, told never to pull, says what the image is).
    if let (Some(p), Ok(row)) = (platform, &local) {
        let want = crate::platform::Platform::parse(p)?;
        let config = store.config(row)?;
        let has = crate::platform::of_config(&config);
        if !want.matches(&has) {
            local = Err(anyhow::anyhow!(
                "image {name} is {}, not the platform asked for ({want})",
                crate::platform::describe(&has)
            ));
            missing = true;
        }
    }
    // Names only we can have made (`localhost/…`) and image IDs come from no registry.
    let remote = Reference::parse(name, ShortNames::DockerHub).ok().filter(|r| r.registry != "localhost");
    let pull = match policy {
        PullPolicy::Never => false,
        PullPolicy::Always => remote.is_some(),
        PullPolicy::Missing => missing && remote.is_some(),
    };
    if !pull {
        return match local {
            Err(e) if missing && policy == PullPolicy::Never => {
                Err(e.context(format!("--pull never: pull it first (`layers pull {name}`)")))
            }
            other => Ok(other?),
        };
    }
    if missing {
        eprintln!("Unable to find image '{name}' locally");
    }
    crate::pull::pull_image(store.reopen()?, name, platform, registries, true, crate::progress::Shown::Auto)?;
    Ok(store.resolve(name)?)
}
