//! A RUN step: the runtime's own `run_container` on the step's container, through a
//! typed [`RunSpec`], then committed. Mount targets the image lacked are removed
//! again before the commit, as BuildKit does, so a `RUN --mount` leaves no trace.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::{Executor, MountedView, ScratchDir, State};
use crate::builder::context::{self, Attrs, Tree};
use crate::builder::frontend::path::clean;
use crate::builder::frontend::pattern::Patterns;
use crate::builder::plan::{MountFrom, RunMount, RunStep, Step};
use crate::builder::throwaway::ThrowawayView;
use crate::run::container::{run_container, Output, RunSpec};
use crate::run::{spec::Overrides, Bind};

/// Runs `r` on the stage's image and commits the result.
pub fn run(x: &Executor, state: &mut State, step: &Step, r: &RunStep) -> anyhow::Result<()> {
    let targets: Vec<&str> = r.mounts.iter().map(RunMount::target).collect();
    let stubs = mount_stubs(x, state, &targets)?;
    let config = step.config.clone().context("a RUN step planned without its config")?;
    // Made first: a mount from a stage may need that stage's image fetched. The views
    // behind the mounts live until the command is over.
    let StepMounts { binds, tmpfs, views: _views, roots: _roots } = mounts(x, &r.mounts)?;
    // A container is started from a single-threaded process: no fetch goes on behind it.
    x.cache.settle();
    x.in_step_container(state, step, |c| {
        let spec = RunSpec {
            overrides: Overrides {
                entrypoint: Some(String::new()),
                cmd: r.argv.clone(),
                env: r.env.clone(),
                workdir: None,
                user: None,
                hostname: c.short_id().to_string(),
            },
            network: r.network,
            binds,
            tmpfs,
            ..RunSpec::defaults(if x.quiet { Output::Discard } else { Output::Inherit })?
        };
        let image = c.image.hex().to_string();
        let ended = run_container(x.store, c, &config, &image, &spec)?;
        if let Some(message) = &ended.not_run {
            eprintln!("layers: {message}");
        }
        if ended.code != 0 {
            bail!("{}: the command returned a non-zero code: {}", step.text, ended.code);
        }
        let (upper, _) = x.store.container_mount(c)?.upper.context("container without an upper dir")?;
        remove_stubs(&upper, &stubs);
        Ok(())
    })
}

/// The mounts of a RUN as the runtime takes them.
struct StepMounts {
    binds: Vec<Bind>,
    /// Target and mount options.
    tmpfs: Vec<(String, String)>,
    /// The throwaway views behind `rw` binds; removed when dropped (before `roots`).
    views: Vec<ThrowawayView>,
    /// Read-only views of the stages and images mounts come from (`from=`).
    roots: Vec<(MountedView, ScratchDir)>,
}

/// A read-only view of what `from` names, kept in `roots`; returns its path.
fn from_root(x: &Executor, from: &MountFrom, roots: &mut Vec<(MountedView, ScratchDir)>) -> anyhow::Result<PathBuf> {
    let image = match from {
        MountFrom::Stage(i, _) => x.stage_image(*i)?,
        MountFrom::Image(row) => row.clone(),
    };
    let scratch = ScratchDir(x.store.scratch_dir("run-mount-from")?);
    let view = MountedView::of(x.store, &image, scratch.path().join("root"))?;
    let path = view.path().to_path_buf();
    roots.push((view, scratch));
    Ok(path)
}

fn mounts(x: &Executor, mounts: &[RunMount]) -> anyhow::Result<StepMounts> {
    let (mut binds, mut tmpfs, mut views, mut roots) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for m in mounts {
        match m {
            RunMount::Cache { id, target, readonly, seed } => {
                let dir = x.store.cache_mount_dir(id)?;
                if let Some((from, source)) = seed {
                    let empty = std::fs::read_dir(&dir).map(|mut d| d.next().is_none()).unwrap_or(false);
                    if empty {
                        // A new cache starts as a copy of from='s source (BuildKit's seed).
                        let root = from_root(x, from, &mut roots)?;
                        let real = context::resolve_dest(&root, source)?;
                        let tree = Tree::open(&root.join(&real), &format!("--mount target={target}: from="))?;
                        let plan = context::plan(&tree, &[PathBuf::new()], "/", &Patterns::default())?;
                        context::copy(&tree, &plan, &dir, Attrs::kept())
                            .with_context(|| format!("--mount target={target}: seed the cache"))?;
                    }
                }
                binds.push(Bind { host: dir, target: target.clone(), read_only: *readonly })
            }
            RunMount::Tmpfs { target, size } => {
                // In bytes: the kernel takes `1m`, not the `1MB` a Dockerfile may say.
                let size = size.map(|s| format!(",size={s}")).unwrap_or_default();
                tmpfs.push((target.clone(), format!("mode=1777{size}")));
            }
            RunMount::Bind { source, target, rw, from } => {
                let real = match from {
                    // Resolved inside the stage's or image's root, symlinks and all.
                    Some(f) => {
                        let root = from_root(x, f, &mut roots)?;
                        root.join(context::resolve_dest(&root, source)?)
                    }
                    None => {
                        let host = x.context.join(source);
                        // Resolved on the host: refuse a source that is (or passes through) a symlink out.
                        let real = host.canonicalize().with_context(|| format!("--mount target={target}: source"))?;
                        if !real.starts_with(&x.context) {
                            bail!("--mount target={target}: the source leaves the build context");
                        }
                        real
                    }
                };
                if *rw {
                    // Writes reach the step, never the build context (BuildKit's semantics).
                    let view =
                        ThrowawayView::over(x.store, &real).with_context(|| format!("--mount target={target}"))?;
                    binds.push(Bind { host: view.path().to_path_buf(), target: target.clone(), read_only: false });
                    views.push(view);
                } else {
                    binds.push(Bind { host: real, target: target.clone(), read_only: true });
                }
            }
        }
    }
    Ok(StepMounts { binds, tmpfs, views, roots })
}

/// The mount targets (and their parents) the image lacks, so the runtime will make
/// them: relative paths, deepest first.
fn mount_stubs(x: &Executor, state: &State, targets: &[&str]) -> anyhow::Result<Vec<PathBuf>> {
    let mut stubs = Vec::new();
    if targets.is_empty() {
        return Ok(stubs);
    }
    let lowers = match &state.image {
        Some(image) => x.store.lower_dirs(&image.manifest)?,
        None => Vec::new(),
    };
    for target in targets {
        let Some(rel) = clean(target) else { continue };
        let mut path = PathBuf::new();
        for part in rel.components() {
            path.push(part);
            if !stubs.contains(&path) && !layers_store::upper::in_lowers(&lowers, &path) {
                stubs.push(path.clone());
            }
        }
    }
    stubs.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    Ok(stubs)
}

/// Removes what the runtime made only to mount over (empty dirs and files the image
/// did not have). What the command put there stays. The command may have swapped a
/// parent for a symlink: parents are opened without following any.
fn remove_stubs(upper: &Path, stubs: &[PathBuf]) {
    use rustix::fs::{openat2, statat, unlinkat, AtFlags, FileType, Mode, OFlags, ResolveFlags};
    let Ok(root) = rustix::fs::open(upper, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()) else {
        return;
    };
    let how = ResolveFlags::NO_SYMLINKS | ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
    for stub in stubs {
        let (Some(parent), Some(name)) = (stub.parent(), stub.file_name()) else { continue };
        let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
        let Ok(dir) = openat2(&root, parent, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty(), how)
        else {
            continue;
        };
        let Ok(st) = statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) else { continue };
        // A failed removal (a dir not empty) is the answer we want: the command wrote there.
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                let _ = unlinkat(&dir, name, AtFlags::REMOVEDIR);
            }
            FileType::RegularFile if st.st_size == 0 => {
                let _ = unlinkat(&dir, name, AtFlags::empty());
            }
            _ => {}
        }
    }
}
