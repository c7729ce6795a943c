//! Staging and committing: content is written under `tmp/` into an [`Ingest`], then
//! made durable and visible at once by [`Store::commit`] (one `syncfs`, renames under
//! per-digest locks, rows `pending` then `ready`).

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use super::{lock, open_lock, remove_tree, Store, STAGING_SEQ};
use crate::content::digest::{DiffId, Digest};
use crate::content::Content;
use crate::error::{Error, ErrorKind, Result};
use crate::fsroot::Root;
use crate::images::catalog::NewImage;
use crate::images::oci::Descriptor;
use crate::layer::listing::Packed;
use crate::layer::written::Written;
use crate::meta::LayerRow;
use crate::meta::{db_err, digest_col, now};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

/// The tables content lives in (registered in `meta`): blobs and layer dirs by digest,
/// `pending` until their commit is recorded, and (format 9) content committed and not
/// named by an image yet, held by a live store handle so that gc leaves it alone.
pub(crate) const TABLES: &str = r#"
CREATE TABLE IF NOT EXISTS blobs (
    digest     TEXT PRIMARY KEY,
    size       INTEGER NOT NULL,
    media_type TEXT NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('pending', 'ready')),
    created    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS layers (
    diff_id           TEXT PRIMARY KEY,
    blob_digest       TEXT NOT NULL,
    compressed_size   INTEGER NOT NULL,
    uncompressed_size INTEGER NOT NULL,
    file_count        INTEGER NOT NULL,
    state             TEXT NOT NULL CHECK (state IN ('pending', 'ready')),
    created           INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS held_content (
    holder TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (holder, digest)
);
CREATE INDEX IF NOT EXISTS held_content_digest ON held_content(digest);
"#;

/// Content staged under `tmp/`, committed all at once by [`Store::commit`].
pub struct Ingest {
    dir: PathBuf,
    /// Staging dirs of ingests absorbed into this one.
    absorbed: Vec<PathBuf>,
    /// Names the next staged item in `dir`.
    seq: usize,
    blobs: Vec<(Descriptor, PathBuf)>,
    /// Each staged layer dir with its row and its tree, listed once it is complete.
    layers: Vec<(LayerRow, PathBuf, Packed)>,
}

impl Ingest {
    fn next_name(&mut self) -> usize {
        self.seq += 1;
        self.seq
    }

    /// A fresh path in the staging dir, for content the caller writes itself.
    pub(crate) fn staged_path(&mut self, prefix: &str) -> PathBuf {
        let n = self.next_name();
        self.dir.join(format!("{prefix}-{n}"))
    }

    /// Adds a blob written at a staged path.
    pub(crate) fn add_blob(&mut self, desc: Descriptor, path: PathBuf) {
        self.blobs.push((desc, path));
    }

    /// Adds a complete layer dir (anywhere on the store's filesystem) to be renamed into
    /// place, with the listing recorded as it was read.
    pub(crate) fn add_layer(&mut self, row: LayerRow, dir: PathBuf, listing: Written) -> Result<()> {
        let tree = listing.into_packed();
        // Every layer a debug build commits proves the records are what a walk reads.
        #[cfg(debug_assertions)]
        tree.assert_walk_agrees(&dir, row.diff_id, true)?;
        self.add_layer_tree(row, dir, tree);
        Ok(())
    }

    /// Adds a complete layer dir whose tree is already known (it was just unpacked).
    pub(super) fn add_layer_tree(&mut self, row: LayerRow, dir: PathBuf, tree: Packed) {
        self.layers.push((row, dir, tree));
    }

    /// Takes over everything `other` staged, so both commit with one `syncfs`
    /// (layers unpacked in parallel, each into its own ingest, then committed together).
    pub fn absorb(&mut self, mut other: Ingest) {
        self.blobs.append(&mut other.blobs);
        self.layers.append(&mut other.layers);
        self.absorbed.push(std::mem::take(&mut other.dir));
        self.absorbed.append(&mut other.absorbed);
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        // Whatever was not renamed into place is garbage now.
        for dir in std::iter::once(&self.dir).chain(&self.absorbed) {
            if !dir.as_os_str().is_empty() {
                let _ = remove_tree(dir);
            }
        }
    }
}

impl Store {
    /// `commit`, with `also` run in the final transaction.
    pub(crate) fn commit_with(
        &self,
        ingest: Ingest,
        image: Option<&NewImage>,
        also: &dyn Fn(&rusqlite::Transaction) -> rusqlite::Result<()>,
    ) -> Result<()> {
        // Content no image names yet is held for this handle until one does: it is
        // not garbage to a gc (the budget's, after this commit, or another process's).
        let holder = match image {
            None => Some(self.holder()?),
            Some(_) => None,
        };
        self.commit_inner(ingest, image, holder, also)?;
        // Locks and the database are free again: the budget may evict now.
        let hook = self.after_commit.lock().ok().and_then(|h| h.clone());
        if let Some(h) = hook {
            h(self);
        }
        Ok(())
    }

    /// This handle's holder name, its lock taken (and kept) on first use.
    fn holder(&self) -> Result<&str> {
        if let Some((name, _)) = self.holder.get() {
            return Ok(name);
        }
        let name = format!("holder-{}-{}", std::process::id(), STAGING_SEQ.fetch_add(1, Ordering::Relaxed));
        let lock = self.try_lock_object(&name)?.ok_or_else(|| Error::new(ErrorKind::Io, "lock", &name, "held"))?;
        Ok(&self.holder.get_or_init(|| (name, lock)).0)
    }

    /// Commits; content with `holder` is held for it (see `held_content`), and an
    /// image's content stops being held by anyone.
    fn commit_inner(
        &self,
        mut ingest: Ingest,
        image: Option<&NewImage>,
        holder: Option<&str>,
        also: &dyn Fn(&rusqlite::Transaction) -> rusqlite::Result<()>,
    ) -> Result<()> {
        let blobs = std::mem::take(&mut ingest.blobs);
        let layers = std::mem::take(&mut ingest.layers);
        let ingest_blobs: Vec<Digest> = blobs.iter().map(|(d, _)| d.digest).collect();
        // Lock in a fixed order so two committers of overlapping content cannot deadlock.
        let mut names: Vec<String> = blobs.iter().map(|(d, _)| format!("blob-{}", d.digest.hex())).collect();
        names.extend(layers.iter().map(|(l, _, _)| format!("layer-{}", l.diff_id.hex())));
        names.sort();
        names.dedup();
        let _locks = names
            .iter()
            .map(|n| open_lock(&self.root.join("locks").join(n)).and_then(|f| lock(f, n)))
            .collect::<Result<Vec<_>>>()?;

        // Each staged layer was made from its blob (or the blob from it): the pair is verified.
        let pairs: Vec<(Digest, DiffId)> = layers.iter().map(|(l, _, _)| (l.blob, l.diff_id)).collect();
        let mut md = self.md();
        // An image may hold the same layer or blob twice (empty layers are common): commit each once.
        let mut seen_blobs = std::collections::HashSet::new();
        let mut new_blobs = Vec::new();
        for (d, staged) in blobs {
            if seen_blobs.insert(d.digest) && md.blob_size(&d.digest)?.is_none() {
                new_blobs.push((d, staged));
            }
        }
        let mut seen_layers = std::collections::HashSet::new();
        let mut new_layers = Vec::new();
        for (row, dir, tree) in layers {
            if seen_layers.insert(row.diff_id) && md.layer(&row.diff_id)?.is_none() {
                new_layers.push((row, dir, tree));
            }
        }

        if !new_blobs.is_empty() || !new_layers.is_empty() {
            md.write("stage content", |tx| {
                for (d, _) in &new_blobs {
                    put_blob(tx, &d.digest, d.size, &d.media_type, "pending")?;
                }
                for (l, _, _) in &new_layers {
                    put_layer(tx, l, "pending")?;
                }
                Ok(())
            })?;
            self.sync()?;
            for (d, staged) in &new_blobs {
                let dest = self.content().blob_path(&d.digest);
                fs::rename(staged, &dest).map_err(|e| Error::io("commit blob", d.digest, e))?;
            }
            for (l, staged, _) in &new_layers {
                let dest = self.layers().path(&l.diff_id);
                if dest.exists() {
                    // A leftover with no ready row (it would have been found above): replace it.
                    self.discard(&dest)?;
                }
                fs::rename(staged, &dest).map_err(|e| Error::io("commit layer", l.diff_id, e))?;
            }
        }
        let refused = md.write("commit", |tx| {
            for (d, _) in &new_blobs {
                put_blob(tx, &d.digest, d.size, &d.media_type, "ready")?;
            }
            for (l, _, tree) in &new_layers {
                put_layer(tx, l, "ready")?;
                crate::layer::put_layer_tree(tx, &l.diff_id, tree)?;
            }
            for (blob, diff_id) in &pairs {
                crate::layer::put_layer_blob(tx, blob, diff_id)?;
            }
            if let Some(h) = holder {
                for d in &ingest_blobs {
                    tx.execute(
                        "INSERT OR IGNORE INTO held_content (holder, digest) VALUES (?1, ?2)",
                        [h, &d.to_string()],
                    )?;
                }
            }
            let Some(img) = image else { return also(tx).map(|()| None) };
            // Checked in this transaction, where no gc can interleave: every pair the image
            // names was verified, and everything it names is still here. The content above
            // is kept either way (valid, and gc's if nothing uses it).
            // A remote image's layers are in a registry (see `images::remote`).
            for l in img.layers.iter().filter(|_| img.remote.is_none()) {
                if !crate::layer::layer_blob_known(tx, &l.blob, &l.diff_id)? {
                    return Ok(Some(format!("layer blob {} is not known to hold diffID {}", l.blob, l.diff_id)));
                }
            }
            for d in [&img.manifest.digest, &img.config.digest] {
                if blob_size(tx, d)?.is_none() {
                    return Ok(Some(format!("blob {d} is not in the store")));
                }
            }
            crate::images::catalog::insert_image(tx, img)?;
            for d in img.layers.iter().map(|l| &l.blob).chain([&img.manifest.digest, &img.config.digest]) {
                tx.execute("DELETE FROM held_content WHERE digest = ?1", [d.to_string()])?;
            }
            also(tx).map(|()| None)
        })?;
        match (refused, image) {
            (Some(why), Some(img)) => {
                Err(Error::new(ErrorKind::InvalidInput, "record image", img.manifest.digest, why))
            }
            _ => Ok(()),
        }
    }

    /// One `syncfs` of the store's filesystem: cheaper than an fsync per file, and
    /// it covers the staged tree, the blob and the database's WAL together.
    fn sync(&self) -> Result<()> {
        let r = Root::open(&self.root.join("tmp")).map_err(|e| Error::io("sync", self.root.display(), e))?;
        r.sync_filesystem().map_err(|e| Error::io("sync", self.root.display(), e))
    }
}

impl Content<'_> {
    /// Starts staging new content.
    pub fn ingest(&self) -> Result<Ingest> {
        let name = format!(
            "ingest-{}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0),
            STAGING_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let dir = self.store.root.join("tmp").join(name);
        fs::create_dir(&dir).map_err(|e| Error::io("stage", dir.display(), e))?;
        Ok(Ingest { dir, absorbed: Vec::new(), seq: 0, blobs: Vec::new(), layers: Vec::new() })
    }

    /// Stages a small blob (manifest, config) from memory.
    pub fn stage_blob(&self, ingest: &mut Ingest, bytes: &[u8], media_type: &str) -> Result<Descriptor> {
        let n = ingest.next_name();
        let path = ingest.dir.join(format!("blob-{n}"));
        fs::write(&path, bytes).map_err(|e| Error::io("stage", path.display(), e))?;
        let desc = Descriptor {
            media_type: media_type.to_string(),
            digest: Digest::of(bytes),
            size: bytes.len() as u64,
            urls: None,
            annotations: None,
        };
        ingest.blobs.push((desc.clone(), path));
        Ok(desc)
    }

    /// Makes everything staged durable and visible, in one `syncfs` and one final
    /// transaction ([`Store::record_image`] also records an image in it).
    pub fn commit(&self, ingest: Ingest) -> Result<()> {
        self.store.commit_with(ingest, None, &|_| Ok(()))
    }
}

/// Reads of this module's tables.
impl crate::meta::Metadata {
    /// Whether a ready layer with this diffID exists.
    pub fn layer(&self, diff_id: &DiffId) -> Result<Option<LayerRow>> {
        self.conn()
            .query_row(
                "SELECT blob_digest, compressed_size, uncompressed_size, file_count FROM layers WHERE diff_id = ? AND state = 'ready'",
                [diff_id.to_string()],
                |r| {
                    Ok(LayerRow {
                        diff_id: *diff_id,
                        blob: digest_col(r.get(0)?)?,
                        compressed_size: r.get(1)?,
                        uncompressed_size: r.get(2)?,
                        file_count: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(db_err("look up layer"))
    }

    /// Every ready layer.
    pub fn layers(&self) -> Result<Vec<LayerRow>> {
        let mut st = self
            .conn()
            .prepare("SELECT diff_id, blob_digest, compressed_size, uncompressed_size, file_count FROM layers WHERE state = 'ready'")
            .map_err(db_err("list layers"))?;
        let rows = st
            .query_map([], |r| {
                Ok(LayerRow {
                    diff_id: DiffId::new(digest_col(r.get(0)?)?),
                    blob: digest_col(r.get(1)?)?,
                    compressed_size: r.get(2)?,
                    uncompressed_size: r.get(3)?,
                    file_count: r.get(4)?,
                })
            })
            .map_err(db_err("list layers"))?;
        rows.collect::<rusqlite::Result<_>>().map_err(db_err("list layers"))
    }

    /// Whether a ready blob with this digest exists; its size if so.
    pub fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        blob_size(self.conn(), digest).map_err(db_err("look up blob"))
    }

    /// Every ready blob and its size.
    pub fn blobs(&self) -> Result<Vec<(Digest, u64)>> {
        let mut st = self
            .conn()
            .prepare("SELECT digest, size FROM blobs WHERE state = 'ready'")
            .map_err(db_err("list blobs"))?;
        let rows = st.query_map([], |r| Ok((digest_col(r.get(0)?)?, r.get(1)?))).map_err(db_err("list blobs"))?;
        rows.collect::<rusqlite::Result<_>>().map_err(db_err("list blobs"))
    }

    /// Rows left `pending` by a process that died between staging and commit.
    pub fn pending(&self) -> Result<(Vec<Digest>, Vec<DiffId>)> {
        let blobs = self.digests("list pending", "SELECT digest FROM blobs WHERE state = 'pending'")?;
        let layers = self.digests("list pending", "SELECT diff_id FROM layers WHERE state = 'pending'")?;
        Ok((blobs, layers.into_iter().map(DiffId::new).collect()))
    }

    /// The store handles that hold content (live or dead: gc tries each one's lock).
    pub(crate) fn holders(&self) -> Result<Vec<String>> {
        let err = db_err("list holders");
        let mut st = self.conn().prepare("SELECT DISTINCT holder FROM held_content").map_err(err)?;
        let rows = st.query_map([], |r| r.get(0)).map_err(db_err("list holders"))?;
        rows.collect::<rusqlite::Result<_>>().map_err(db_err("list holders"))
    }

    /// The bytes of the store's content: every ready blob and unpacked layer, once.
    pub(crate) fn content_bytes(&self) -> Result<u64> {
        let sum = |sql: &str| -> Result<u64> {
            self.conn()
                .query_row(sql, [], |r| r.get::<_, i64>(0))
                .map(|n| n.max(0) as u64)
                .map_err(db_err("measure store"))
        };
        Ok(sum("SELECT COALESCE(SUM(size), 0) FROM blobs WHERE state = 'ready'")?
            + sum("SELECT COALESCE(SUM(uncompressed_size), 0) FROM layers WHERE state = 'ready'")?)
    }
}

/// In `tx`: whether a store handle holds `digest` (committed, not named by an image yet).
pub(crate) fn held_tx(tx: &Transaction, digest: &str) -> rusqlite::Result<bool> {
    tx.query_row("SELECT 1 FROM held_content WHERE digest = ?1", [digest], |_| Ok(())).optional().map(|o| o.is_some())
}

/// In `tx`: what handle `holder` held is no longer held (it closed or died).
pub(crate) fn release_holder_tx(tx: &Transaction, holder: &str) -> rusqlite::Result<()> {
    tx.execute("DELETE FROM held_content WHERE holder = ?1", [holder]).map(|_| ())
}

/// In `tx`: ready blob `digest`'s row is gone (gc, under its commit lock; its file next).
pub(crate) fn forget_blob_tx(tx: &Transaction, digest: &str) -> rusqlite::Result<()> {
    tx.execute("DELETE FROM blobs WHERE digest = ?1 AND state = 'ready'", [digest]).map(|_| ())
}

/// In `tx`: ready layer `diff_id`'s row is gone (gc, under its commit lock; its dir next).
pub(crate) fn forget_layer_tx(tx: &Transaction, diff_id: &str) -> rusqlite::Result<()> {
    tx.execute("DELETE FROM layers WHERE diff_id = ?1 AND state = 'ready'", [diff_id]).map(|_| ())
}

/// In `tx`: every `pending` row is gone (the sweep removed their files).
pub(crate) fn forget_pending_tx(tx: &Transaction) -> rusqlite::Result<()> {
    tx.execute("DELETE FROM blobs WHERE state = 'pending'", [])?;
    tx.execute("DELETE FROM layers WHERE state = 'pending'", [])?;
    Ok(())
}

/// In `tx`: the bytes of these blobs and unpacked layers (each as often as listed;
/// those being committed in `tx` too).
pub(crate) fn size_tx(tx: &Transaction, blobs: &[String], layers: &[String]) -> rusqlite::Result<u64> {
    let mut total = 0u64;
    let mut blob = tx.prepare("SELECT size FROM blobs WHERE digest = ?1")?;
    for b in blobs {
        total += blob.query_row([b], |r| r.get::<_, i64>(0)).optional()?.unwrap_or(0).max(0) as u64;
    }
    let mut layer = tx.prepare("SELECT uncompressed_size FROM layers WHERE diff_id = ?1")?;
    for l in layers {
        total += layer.query_row([l], |r| r.get::<_, i64>(0)).optional()?.unwrap_or(0).max(0) as u64;
    }
    Ok(total)
}

/// Inserts or refreshes a blob row.
pub(crate) fn put_blob(
    tx: &Transaction,
    digest: &Digest,
    size: u64,
    media_type: &str,
    state: &str,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO blobs (digest, size, media_type, state, created) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(digest) DO UPDATE SET state = excluded.state",
        params![digest.to_string(), size, media_type, state, now()],
    )?;
    Ok(())
}

/// The size of a ready blob, if there is one (inside a transaction too).
pub(crate) fn blob_size(conn: &Connection, d: &Digest) -> rusqlite::Result<Option<u64>> {
    conn.query_row("SELECT size FROM blobs WHERE digest = ? AND state = 'ready'", [d.to_string()], |r| r.get(0))
        .optional()
}

/// Inserts or refreshes a layer row.
pub(crate) fn put_layer(tx: &Transaction, row: &LayerRow, state: &str) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO layers (diff_id, blob_digest, compressed_size, uncompressed_size, file_count, state, created)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT(diff_id) DO UPDATE SET state = excluded.state",
        params![
            row.diff_id.to_string(),
            row.blob.to_string(),
            row.compressed_size,
            row.uncompressed_size,
            row.file_count,
            state,
            now()
        ],
    )?;
    Ok(())
}
