//! `layers create`, `mount`, `umount`, `ps`, `rm`, `diff`, `commit`.

use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use layers_store::images::oci::rfc3339;
use layers_store::snapshots::commit::{CommitOptions, Committed, UpperDir};
use layers_store::snapshots::containers::Lifetime;
use layers_store::snapshots::mount::{mount_spec, unmount_path, MountOptions};
use layers_store::{Compression, ContainerRow, ErrorKind, Reference, ShortNames, Store};

use crate::format;

// Arguments of `layers create`.
#[derive(Args)]
pub struct CreateArgs {
    /// As `run`'s (name: IMAGE-working-container unless given).
    #[command(flatten)]
    options: super::options::ContainerOptions,
    /// Pull the image first: `missing` (when not in the store), `always`, `never`.
    #[arg(long, value_enum, default_value_t)]
    pull: crate::transfer::obtain::PullPolicy,
    /// Platform to pull for: os/arch[/variant].
    #[arg(long)]
    platform: Option<String>,
}

// Arguments of `layers mount`.
#[derive(Args)]
pub struct MountArgs {
    /// A container, or an image (a container is created on it first).
    target: String,
}

// Arguments of `layers umount`.
#[derive(Args)]
pub struct UmountArgs {
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
}

// Arguments of `layers rm`.
#[derive(Args)]
pub struct RmArgs {
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
    /// Unmount mounted containers first.
    #[arg(short, long)]
    force: bool,
}

// Arguments of `layers diff`.
#[derive(Args)]
pub struct DiffArgs {
    /// Container.
    container: String,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum CompressionArg {
    Gzip,
    Zstd,
    None,
}

// Arguments of `layers commit`.
#[derive(Args)]
pub struct CommitArgs {
    /// Container.
    container: String,
    /// Name for the new image.
    reference: Option<String>,
    /// Compression of the new layer.
    #[arg(long, value_enum, default_value = "gzip")]
    compression: CompressionArg,
    /// Commit message (the history entry's comment).
    #[arg(short, long)]
    message: Option<String>,
    /// Author.
    #[arg(short, long)]
    author: Option<String>,
    /// Print only the image ID.
    #[arg(short, long)]
    quiet: bool,
    /// Pause a running container while its changes are written out (`--pause=false` to not).
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set)]
    pause: bool,
    /// Apply a Dockerfile instruction to the new image's config (CMD, ENTRYPOINT, ENV,
    /// EXPOSE, LABEL, ONBUILD, USER, VOLUME, WORKDIR; repeatable).
    #[arg(short, long = "change", value_name = "INSTRUCTION")]
    change: Vec<String>,
}

pub fn create(
    store: &Store,
    a: &CreateArgs,
    registries: &crate::registry::config::RegistriesConfig,
    transfers: &crate::transfer::Transfers,
) -> anyhow::Result<ExitCode> {
    let config = a.options.to_config(store)?;
    let img =
        super::run::image_for_container(store, &config.image, a.pull, a.platform.as_deref(), registries, transfers)?;
    let (c, _) =
        crate::run::container::lifecycle::create(store, &img, a.options.name.as_deref(), config, Lifetime::Kept)?;
    outln!("{}", c.id);
    Ok(ExitCode::SUCCESS)
}

fn mount_container(store: &Store, c: &ContainerRow) -> anyhow::Result<()> {
    let spec = store.snapshots().mount_spec(c)?;
    mount_spec(&spec, &store.snapshots().merged_dir(c), MountOptions { host_visible: true, legacy: false })
        .with_context(|| format!("mount container {}", c.name))?;
    Ok(())
}

pub fn mount(
    store: &Store,
    a: &MountArgs,
    registries: crate::transfer::obtain::LoadRegistries,
    transfers: &crate::transfer::Transfers,
) -> anyhow::Result<ExitCode> {
    let c = match store.snapshots().resolve(&a.target) {
        Ok(c) => c,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let img = store
                .images()
                .resolve(&a.target)
                .with_context(|| format!("mount {}: no such container, and as an image", a.target))?;
            crate::transfer::obtain::fetched_loading(store, transfers, registries, &img)?;
            store.snapshots().create(&img.manifest, None, &a.target, Lifetime::Kept)?
        }
        Err(e) => return Err(e.into()),
    };
    if !store.snapshots().is_mounted(&c) {
        mount_container(store, &c)?;
    }
    outln!("{}", store.snapshots().merged_dir(&c).display());
    if crate::userns::joined() {
        eprintln!(
            "layers: note: rootless, this mount is seen only in the user namespace: use the path in `layers unshare`"
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn umount(store: &Store, a: &UmountArgs) -> anyhow::Result<ExitCode> {
    for name in &a.containers {
        let c = store.snapshots().resolve(name)?;
        if store.snapshots().is_mounted(&c) {
            unmount_path(&store.snapshots().merged_dir(&c), false)
                .with_context(|| format!("unmount container {}", c.name))?;
        }
        outln!("{}", c.id);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn rm(store: &Store, a: &RmArgs) -> anyhow::Result<ExitCode> {
    Ok(super::each(&a.containers, |name| {
        let mut c = store.snapshots().resolve(name)?;
        if let Some(r) = crate::run::state::running(store, &c) {
            if !a.force {
                bail!("rm {}: container is running: stop it first, or use -f", c.name);
            }
            crate::run::state::request_stop(store, &c.id);
            crate::run::control::kill_and_wait(r.pid, r.monitor, || crate::run::state::thaw_to_end(&c));
            // Its `layers run --rm` may have removed it already.
            match store.snapshots().resolve(&c.id) {
                Ok(again) => c = again,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    outln!("{}", c.name);
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
        }
        if a.force && store.snapshots().is_mounted(&c) {
            let merged = store.snapshots().merged_dir(&c);
            // In use by a process: detach it; the kernel frees it when the last user goes.
            if unmount_path(&merged, false).is_err() {
                unmount_path(&merged, true).with_context(|| format!("unmount container {}", c.name))?;
            }
        }
        crate::run::container::lifecycle::destroy(store, &c)?;
        crate::run::remove_leftover_cgroup(&c.id);
        outln!("{}", c.name);
        Ok(())
    }))
}

pub fn diff(store: &Store, a: &DiffArgs) -> anyhow::Result<ExitCode> {
    let c = store.snapshots().resolve(&a.container)?;
    let spec = store.snapshots().mount_spec(&c)?;
    let Some((upper, _)) = &spec.upper else { bail!("diff {}: container has no upper dir", c.name) };
    for ch in layers_store::layer::diff::changes(upper, &spec.lowers)? {
        outln!("{} {}", ch.kind.letter(), ch.path);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn commit(store: &Store, a: &CommitArgs) -> anyhow::Result<ExitCode> {
    let c = store.snapshots().resolve(&a.container)?;
    let tag = match &a.reference {
        Some(r) => Some(
            Reference::parse(r, ShortNames::Local)?
                .tagged_name()
                .with_context(|| format!("commit {}: name {r} has a digest; give a tag", c.name))?,
        ),
        None => None,
    };
    // Before the container is paused or unmounted: a bad change leaves it as it was.
    let config = match a.change.is_empty() {
        true => None,
        false => Some(changed_config(store, &c, &a.change)?),
    };
    // A running container's upper dir is live: it is copied, with the container frozen
    // (as `docker commit` pauses it) so the layer is one instant of its filesystem.
    let running = crate::run::state::running(store, &c).is_some();
    // A paused container stays paused: frozen already, and not thawed after.
    let frozen = if running && a.pause && !crate::run::state::paused(&c) {
        let h = crate::run::cgroup::Hierarchy::detect()?;
        crate::run::cgroup::Cgroup::set_frozen(&h, &c.id, true)
            .with_context(|| format!("commit {}: pause it", c.name))?;
        Some(h)
    } else {
        None
    };
    // A mounted, stopped container is unmounted for the commit and mounted again after it.
    let was_mounted = !running && store.snapshots().is_mounted(&c);
    if was_mounted {
        unmount_path(&store.snapshots().merged_dir(&c), false)
            .with_context(|| format!("commit {}: unmount it for the commit", c.name))?;
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let opts = CommitOptions {
        compression: match a.compression {
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Zstd => Compression::Zstd,
            CompressionArg::None => Compression::None,
        },
        created_by: format!("layers commit {}", c.name),
        comment: a.message.clone(),
        author: a.author.clone(),
        created: rfc3339(now as i64),
        tags: tag.clone().into_iter().collect(),
        mtime_clamp: None,
        config,
        upper: if running { UpperDir::Copy } else { UpperDir::Move },
    };
    let committed = store.snapshots().commit(&c, &opts);
    if let Some(h) = frozen {
        crate::run::cgroup::Cgroup::set_frozen(&h, &c.id, false)
            .with_context(|| format!("commit {}: unpause it", c.name))?;
    }
    if was_mounted {
        let c = store.snapshots().resolve(&c.id)?;
        mount_container(store, &c)?;
    }
    let committed = committed.with_context(|| format!("commit {}", c.name))?;
    record_commit(store, &c, &committed, tag, &a.message);
    if !a.quiet {
        eprintln!(
            "layer {} ({}, {} entries)",
            committed.diff_id.digest().short(),
            format::size(committed.blob.size),
            committed.entries
        );
    }
    outln!("{}", committed.config);
    Ok(ExitCode::SUCCESS)
}

/// Records a commit as Docker does: the container's `commit` event, and the new
/// image's `tag` when it was named.
fn record_commit(
    store: &Store,
    c: &ContainerRow,
    committed: &Committed,
    tag: Option<String>,
    comment: &Option<String>,
) {
    crate::run::container::lifecycle::actor(store, c)
        .with("comment", comment.clone().unwrap_or_default())
        .with("imageID", committed.config.to_string())
        .with("imageRef", tag.as_deref().map(layers_store::familiar).unwrap_or_default())
        .record(store, "commit");
    if let Some(tag) = &tag {
        if let Ok(Some(img)) = store.images().get(&committed.manifest) {
            crate::events::tagged(store, &img, tag);
        }
    }
}

/// The config of `c`'s image with `changes` applied (`commit --change`).
fn changed_config(
    store: &Store,
    c: &ContainerRow,
    changes: &[String],
) -> anyhow::Result<layers_store::images::oci::ImageConfig> {
    let image = store.images().get(&c.image)?.with_context(|| format!("commit {}: its image is gone", c.name))?;
    let mut config = store.images().config(&image)?;
    let mut runtime = config.config.take().unwrap_or_default();
    crate::builder::changes::apply(&mut runtime, changes)?;
    config.config = Some(runtime);
    Ok(config)
}
