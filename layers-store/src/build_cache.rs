//! Build steps' results: an image per step, found again by the step's cache key (a
//! digest the builder computes from the parent state, the instruction and its
//! inputs). The images are ordinary images; a key whose image is removed goes with it.

use rusqlite::{params, OptionalExtension};

use crate::digest::Digest;
use crate::error::{Error, ErrorKind, Result};
use crate::image::{ImageConfig, Manifest, MEDIA_TYPE_CONFIG, MEDIA_TYPE_MANIFEST};
use crate::metadata::{now, ImageRow};
use crate::store::{NewImage, Store};

/// Format 3: the build cache.
pub(crate) const SCHEMA_3: &str = r#"
CREATE TABLE IF NOT EXISTS build_cache (
    key             TEXT PRIMARY KEY,
    manifest_digest TEXT NOT NULL REFERENCES images(manifest_digest) ON DELETE CASCADE,
    created         INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS build_cache_image ON build_cache(manifest_digest);
"#;

/// Format 4: digests of build-context files, known by their unchanged inode.
pub(crate) const SCHEMA_4: &str = r#"
CREATE TABLE IF NOT EXISTS file_digests (
    dev      INTEGER NOT NULL,
    ino      INTEGER NOT NULL,
    size     INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    digest   TEXT NOT NULL,
    PRIMARY KEY (dev, ino)
);
"#;

const MAX_JSON: u64 = 4 << 20;

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

impl Store {
    /// The image a build step with this cache key made, if it is still stored.
    pub fn cached_step(&self, key: &Digest) -> Result<Option<ImageRow>> {
        let manifest: Option<String> = self
            .md()
            .conn()
            .query_row("SELECT manifest_digest FROM build_cache WHERE key = ?", [key.to_string()], |r| r.get(0))
            .optional()
            .map_err(|e| Error::sql("read build cache", key, e))?;
        match manifest.map(|m| Digest::parse(&m)).transpose()? {
            Some(m) => self.image(&m),
            None => Ok(None),
        }
    }

    /// Remembers that the build step with this key made `manifest`.
    pub fn cache_step(&self, key: &Digest, manifest: &Digest) -> Result<()> {
        self.md().write("write build cache", |tx| {
            tx.execute(
                "INSERT INTO build_cache (key, manifest_digest, created) VALUES (?1, ?2, ?3)
                 ON CONFLICT(key) DO UPDATE SET manifest_digest = excluded.manifest_digest, created = excluded.created",
                params![key.to_string(), manifest.to_string(), now()],
            )?;
            Ok(())
        })
    }

    /// The persistent directory of a `RUN --mount=type=cache` with this id, made if missing:
    /// `<root>/cache-mounts/<sha256 of id>/`, kept across builds.
    pub fn cache_mount_dir(&self, id: &str) -> Result<std::path::PathBuf> {
        let dir = self.root().join("cache-mounts").join(Digest::of(id.as_bytes()).hex());
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("make cache mount", dir.display(), e))?;
        Ok(dir)
    }

    /// Forgets every build step (and the known file digests), removes the step images nothing else names or uses,
    /// and empties the `RUN --mount=type=cache` dirs: what `docker builder prune -a`
    /// does. Layers and blobs they alone held are left for [`Store::gc`].
    pub fn prune_build_cache(&self) -> Result<BuildCachePruned> {
        let (entries, images) = self.md().write("prune build cache", |tx| {
            let entries: usize = tx.query_row("SELECT COUNT(*) FROM build_cache", [], |r| r.get(0))?;
            let images = tx.execute(
                "DELETE FROM images WHERE manifest_digest IN (SELECT manifest_digest FROM build_cache)
                   AND manifest_digest NOT IN (SELECT manifest_digest FROM tags)
                   AND manifest_digest NOT IN (SELECT manifest_digest FROM leases)
                   AND manifest_digest NOT IN (SELECT manifest_digest FROM containers)",
                [],
            )?;
            // What the cascade left: steps whose image is named or in use.
            tx.execute("DELETE FROM build_cache", [])?;
            tx.execute("DELETE FROM file_digests", [])?;
            Ok((entries, images))
        })?;
        let mounts = self.root().join("cache-mounts");
        let mut cache_mounts = 0;
        if let Ok(dir) = std::fs::read_dir(&mounts) {
            for entry in dir.flatten() {
                // Out of sight first (one rename), then deleted.
                let doomed = self.scratch_dir("cache-mount")?;
                std::fs::rename(entry.path(), &doomed)
                    .map_err(|e| Error::io("prune cache mount", entry.path().display(), e))?;
                std::fs::remove_dir_all(&doomed).map_err(|e| Error::io("prune cache mount", doomed.display(), e))?;
                cache_mounts += 1;
            }
        }
        Ok(BuildCachePruned { entries, images, cache_mounts })
    }

    /// The content digests last computed for files with these stamps (None: not known).
    pub fn known_file_digests(&self, stamps: &[FileStamp]) -> Result<Vec<Option<Digest>>> {
        let md = self.md();
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
                found.map(|d| Digest::parse(&d)).transpose()
            })
            .collect()
    }

    /// Remembers files' content digests by stamp (one per inode: the newest wins).
    pub fn remember_file_digests(&self, found: &[(FileStamp, Digest)]) -> Result<()> {
        if found.is_empty() {
            return Ok(());
        }
        self.md().write("write file digests", |tx| {
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
    pub fn is_build_step(&self, manifest: &Digest) -> Result<bool> {
        self.md()
            .conn()
            .query_row(
                "SELECT 1 FROM build_cache WHERE manifest_digest = ? LIMIT 1",
                [manifest.to_string()],
                |_| Ok(()),
            )
            .optional()
            .map(|o| o.is_some())
            .map_err(|e| Error::sql("read build cache", manifest, e))
    }

    /// Records an image with `parent`'s layers (none for `scratch`) and `config`, whose
    /// `rootfs.diff_ids` must be those layers': a build step that changes only the config.
    pub fn derive_image(&self, parent: Option<&Digest>, config: &ImageConfig, tags: &[String]) -> Result<ImageRow> {
        let what = parent.map_or("scratch".to_string(), |p| p.to_string());
        let (layers, rows) = match parent {
            Some(p) => {
                let img = self
                    .image(p)?
                    .ok_or_else(|| Error::new(ErrorKind::NotFound, "derive image", p, "no such image"))?;
                let m: Manifest = serde_json::from_slice(&self.read_blob(&img.manifest, MAX_JSON)?)
                    .map_err(|e| Error::new(ErrorKind::Corrupt, "read image manifest", img.manifest, e.to_string()))?;
                (m.layers, self.image_layers(p)?)
            }
            None => (Vec::new(), Vec::new()),
        };
        if config.rootfs.diff_ids.len() != rows.len()
            || config.rootfs.diff_ids.iter().zip(&rows).any(|(d, r)| *d != r.diff_id)
        {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "derive image",
                &what,
                "config's diff_ids differ from the layers",
            ));
        }
        let json = |e: serde_json::Error| Error::new(ErrorKind::InvalidInput, "derive image", &what, e.to_string());
        let mut ingest = self.ingest()?;
        let config_desc =
            self.stage_blob(&mut ingest, &serde_json::to_vec(config).map_err(json)?, MEDIA_TYPE_CONFIG)?;
        let manifest = Manifest::new(config_desc.clone(), layers);
        let manifest_desc =
            self.stage_blob(&mut ingest, &serde_json::to_vec(&manifest).map_err(json)?, MEDIA_TYPE_MANIFEST)?;
        let image = NewImage {
            manifest: manifest_desc.clone(),
            config: config_desc,
            layers: rows,
            created: config.created.clone().unwrap_or_default(),
            tags: tags.to_vec(),
        };
        self.commit(ingest, Some(&image))?;
        self.image(&manifest_desc.digest)?
            .ok_or_else(|| Error::new(ErrorKind::Corrupt, "derive image", &what, "the new image is not recorded"))
    }
}
