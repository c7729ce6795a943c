//! `container prune`, `image prune`, `system prune`: Docker's prompts, what they
//! list, and the "Total reclaimed space" line.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use layers_store::Store;

use crate::format;
use crate::run::state;

/// `layers container …`.
#[derive(Subcommand)]
pub enum ContainerCommand {
    /// Remove every stopped container.
    Prune(ContainerPruneArgs),
}

/// `layers image …`.
#[derive(Subcommand)]
pub enum ImageCommand {
    /// Remove unnamed images nothing uses (`-a`: every image no container uses).
    Prune(ImagePruneArgs),
}

// Arguments of `layers container prune`.
#[derive(Args)]
pub struct ContainerPruneArgs {
    /// Do not ask.
    #[arg(short, long)]
    force: bool,
}

// Arguments of `layers image prune`.
#[derive(Args)]
pub struct ImagePruneArgs {
    /// Every image no container uses, not only unnamed ones.
    #[arg(short, long)]
    all: bool,
    /// Do not ask.
    #[arg(short, long)]
    force: bool,
}

// Arguments of `layers system prune`.
#[derive(Args)]
pub struct SystemPruneArgs {
    /// Every image no container uses, not only unnamed ones.
    #[arg(short, long)]
    all: bool,
    /// Anonymous volumes no container mounts as well.
    #[arg(long)]
    volumes: bool,
    /// Do not ask.
    #[arg(short, long)]
    force: bool,
}

use super::ask::{confirm, deleted};

pub fn container(store: &Store, c: &ContainerCommand) -> anyhow::Result<ExitCode> {
    let ContainerCommand::Prune(a) = c;
    if !a.force && !confirm("This will remove all stopped containers.")? {
        return Ok(ExitCode::SUCCESS);
    }
    let (ids, freed) = prune_containers(store)?;
    deleted("Deleted Containers", &ids);
    outln!("Total reclaimed space: {}", format::size(freed));
    Ok(ExitCode::SUCCESS)
}

/// Removes containers that neither run, nor wait for a restart, nor are mounted.
fn prune_containers(store: &Store) -> anyhow::Result<(Vec<String>, u64)> {
    let mut removed = Vec::new();
    let mut freed = 0;
    for c in store.snapshots().list()? {
        let busy = state::running(store, &c).is_some()
            || state::monitor(store, &c).is_some()
            || store.snapshots().is_mounted(&c);
        if busy {
            continue;
        }
        let size = store.snapshots().upper_size(&c);
        crate::run::container::lifecycle::destroy(store, &c)?;
        crate::run::remove_leftover_cgroup(&c.id);
        freed += size;
        removed.push(c.id);
    }
    Ok((removed, freed))
}

pub fn image(store: &Store, c: &ImageCommand) -> anyhow::Result<ExitCode> {
    let ImageCommand::Prune(a) = c;
    let warning = if a.all {
        "This will remove all images without at least one container associated to them."
    } else {
        "This will remove all dangling images."
    };
    if !a.force && !confirm(warning)? {
        return Ok(ExitCode::SUCCESS);
    }
    let before = store.gc().content_bytes()?;
    let lines = prune_images(store, a.all)?;
    let freed = before.saturating_sub(after_gc(store)?);
    deleted("Deleted Images", &lines);
    outln!("Total reclaimed space: {}", format::size(freed));
    Ok(ExitCode::SUCCESS)
}

/// Removes unnamed images (`all`: every image) no container uses; build steps are
/// the build cache's, pruned with it.
fn prune_images(store: &Store, all: bool) -> anyhow::Result<Vec<String>> {
    let used: std::collections::HashSet<layers_store::Digest> =
        store.snapshots().list()?.into_iter().map(|c| c.image).collect();
    let mut lines = Vec::new();
    for img in store.images().list()? {
        let dangling = img.tags.is_empty() && !store.build_cache().is_step_image(&img.manifest)?;
        if used.contains(&img.manifest) || !(all || dangling) {
            continue;
        }
        let removed = store.images().remove(&img.manifest.hex(), true)?;
        crate::events::image_removed(store, &img, &removed);
        for r in removed {
            lines.push(match r {
                layers_store::images::catalog::Removed::Untagged(t) => format!("untagged: {t}"),
                layers_store::images::catalog::Removed::Deleted(d) => format!("deleted: {d}"),
            });
        }
    }
    Ok(lines)
}

/// Removes what nothing references any more; the store's content size after.
fn after_gc(store: &Store) -> anyhow::Result<u64> {
    store.gc().collect()?;
    Ok(store.gc().content_bytes()?)
}

pub fn system(store: &Store, a: &SystemPruneArgs) -> anyhow::Result<ExitCode> {
    let images =
        if a.all { "all images without at least one container associated to them" } else { "all dangling images" };
    let volumes = if a.volumes { "\n  - all anonymous volumes not used by at least one container" } else { "" };
    let warning =
        format!("This will remove:\n  - all stopped containers{volumes}\n  - {images}\n  - unused build cache\n");
    if !a.force && !confirm(warning.trim_end())? {
        return Ok(ExitCode::SUCCESS);
    }
    let before = store.gc().content_bytes()?;
    let (containers, container_bytes) = prune_containers(store)?;
    deleted("Deleted Containers", &containers);
    let mut volume_bytes = 0;
    if a.volumes {
        let (removed, freed) = crate::cli::volume::prune_unused(store, false)?;
        volume_bytes = freed;
        deleted("Deleted Volumes", &removed);
    }
    let cache = store.build_cache().prune()?;
    let lines = prune_images(store, a.all)?;
    deleted("Deleted Images", &lines);
    if cache.entries > 0 {
        outln!("Deleted build cache objects: {}", cache.entries);
        outln!();
    }
    let freed = before.saturating_sub(after_gc(store)?) + container_bytes + volume_bytes;
    outln!("Total reclaimed space: {}", format::size(freed));
    Ok(ExitCode::SUCCESS)
}
