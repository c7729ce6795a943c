//! `layers load`: images from an OCI layout into the store.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use layers_store::image::host_architecture;
use layers_store::layout::Layout;
use layers_store::{Reference, ShortNames, Store};

/// Arguments of `layers load`.
#[derive(Args)]
pub struct LoadArgs {
    /// An OCI image layout directory.
    #[arg(short, long)]
    input: PathBuf,
    /// Print only image IDs.
    #[arg(short, long)]
    quiet: bool,
}

pub fn load(store: &Store, a: &LoadArgs) -> anyhow::Result<ExitCode> {
    let what = || format!("load {}", a.input.display());
    if !a.input.is_dir() {
        bail!("load {}: not an OCI layout directory (archives are not supported yet)", a.input.display());
    }
    let layout = Layout::open(&a.input).with_context(what)?;
    let images = layout.images(host_architecture()).with_context(what)?;
    if images.is_empty() {
        bail!("load {}: the layout holds no image for linux/{}", a.input.display(), host_architecture());
    }
    for img in images {
        let tags = match &img.name {
            Some(n) => vec![Reference::parse(n, ShortNames::Local)
                .ok()
                .and_then(|r| r.tagged_name())
                .with_context(|| format!("load {}: image name {n:?} is not a valid name", a.input.display()))?],
            None => Vec::new(),
        };
        let loaded = store.load_from_layout(&layout, &img.manifest, tags.clone()).with_context(what)?;
        if a.quiet {
            outln!("{}", loaded.config);
        } else {
            let name = tags.first().cloned().unwrap_or_else(|| loaded.config.to_string());
            let s = if loaded.new_layers == 1 { "" } else { "s" };
            outln!("Loaded image: {name} ({} new layer{s})", loaded.new_layers);
        }
    }
    Ok(ExitCode::SUCCESS)
}
