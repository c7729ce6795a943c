//! A COPY or ADD step: its sources (the context, here-documents, fetched URLs, or a
//! stage's or image's root filesystem, mounted read-only for the step) copied into
//! the step's container, then committed. ADD extracts local archives there.

use std::path::PathBuf;

use anyhow::Context;

use super::{Executor, ScratchDir, State};
use crate::builder::context;
use crate::builder::frontend::pattern::Patterns;
use crate::builder::plan::{copy::lay_out, CopyStep, Plan, Source, Step};
use layers_store::fsroot::{self, Attrs, Tree};

/// Copies `c`'s sources into the stage's image and commits the result.
pub fn run(x: &Executor, plan: &Plan, state: &mut State, step: &Step, c: &CopyStep) -> anyhow::Result<()> {
    let scratch = ScratchDir(x.store.scratch_dir("build-copy")?);
    // Unmounted (when dropped) before the scratch dir it lives in is removed.
    let mut _view = None;
    let (tree_dir, ignore, name): (PathBuf, Patterns, String) = match &c.source {
        Source::Context => (x.context.clone(), x.ignore.clone(), "build context".into()),
        Source::Heredocs(docs) => {
            for (name, content) in docs {
                std::fs::write(scratch.path().join(name), content)?;
            }
            (scratch.path().to_path_buf(), Patterns::default(), "here-documents".into())
        }
        Source::Downloads(i) => {
            let dir = plan.downloads.get(*i).context("a download the plan lost")?;
            (dir.path().to_path_buf(), Patterns::default(), "downloads".into())
        }
        Source::Stage(i) => {
            let image = x.stage_image(*i)?;
            let view = x.store.snapshots().mount_view(&image.manifest, scratch.path().join("view"))?;
            let dir = view.path().to_path_buf();
            _view = Some(view);
            (dir, Patterns::default(), format!("stage {}", plan.stages[*i].name.as_deref().unwrap_or("")))
        }
        Source::Image(row) => {
            let view = x.store.snapshots().mount_view(&row.manifest, scratch.path().join("view"))?;
            let dir = view.path().to_path_buf();
            _view = Some(view);
            (dir, Patterns::default(), format!("image {}", row.manifest))
        }
    };
    let ignore = ignore.with(&c.excludes);
    let tree = Tree::open(&tree_dir, &name)?;
    // ADD extracts the context's archives (their bytes are in the key; unpacked here).
    let (layout, archives) = if c.verb == "ADD" && matches!(c.source, Source::Context) {
        let mut selected = Vec::new();
        for s in &c.sources {
            selected.extend(context::select(&tree, s, &ignore)?);
        }
        let (archives, plain): (Vec<PathBuf>, Vec<PathBuf>) =
            selected.into_iter().partition(|s| context::is_archive(&tree, s));
        (fsroot::plan(&tree, &plain, &c.dest, &ignore)?, archives)
    } else {
        (lay_out(&tree, &c.sources, &c.dest, &ignore, c.parents)?, Vec::new())
    };
    let attrs = attrs(x, state, c)?;
    let limits = x.store.limits();
    x.in_step_container(state, step, |container| {
        x.write_root(container, c.link, |root| {
            fsroot::copy(&tree, &fsroot::at_real_dest(&layout, root, &c.dest)?, root, attrs)?;
            for (i, a) in archives.iter().enumerate() {
                let into = scratch.path().join(format!("archive-{i}"));
                std::fs::create_dir(&into)?;
                context::extract(&tree, a, &into, limits).with_context(|| format!("{} {}", c.verb, a.display()))?;
                let extracted = Tree::open(&into, &format!("archive {}", a.display()))?;
                let dir = if c.dest.ends_with('/') { c.dest.clone() } else { format!("{}/", c.dest) };
                let mut p = fsroot::plan(&extracted, &[PathBuf::new()], &dir, &fsroot::Everything)?;
                // The archive's top is the destination dir itself, which keeps its own mode.
                p.items.retain(|(e, _)| !e.rel.as_os_str().is_empty());
                let keep = Attrs { keep_owner: c.chown.is_none(), ..attrs };
                fsroot::copy(&extracted, &p, root, keep)?;
            }
            Ok(())
        })
    })
}

/// `--chown` (resolved in the stage's image) and `--chmod`.
fn attrs(x: &Executor, state: &State, c: &CopyStep) -> anyhow::Result<Attrs> {
    let mut attrs = Attrs { mode: c.mode, ..Attrs::default() };
    if let Some(o) = &c.chown {
        let lowers = match &state.image {
            Some(i) => x.store.snapshots().lower_dirs(&i.manifest)?,
            None => Vec::new(),
        };
        let (uid, gid) = crate::run::resolve_user(o, &lowers).map_err(|e| anyhow::anyhow!("--chown={o}: {e}"))?;
        attrs.uid = uid;
        attrs.gid = gid;
    }
    Ok(attrs)
}
