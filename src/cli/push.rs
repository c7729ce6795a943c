//! `layers push`.

use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use layers_store::{Reference, ShortNames, Store};

use crate::registry::config::RegistriesConfig;
use crate::transfer::push::{push_stored, PushOptions};

// Arguments of `layers push`.
#[derive(Args)]
pub struct PushArgs {
    /// Image in the store.
    image: String,
    /// Where to push it (default: the image's own name): REGISTRY/NAME[:TAG].
    destination: Option<String>,
    /// Send blobs in chunks of this many bytes (`PATCH`es); 0: each in one `PUT`.
    #[arg(long, default_value_t = 0)]
    chunk_size: u64,
    /// Print only the manifest digest.
    #[arg(short, long)]
    quiet: bool,
    /// Verify TLS certificates (`--tls-verify=false` for self-signed registries).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    tls_verify: bool,
}

pub fn run(
    store: &Store,
    a: &PushArgs,
    registries: &RegistriesConfig,
    transfers: &crate::transfer::Transfers,
) -> anyhow::Result<ExitCode> {
    let image = store.images().resolve(&a.image)?;
    if a.destination.is_none() {
        // `demo:1` made here is `localhost/demo:1`: it has no registry to go back to,
        // and Docker Hub (where the short name would point) is not where the user meant.
        let local = Reference::parse(&a.image, ShortNames::Local)?;
        let hub = Reference::parse(&a.image, ShortNames::DockerHub)?;
        let named = |r: &Reference| r.tagged_name().is_some_and(|t| image.tags.contains(&t));
        if local.registry == "localhost" && named(&local) && !named(&hub) {
            bail!(
                "push {}: it is named {} here, with no registry to push to: give one (`layers push {} REGISTRY/NAME:TAG`)",
                a.image,
                local.tagged_name().unwrap_or_default(),
                a.image
            );
        }
    }
    let dest = Reference::parse(a.destination.as_deref().unwrap_or(&a.image), ShortNames::DockerHub)?;
    if dest.digest.is_some() {
        bail!("push {dest}: give a tag to push to, not a digest");
    }
    let o = PushOptions { chunk_size: a.chunk_size, tls_verify: a.tls_verify, quiet: a.quiet };
    let puller = crate::transfer::obtain::Puller::auto(transfers, registries);
    let digest = push_stored(&puller, store, &image, (&dest, &[]), &o)?;
    crate::events::by_reference(store, &image, &dest.to_string(), "push");
    outln!("{digest}");
    Ok(ExitCode::SUCCESS)
}
