//! Build steps' results: an image per step, found again by the step's cache key (a
//! digest the builder computes from the parent state, the instruction and its
//! inputs). The images are ordinary images; a key whose image is removed goes with it.

use rusqlite::{params, OptionalExtension};

use crate::content::content_hash::ContentHash;
use crate::content::digest::Digest;
use crate::error::{Error, ErrorKind, Result};
use crate::images::catalog;
use crate::images::oci::ImageConfig;
use crate::images::record::ImageBlobs;
use crate::images::Images;
use crate::meta::{digest_col, now, ImageRow};
use crate::store::Store;

/// What says a file's content is unchanged without reading it, as git's index and
/// BuildKit's content hashes have it: the same inode with the same size, mtime and
/// ctime (which every write, chmod, chown or rename moves on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStamp {
    /// Device the file is on.
    pub dev: u64,
    /// Its inode number there.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Status-change time, nanoseconds since the epoch.
    pub ctime_ns: i64,
}

/// What [`Store::prune_build_cache`] removed.
#[derive(Debug, Default)]
pub struct BuildCachePruned {
    /// Build steps forgotten.
    pub entries: usize,
    /// Step images removed (named or used ones stay, only forgotten as steps).
    pub images: usize,
    /// `RUN --mount=type=cache` dirs emptied.
    pub cache_mounts: usize,
}

/// The tables this module owns (formats 3, 4, 6, 7 and 11), created idempotently
/// when a store is opened by a newer release (registered in `meta`): step records by
/// key, the digests of build-context files by inode, every image a step made, what
/// each step read (to explain a miss), and the index that finds steps by instruction.
pub(crate) const TABLES: &str = r#"
CREATE TABLE IF NOT EXISTS build_cache (
    key             TEXT PRIMARY KEY,
    manifest_digest TEXT NOT NULL REFERENCES images(manifest_digest) ON DELETE CASCADE,
    created         INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS build_cache_image ON build_cache(manifest_digest);

CREATE TABLE IF NOT EXISTS file_digests (
    dev      INTEGER NOT NULL,
    ino      INTEGER NOT NULL,
    size     INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    digest   TEXT NOT NULL,
    PRIMARY KEY (dev, ino)
);

CREATE TABLE IF NOT EXISTS build_images (
    manifest_digest TEXT PRIMARY KEY REFERENCES images(manifest_digest) ON DELETE CASCADE
);
INSERT OR IGNORE INTO build_images (manifest_digest) SELECT manifest_digest FROM build_cache;

CREATE TABLE IF NOT EXISTS build_step_inputs (
    key         TEXT PRIMARY KEY,
    parent      TEXT NOT NULL,
    instruction TEXT NOT NULL,
    inputs      TEXT NOT NULL,
    created     INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS build_step_inputs_parent ON build_step_inputs(parent);

CREATE INDEX IF NOT EXISTS build_step_inputs_instruction ON build_step_inputs(instruction);
"#;

/// The build cache: step records, the images steps made, cache mounts, and the
/// digests of build-context files (a facet of [`Store`]).
pub struct BuildCache<'a> {
    pub(crate) store: &'a Store,
}

impl Store {
    /// The build cache.
    pub fn build_cache(&self) -> BuildCache<'_> {
        BuildCache { store: self }
    }
}

impl BuildCache<'_> {
    /// The image a build step with this cache key made, if it is still stored.
    pub fn step(&self, key: &Digest) -> Result<Option<ImageRow>> {
        let manifest: Option<String> = self
            .store
            .md()
            .conn()
            .query_row("SELECT manifest_digest FROM build_cache WHERE key = ?", [key.to_string()], |r| r.get(0))
            .optional()
            .map_err(|e| Error::sql("read build cache", key, e))?;
        match manifest.map(|m| Digest::parse(&m)).transpose()? {
            Some(m) => self.store.images().get(&m),
            None => Ok(None),
        }
    }

    /// Remembers that the build step with this key made `manifest`.
    pub fn record(&self, key: &Digest, manifest: &Digest) -> Result<()> {
        self.store.md().write("write build cache", |tx| {
            tx.execute(
                "INSERT INTO build_cache (key, manifest_digest, created) VALUES (?1, ?2, ?3)
                 ON CONFLICT(key) DO UPDATE SET manifest_digest = excluded.manifest_digest, created = excluded.created",
                params![key.to_string(), manifest.to_string(), now()],
            )?;
            // Kept apart from the key: a step rebuilt (`--no-cache`) moves its key to the new
            // image, and the old one must still be known as a step's, for `images` and `prune`.
            tx.execute(
                "INSERT INTO build_images (manifest_digest) VALUES (?1) ON CONFLICT DO NOTHING",
                params![manifest.to_string()],
            )?;
            Ok(())
        })
    }

    /// Remembers what the build step `key` (on `parent`, `instruction` as shown) read:
    /// `inputs` is the builder's own text, kept to explain a later miss.
    pub fn record_inputs(&self, key: &Digest, parent: &Digest, instruction: &str, inputs: &str) -> Result<()> {
        self.store.md().write("write build step inputs", |tx| {
            tx.execute(
                "INSERT INTO build_step_inputs (key, parent, instruction, inputs, created) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(key) DO UPDATE SET inputs = excluded.inputs, created = excluded.created",
                params![key.to_string(), parent.to_string(), instruction, inputs, now()],
            )?;
            Ok(())
        })
    }

    /// Steps recorded on `parent` or with `instruction`, newest first: (key, parent,
    /// instruction, inputs), at most 64.
    pub fn steps_like(&self, parent: &Digest, instruction: &str) -> Result<Vec<(Digest, Digest, String, String)>> {
        let md = self.store.md();
        let mut st = md
            .conn()
            .prepare(
                "SELECT key, parent, instruction, inputs FROM build_step_inputs WHERE parent = ?1 OR instruction = ?2
                 ORDER BY created DESC LIMIT 64",
            )
            .map_err(|e| Error::sql("read build step inputs", parent, e))?;
        let rows = st
            .query_map(params![parent.to_string(), instruction], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?))
            })
            .map_err(|e| Error::sql("read build step inputs", parent, e))?;
        let mut out = Vec::new();
        for row in rows {
            let (k, p, i, inputs) = row.map_err(|e| Error::sql("read build step inputs", parent, e))?;
            out.push((Digest::parse(&k)?, Digest::parse(&p)?, i, inputs));
        }
        Ok(out)
    }

    /// Forgets every build step (and the known file digests), removes the step images nothing else names or uses,
    /// and empties the `RUN --mount=type=cache` dirs: what `docker builder prune -a`
    /// does. Layers and blobs they alone held are left for [`Store::gc`].
    pub fn prune(&self) -> Result<BuildCachePruned> {
        let (entries, images) = self.store.md().write("prune build cache", |tx| {
            let entries: usize = tx.query_row("SELECT COUNT(*) FROM build_cache", [], |r| r.get(0))?;
            let step_images: Vec<String> = {
                let mut st = tx.prepare("SELECT manifest_digest FROM build_images")?;
                let rows = st.query_map([], |r| r.get(0))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let mut images = 0;
            for m in &step_images {
                if !catalog::named_or_leased_tx(tx, m)?
                    && !crate::snapshots::containers::based_on_tx(tx, m)?
                    && catalog::remove_tx(tx, m)?
                {
                    images += 1;
                }
            }
            // What the cascade left: steps whose image is named or in use.
            tx.execute("DELETE FROM build_cache", [])?;
            tx.execute("DELETE FROM build_images", [])?;
            tx.execute("DELETE FROM build_step_inputs", [])?;
            tx.execute("DELETE FROM file_digests", [])?;
            Ok((entries, images))
        })?;
        let mounts = self.store.root().join("cache-mounts");
        let mut cache_mounts = 0;
        if let Ok(dir) = std::fs::read_dir(&mounts) {
            for entry in dir.flatten() {
                // Out of sight first (one rename), then deleted.
                let doomed = self.store.scratch_dir("cache-mount")?;
                std::fs::rename(entry.path(), &doomed)
                    .map_err(|e| Error::io("prune cache mount", entry.path().display(), e))?;
                std::fs::remove_dir_all(&doomed).map_err(|e| Error::io("prune cache mount", doomed.display(), e))?;
                cache_mounts += 1;
            }
        }
        Ok(BuildCachePruned { entries, images, cache_mounts })
    }

    /// The content digests last computed for files with these stamps (None: not known).
    pub fn known_file_digests(&self, stamps: &[FileStamp]) -> Result<Vec<Option<ContentHash>>> {
        let md = self.store.md();
        // One read transaction (rolled back on drop: it only reads): SQLite locks the
        // file once, not twice per file.
        let tx = md.conn().unchecked_transaction().map_err(|e| Error::sql("read file digests", "file_digests", e))?;
        let mut q = tx
            .prepare(
                "SELECT digest FROM file_digests
                 WHERE dev = ?1 AND ino = ?2 AND size = ?3 AND mtime_ns = ?4 AND ctime_ns = ?5",
            )
            .map_err(|e| Error::sql("read file digests", "file_digests", e))?;
        stamps
            .iter()
            .map(|s| {
                let found: Option<String> = q
                    .query_row(params![s.dev as i64, s.ino as i64, s.size as i64, s.mtime_ns, s.ctime_ns], |r| r.get(0))
                    .optional()
                    .map_err(|e| Error::sql("read file digests", s.ino, e))?;
                // A row an older version wrote (sha256) is not known: hashed again, and replaced.
                Ok(found.and_then(|d| ContentHash::parse(&d)))
            })
            .collect()
    }

    /// Remembers files' content digests by stamp (one per inode: the newest wins).
    pub fn remember_file_digests(&self, found: &[(FileStamp, ContentHash)]) -> Result<()> {
        if found.is_empty() {
            return Ok(());
        }
        self.store.md().write("write file digests", |tx| {
            let mut q = tx.prepare(
                "INSERT OR REPLACE INTO file_digests (dev, ino, size, mtime_ns, ctime_ns, digest)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for (s, d) in found {
                q.execute(params![s.dev as i64, s.ino as i64, s.size as i64, s.mtime_ns, s.ctime_ns, d.to_string()])?;
            }
            Ok(())
        })
    }

    /// Whether an image is a build step's (hidden from the image list unless named).
    pub fn is_step_image(&self, manifest: &Digest) -> Result<bool> {
        self.store
            .md()
            .conn()
            .query_row("SELECT 1 FROM build_images WHERE manifest_digest = ?", [manifest.to_string()], |_| Ok(()))
            .optional()
            .map(|o| o.is_some())
            .map_err(|e| Error::sql("read build cache", manifest, e))
    }
}

impl Images<'_> {
    /// Records an image with `parent`'s layers (none for `scratch`) and `config`, whose
    /// `rootfs.diff_ids` must be those layers': a build step that changes only the config.
    pub fn derive(&self, parent: Option<&Digest>, config: &ImageConfig, tags: &[String]) -> Result<ImageRow> {
        let layers = match parent {
            Some(p) => {
                let img =
                    self.get(p)?.ok_or_else(|| Error::new(ErrorKind::NotFound, "derive image", p, "no such image"))?;
                self.require_local(p)?;
                self.manifest(&img)?.layers
            }
            None => Vec::new(),
        };
        self.record(self.store.content().ingest()?, ImageBlobs::New { config, layers }, tags)
    }
}

/// Reads of this module's tables for the budget.
impl crate::meta::Metadata {
    /// The images build steps made.
    pub(crate) fn step_images(&self) -> Result<std::collections::HashSet<Digest>> {
        Ok(self.digests("list step images", "SELECT manifest_digest FROM build_images")?.into_iter().collect())
    }

    /// The keys of the steps that made each image.
    pub(crate) fn step_keys(&self) -> Result<std::collections::HashMap<Digest, Vec<Digest>>> {
        let err = |e| Error::sql("list build steps", "build_cache", e);
        let mut st = self.conn().prepare("SELECT manifest_digest, key FROM build_cache ORDER BY key").map_err(err)?;
        let rows = st.query_map([], |r| Ok((digest_col(r.get(0)?)?, digest_col(r.get(1)?)?))).map_err(err)?;
        let mut out: std::collections::HashMap<Digest, Vec<Digest>> = std::collections::HashMap::new();
        for row in rows {
            let (manifest, key) = row.map_err(err)?;
            out.entry(manifest).or_default().push(key);
        }
        Ok(out)
    }
}

/// In `tx`: what the steps that made image `manifest` read is forgotten (the image goes).
pub(crate) fn forget_inputs_of_tx(tx: &rusqlite::Transaction, manifest: &str) -> rusqlite::Result<()> {
    tx.execute(
        "DELETE FROM build_step_inputs WHERE key IN (SELECT key FROM build_cache WHERE manifest_digest = ?1)",
        [manifest],
    )
    .map(|_| ())
}
