//! Keeping the store honest: `gc` (remove what nothing references), `fsck`
//! (re-verify everything) and `df` (what uses space).

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rusqlite::Transaction;

use super::Gc;
use crate::content::digest::{DiffId, Digest};
use crate::error::{Error, Result};
use crate::images::catalog;
use crate::images::oci::{Manifest, MAX_JSON};
use crate::layer::listing::Listing;
use crate::store::{ingest, remove_tree, Store};

/// What `gc` removed.
#[derive(Debug, Clone, Default)]
pub struct GcReport {
    /// Layer dirs removed.
    pub layers: Vec<DiffId>,
    /// Blobs removed.
    pub blobs: Vec<Digest>,
    /// Entries with no row at all (crash leftovers) removed.
    pub orphans: usize,
    /// Bytes of disk freed (allocated blocks).
    pub freed: u64,
}

/// One problem `fsck` found.
#[derive(Debug, Clone)]
pub struct Problem {
    /// What is wrong (a digest, path or name).
    pub subject: String,
    /// How.
    pub detail: String,
}

/// Space use, by kind.
#[derive(Debug, Clone, Default)]
pub struct DiskUsage {
    /// Blob count and bytes.
    pub blobs: (u64, u64),
    /// Layer count and uncompressed bytes.
    pub layers: (u64, u64),
    /// Images.
    pub images: u64,
    /// Of those, images whose layers are not all here (in a registry, fetched when used).
    pub remote_images: u64,
    /// Bytes `gc` would free (unreferenced blobs and layers).
    pub reclaimable: u64,
}

/// The bytes `path` and everything under it take on disk (blocks), best effort: what
/// cannot be read counts as nothing. Walked by directory fds, not by recursion: a
/// container's upper dir or a volume may be nested as deep as its processes like.
pub(crate) fn disk_usage(path: &Path) -> u64 {
    let Ok(m) = fs::symlink_metadata(path) else { return 0 };
    let mut total = m.blocks() * 512;
    if m.is_dir() {
        let _ = crate::fsroot::walk("measure disk usage", path, &mut |node| {
            total += node.stat.st_blocks as u64 * 512;
            Ok(true)
        });
    }
    total
}

/// The bytes what is under the directory `path` takes on disk, not the directory's own.
pub(crate) fn contents_usage(path: &Path) -> u64 {
    let own = fs::symlink_metadata(path).map_or(0, |m| m.blocks() * 512);
    disk_usage(path).saturating_sub(own)
}

impl Store {
    /// The diffID a stored blob decompresses to (compression recognised by magic bytes).
    fn blob_diff_id(&self, blob: &Digest) -> std::io::Result<DiffId> {
        let (digest, _) = crate::content::digest::Hasher::read_all(self.content().open_decoded(blob)?)?;
        Ok(DiffId::new(digest))
    }

    /// gc's half that is safe while this process has work under way (a pull or build
    /// evicting to stay within its budget): layers and blobs no image references and
    /// no live handle holds, each under its own commit lock. No crash-leftover sweep, which would
    /// take this process's own staged content for leftovers.
    pub(crate) fn collect_unreferenced(&self) -> Result<GcReport> {
        let mut report = GcReport::default();
        let (ref_blobs, ref_layers) = self.md().referenced()?;
        let ref_blobs: HashSet<Digest> = ref_blobs.into_iter().collect();
        let ref_layers: HashSet<DiffId> = ref_layers.into_iter().collect();
        let dead_layers: Vec<DiffId> =
            self.md().layers()?.into_iter().map(|l| l.diff_id).filter(|d| !ref_layers.contains(d)).collect();
        let dead_blobs: Vec<Digest> =
            self.md().blobs()?.into_iter().map(|b| b.0).filter(|d| !ref_blobs.contains(d)).collect();
        self.release_dead_holders()?;
        for l in dead_layers {
            let path = self.layers().path(&l);
            let key = l.to_string();
            // Held content (a running pull's layers before its image is recorded) is in use.
            let used = |tx: &Transaction| -> rusqlite::Result<bool> {
                if catalog::layer_referenced_tx(tx, &key)? {
                    return Ok(true);
                }
                for b in crate::layer::blobs_of_tx(tx, &key)? {
                    if ingest::held_tx(tx, &b)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            };
            let forget = |tx: &Transaction| {
                ingest::forget_layer_tx(tx, &key)?;
                crate::layer::forget_layer_tx(tx, &key)
            };
            if let Some(freed) = self.collect(&format!("layer-{}", l.hex()), used, forget, &path)? {
                report.freed += freed;
                report.layers.push(l);
            }
        }
        for b in dead_blobs {
            let path = self.content().blob_path(&b);
            let key = b.to_string();
            let used = |tx: &Transaction| Ok(catalog::blob_referenced_tx(tx, &key)? || ingest::held_tx(tx, &key)?);
            let forget = |tx: &Transaction| {
                ingest::forget_blob_tx(tx, &key)?;
                crate::layer::forget_blob_tx(tx, &key)
            };
            if let Some(freed) = self.collect(&format!("blob-{}", b.hex()), used, forget, &path)? {
                report.freed += freed;
                report.blobs.push(b);
            }
        }
        Ok(report)
    }

    /// Drops the holds of store handles that are gone (their process died): a live
    /// handle keeps its holder lock taken.
    fn release_dead_holders(&self) -> Result<()> {
        let holders = self.md().holders()?;
        for h in holders {
            // Ours is taken by this handle: try_lock fails for it as for any live one.
            if self.try_lock_object(&h)?.is_some() {
                self.md().write("release dead holder", |tx| ingest::release_holder_tx(tx, &h))?;
            }
        }
        Ok(())
    }

    /// Removes one unreferenced object under its commit lock (`lock`): its rows
    /// (`forget`) in a transaction that first checks it is not `used`, then its files.
    /// `None` if it is being committed or has come into use; else the bytes freed.
    fn collect(
        &self,
        lock: &str,
        used: impl FnOnce(&Transaction) -> rusqlite::Result<bool>,
        forget: impl FnOnce(&Transaction) -> rusqlite::Result<()>,
        path: &Path,
    ) -> Result<Option<u64>> {
        let Some(_lock) = self.try_lock_object(lock)? else { return Ok(None) };
        // Metadata first: once the rows are gone nothing trusts the files.
        let gone = self.md().write("gc", |tx| {
            if used(tx)? {
                return Ok(false);
            }
            forget(tx)?;
            Ok(true)
        })?;
        if !gone {
            return Ok(None);
        }
        let freed = disk_usage(path);
        self.discard(path)?;
        Ok(Some(freed))
    }
}

impl Gc<'_> {
    /// Removes layers and blobs no image references. Alone on the store, also crash
    /// leftovers; beside other processes (running containers, pulls, builds), each
    /// object goes under its own commit lock, re-checked in the transaction that
    /// deletes its row, so nothing anyone uses or is committing is touched.
    pub fn collect(&self) -> Result<GcReport> {
        let alone = self.store.try_lock_exclusive()?;
        let mut report = self.store.collect_unreferenced()?;
        if !alone {
            return Ok(report);
        }
        // Files with no row at all can only be crash leftovers (we hold the store exclusively).
        let known_layers: HashSet<String> = self.store.md().layers()?.iter().map(|l| l.diff_id.hex()).collect();
        let known_blobs: HashSet<String> = self.store.md().blobs()?.iter().map(|b| b.0.hex()).collect();
        for (dir, known) in [("layers", &known_layers), ("blobs/sha256", &known_blobs)] {
            let dir = self.store.root().join(dir);
            for e in fs::read_dir(&dir).map_err(|e| Error::io("gc", dir.display(), e))?.flatten() {
                if !known.contains(e.file_name().to_string_lossy().as_ref()) {
                    report.freed += disk_usage(&e.path());
                    self.store.discard(&e.path())?;
                    report.orphans += 1;
                }
            }
        }
        let locks = self.store.root().join("locks");
        for e in fs::read_dir(&locks).map_err(|e| Error::io("gc", locks.display(), e))?.flatten() {
            // Per-digest lock files are only taken under the shared store lock, which we exclude.
            if e.file_name() != "store.lock" {
                let _ = remove_tree(&e.path());
            }
        }
        self.store.store_lock_shared()?;
        Ok(report)
    }

    /// Re-hashes every blob, checks every layer dir and every image's references.
    pub fn fsck(&self, quick: bool) -> Result<Vec<Problem>> {
        let mut problems = Vec::new();
        let mut add = |subject: String, detail: String| problems.push(Problem { subject, detail });
        let blobs = self.store.md().blobs()?;
        let blob_set: HashSet<Digest> = blobs.iter().map(|b| b.0).collect();
        for (d, size) in blobs.iter().filter(|_| !quick) {
            match self.store.hash_blob(d) {
                Ok((got, n)) if got == *d && n == *size => {}
                Ok((got, n)) => {
                    add(format!("blob {d}"), format!("content hashes to {got} ({n} bytes, expected {size})"))
                }
                Err(e) => add(format!("blob {d}"), format!("cannot read: {e}")),
            }
        }
        let layers = self.store.md().layers()?;
        let layer_set: HashSet<DiffId> = layers.iter().map(|l| l.diff_id).collect();
        for l in &layers {
            let subject = format!("layer {}", l.diff_id);
            match fs::symlink_metadata(self.store.layers().path(&l.diff_id)) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => add(subject, "layer path is not a directory".into()),
                Err(e) => add(subject, format!("layer dir missing: {e}")),
            }
        }
        // Each layer dir against the tree recorded when it was made (none before format 5).
        for l in layers.iter().filter(|l| !quick && self.store.layers().path(&l.diff_id).is_dir()) {
            let subject = format!("layer {}", l.diff_id);
            match self.store.md().layer_tree(&l.diff_id)? {
                None => {}
                Some(Err(d)) => add(subject, format!("its recorded tree does not match its digest {d}")),
                Some(Ok(recorded)) => match Listing::of(&self.store.layers().path(&l.diff_id)).and_then(|now| {
                    if now.digest == recorded.digest {
                        Ok(now)
                    } else {
                        recorded.reconciled(now, &self.store.layers().path(&l.diff_id))
                    }
                }) {
                    Ok(now) if now.digest == recorded.digest => {}
                    Ok(now) => add(
                        subject,
                        format!(
                            "changed since it was made: first difference at {}",
                            recorded.first_difference(&now).unwrap_or_default()
                        ),
                    ),
                    Err(e) => add(subject, format!("cannot be read: {e}")),
                },
            }
        }
        // Every pair an image may name: its blob must decompress to its diffID.
        for (blob, diff) in self.store.md().layer_blobs()?.iter().filter(|(b, _)| !quick && blob_set.contains(b)) {
            match self.store.blob_diff_id(blob) {
                Ok(got) if got == *diff => {}
                Ok(got) => add(format!("layer blob {blob}"), format!("decompresses to {got}, recorded as {diff}")),
                Err(e) => add(format!("layer blob {blob}"), format!("cannot decompress: {e}")),
            }
        }
        let images = self.store.md().images()?;
        for img in images {
            let subject = format!("image {}", img.manifest);
            // A remote image's missing layers are in a registry: not a problem (`remotes` lists them).
            let remote = match img.remote {
                Some(_) => self.store.images().remote(&img.manifest)?,
                None => None,
            };
            let fetched = |d: &DiffId| remote.as_ref().is_none_or(|r| !r.missing.iter().any(|m| m.diff_id == *d));
            for d in [img.manifest, img.config] {
                if !blob_set.contains(&d) {
                    add(subject.clone(), format!("blob {d} is missing"));
                }
            }
            let rows = self.store.md().image_layers(&img.manifest)?;
            for r in rows.iter().filter(|r| fetched(&r.diff_id)) {
                if !layer_set.contains(&r.diff_id) {
                    add(subject.clone(), format!("layer {} is missing", r.diff_id));
                }
                if !blob_set.contains(&r.blob) {
                    add(subject.clone(), format!("layer blob {} is missing", r.blob));
                }
            }
            if blob_set.contains(&img.manifest) {
                match self.store.content().read_blob(&img.manifest, MAX_JSON).and_then(|b| {
                    serde_json::from_slice::<Manifest>(&b).map_err(|e| {
                        Error::new(crate::error::ErrorKind::Corrupt, "parse manifest", img.manifest, e.to_string())
                    })
                }) {
                    Ok(m) => {
                        let listed: Vec<Digest> = m.layers.iter().map(|l| l.digest).collect();
                        let stored: Vec<Digest> = rows.iter().map(|r| r.blob).collect();
                        if m.config.digest != img.config || listed != stored {
                            add(subject.clone(), "manifest does not match the recorded config and layers".into());
                        }
                    }
                    Err(e) => add(subject.clone(), e.to_string()),
                }
            }
        }
        for c in self.store.snapshots().list()? {
            let subject = format!("container {}", c.name);
            if self.store.images().get(&c.image)?.is_none() {
                add(subject.clone(), format!("its image {} is missing", c.image));
            }
            if !self.store.snapshots().dir(&c.id).join("upper").is_dir() && c.committing.is_none() {
                add(subject.clone(), "upper dir missing".into());
            }
            if let Some(d) = c.committing {
                add(subject, format!("a commit into layer {d} was interrupted (the store's gc recovers it)"));
            }
        }
        Ok(problems)
    }

    /// Space used by blobs and layers, and how much `gc` would free.
    pub fn df(&self) -> Result<DiskUsage> {
        let remote_images = self.store.images().remotes()?.len() as u64;
        let md = self.store.md();
        let (ref_blobs, ref_layers) = md.referenced()?;
        let ref_blobs: HashSet<Digest> = ref_blobs.into_iter().collect();
        let ref_layers: HashSet<DiffId> = ref_layers.into_iter().collect();
        let mut du = DiskUsage { images: md.images()?.len() as u64, remote_images, ..Default::default() };
        for (d, size) in md.blobs()? {
            du.blobs.0 += 1;
            du.blobs.1 += size;
            if !ref_blobs.contains(&d) {
                du.reclaimable += size;
            }
        }
        for l in md.layers()? {
            du.layers.0 += 1;
            du.layers.1 += l.uncompressed_size;
            if !ref_layers.contains(&l.diff_id) {
                du.reclaimable += l.uncompressed_size;
            }
        }
        Ok(du)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn disk_usage_counts_every_level_of_a_deep_tree() {
        let t = tempfile::tempdir().unwrap();
        let mut deep = t.path().join("top");
        for _ in 0..400 {
            deep.push("d");
        }
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("f"), vec![7u8; 1 << 20]).unwrap();
        let used = super::disk_usage(&t.path().join("top"));
        // The file's MiB at the bottom was reached (directories take no blocks on tmpfs).
        assert!(used >= 1 << 20, "{used}");
        assert_eq!(super::disk_usage(&t.path().join("missing")), 0);
    }
}
