//! `layers df` (`system df`) in Docker's shape: rows Images, Containers, Local
//! Volumes and Build Cache with TOTAL, ACTIVE, SIZE and RECLAIMABLE; `-v` a section
//! for each, with the last-use and pin columns Docker has none of at the end; then
//! what this store keeps beyond Docker's kinds (compressed blobs, remote images).

use std::process::ExitCode;

use layers_store::gc::usage::KindUsage;
use layers_store::Store;

use crate::cli::images::print_table;
use crate::format;
use crate::run::state;
use crate::template::{self, Format};

// Arguments of `layers df`.
#[derive(clap::Args)]
pub struct DfArgs {
    /// A section for each kind: images (with last use and pins), containers, volumes, build cache.
    #[arg(short, long)]
    verbose: bool,
    /// `table`, `json` or a Go template over each row (`.Type`, `.TotalCount`, `.Active`,
    /// `.Size`, `.Reclaimable`).
    #[arg(long)]
    format: Option<String>,
}

/// `11.63MB (70%)`, as Docker's `system df` says what could be freed.
fn reclaimable(k: &KindUsage, percent: bool) -> String {
    let size = format::human_size(k.reclaimable);
    match k.size {
        0 => size,
        total if percent => format!("{size} ({}%)", k.reclaimable.saturating_mul(100) / total),
        _ => size,
    }
}

/// Containers and volumes, counted as Docker counts them (the runtime knows which run).
fn runtime_usage(store: &Store) -> anyhow::Result<(KindUsage, KindUsage)> {
    let mut containers = KindUsage::default();
    for c in store.snapshots().list()? {
        let size = store.snapshots().upper_size(&c);
        containers.total += 1;
        containers.size += size;
        if state::running(store, &c).is_some() {
            containers.active += 1;
        } else {
            containers.reclaimable += size;
        }
    }
    let mut volumes = KindUsage::default();
    for v in store.volumes().list()? {
        let size = store.volumes().size(&v.name);
        volumes.total += 1;
        volumes.size += size;
        if store.volumes().users(&v.name)?.is_empty() {
            volumes.reclaimable += size;
        } else {
            volumes.active += 1;
        }
    }
    Ok((containers, volumes))
}

pub fn df(store: &Store, a: &DfArgs) -> anyhow::Result<ExitCode> {
    let format = Format::parse(a.format.as_deref());
    if a.verbose && format != Format::Table {
        // Docker's verbose template sees one document of four lists; ours are not those lists.
        anyhow::bail!("df: --format cannot be combined with --verbose");
    }
    let content = store.gc().content_usage()?;
    if a.verbose {
        // Its sections measure each container and volume; the summary is not shown.
        verbose(store, &content.build_cache)?;
    } else {
        let (containers, volumes) = runtime_usage(store)?;
        let kinds = [
            ("Images", content.images, true),
            ("Containers", containers, true),
            ("Local Volumes", volumes, true),
            // Docker gives the build cache's no percentage.
            ("Build Cache", content.build_cache, false),
        ];
        let summary: Vec<Vec<String>> = kinds
            .iter()
            .map(|(kind, k, percent)| {
                vec![
                    kind.to_string(),
                    k.total.to_string(),
                    k.active.to_string(),
                    format::human_size(k.size),
                    reclaimable(k, *percent),
                ]
            })
            .collect();
        if format != Format::Table {
            let rows: Vec<serde_json::Value> = summary
                .iter()
                .map(|r| {
                    serde_json::json!({"Type": r[0], "TotalCount": r[1], "Active": r[2], "Size": r[3], "Reclaimable": r[4]})
                })
                .collect();
            let headers = [
                ("Type", "TYPE"),
                ("TotalCount", "TOTAL"),
                ("Active", "ACTIVE"),
                ("Size", "SIZE"),
                ("Reclaimable", "RECLAIMABLE"),
            ];
            outln!("{}", template::render(&format, &headers, &rows)?.trim_end_matches('\n'));
            return Ok(ExitCode::SUCCESS);
        }
        print_table(&["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], &summary);
    }
    let du = store.gc().df()?;
    outln!(
        "\nOn disk: {} unpacked layers ({}) and {} compressed blobs ({}, kept for push and save); `gc` frees {}",
        du.layers.0,
        format::human_size(du.layers.1),
        du.blobs.0,
        format::human_size(du.blobs.1),
        format::human_size(du.reclaimable)
    );
    if du.remote_images > 0 {
        let n = du.remote_images;
        outln!("{n} of the images are remote: their layers are in a registry, not counted here (fetched when used)");
    }
    Ok(ExitCode::SUCCESS)
}

/// `df -v`: Docker's four sections.
fn verbose(store: &Store, build_cache: &KindUsage) -> anyhow::Result<()> {
    let usage = store.gc().image_usage()?;
    outln!("Images space usage:\n");
    // One row per name, as Docker lists them; step images only the build cache names are listed below.
    let rows: Vec<Vec<String>> = usage
        .iter()
        .filter(|u| u.steps.is_empty() || !u.image.tags.is_empty() || u.containers > 0)
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
                    format::ago(&u.image.created),
                    format::human_size(u.size),
                    format::human_size(u.shared),
                    format::human_size(u.size - u.shared.min(u.size)),
                    u.containers.to_string(),
                    used_ago(u.last_used),
                    if u.pinned { "yes".into() } else { String::new() },
                ]
            })
        })
        .collect();
    let header = [
        "REPOSITORY",
        "TAG",
        "IMAGE ID",
        "CREATED",
        "SIZE",
        "SHARED SIZE",
        "UNIQUE SIZE",
        "CONTAINERS",
        "LAST USED",
        "PINNED",
    ];
    print_table(&header, &rows);

    outln!("\nContainers space usage:\n");
    let mut mounts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for v in store.volumes().list()? {
        for c in store.volumes().users(&v.name)? {
            *mounts.entry(c).or_default() += 1;
        }
    }
    let rows: Vec<Vec<String>> = store
        .snapshots()
        .list()?
        .iter()
        .map(|c| {
            let s = state::Status::of(store, c);
            let volumes = mounts.get(&c.id).copied().unwrap_or(0);
            let image = crate::cli::images::shown_name_of(store, &c.image);
            vec![
                c.short_id().to_string(),
                image,
                volumes.to_string(),
                format::human_size(store.snapshots().upper_size(c)),
                format::ago_secs(c.created),
                s.name().to_string(),
                c.name.clone(),
            ]
        })
        .collect();
    print_table(&["CONTAINER ID", "IMAGE", "LOCAL VOLUMES", "SIZE", "CREATED", "STATUS", "NAMES"], &rows);

    outln!("\nLocal Volumes space usage:\n");
    let mut rows = Vec::new();
    for v in store.volumes().list()? {
        let links = store.volumes().users(&v.name)?.len();
        rows.push(vec![v.name.clone(), links.to_string(), format::human_size(store.volumes().size(&v.name))]);
    }
    print_table(&["VOLUME NAME", "LINKS", "SIZE"], &rows);

    outln!("\nBuild cache usage: {}\n", format::human_size(build_cache.size));
    let rows: Vec<Vec<String>> = usage
        .iter()
        .flat_map(|u| {
            u.steps.iter().map(move |k| {
                vec![
                    k.hex()[..12].to_string(),
                    "regular".to_string(),
                    format::human_size(u.size - u.shared.min(u.size)),
                    format::ago(&u.image.created),
                    used_ago(u.last_used),
                    u.image.config.hex()[..12].to_string(),
                ]
            })
        })
        .collect();
    print_table(&["CACHE ID", "CACHE TYPE", "SIZE", "CREATED", "LAST USED", "IMAGE ID"], &rows);
    Ok(())
}

/// `12 minutes ago`, from nanoseconds since the epoch.
fn used_ago(ns: i64) -> String {
    format::ago(&layers_store::images::oci::rfc3339(ns / 1_000_000_000))
}
