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
/// command removed, by name, and, when the store is still over its budget, what is
/// kept and why.
pub fn enforce(store: &Store, budget: &Budget, started: i64, during: Option<&Evictions>) -> anyhow::Result<()> {
    let last = store.gc().enforce(budget, started).context("keep the store within its budget")?.unwrap_or_default();
    let before = during.map(Evictions::total).unwrap_or_default();
    crate::events::evicted(store, before.images.iter().chain(&last.images));
    let evicted: Vec<String> =
        before.images.iter().chain(&last.images).map(|e| super::images::shown_name(&e.tags, &e.config)).collect();
    let limit = limit_text(budget);
    if !evicted.is_empty() {
        eprintln!(
            "layers: the store was over its budget ({limit}): evicted {}; {} freed",
            some_of(&evicted),
            crate::format::size(before.gc.freed + last.gc.freed)
        );
    }
    let over = store.gc().over_budget(budget).context("measure the store against its budget")?;
    if over > 0 {
        let kept = kept_images(store, started)?;
        let why = if kept.is_empty() {
            "no image is left to evict: the rest is not images' content".to_string()
        } else {
            format!("kept: {}", some_of(&kept))
        };
        eprintln!("layers: the store is still {} over its budget ({limit}); {why}", crate::format::size(over));
    }
    Ok(())
}

/// `max size 10MB, 10% kept free`.
fn limit_text(budget: &Budget) -> String {
    let mut parts = Vec::new();
    if let Some(m) = budget.max_size {
        parts.push(format!("max size {}", crate::format::size(m)));
    }
    if let Some(f) = budget.min_free {
        parts.push(format!("{}% kept free", (f * 100.0).round()));
    }
    parts.join(", ")
}

/// The images eviction may not take, each with why: its containers, a pin, a lease
/// (a running pull, build or container), or this command's own use.
fn kept_images(store: &Store, started: i64) -> anyhow::Result<Vec<String>> {
    let mut kept = Vec::new();
    for u in store.gc().image_usage()? {
        let mut why = Vec::new();
        if u.containers > 0 {
            why.push(format!("used by {} container(s)", u.containers));
        }
        if u.pinned {
            why.push("pinned".to_string());
        }
        // A container's own lease is said as its container.
        if u.leased && u.containers == 0 {
            why.push("held by a running command".to_string());
        }
        if u.last_used >= started {
            why.push("used by this command".to_string());
        }
        if !why.is_empty() {
            kept.push(format!("{} ({})", super::images::shown_name(&u.image.tags, &u.image.config), why.join(", ")));
        }
    }
    Ok(kept)
}

/// The first ten of `items`, and how many more.
fn some_of(items: &[String]) -> String {
    const SHOWN: usize = 10;
    let mut text = items.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > SHOWN {
        text.push_str(&format!(" and {} more", items.len() - SHOWN));
    }
    text
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
