//! Keeping a store within a size budget. When it holds more than its budget, images
//! are evicted, least recently used first within each group: images only the build
//! cache keeps, then images nothing names, then named images. Never evicted: an image
//! a container is based on, one a lease holds (a running pull or build), one pinned.
//! Each eviction is one transaction that re-checks all of that and removes the
//! image's rows; `gc` then frees the disk, so a crash midway leaves a consistent
//! store (what is still referenced keeps its content).

use std::collections::{HashMap, HashSet};

use super::Gc;
use crate::content::digest::{DiffId, Digest};
use crate::error::{Error, Result};
use crate::gc::maintenance::GcReport;
use crate::images::catalog::{self, ImageUse};
use crate::meta::now_ns;
use crate::snapshots::containers;
use crate::store::{ingest, Store};

/// A store's size budget.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Budget {
    /// At most this many bytes of content (blobs and unpacked layers, each once).
    pub max_size: Option<u64>,
    /// At least this share (0–1) of the filesystem left free.
    pub min_free: Option<f64>,
}

/// An image an eviction removed, with what it was called (for saying so).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evicted {
    /// Its manifest digest.
    pub manifest: Digest,
    /// Its config digest (the image ID).
    pub config: Digest,
    /// The names it had.
    pub tags: Vec<String>,
}

/// What an eviction did.
#[derive(Debug, Clone, Default)]
pub struct Eviction {
    /// Images evicted, in order.
    pub images: Vec<Evicted>,
    /// What `gc` then freed.
    pub gc: GcReport,
}

/// What `keep_within` evicted while a command ran, added up.
#[derive(Clone, Default)]
pub struct Evictions(std::sync::Arc<std::sync::Mutex<Eviction>>);

impl Evictions {
    fn add(&self, e: Eviction) {
        if let Ok(mut total) = self.0.lock() {
            total.images.extend(e.images);
            total.gc.freed += e.gc.freed;
            total.gc.blobs.extend(e.gc.blobs);
            total.gc.layers.extend(e.gc.layers);
            total.gc.orphans += e.gc.orphans;
        }
    }

    /// The total so far.
    pub fn total(&self) -> Eviction {
        self.0.lock().map(|t| t.clone()).unwrap_or_default()
    }
}

/// One image's share of the store, as `df -v` lists it.
#[derive(Debug, Clone)]
pub struct ImageUsage {
    /// The image.
    pub image: crate::meta::ImageRow,
    /// Bytes of its unpacked layers.
    pub size: u64,
    /// Of those, bytes of layers other images use too.
    pub shared: u64,
    /// When it was last used, nanoseconds since the epoch.
    pub last_used: i64,
    /// Containers based on it.
    pub containers: u64,
    /// Pinned against eviction.
    pub pinned: bool,
    /// Build steps that made it (their cache keys).
    pub steps: Vec<Digest>,
    /// A running pull, build or container holds a lease on it.
    pub leased: bool,
}

impl Gc<'_> {
    /// The bytes of the store's content: every ready blob and unpacked layer, once.
    pub fn content_bytes(&self) -> Result<u64> {
        self.store.md().content_bytes()
    }

    /// Images that may be evicted, in eviction order: images only the build cache
    /// keeps, then unnamed ones, then named ones; least recently used first in each.
    fn candidates(&self) -> Result<Vec<ImageUse>> {
        let (uses, steps) = {
            let md = self.store.md();
            (md.image_uses()?, md.step_images()?)
        };
        let based: HashSet<Digest> = self.store.snapshots().list()?.into_iter().map(|c| c.image).collect();
        let mut out: Vec<ImageUse> =
            uses.into_iter().filter(|u| !u.pinned && !u.leased && !based.contains(&u.manifest)).collect();
        let group = |u: &ImageUse| match (u.tagged, steps.contains(&u.manifest)) {
            (true, _) => 2,
            (false, true) => 0,
            (false, false) => 1,
        };
        out.sort_by_cached_key(|u| (group(u), u.last_used, u.manifest.to_string()));
        Ok(out)
    }

    /// How many bytes must go for the store to be within `budget` (0: it is).
    pub fn over_budget(&self, budget: &Budget) -> Result<u64> {
        let mut over = 0;
        if let Some(max) = budget.max_size {
            over = self.content_bytes()?.saturating_sub(max);
        }
        if let Some(share) = budget.min_free {
            let fs = rustix::fs::statvfs(self.store.root())
                .map_err(|e| Error::errno("measure store", self.store.root().display(), e))?;
            let total = fs.f_blocks * fs.f_frsize;
            let free = fs.f_bavail * fs.f_frsize;
            let want = (total as f64 * share.clamp(0.0, 1.0)) as u64;
            over = over.max(want.saturating_sub(free));
        }
        Ok(over)
    }

    /// Evicts images in eviction order until about `bytes` are freed, and with
    /// `unused_for` (nanoseconds) every evictable image unused for that long too; then
    /// frees their content. Images used at or after `keep_since` (ns since the epoch:
    /// what the command that made the store grow used) stay. Each image is re-checked
    /// in the transaction that removes it.
    pub fn evict(&self, bytes: u64, unused_for: Option<i64>, keep_since: Option<i64>) -> Result<Eviction> {
        let candidates = self.candidates()?;
        let cutoff = unused_for.map(|age| now_ns().saturating_sub(age));
        let mut out = Eviction::default();
        let mut freed = 0u64;
        for ImageUse { manifest, last_used, .. } in candidates {
            if keep_since.is_some_and(|k| last_used >= k) {
                continue;
            }
            let stale = cutoff.is_some_and(|c| last_used < c);
            if freed >= bytes && !stale {
                continue;
            }
            // Read before it goes, to say what went; the removal re-checks everything.
            let Some(row) = self.store.images().get(&manifest)? else { continue };
            let key = manifest.to_string();
            let gone = self.store.md().write("evict image", |tx| {
                // Re-checked here: a container, lease or pin made since the listing keeps it.
                if catalog::pinned_or_leased_tx(tx, &key)? || containers::based_on_tx(tx, &key)? {
                    return Ok(None);
                }
                let (blobs, layers) = catalog::exclusive_tx(tx, &key)?;
                let bytes = ingest::size_tx(tx, &blobs, &layers)?;
                crate::build_cache::forget_inputs_of_tx(tx, &key)?;
                let removed = catalog::remove_tx(tx, &key)?;
                Ok(removed.then_some(bytes))
            })?;
            if let Some(b) = gone {
                freed += b;
                out.images.push(Evicted { manifest, config: row.config, tags: row.tags });
            }
        }
        if !out.images.is_empty() {
            out.gc = self.store.collect_unreferenced()?;
        }
        Ok(out)
    }

    /// From now on, after every commit into this store (and handles reopened from it),
    /// evicts what keeps it over `budget`, nothing used since `started`: the store
    /// stays within its budget while a long pull or build goes on, not only after it.
    /// A failed eviction is left to the next one (and to the caller's final `enforce`).
    pub fn keep_within(&self, budget: Budget, started: i64) -> Evictions {
        let total = Evictions::default();
        let t = total.clone();
        self.store.set_after_commit(Some(std::sync::Arc::new(move |s: &Store| {
            if let Ok(Some(e)) = s.gc().enforce(&budget, started) {
                t.add(e);
            }
        })));
        total
    }

    /// Evicts what keeps the store over `budget`, but nothing used since `started`
    /// (ns since the epoch: the command that grew the store keeps what it used).
    pub fn enforce(&self, budget: &Budget, started: i64) -> Result<Option<Eviction>> {
        let over = self.over_budget(budget)?;
        if over == 0 {
            return Ok(None);
        }
        self.evict(over, None, Some(started)).map(Some)
    }

    /// Every image's share of the store, most recently used first.
    pub fn image_usage(&self) -> Result<Vec<ImageUsage>> {
        let super::usage::UsageInputs { uses, mut steps, sizes, containers } = self.usage_inputs()?;
        // How many images name each layer: one that more than one names is shared.
        let mut named: HashMap<DiffId, u32> = HashMap::new();
        for u in &uses {
            for l in u.layers.iter().collect::<HashSet<_>>() {
                *named.entry(*l).or_default() += 1;
            }
        }
        let mut out = Vec::new();
        for u in uses {
            let Some(image) = self.store.images().get(&u.manifest)? else { continue };
            let layers: HashSet<&DiffId> = u.layers.iter().collect();
            let size_of = |l: &&DiffId| sizes.get(*l).copied().unwrap_or(0);
            out.push(ImageUsage {
                image,
                size: layers.iter().map(size_of).sum(),
                shared: layers.iter().filter(|l| named.get(**l).is_some_and(|n| *n > 1)).map(size_of).sum(),
                last_used: u.last_used,
                containers: containers.get(&u.manifest).copied().unwrap_or(0),
                pinned: u.pinned,
                steps: steps.remove(&u.manifest).unwrap_or_default(),
                leased: u.leased,
            });
        }
        Ok(out)
    }
}
