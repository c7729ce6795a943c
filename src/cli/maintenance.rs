//! `layers gc`, `fsck`, `df`.

use std::process::ExitCode;

use layers_store::Store;

use crate::cli::images::print_table;
use crate::format;
use crate::template::{self, Format};

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
        for i in &e.images {
            outln!("evicted image {i}");
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

// Arguments of `layers df`.
#[derive(clap::Args)]
pub struct DfArgs {
    /// Each image's size, shared and unique size, last use and containers, and the build cache's records.
    #[arg(short, long)]
    verbose: bool,
    /// `table`, `json` or a Go template over each summary row (`.Type`, `.TotalCount`, `.Size`, `.Reclaimable`).
    #[arg(long)]
    format: Option<String>,
}

/// `12 minutes ago`, from nanoseconds since the epoch.
fn used_ago(ns: i64) -> String {
    format::ago(&layers_store::images::oci::rfc3339(ns / 1_000_000_000))
}

pub fn df(store: &Store, a: &DfArgs) -> anyhow::Result<ExitCode> {
    let format = Format::parse(a.format.as_deref());
    if a.verbose && format != Format::Table {
        // Docker's verbose template sees one document of four lists; ours are not those lists.
        anyhow::bail!("df: --format cannot be combined with --verbose");
    }
    let du = store.gc().df()?;
    let summary = [
        ["Images".into(), du.images.to_string(), String::new(), String::new()],
        ["Blobs".into(), du.blobs.0.to_string(), format::size(du.blobs.1), String::new()],
        ["Layers".into(), du.layers.0.to_string(), format::size(du.layers.1), String::new()],
        ["Total".into(), String::new(), format::size(du.blobs.1 + du.layers.1), format::size(du.reclaimable)],
    ];
    if format != Format::Table {
        let rows: Vec<serde_json::Value> = summary
            .iter()
            .map(|[t, n, size, r]| serde_json::json!({"Type": t, "TotalCount": n, "Size": size, "Reclaimable": r}))
            .collect();
        let headers = [("Type", "TYPE"), ("TotalCount", "TOTAL"), ("Size", "SIZE"), ("Reclaimable", "RECLAIMABLE")];
        outln!("{}", template::render(&format, &headers, &rows)?.trim_end_matches('\n'));
        return Ok(ExitCode::SUCCESS);
    }
    print_table(&["TYPE", "TOTAL", "SIZE", "RECLAIMABLE"], &summary.map(Vec::from));
    if du.remote_images > 0 {
        let n = du.remote_images;
        outln!("\n{n} of the images are remote: their layers are in a registry, not counted here (fetched when used)");
    }
    if a.verbose {
        let usage = store.gc().image_usage()?;
        outln!("\nImages space usage:\n");
        // One row per name, as Docker lists them; step images only the build cache names are listed below.
        let rows: Vec<Vec<String>> = usage
            .iter()
            .filter(|u| u.steps.is_empty() || !u.image.tags.is_empty())
            .flat_map(|u| {
                let names: Vec<(String, String)> = if u.image.tags.is_empty() {
                    vec![("<none>".into(), "<none>".into())]
                } else {
                    u.image
                        .tags
                        .iter()
                        .map(|t| layers_store::familiar(t))
                        .map(|t| t.rsplit_once(':').map_or((t.clone(), String::new()), |(r, g)| (r.into(), g.into())))
                        .collect()
                };
                names.into_iter().map(move |(repo, tag)| {
                    vec![
                        repo,
                        tag,
                        u.image.config.hex()[..12].to_string(),
                        format::size(u.size),
                        format::size(u.shared),
                        format::size(u.size - u.shared.min(u.size)),
                        used_ago(u.last_used),
                        u.containers.to_string(),
                        if u.pinned { "yes".into() } else { String::new() },
                    ]
                })
            })
            .collect();
        print_table(
            &[
                "REPOSITORY",
                "TAG",
                "IMAGE ID",
                "SIZE",
                "SHARED SIZE",
                "UNIQUE SIZE",
                "LAST USED",
                "CONTAINERS",
                "PINNED",
            ],
            &rows,
        );
        outln!("\nBuild cache usage:\n");
        let rows: Vec<Vec<String>> = usage
            .iter()
            .flat_map(|u| {
                u.steps.iter().map(move |k| {
                    vec![
                        k.hex()[..12].to_string(),
                        u.image.config.hex()[..12].to_string(),
                        format::size(u.size - u.shared.min(u.size)),
                        used_ago(u.last_used),
                    ]
                })
            })
            .collect();
        print_table(&["CACHE ID", "IMAGE ID", "UNIQUE SIZE", "LAST USED"], &rows);
    }
    Ok(ExitCode::SUCCESS)
}
