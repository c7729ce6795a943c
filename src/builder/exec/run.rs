//! A RUN step: the runtime's own `run_container` on the step's container, through a
//! typed [`RunSpec`], then committed. Mount targets the image lacked are removed
//! again before the commit, as BuildKit does, so a `RUN --mount` leaves no trace.

use std::path::PathBuf;

use anyhow::{bail, Context};

use super::{Executor, ScratchDir, State};
use crate::builder::frontend::path::clean;
use crate::builder::plan::{MountFrom, RunMount, RunStep, Step};
use crate::builder::secrets::SecretFile;
use crate::builder::throwaway::ThrowawayView;
use crate::run::container::{run_container, Output, RunSpec};
use crate::run::{image_process::Overrides, Bind};
use layers_store::cache_mounts::HeldMount;
use layers_store::fsroot::{self, Attrs, Tree};
use layers_store::snapshots::containers::MountedView;

/// Runs `r` on the stage's image and commits the result.
pub fn run(x: &Executor, state: &mut State, step: &Step, r: &RunStep) -> anyhow::Result<()> {
    let targets: Vec<&str> = r.mounts.iter().filter_map(RunMount::target).collect();
    let stubs = mount_stubs(x, state, &targets)?;
    let config = step.config.clone().context("a RUN step planned without its config")?;
    // Made first: a mount from a stage may need that stage's image fetched. The views
    // behind the mounts live until the command is over.
    let StepMounts { binds, tmpfs, env, views: _views, roots: _roots, held: _held, secrets: _secrets } =
        mounts(x, &r.mounts)?;
    x.in_step_container(state, step, |c| {
        let spec = RunSpec {
            events: None,
            overrides: Overrides {
                entrypoint: Some(String::new()),
                cmd: r.argv.clone(),
                env: r.env.iter().chain(&env).cloned().collect(),
                workdir: None,
                user: None,
                hostname: c.short_id().to_string(),
            },
            network: r.network.clone(),
            binds,
            tmpfs,
            ..RunSpec::defaults(if x.quiet { Output::Discard } else { Output::Inherit })?
        };
        let image = c.image.hex().to_string();
        // Last before the start: getting the step's image may have fetched layers.
        let quiesced = x.transfers.quiesce();
        let ended = run_container(x.store, c, &config, &image, &spec, &quiesced)?;
        if let Some(message) = &ended.not_run {
            eprintln!("layers: {message}");
        }
        if ended.code != 0 {
            bail!("{}: the command returned a non-zero code: {}", step.text, ended.code);
        }
        let (upper, _) = x.store.snapshots().mount_spec(c)?.upper.context("container without an upper dir")?;
        fsroot::remove_stubs(&upper, &stubs);
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
    /// The cache mounts, held until the step ends.
    held: Vec<HeldMount>,
    /// Secrets given as variables (`env=`), as `NAME=VALUE`.
    env: Vec<String>,
    /// The tmpfs files secrets are shown in; unmounted when dropped.
    secrets: Vec<SecretFile>,
}

/// Fills a new cache mount from an imported cache that carries it (`--cache-from`
/// of a cache exported with its mounts). A blob that fails is a warning: the step
/// runs with the mount empty, as it would with no cache.
fn seed_from_imported(x: &Executor, id: &str, mount: &HeldMount) {
    match x.cache.seed_mount(x.store, id, mount) {
        Ok(Some((source, size))) if !x.quiet => {
            eprintln!("--> cache mount {id}: filled from {source} ({:.1} MB)", size as f64 / 1e6)
        }
        Ok(_) => {}
        Err(e) => {
            eprintln!("layers: warning: cache mount {id}: {}; the step starts with it empty", crate::one_line(&e))
        }
    }
}

/// A read-only view of what `from` names, kept in `roots`; returns its path.
fn from_root(x: &Executor, from: &MountFrom, roots: &mut Vec<(MountedView, ScratchDir)>) -> anyhow::Result<PathBuf> {
    let image = match from {
        MountFrom::Stage(i, _) => x.stage_image(*i)?,
        MountFrom::Image(row) => row.clone(),
    };
    let scratch = ScratchDir(x.store.scratch_dir("run-mount-from")?);
    let view = x.store.snapshots().mount_view(&image.manifest, scratch.path().join("root"))?;
    let path = view.path().to_path_buf();
    roots.push((view, scratch));
    Ok(path)
}

fn mounts(x: &Executor, mounts: &[RunMount]) -> anyhow::Result<StepMounts> {
    let (mut binds, mut tmpfs, mut views, mut roots, mut held) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut env, mut secrets) = (Vec::new(), Vec::new());
    for m in mounts {
        match m {
            RunMount::Cache { id, target, readonly, seed, sharing, owner } => {
                // Held as `sharing` says until the step ends; alone while it is filled.
                let mount = x.store.build_cache().hold_mount(id, *sharing)?;
                let fillable = seed.is_some() || owner.is_some() || x.cache.has_mount(id);
                let fill = fillable && mount.alone_if_empty()?;
                match seed {
                    _ if !fill => {}
                    Some((from, source)) => {
                        // A new cache starts as a copy of from='s source (BuildKit's seed).
                        let root = from_root(x, from, &mut roots)?;
                        let real = fsroot::resolve_dest(&root, source)?;
                        let tree = Tree::open(&root.join(&real), &format!("--mount target={target}: from="))?;
                        let plan = fsroot::plan(&tree, &[PathBuf::new()], "/", &fsroot::Everything)?;
                        fsroot::copy(&tree, &plan, mount.dir(), Attrs::kept())
                            .with_context(|| format!("--mount target={target}: seed the cache"))?;
                    }
                    None => seed_from_imported(x, id, &mount),
                }
                if let Some(o) = owner.filter(|_| fill) {
                    // A new cache's root, as BuildKit makes it: after any seed, over its root's.
                    mount
                        .set_root(o.uid, o.gid, o.mode)
                        .with_context(|| format!("--mount target={target}: uid/gid/mode"))?;
                }
                mount.share_again()?;
                binds.push(Bind { host: mount.dir().to_path_buf(), target: target.clone(), read_only: *readonly });
                held.push(mount);
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
                        root.join(fsroot::resolve_dest(&root, source)?)
                    }
                    // Resolved inside the build context, as BuildKit resolves it: a
                    // symlink is followed within the context, never out of it.
                    None => {
                        let real = fsroot::resolve_dest(&x.context, source)
                            .with_context(|| format!("--mount target={target}"))?;
                        if fsroot::Tree::open(&x.context, "build context")?.stat(&real).is_err() {
                            bail!("--mount target={target}: source {} is not in the build context", source.display());
                        }
                        x.context.join(real)
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
            RunMount::Secret { id, target, env: var, required, owner } => {
                let Some(secret) = x.secrets.get(id) else {
                    if *required {
                        bail!("--mount=type=secret,id={id}: secret {id} was not given (--secret id={id},src=FILE)");
                    }
                    // BuildKit's: a secret not given and not required is left out.
                    continue;
                };
                if let Some(var) = var {
                    let value = String::from_utf8(secret.bytes().to_vec())
                        .with_context(|| format!("--mount=type=secret,id={id},env={var}: the secret is not UTF-8"))?;
                    env.push(format!("{var}={value}"));
                }
                if let Some(target) = target {
                    let file = SecretFile::new(x.store, secret, owner.uid, owner.gid, owner.mode)
                        .with_context(|| format!("--mount=type=secret,id={id}"))?;
                    binds.push(Bind { host: file.path(), target: target.clone(), read_only: true });
                    secrets.push(file);
                }
            }
            RunMount::Ssh { id, target, required } => {
                let Some(socket) = x.ssh.get(id) else {
                    if *required {
                        bail!("--mount=type=ssh,id={id}: no agent was given for {id} (--ssh {id}=SOCKET)");
                    }
                    continue;
                };
                // A socket connects on a read-only mount (the kernel checks write access
                // only for files, directories and symlinks there).
                binds.push(Bind { host: socket.clone(), target: target.clone(), read_only: true });
                if !env.iter().any(|e: &String| e.starts_with("SSH_AUTH_SOCK=")) {
                    env.push(format!("SSH_AUTH_SOCK={target}"));
                }
            }
        }
    }
    Ok(StepMounts { binds, tmpfs, env, views, roots, held, secrets })
}

/// The mount targets (and their parents) the image lacks, so the runtime will make
/// them: relative paths, deepest first.
fn mount_stubs(x: &Executor, state: &State, targets: &[&str]) -> anyhow::Result<Vec<PathBuf>> {
    let mut stubs = Vec::new();
    if targets.is_empty() {
        return Ok(stubs);
    }
    let lowers = match &state.image {
        Some(image) => x.store.snapshots().lower_dirs(&image.manifest)?,
        None => Vec::new(),
    };
    for target in targets {
        let Some(rel) = clean(target) else { continue };
        let mut path = PathBuf::new();
        for part in rel.components() {
            path.push(part);
            if !stubs.contains(&path) && !layers_store::fsroot::lowers::in_lowers(&lowers, &path) {
                stubs.push(path.clone());
            }
        }
    }
    stubs.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    Ok(stubs)
}
