//! `RUN --mount=type=bind,rw`: the step may write to the mount, the host never sees
//! it. As BuildKit does, the source gets a copy-on-write layer of its own: an overlay
//! whose only lower dir is the source and whose upper is a scratch dir in the store's
//! `tmp/` (a single file is copied there instead), all unmounted and removed when the
//! step is over.

use std::path::{Path, PathBuf};

use anyhow::Context;
use layers_store::snapshots::mount::{mount_spec, unmount_path, MountOptions, MountSpec};
use layers_store::Store;

/// A writable, discarded view of a host path.
pub struct ThrowawayView {
    dir: PathBuf,
    view: PathBuf,
    mounted: bool,
}

impl ThrowawayView {
    /// A view of `source` (a dir or a file); writes to it end up under the store's `tmp/`.
    pub fn over(store: &Store, source: &Path) -> anyhow::Result<ThrowawayView> {
        let dir = store.scratch_dir("bind-rw")?;
        let mut v = ThrowawayView { view: dir.join("file"), dir, mounted: false };
        let meta = std::fs::metadata(source).with_context(|| format!("bind source {}", source.display()))?;
        if !meta.is_dir() {
            std::fs::copy(source, &v.view).with_context(|| format!("copy bind source {}", source.display()))?;
            return Ok(v);
        }
        let (upper, work) = (v.dir.join("upper"), v.dir.join("work"));
        v.view = v.dir.join("merged");
        for d in [&upper, &work, &v.view] {
            std::fs::create_dir(d).with_context(|| format!("make {}", d.display()))?;
        }
        let spec = MountSpec { lowers: vec![source.to_path_buf()], upper: Some((upper, work)) };
        mount_spec(&spec, &v.view, MountOptions { host_visible: true, legacy: false })
            .with_context(|| format!("copy-on-write view of {}", source.display()))?;
        v.mounted = true;
        Ok(v)
    }

    /// What to bind into the container.
    pub fn path(&self) -> &Path {
        &self.view
    }
}

impl Drop for ThrowawayView {
    fn drop(&mut self) {
        // Should the view still be busy, detach it: removing through the overlay
        // could only add whiteouts to our scratch upper, never touch the source.
        if self.mounted && unmount_path(&self.view, false).is_err() {
            let _ = unmount_path(&self.view, true);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
