//! The store's size budget: `<root>/store.toml` (`max-size`, `min-free`) or
//! `--max-store-size` for one command; enforced after every command that adds
//! content. `layers pin`/`unpin` keep an image out of eviction.

use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use layers_store::gc::budget::{Budget, Evictions};
use layers_store::Store;

/// `<root>/store.toml`.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct StoreToml {
    max_size: Option<String>,
    min_free: Option<String>,
    /// Read by `network::settings`.
    #[allow(dead_code)]
    network: Option<toml::Table>,
}

/// A size: `20GB`, `512m`, `1000000`.
pub fn parse_size(s: &str) -> anyhow::Result<u64> {
    crate::run::cgroup::parse_bytes(s).map_err(anyhow::Error::msg)
}

/// A share of the filesystem: `10%`.
fn parse_share(s: &str) -> anyhow::Result<f64> {
    let n: f64 = s
        .trim()
        .strip_suffix('%')
        .with_context(|| format!("min-free {s:?}: want a percentage, as 10%"))?
        .trim()
        .parse()
        .with_context(|| format!("min-free {s:?}: want a percentage, as 10%"))?;
    if !(0.0..=100.0).contains(&n) {
        bail!("min-free {s:?}: want 0% to 100%");
    }
    Ok(n / 100.0)
}

/// The budget for this command: `max_size` (the flag) over the store's file.
pub fn budget(store: &Store, max_size: Option<&str>) -> anyhow::Result<Budget> {
    let path = store.root().join("store.toml");
    let file: StoreToml = match crate::bounded::read_config_file(&path, "store settings")? {
        Some(text) => {
            crate::bounded::parse_toml(&text).with_context(|| format!("store settings {}", path.display()))?
        }
        None => StoreToml::default(),
    };
    let max = max_size.map(str::to_string).or(file.max_size);
    Ok(Budget {
        max_size: max.as_deref().map(parse_size).transpose().context("max store size")?,
        min_free: file.min_free.as_deref().map(parse_share).transpose()?,
    })
}

/// Evicts what keeps the store over its budget (not what this command, started at
/// `started` ns, used); says on stderr what this and the evictions `during` the
/// command removed.
pub fn enforce(store: &Store, budget: &Budget, started: i64, during: Option<&Evictions>) -> anyhow::Result<()> {
    let last = store.gc().enforce(budget, started).context("keep the store within its budget")?.unwrap_or_default();
    let before = during.map(Evictions::total).unwrap_or_default();
    let (images, freed) = (before.images.len() + last.images.len(), before.gc.freed + last.gc.freed);
    if images > 0 {
        eprintln!(
            "layers: the store was over its budget: evicted {images} image(s), {} freed",
            crate::format::size(freed)
        );
    }
    Ok(())
}

// Arguments of `layers pin` and `layers unpin`.
#[derive(Args)]
pub struct PinArgs {
    /// Images.
    #[arg(required = true)]
    images: Vec<String>,
}

/// `layers pin` (`pinned`) or `unpin`.
pub fn pin(store: &Store, a: &PinArgs, pinned: bool) -> anyhow::Result<ExitCode> {
    for name in &a.images {
        let img = store.images().resolve(name)?;
        store.images().set_pinned(&img.manifest, pinned)?;
        outln!("{name}");
    }
    Ok(ExitCode::SUCCESS)
}
