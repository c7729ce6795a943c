//! `layers cp CONTAINER:PATH HOSTPATH` and `layers cp HOSTPATH CONTAINER:PATH`; `-` for
//! the host side is a tar stream on stdout or stdin.
//!
//! Every path in the container is resolved beneath its root (`openat2` with
//! `RESOLVE_IN_ROOT`, the same tree reader and writer as COPY in a build): a symlink
//! in the container, absolute or `..`, resolves inside the container, never onto the
//! host, and nothing of the container is run (the shapes of CVE-2018-15664 and
//! CVE-2019-14271). A running container is reached through its own root
//! (`/proc/PID/root`, volumes included); a stopped one through its overlay, mounted
//! for the copy.

use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use layers_store::snapshots::mount::{mount_spec, unmount_path, MountOptions};
use layers_store::{ContainerRow, Store};

use crate::run::state;
use layers_store::fsroot::{self, Attrs, Tree};

// Arguments of `layers cp`.
#[derive(Args)]
pub struct CpArgs {
    /// Keep owners as they are (default: ours on the host, root's in the container).
    #[arg(short, long)]
    archive: bool,
    /// CONTAINER:PATH, a host path, or `-` (a tar on stdin, extracted into the directory CONTAINER:PATH).
    source: String,
    /// CONTAINER:PATH, a host path, or `-` (CONTAINER:PATH written to stdout as a tar).
    destination: String,
}

/// `CONTAINER:PATH`, or `None` for a host path (absolute, or without a `:` before its first `/`).
fn container_part(arg: &str) -> Option<(&str, &str)> {
    if arg.starts_with('/') || arg.starts_with('.') {
        return None;
    }
    let (c, p) = arg.split_once(':')?;
    (!c.contains('/') && !c.is_empty()).then_some((c, p))
}

/// A path in the container, relative to its root, `..` and `.` dropped lexically (what
/// they lead to is the resolver's business, inside the root).
fn in_root(path: &str) -> PathBuf {
    Path::new(path).components().filter_map(|c| if let Component::Normal(n) = c { Some(n) } else { None }).collect()
}

/// The container's root as a path to open: its own while it runs, else its overlay
/// mounted on a scratch dir (unmounted when dropped).
struct ContainerRoot {
    path: PathBuf,
    scratch: Option<PathBuf>,
}

impl ContainerRoot {
    fn of(store: &Store, c: &ContainerRow) -> anyhow::Result<ContainerRoot> {
        if let Some(r) = state::running(store, c) {
            return Ok(ContainerRoot { path: PathBuf::from(format!("/proc/{}/root", r.pid)), scratch: None });
        }
        if store.snapshots().is_mounted(c) {
            return Ok(ContainerRoot { path: store.snapshots().merged_dir(c), scratch: None });
        }
        let dir = store.scratch_dir("cp")?;
        let spec = store.snapshots().mount_spec(c)?;
        mount_spec(&spec, &dir, MountOptions { host_visible: true, legacy: false })
            .with_context(|| format!("cp: mount container {}", c.name))?;
        Ok(ContainerRoot { path: dir.clone(), scratch: Some(dir) })
    }
}

impl Drop for ContainerRoot {
    fn drop(&mut self) {
        if let Some(d) = &self.scratch {
            let _ = unmount_path(d, true);
            let _ = std::fs::remove_dir(d);
        }
    }
}

pub fn cp(store: &Store, a: &CpArgs) -> anyhow::Result<ExitCode> {
    match (container_part(&a.source), container_part(&a.destination)) {
        (Some((name, path)), None) if a.destination == "-" => {
            let c = store.snapshots().resolve(name)?;
            let root = ContainerRoot::of(store, &c)?;
            let tree = Tree::open(&root.path, &format!("container {}", c.name))?;
            tar_out(&tree, &in_root(path)).with_context(|| format!("cp {}:{path} -", c.name))?;
        }
        (None, Some((name, path))) if a.source == "-" => {
            let c = store.snapshots().resolve(name)?;
            let root = ContainerRoot::of(store, &c)?;
            let attrs = if a.archive { Attrs::kept() } else { Attrs::owned_by(0, 0) };
            tar_in(store, &root.path, &in_root(path), &c.name, attrs)
                .with_context(|| format!("cp - {}:{path}", c.name))?;
        }
        (Some((name, path)), None) => {
            let c = store.snapshots().resolve(name)?;
            let root = ContainerRoot::of(store, &c)?;
            let tree = Tree::open(&root.path, &format!("container {}", c.name))?;
            let ours = Attrs::owned_by(rustix::process::getuid().as_raw(), rustix::process::getgid().as_raw());
            let attrs = if a.archive { Attrs::kept() } else { ours };
            copy_out(&tree, &in_root(path), Path::new(&a.destination), attrs)
                .with_context(|| format!("cp {}:{path} {}", c.name, a.destination))?;
        }
        (None, Some((name, path))) => {
            let c = store.snapshots().resolve(name)?;
            let root = ContainerRoot::of(store, &c)?;
            let attrs = if a.archive { Attrs::kept() } else { Attrs::owned_by(0, 0) };
            copy_in(Path::new(&a.source), &root.path, &in_root(path), &c.name, attrs)
                .with_context(|| format!("cp {} {}:{path}", a.source, c.name))?;
        }
        (Some(_), Some(_)) => bail!("cp: copying between containers is not supported: one side must be a host path"),
        (None, None) => bail!("cp: one side must be CONTAINER:PATH"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Copies `rel` from the container tree to `dest` on the host, as `docker cp` lays
/// it out: into `dest` when that is an existing directory, else as `dest`.
fn copy_out(tree: &Tree, rel: &Path, dest: &Path, attrs: Attrs) -> anyhow::Result<()> {
    let name = rel.file_name().map(PathBuf::from);
    let is_dir = tree.is_dir(rel);
    let dest_is_dir = dest.is_dir();
    if is_dir && dest.exists() && !dest_is_dir {
        bail!("cannot copy a directory onto the file {}", dest.display());
    }
    // (the host directory that receives it, and the name it gets there)
    let (into, as_name) = match (dest_is_dir, &name) {
        (true, Some(n)) => (dest.to_path_buf(), n.clone()),
        (true, None) => (dest.to_path_buf(), PathBuf::new()),
        (false, _) => {
            let parent = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            if !parent.is_dir() {
                bail!("{}: no such directory", parent.display());
            }
            (parent.to_path_buf(), PathBuf::from(dest.file_name().context("a destination name")?))
        }
    };
    let target = format!("/{}", as_name.display());
    let plan = fsroot::plan(tree, &[rel.to_path_buf()], &target, &fsroot::Everything)?;
    if plan.items.is_empty() {
        bail!("/{}: no such file or directory in the container", rel.display());
    }
    Ok(fsroot::copy(tree, &plan, &into, attrs)?)
}

/// Writes `rel` of the container tree to stdout as a tar, as `docker cp CTR:PATH -`:
/// entries named from `rel`'s last name down, owners as in the container.
fn tar_out(tree: &Tree, rel: &Path) -> anyhow::Result<()> {
    let top = rel.file_name().map(|n| n.to_string_lossy().into_owned());
    let mut plan =
        fsroot::plan(tree, &[rel.to_path_buf()], &format!("/{}", top.as_deref().unwrap_or("")), &fsroot::Everything)?;
    if plan.items.is_empty() {
        bail!("/{}: no such file or directory in the container", rel.display());
    }
    // The container's root has no name of its own: its entries go under `./`, as tar's.
    if top.is_none() {
        for (_, target) in &mut plan.items {
            *target = Path::new(".").join(&*target);
        }
    }
    let out = crate::cli::archive::output("-")?;
    Ok(fsroot::write_tar(tree, &plan, out, Attrs::kept())?)
}

/// Extracts a tar from stdin into the container directory `rel`, as `docker cp - CTR:PATH`:
/// first into a scratch dir of the store by the layer unpacker (its entry rules and
/// limits), then copied in beneath the container's root like any host path.
fn tar_in(store: &Store, root: &Path, rel: &Path, container: &str, attrs: Attrs) -> anyhow::Result<()> {
    let dest_tree = Tree::open(root, &format!("container {container}"))?;
    if !dest_tree.is_dir(rel) {
        bail!("/{}: not a directory in the container (a tar is extracted into one)", rel.display());
    }
    let scratch = crate::builder::scratch::ScratchDir(store.scratch_dir("cp-in")?);
    crate::builder::context::extract_stream(std::io::stdin(), scratch.path(), store.limits())
        .context("read the tar on stdin")?;
    let extracted = Tree::open(scratch.path(), "the tar on stdin")?;
    let mut plan = fsroot::plan(&extracted, &[PathBuf::new()], &format!("/{}/", rel.display()), &fsroot::Everything)?;
    // The archive's top is the destination dir itself, which keeps its own mode.
    plan.items.retain(|(e, _)| !e.rel.as_os_str().is_empty());
    Ok(fsroot::copy(&extracted, &plan, root, attrs)?)
}

/// Copies host path `src` into the container whose root is at `root`, to `rel`
/// (into it when it is an existing directory there).
fn copy_in(src: &Path, root: &Path, rel: &Path, container: &str, attrs: Attrs) -> anyhow::Result<()> {
    let meta = std::fs::symlink_metadata(src).with_context(|| format!("{}", src.display()))?;
    let parent = src.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = PathBuf::from(src.file_name().context("a source name")?);
    let host = Tree::open(parent, "host path")?;
    let dest_tree = Tree::open(root, &format!("container {container}"))?;
    let target = if dest_tree.is_dir(rel) { rel.join(&name) } else { rel.to_path_buf() };
    if meta.is_dir() && !dest_tree.is_dir(&target) && target.parent().is_some_and(|p| !dest_tree.is_dir(p)) {
        bail!("/{}: no such directory in the container", target.parent().unwrap_or(Path::new("")).display());
    }
    let plan = fsroot::plan(&host, &[name], &format!("/{}", target.display()), &fsroot::Everything)?;
    Ok(fsroot::copy(&host, &plan, root, attrs)?)
}
