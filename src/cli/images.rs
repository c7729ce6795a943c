//! `layers images`, `inspect`, `tag`, `rmi`.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use layers_store::catalog::Removed;
use layers_store::oci::MAX_JSON;
use layers_store::{Reference, ShortNames, Store};

use crate::format;

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// Arguments of `layers images`.
#[derive(Args)]
pub struct ImagesArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Show manifest digests.
    #[arg(long)]
    digests: bool,
    /// Show only image IDs.
    #[arg(short, long)]
    quiet: bool,
    /// Show the unnamed images of build steps too.
    #[arg(short, long)]
    all: bool,
}

/// Arguments of `layers inspect`.
#[derive(Args)]
pub struct InspectArgs {
    /// Image names or IDs.
    #[arg(required = true)]
    images: Vec<String>,
}

/// Arguments of `layers tag`.
#[derive(Args)]
pub struct TagArgs {
    /// Existing image.
    source: String,
    /// New name (short names go under localhost/).
    target: String,
}

/// Arguments of `layers rmi`.
#[derive(Args)]
pub struct RmiArgs {
    /// Image names or IDs.
    #[arg(required = true)]
    images: Vec<String>,
    /// Remove every name of an image given by ID; only untag images used by containers.
    #[arg(short, long)]
    force: bool,
}

fn split_tag(full: &str) -> (&str, &str) {
    match full.rfind(':') {
        Some(i) if !full[i..].contains('/') => (&full[..i], &full[i + 1..]),
        _ => (full, "<none>"),
    }
}

pub fn images(store: &Store, a: &ImagesArgs) -> anyhow::Result<ExitCode> {
    let mut images = store.images()?;
    if !a.all {
        // As Docker: a build's intermediate images show with -a only.
        let mut shown = Vec::with_capacity(images.len());
        for i in images {
            if !i.tags.is_empty() || !store.is_build_step(&i.manifest)? {
                shown.push(i);
            }
        }
        images = shown;
    }
    if a.quiet {
        for i in &images {
            outln!("{}", i.config.short());
        }
        return Ok(ExitCode::SUCCESS);
    }
    match a.format {
        Format::Json => {
            let list: Vec<_> = images
                .iter()
                .map(|i| {
                    serde_json::json!({
                        "Id": i.config.to_string(),
                        "Digest": i.manifest.to_string(),
                        "RepoTags": i.tags,
                        "Size": i.size,
                        "Created": i.created,
                    })
                })
                .collect();
            outln!("{}", serde_json::to_string_pretty(&list)?);
        }
        Format::Table => {
            let mut rows = vec![];
            for i in &images {
                let names: Vec<(String, String)> = if i.tags.is_empty() {
                    vec![("<none>".into(), "<none>".into())]
                } else {
                    i.tags.iter().map(|t| split_tag(t)).map(|(r, t)| (r.to_string(), t.to_string())).collect()
                };
                for (repo, tag) in names {
                    let mut row = vec![repo, tag];
                    if a.digests {
                        row.push(i.manifest.to_string());
                    }
                    row.extend([i.config.short(), format::ago(&i.created), format::size(i.size)]);
                    rows.push(row);
                }
            }
            let mut header = vec!["REPOSITORY", "TAG"];
            if a.digests {
                header.push("DIGEST");
            }
            header.extend(["IMAGE ID", "CREATED", "SIZE"]);
            print_table(&header, &rows);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints left-aligned columns separated by three spaces, as Docker does.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        let s: String = cells
            .iter()
            .enumerate()
            .map(|(i, c)| if i == last { c.to_string() } else { format!("{c:<w$}   ", w = widths[i]) })
            .collect();
        outln!("{}", s.trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

pub fn inspect(store: &Store, a: &InspectArgs) -> anyhow::Result<ExitCode> {
    let mut out = Vec::new();
    for name in &a.images {
        let img = store.resolve(name)?;
        let manifest: serde_json::Value = serde_json::from_slice(&store.read_blob(&img.manifest, MAX_JSON)?)
            .with_context(|| format!("parse manifest {}", img.manifest))?;
        let config: serde_json::Value = serde_json::from_slice(&store.read_blob(&img.config, MAX_JSON)?)
            .with_context(|| format!("parse config {}", img.config))?;
        out.push(serde_json::json!({
            "Id": img.config.to_string(),
            "Digest": img.manifest.to_string(),
            "RepoTags": img.tags,
            "Created": img.created,
            "Size": img.size,
            "Manifest": manifest,
            "Config": config,
        }));
    }
    outln!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}

pub fn tag(store: &Store, a: &TagArgs) -> anyhow::Result<ExitCode> {
    let img = store.resolve(&a.source)?;
    let target = Reference::parse(&a.target, ShortNames::Local)?;
    let name = target.tagged_name().with_context(|| format!("tag {}: a tag cannot be a digest", a.target))?;
    store.tag(&img.manifest, &name)?;
    Ok(ExitCode::SUCCESS)
}

pub fn rmi(store: &Store, a: &RmiArgs) -> anyhow::Result<ExitCode> {
    Ok(super::each(&a.images, |name| {
        for r in store.remove_image(name, a.force)? {
            match r {
                Removed::Untagged(t) => outln!("Untagged: {t}"),
                Removed::Deleted(d) => outln!("Deleted: {d}"),
            }
        }
        Ok(())
    }))
}
