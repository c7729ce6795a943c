//! `layers gc`, `fsck`, `builder prune`.

use std::process::ExitCode;

use layers_store::Store;

use crate::format;

/// `layers builder …`.
#[derive(clap::Subcommand)]
pub enum BuilderCommand {
    /// Remove the build cache: every step's record, the step images nothing names or
    /// uses, the `RUN --mount=type=cache` dirs, then what only they held.
    Prune(PruneArgs),
}

// Arguments of `layers builder prune` (Docker's flags; there is nothing to ask).
#[derive(clap::Args)]
pub struct PruneArgs {
    /// All of the cache (the only kind of prune here).
    #[arg(short, long)]
    all: bool,
    /// Do not ask for confirmation (nothing is asked).
    #[arg(short, long)]
    force: bool,
}

pub fn builder(store: &Store, c: &BuilderCommand) -> anyhow::Result<ExitCode> {
    let BuilderCommand::Prune(_) = c;
    let p = store.build_cache().prune()?;
    outln!("deleted {} build steps, {} step images, {} cache mounts", p.entries, p.images, p.cache_mounts);
    gc(store)
}

// Arguments of `layers gc`.
#[derive(clap::Args)]
pub struct GcArgs {
    /// Also evict images (least recently used first) until the store is at most this size.
    #[arg(long, value_name = "SIZE")]
    max_size: Option<String>,
    /// Also evict images unused for longer than this (`30d`, `12h`, `90m`).
    #[arg(long, value_name = "DURATION")]
    max_age: Option<String>,
}

/// `30d`, `12h`, `90m`, `45s` → nanoseconds.
fn parse_age(s: &str) -> anyhow::Result<i64> {
    let (n, unit) = s.trim().split_at(s.trim().find(|c: char| !c.is_ascii_digit()).unwrap_or(s.trim().len()));
    let n: i64 = n.parse().map_err(|_| anyhow::anyhow!("--max-age {s}: want a number and a unit (d, h, m, s)"))?;
    let secs = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" | "" => 1,
        _ => anyhow::bail!("--max-age {s}: unknown unit {unit:?} (d, h, m, s)"),
    };
    Ok(n.saturating_mul(secs).saturating_mul(1_000_000_000))
}

/// `layers gc [--max-size SIZE] [--max-age DURATION]`.
pub fn gc_with(store: &Store, a: &GcArgs) -> anyhow::Result<ExitCode> {
    let age = a.max_age.as_deref().map(parse_age).transpose()?;
    let over = match &a.max_size {
        Some(s) => store.gc().content_bytes()?.saturating_sub(crate::cli::budget::parse_size(s)?),
        None => 0,
    };
    if over > 0 || age.is_some() {
        let e = store.gc().evict(over, age, None)?;
        crate::events::evicted(store, &e.images);
        for i in &e.images {
            let names = i.tags.iter().map(|t| layers_store::familiar(t)).collect::<Vec<_>>().join(", ");
            outln!("evicted image {} ({})", i.manifest, if names.is_empty() { "unnamed".into() } else { names });
        }
    }
    gc(store)
}

pub fn gc(store: &Store) -> anyhow::Result<ExitCode> {
    let r = store.gc().collect()?;
    for l in &r.layers {
        outln!("deleted layer {l}");
    }
    for b in &r.blobs {
        outln!("deleted blob {b}");
    }
    if r.orphans > 0 {
        outln!("deleted {} leftover entries", r.orphans);
    }
    outln!("Total reclaimed space: {}", format::size(r.freed));
    Ok(ExitCode::SUCCESS)
}

// Arguments of `layers fsck`.
#[derive(clap::Args)]
pub struct FsckArgs {
    /// Check only that what the metadata names exists (no content is read).
    #[arg(long)]
    pub quick: bool,
}

pub fn fsck(store: &Store, quick: bool) -> anyhow::Result<ExitCode> {
    let problems = store.gc().fsck(quick)?;
    for p in &problems {
        outln!("{}: {}", p.subject, p.detail);
    }
    // Not problems: their layers are in a registry, fetched when something uses them.
    for r in store.images().remotes()? {
        outln!("image {}: remote: {r}", r.manifest);
    }
    if problems.is_empty() {
        outln!("store is consistent");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("layers: fsck: {} problem(s) found", problems.len());
        Ok(ExitCode::from(1))
    }
}
