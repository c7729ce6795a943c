//! Keeping a store within a size budget. When it holds more than its budget, images
//! are evicted, least recently used first within each group: images only the build
//! cache keeps, then images nothing names, then named images. Never evicted: an image
//! a container is based on, one a lease holds (a running pull or build), one pinned.
//! Each eviction is one transaction that re-checks all of that and removes the
//! image's rows; `gc` then frees the disk, so a crash midway leaves a consistent
//! store (what is still referenced keeps its content).

use rusqlite::OptionalExtension;

use super::Gc;
use crate::content::digest::Digest;
use crate::error::{Error, Result};
use crate::gc::maintenance::GcReport;
use crate::meta::now_ns;
use crate::store::Store;

/// A store's size budget.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Budget {
    /// At most this many bytes of content (blobs and unpacked layers, each once).
    pub max_size: Option<u64>,
    /// At least this share (0–1) of the filesystem left free.
    pub min_free: Option<f64>,
}

/// What an eviction did.
#[derive(Debug, Clone, Default)]
pub struct Eviction {
    /// Images evicted (manifest digests), in order.
    pub images: Vec<Digest>,
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

/// Images that may be evicted, in eviction order: group (0 build-cache only, 1 unnamed,
/// 2 named), then least recently used.
const CANDIDATES: &str = "
SELECT i.manifest_digest, i.last_used FROM images i
WHERE i.pinned = 0
  AND NOT EXISTS (SELECT 1 FROM containers c WHERE c.manifest_digest = i.manifest_digest)
  AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.manifest_digest = i.manifest_digest)
ORDER BY CASE
    WHEN EXISTS (SELECT 1 FROM tags t WHERE t.manifest_digest = i.manifest_digest) THEN 2
    WHEN EXISTS (SELECT 1 FROM build_images b WHERE b.manifest_digest = i.manifest_digest) THEN 0
    ELSE 1 END,
  i.last_used, i.manifest_digest";

/// The bytes only `?1` holds: its manifest and config, and the layers and layer blobs
/// no other image names.
const EXCLUSIVE: &str = "
SELECT
  (SELECT COALESCE(SUM(b.size), 0) FROM blobs b WHERE b.digest IN (
      SELECT manifest_digest FROM images WHERE manifest_digest = ?1
      UNION SELECT config_digest FROM images WHERE manifest_digest = ?1
      UNION SELECT blob_digest FROM image_layers WHERE manifest_digest = ?1)
    AND NOT EXISTS (SELECT 1 FROM image_layers o WHERE o.blob_digest = b.digest AND o.manifest_digest != ?1)
    AND NOT EXISTS (SELECT 1 FROM images o WHERE (o.manifest_digest = b.digest OR o.config_digest = b.digest)
                    AND o.manifest_digest != ?1))
  +
  (SELECT COALESCE(SUM(l.uncompressed_size), 0) FROM layers l WHERE l.diff_id IN (
      SELECT diff_id FROM image_layers WHERE manifest_digest = ?1)
    AND NOT EXISTS (SELECT 1 FROM image_layers o WHERE o.diff_id = l.diff_id AND o.manifest_digest != ?1))";

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
}

impl Gc<'_> {
    /// The bytes of the store's content: every ready blob and unpacked layer, once.
    pub fn content_bytes(&self) -> Result<u64> {
        let md = self.store.md();
        let sum = |sql: &str| -> Result<u64> {
            md.conn()
                .query_row(sql, [], |r| r.get::<_, i64>(0))
                .map(|n| n.max(0) as u64)
                .map_err(|e| Error::sql("measure store", self.store.root().display(), e))
        };
        Ok(sum("SELECT COALESCE(SUM(size), 0) FROM blobs WHERE state = 'ready'")?
            + sum("SELECT COALESCE(SUM(uncompressed_size), 0) FROM layers WHERE state = 'ready'")?)
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
        let candidates: Vec<(String, i64)> = {
            let md = self.store.md();
            let mut st = md.conn().prepare(CANDIDATES).map_err(|e| Error::sql("list images to evict", "", e))?;
            let rows = st
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(|e| Error::sql("list images to evict", "", e))?;
            rows.collect::<rusqlite::Result<_>>().map_err(|e| Error::sql("list images to evict", "", e))?
        };
        let cutoff = unused_for.map(|age| now_ns().saturating_sub(age));
        let mut out = Eviction::default();
        let mut freed = 0u64;
        for (manifest, last_used) in candidates {
            if keep_since.is_some_and(|k| last_used >= k) {
                continue;
            }
            let stale = cutoff.is_some_and(|c| last_used < c);
            if freed >= bytes && !stale {
                continue;
            }
            let gone = self.store.md().write("evict image", |tx| {
                // Re-checked here: a container, lease or pin made since the listing keeps it.
                let kept: Option<i64> = tx
                    .query_row(
                        "SELECT 1 FROM images i WHERE i.manifest_digest = ?1 AND (i.pinned != 0
                           OR EXISTS (SELECT 1 FROM containers c WHERE c.manifest_digest = ?1)
                           OR EXISTS (SELECT 1 FROM leases l WHERE l.manifest_digest = ?1))",
                        [&manifest],
                        |r| r.get(0),
                    )
                    .optional()?;
                if kept.is_some() {
                    return Ok(None);
                }
                let bytes: i64 = tx.query_row(EXCLUSIVE, [&manifest], |r| r.get(0))?;
                crate::build_cache::forget_inputs_of_tx(tx, &manifest)?;
                let removed = crate::images::catalog::remove_tx(tx, &manifest)?;
                Ok(removed.then_some(bytes.max(0) as u64))
            })?;
            if let Some(b) = gone {
                freed += b;
                out.images.push(Digest::parse(&manifest)?);
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
        const SQL: &str = "
SELECT i.manifest_digest, i.last_used, i.pinned,
  (SELECT COUNT(*) FROM containers c WHERE c.manifest_digest = i.manifest_digest),
  (SELECT COALESCE(SUM(l.uncompressed_size), 0) FROM layers l
     WHERE l.diff_id IN (SELECT diff_id FROM image_layers WHERE manifest_digest = i.manifest_digest)),
  (SELECT COALESCE(SUM(l.uncompressed_size), 0) FROM layers l
     WHERE l.diff_id IN (SELECT diff_id FROM image_layers WHERE manifest_digest = i.manifest_digest)
       AND EXISTS (SELECT 1 FROM image_layers o WHERE o.diff_id = l.diff_id AND o.manifest_digest != i.manifest_digest)),
  (SELECT group_concat(b.key, ' ') FROM build_cache b WHERE b.manifest_digest = i.manifest_digest)
FROM images i ORDER BY i.last_used DESC";
        type Row = (String, i64, bool, i64, i64, i64, Option<String>);
        let rows: Vec<Row> = {
            let md = self.store.md();
            let mut st = md.conn().prepare(SQL).map_err(|e| Error::sql("measure images", "", e))?;
            let rows = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)))
                .map_err(|e| Error::sql("measure images", "", e))?;
            rows.collect::<rusqlite::Result<_>>().map_err(|e| Error::sql("measure images", "", e))?
        };
        let mut out = Vec::new();
        for (manifest, last_used, pinned, containers, size, shared, steps) in rows {
            let digest = Digest::parse(&manifest)?;
            let Some(image) = self.store.images().get(&digest)? else { continue };
            let steps = steps
                .unwrap_or_default()
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(Digest::parse)
                .collect::<Result<_>>()?;
            out.push(ImageUsage {
                image,
                size: size.max(0) as u64,
                shared: shared.max(0) as u64,
                last_used,
                containers: containers.max(0) as u64,
                pinned,
                steps,
            });
        }
        Ok(out)
    }
}
