//! `layers export`, `save` and `load`: root filesystems and images in and out as
//! tarballs and OCI layouts.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use layers_store::archive::layout::{DirSink, Layout, SaveImage, TarSink};
use layers_store::fsroot::UserDir;
use layers_store::images::oci::host_architecture;
use layers_store::layer::tar::{EntryKind, TarReader};
use layers_store::snapshots::mount::{mount_spec, unmount_path, MountOptions};
use layers_store::{ErrorKind, Reference, ShortNames, Store};

use crate::transfer::obtain::{fetched_loading, LoadRegistries};

// Arguments of `layers export`.
#[derive(Args)]
pub struct ExportArgs {
    /// A container or an image.
    target: String,
    /// Output file, or `-` for standard output (the default when it is not a terminal).
    #[arg(short, long, default_value = "-")]
    output: String,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SaveFormat {
    /// OCI image layout: a directory, or a tar of one.
    Oci,
    /// `docker save`'s tar (with an OCI layout inside, as Docker 25+ writes).
    DockerArchive,
}

// Arguments of `layers save`.
#[derive(Args)]
pub struct SaveArgs {
    /// Images.
    #[arg(required = true)]
    images: Vec<String>,
    /// Output: a file, `-` for standard output (the default when it is not a terminal),
    /// or for `--format oci` a directory (an existing one, or a path ending in `/`).
    #[arg(short, long, default_value = "-")]
    output: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "docker-archive")]
    format: SaveFormat,
}

// Arguments of `layers load`.
#[derive(Args)]
pub struct LoadArgs {
    /// An OCI layout directory, or a tar of one or a `docker save` archive (default
    /// `-`: standard input, unless it is a terminal).
    #[arg(short, long, default_value = "-")]
    input: String,
    /// Print only image IDs.
    #[arg(short, long)]
    quiet: bool,
}

/// Where a tar goes, buffered: the file at `path`, or stdout for `-`, never a terminal
/// (as Docker refuses to).
pub(crate) fn output(path: &str) -> anyhow::Result<Box<dyn Write>> {
    use std::io::IsTerminal;
    Ok(if path == "-" {
        if io::stdout().is_terminal() {
            bail!("refusing to write a tar to a terminal: give -o FILE, or redirect the output");
        }
        Box::new(BufWriter::with_capacity(128 * 1024, io::stdout().lock()))
    } else {
        Box::new(BufWriter::with_capacity(128 * 1024, File::create(path).with_context(|| format!("create {path}"))?))
    })
}

/// A scratch mount under the store's tmp/, unmounted (and removed) on drop; one left
/// by a killed process goes with the next sweep.
struct ScratchMount(PathBuf);

impl ScratchMount {
    /// `spec` mounted on a new scratch dir, to read the flattened tree from.
    fn of(store: &Store, spec: &layers_store::snapshots::mount::MountSpec) -> anyhow::Result<ScratchMount> {
        let dir = store.scratch_dir("export")?;
        mount_spec(spec, &dir, MountOptions { host_visible: true, legacy: false })?;
        Ok(ScratchMount(dir))
    }
}

impl Drop for ScratchMount {
    fn drop(&mut self) {
        let _ = unmount_path(&self.0, true);
        let _ = std::fs::remove_dir(&self.0);
    }
}

pub fn export(
    store: &Store,
    a: &ExportArgs,
    registries: LoadRegistries,
    transfers: &crate::transfer::Transfers,
) -> anyhow::Result<ExitCode> {
    let spec = match store.snapshots().resolve(&a.target) {
        Ok(c) => store.snapshots().view(&c)?,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let img = store
                .images()
                .resolve(&a.target)
                .with_context(|| format!("export {}: no such container or image", a.target))?;
            fetched_loading(store, transfers, registries, &img)?;
            store.snapshots().image_view(&img.manifest)?
        }
        Err(e) => return Err(e.into()),
    };
    export_view(store, &spec, &a.output).with_context(|| format!("export {}", a.target))?;
    Ok(ExitCode::SUCCESS)
}

/// Writes the flattened tree of `spec` as a tar to `output` (a file, or `-`).
pub fn export_view(
    store: &Store,
    spec: &layers_store::snapshots::mount::MountSpec,
    output_path: &str,
) -> anyhow::Result<()> {
    let mounted = ScratchMount::of(store, spec)?;
    let mut out = output(output_path)?;
    layers_store::layer::diff::write_tar(&mounted.0, &mut out, None, None)?;
    out.flush().with_context(|| format!("write {output_path}"))?;
    Ok(())
}

/// Writes the flattened tree of `spec` into the directory `dest` (made; or empty), all
/// or nothing: it is filled beside `dest` and renamed into place.
pub fn export_local(
    store: &Store,
    spec: &layers_store::snapshots::mount::MountSpec,
    dest: &Path,
) -> anyhow::Result<()> {
    let name = dest
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{}: name a directory to make", dest.display()))?;
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // Made beside dest, filled, renamed into place: all beneath the parent's fd, so a
    // symlink someone else put at dest (or swapped in meanwhile) is replaced, never followed.
    let parent = UserDir::parent_for_new_entry(parent)?;
    match parent.dir(name, false) {
        Ok(d) if !d.names()?.is_empty() => bail!("{} is not empty", dest.display()),
        Ok(_) => {}
        Err(_) if parent.has(name) => bail!(
            "{}: not a directory we can fill (a symlink is never followed): name a new or empty directory",
            dest.display()
        ),
        Err(_) => {}
    }
    let staging_name = format!(".layers-output-{}", std::process::id());
    let root = parent.make_new_dir(&staging_name)?.into_root();
    let mut staging = Staging { parent: &parent, name: &staging_name, kept: false };
    let mounted = ScratchMount::of(store, spec)?;
    // The tree goes through the layer unpacker: the same entry rules as every layer.
    let (reader, mut writer) = io::pipe().context("pipe")?;
    std::thread::scope(|s| -> anyhow::Result<()> {
        let tar = s.spawn(move || layers_store::layer::diff::write_tar(&mounted.0, &mut writer, None, None));
        let unpacked = layers_store::layer::unpack::unpack(reader, None, &root, store.limits(), None);
        tar.join().map_err(|_| anyhow::anyhow!("the tar writer panicked"))??;
        unpacked?;
        Ok(())
    })?;
    parent.rename(&staging_name, name).with_context(|| format!("move the tree to {}", dest.display()))?;
    staging.kept = true;
    Ok(())
}

/// A directory being filled beside its destination; removed unless renamed into place.
struct Staging<'a> {
    parent: &'a UserDir,
    name: &'a str,
    kept: bool,
}

impl Drop for Staging<'_> {
    fn drop(&mut self) {
        if !self.kept {
            let _ = self.parent.remove_tree(self.name);
        }
    }
}

pub fn save(
    store: &Store,
    a: &SaveArgs,
    registries: LoadRegistries,
    transfers: &crate::transfer::Transfers,
) -> anyhow::Result<ExitCode> {
    let mut images = Vec::new();
    for name in &a.images {
        let img = store.images().resolve(name)?;
        fetched_loading(store, transfers, registries, &img)?;
        // A name given is saved under that name; an ID saves every name the image has.
        let names = match Reference::parse(name, ShortNames::Local).ok().and_then(|r| r.tagged_name()) {
            Some(t) if img.tags.contains(&t) => vec![t],
            _ => match Reference::parse(name, ShortNames::DockerHub).ok().and_then(|r| r.tagged_name()) {
                Some(t) if img.tags.contains(&t) => vec![t],
                _ => img.tags.clone(),
            },
        };
        images.push(SaveImage { manifest: img.manifest, names });
    }
    write_images(store, &images, &a.output, a.format)?;
    Ok(ExitCode::SUCCESS)
}

/// Writes images as a docker-archive tar, or an OCI layout (a directory when `output`
/// is one or ends in `/`, else a tar); `-` is standard output.
pub fn write_images(store: &Store, images: &[SaveImage], output_path: &str, format: SaveFormat) -> anyhow::Result<()> {
    let docker = format == SaveFormat::DockerArchive;
    let as_dir = format == SaveFormat::Oci && (output_path.ends_with('/') || Path::new(output_path).is_dir());
    if as_dir {
        store.archive().save(images, &mut DirSink::create(Path::new(output_path))?, false)?;
        return Ok(());
    }
    let mut sink = TarSink::new(output(output_path)?);
    store.archive().save(images, &mut sink, docker)?;
    sink.finish().and_then(|mut w| w.flush()).with_context(|| format!("write {output_path}"))?;
    Ok(())
}

/// Archive members a load needs; anything else is skipped, nothing is written outside `dir`.
fn wanted(path: &str) -> bool {
    let hex = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    match path.split('/').collect::<Vec<_>>().as_slice() {
        ["oci-layout" | "index.json" | "manifest.json"] => true,
        ["blobs", "sha256", h] => hex(h),
        [f] => f.strip_suffix(".json").or(f.strip_suffix(".tar")).is_some_and(hex),
        [d, "layer.tar"] => hex(d),
        _ => false,
    }
}

/// Unpacks the members a load needs into `dir`.
fn unpack_archive(input: impl Read, dir: &Path) -> anyhow::Result<()> {
    let mut tar = TarReader::new(input, 1 << 20);
    let mut buf = vec![0u8; 128 * 1024];
    while let Some(e) = tar.next_entry()? {
        let path = String::from_utf8_lossy(&e.path).trim_start_matches("./").to_string();
        if e.kind != EntryKind::File || !wanted(&path) {
            continue;
        }
        if e.sparse.is_some() {
            bail!("{path}: a sparse file in an image archive is not supported");
        }
        // The JSON members are read whole later: refuse an oversized one before writing it.
        let json = path == "oci-layout" || path.ends_with(".json");
        if json && e.size > layers_store::archive::layout::MAX_JSON {
            bail!("{path}: larger than {} bytes", layers_store::archive::layout::MAX_JSON);
        }
        let dest = dir.join(&path);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut f = File::create(&dest).with_context(|| format!("unpack {path}"))?;
        loop {
            let n = tar.read_data(&mut buf)?;
            if n == 0 {
                break;
            }
            f.write_all(&buf[..n])?;
        }
    }
    Ok(())
}

pub fn load(store: &Store, a: &LoadArgs) -> anyhow::Result<ExitCode> {
    let what = || format!("load {}", a.input);
    let scratch;
    let dir = if Path::new(&a.input).is_dir() {
        PathBuf::from(&a.input)
    } else {
        let input: Box<dyn Read> = if a.input == "-" {
            use std::io::IsTerminal;
            if io::stdin().is_terminal() {
                bail!("load: standard input is a terminal: give -i FILE, or redirect a tar into it");
            }
            Box::new(io::stdin().lock())
        } else {
            Box::new(File::open(&a.input).with_context(|| format!("open {}", a.input))?)
        };
        scratch = store.scratch_dir("load")?;
        let unpacked = unpack_archive(io::BufReader::with_capacity(128 * 1024, input), &scratch);
        if let Err(e) = unpacked {
            let _ = std::fs::remove_dir_all(&scratch);
            return Err(e.context(what()));
        }
        scratch.clone()
    };
    let result = load_dir(store, &dir, a.quiet).with_context(what);
    if dir != Path::new(&a.input) {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

/// Says what was loaded, and records it (Docker's `load` event, named by the ID).
fn report(store: &Store, quiet: bool, loaded: &layers_store::archive::layout::Loaded, tags: &[String]) {
    let config = &loaded.config;
    let new_layers = loaded.new_layers;
    if let Ok(Some(img)) = store.images().get(&loaded.manifest) {
        crate::events::of_image(store, &img, &config.to_string()).record(store, "load");
    }
    if quiet {
        outln!("{config}");
    } else {
        let name = tags.first().map(|t| layers_store::familiar(t)).unwrap_or_else(|| config.to_string());
        let s = if new_layers == 1 { "" } else { "s" };
        outln!("Loaded image: {name} ({new_layers} new layer{s})");
    }
}

fn load_dir(store: &Store, dir: &Path, quiet: bool) -> anyhow::Result<ExitCode> {
    // Docker 25+ archives hold both: the OCI index keeps the original manifests.
    if !dir.join("index.json").exists() && dir.join("manifest.json").exists() {
        let loaded = store.archive().load_docker_archive(dir)?;
        if loaded.is_empty() {
            bail!("manifest.json lists no image");
        }
        for (loaded, names) in loaded {
            let mut tags = Vec::new();
            for n in names {
                // Read as a local build's `-t` is: `docker save app:1 | layers load` gives the
                // `app:1` that `layers build -t app:1` would, not a second name.
                let t = Reference::parse(&n, ShortNames::Local)?.tagged_name().context("archive tag has no tag")?;
                store.images().tag(&loaded.manifest, &t)?;
                tags.push(t);
            }
            report(store, quiet, &loaded, &tags);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let layout = Layout::open(dir)?;
    let images = layout.images(host_architecture())?;
    if images.is_empty() {
        bail!("no image for linux/{} in it", host_architecture());
    }
    for img in images {
        let tags = match &img.name {
            Some(n) => vec![Reference::parse(n, ShortNames::Local)
                .ok()
                .and_then(|r| r.tagged_name())
                .with_context(|| format!("image name {n:?} is not a valid name"))?],
            None => Vec::new(),
        };
        let loaded = store.archive().load_layout(&layout, &img.manifest, tags.clone())?;
        report(store, quiet, &loaded, &tags);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_known_archive_members_are_unpacked() {
        let h = "a".repeat(64);
        for ok in [
            "oci-layout",
            "index.json",
            "manifest.json",
            &format!("blobs/sha256/{h}"),
            &format!("{h}/layer.tar"),
            &format!("{h}.json"),
        ] {
            assert!(super::wanted(ok), "{ok}");
        }
        for bad in [
            "../x",
            "/etc/passwd",
            "blobs/sha256/../../x",
            "blobs/sha256/abc",
            "repositories",
            &format!("{h}/../layer.tar"),
        ] {
            assert!(!super::wanted(bad), "{bad}");
        }
    }
}
