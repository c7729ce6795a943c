//! `layers pull`.

use std::process::ExitCode;

use clap::Args;
use layers_store::Store;

use crate::registry::config::RegistriesConfig;

// Arguments of `layers pull`.
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

pub fn run(
    store: &Store,
    a: &PullArgs,
    registries: &RegistriesConfig,
    transfers: &crate::transfer::Transfers,
) -> anyhow::Result<ExitCode> {
    let digest = crate::transfer::pull::pull_image(
        transfers,
        store.reopen()?,
        &a.reference,
        a.platform.as_deref(),
        registries,
        a.tls_verify,
        crate::transfer::progress::Shown::quiet_or_auto(a.quiet),
    )?;
    outln!("{digest}");
    Ok(ExitCode::SUCCESS)
}
