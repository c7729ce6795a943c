//! Opening a store, and its crash recovery: what a process that has the store to
//! itself sweeps (each facet's leftovers, then staging and pending content). Kept
//! apart from `store.rs` so that the store's core does not depend on its facets.

use std::fs;
use std::path::Path;
use std::sync::Mutex;

use super::{open_lock, path_limit, private_dir, remove_tree, Store, PRIVATE_DIRS};
use crate::error::{Error, Result};
use crate::layer::unpack::Limits;
use crate::meta::Metadata;

impl Store {
    /// Opens (creating if needed) the store at `root` and sweeps crash leftovers when alone.
    /// The root and every dir holding content are made (or put back to) 0700.
    pub fn open(root: &Path) -> Result<Store> {
        if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(|e| Error::io("open store", parent.display(), e))?;
        }
        for d in PRIVATE_DIRS {
            private_dir("open store", &root.join(d))?;
        }
        let md = Metadata::open(&root.join("db.sqlite"))?;
        let encoding = md.encoding()?;
        let ours = crate::layer::encoding::Encoding::of_process();
        if encoding != ours {
            return Err(Error::new(
                crate::error::ErrorKind::InvalidInput,
                "open store",
                root.display(),
                format!(
                    "made by {} and opened by {}: each needs a store of its own (--root)",
                    encoding.writer(),
                    ours.writer()
                ),
            ));
        }
        let lock_path = root.join("locks/store.lock");
        let store_lock = open_lock(&lock_path)?;
        let store = Store {
            root: root.to_path_buf(),
            md: Mutex::new(md),
            store_lock,
            encoding,
            limits: Limits { max_path: path_limit(root), ..Limits::default() },
            after_commit: Mutex::default(),
            holder: std::sync::OnceLock::new(),
            ephemeral: Mutex::default(),
        };
        match store.store_lock.try_lock() {
            Ok(()) => {
                store.sweep()?;
                store.store_lock.lock_shared().map_err(|e| Error::io("lock store", lock_path.display(), e))?;
            }
            Err(_) => {
                store.store_lock.lock_shared().map_err(|e| Error::io("lock store", lock_path.display(), e))?;
                // Not alone, yet a `run --rm` killed while others run is gone as promptly.
                store.remove_abandoned_containers()?;
            }
        }
        Ok(store)
    }

    /// Removes crash leftovers: everything in `tmp/` and content whose row stayed `pending`.
    /// Only called while holding the store lock exclusively.
    fn sweep(&self) -> Result<()> {
        // First: an interrupted commit's upper dir is moved back before pending layers go.
        self.sweep_containers()?;
        self.sweep_volumes()?;
        let tmp = self.root.join("tmp");
        for entry in fs::read_dir(&tmp).map_err(|e| Error::io("sweep", tmp.display(), e))? {
            let entry = entry.map_err(|e| Error::io("sweep", tmp.display(), e))?;
            // A scratch mount (export) whose process died.
            if crate::snapshots::mount::is_mountpoint(&entry.path()) {
                crate::snapshots::mount::unmount_path(&entry.path(), true)?;
            }
            remove_tree(&entry.path()).map_err(|e| Error::io("sweep", entry.path().display(), e))?;
        }
        let (blobs, layers) = self.md().pending()?;
        for d in &blobs {
            self.discard(&self.content().blob_path(d))?;
        }
        for l in &layers {
            self.discard(&self.layers().path(l))?;
        }
        if !blobs.is_empty() || !layers.is_empty() {
            self.md().write("sweep", super::ingest::forget_pending_tx)?;
        }
        Ok(())
    }

    /// Takes the store lock exclusively and sweeps, for gc: `false` (still holding it
    /// shared) while another process has the store open.
    pub(crate) fn try_lock_exclusive(&self) -> Result<bool> {
        // Let go of our shared hold first, so only other processes' holds make try_lock fail.
        self.store_lock.unlock().map_err(|e| Error::io("lock store", self.root.display(), e))?;
        if self.store_lock.try_lock().is_err() {
            self.store_lock_shared()?;
            return Ok(false);
        }
        self.sweep()?;
        Ok(true)
    }
}
