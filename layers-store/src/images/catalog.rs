//! Images and their names: lookup, tags, removal, leases.

use rusqlite::{params, Transaction};

use crate::content::digest::DiffId;
use crate::content::digest::Digest;
use crate::error::{Error, ErrorKind, Result};
use crate::images::oci::Descriptor;
use crate::images::reference::{Reference, ShortNames};
use crate::images::Images;
use crate::layer::Layers;
use crate::meta::ImageLayerRow;
use crate::meta::{db_err, digest_col};
use crate::meta::{now, now_ns, ImageRow};

/// The tables images live in (registered in `meta`): each image, its layers in order,
/// names, and leases (a container's hold on its image).
pub(crate) const TABLES: &str = r#"CREATE TABLE IF NOT EXISTS images (
    manifest_digest TEXT PRIMARY KEY,
    config_digest   TEXT NOT NULL,
    media_type      TEXT NOT NULL,
    size            INTEGER NOT NULL,
    created         TEXT NOT NULL,
    added           INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS image_layers (
    manifest_digest TEXT NOT NULL REFERENCES images(manifest_digest) ON DELETE CASCADE,
    position        INTEGER NOT NULL,
    diff_id         TEXT NOT NULL,
    blob_digest     TEXT NOT NULL,
    media_type      TEXT NOT NULL,
    size            INTEGER NOT NULL,
    PRIMARY KEY (manifest_digest, position)
);
CREATE INDEX IF NOT EXISTS image_layers_diff ON image_layers(diff_id);
CREATE TABLE IF NOT EXISTS tags (
    name            TEXT PRIMARY KEY,
    manifest_digest TEXT NOT NULL REFERENCES images(manifest_digest)
);
CREATE INDEX IF NOT EXISTS tags_image ON tags(manifest_digest);
CREATE TABLE IF NOT EXISTS leases (
    id              TEXT PRIMARY KEY,
    manifest_digest TEXT NOT NULL REFERENCES images(manifest_digest),
    created         INTEGER NOT NULL
);
"#;

/// Format 8: when each image was last used (pulled, run, built on, hit), and pins;
/// added to a store made before them.
pub(crate) fn add_use_and_pins(tx: &Transaction) -> rusqlite::Result<()> {
    let has: bool = tx.prepare("SELECT 1 FROM pragma_table_info('images') WHERE name = 'last_used'")?.exists([])?;
    if !has {
        tx.execute_batch(
            "ALTER TABLE images ADD COLUMN last_used INTEGER NOT NULL DEFAULT 0;
ALTER TABLE images ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0;
UPDATE images SET last_used = added * 1000000000;",
        )?;
    }
    Ok(())
}

/// What `remove_image` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    /// A name was removed; the image stays under its other names (or its leases).
    Untagged(String),
    /// The image itself was removed.
    Deleted(Digest),
}

/// A new image to record: its manifest and config are blobs of the same ingest.
#[derive(Debug, Clone)]
pub(crate) struct NewImage {
    /// The manifest blob.
    pub manifest: Descriptor,
    /// The config blob.
    pub config: Descriptor,
    /// Layers, bottom first.
    pub layers: Vec<ImageLayerRow>,
    /// Creation time from the config.
    pub created: String,
    /// Full names to point at it (moved from any other image, as `docker tag` does).
    pub tags: Vec<String>,
    /// The repository its layers are in, when they need not be here.
    pub remote: Option<String>,
}

pub(crate) fn insert_image(tx: &Transaction, img: &NewImage) -> rusqlite::Result<()> {
    let m = img.manifest.digest.to_string();
    // An image recorded again (pulled, loaded or built once more) counts as used now.
    tx.execute("UPDATE images SET last_used = ?2 WHERE manifest_digest = ?1", params![m, now_ns()])?;
    let inserted = tx.execute(
        "INSERT INTO images (manifest_digest, config_digest, media_type, size, created, added, last_used)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT(manifest_digest) DO NOTHING",
        params![m, img.config.digest.to_string(), img.manifest.media_type, 0, img.created, now(), now_ns()],
    )?;
    if inserted > 0 {
        for (i, l) in img.layers.iter().enumerate() {
            tx.execute(
                "INSERT INTO image_layers (manifest_digest, position, diff_id, blob_digest, media_type, size) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![m, i as i64, l.diff_id.to_string(), l.blob.to_string(), l.media_type, l.size],
            )?;
        }
        // Docker shows the unpacked size, which only the layer rows know.
        let diff_ids: Vec<String> = img.layers.iter().map(|l| l.diff_id.to_string()).collect();
        let size = crate::store::ingest::size_tx(tx, &[], &diff_ids)?;
        tx.execute("UPDATE images SET size = ?2 WHERE manifest_digest = ?1", params![m, size])?;
    }
    crate::images::remote::set_remote_tx(tx, &img.manifest.digest, img.remote.as_deref(), inserted > 0)?;
    for t in &img.tags {
        set_tag(tx, t, &img.manifest.digest)?;
    }
    Ok(())
}

/// Points `name` at `manifest`; the name's other spelling (`localhost/app:1` and
/// `docker.io/library/app:1`, both `app:1` as Docker prints them) moves with it: one
/// name as Docker sees it names one image.
fn set_tag(tx: &Transaction, name: &str, manifest: &Digest) -> rusqlite::Result<()> {
    if let Some(other) = crate::images::reference::other_spelling(name) {
        tx.execute("DELETE FROM tags WHERE name = ?1", [other])?;
    }
    tx.execute(
        "INSERT INTO tags (name, manifest_digest) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET manifest_digest = excluded.manifest_digest",
        params![name, manifest.to_string()],
    )?;
    Ok(())
}

impl Images<'_> {
    /// Every image, newest first.
    pub fn list(&self) -> Result<Vec<ImageRow>> {
        self.store.md().images()
    }

    /// Finds an image by name (`busybox`, `localhost/demo:1`, `name@sha256:…`) first,
    /// then by manifest or config digest, or by a unique prefix of the image ID.
    /// Short names are looked up under `localhost/` first, then Docker Hub.
    pub fn resolve(&self, name: &str) -> Result<ImageRow> {
        let not_found = || Error::new(ErrorKind::NotFound, "find image", name, "no such image in the store");
        let images = self.store.md().images()?;
        for short in [ShortNames::Local, ShortNames::DockerHub] {
            let Ok(r) = Reference::parse(name, short) else { continue };
            let found = if let Some(d) = r.digest {
                images.iter().find(|i| i.manifest == d)
            } else if let Some(t) = r.tagged_name() {
                images.iter().find(|i| i.tags.contains(&t))
            } else {
                None
            };
            if let Some(i) = found {
                return Ok(i.clone());
            }
        }
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        if !hex.is_empty() && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
            let hits: Vec<&ImageRow> = images
                .iter()
                .filter(|i| i.config.hex().starts_with(hex) || (hex.len() == 64 && i.manifest.hex() == hex))
                .collect();
            match hits.as_slice() {
                [one] => return Ok((*one).clone()),
                [] => {}
                _ if hits.iter().all(|h| h.config == hits[0].config) => return Ok(hits[0].clone()),
                _ => return Err(Error::new(ErrorKind::InvalidInput, "find image", name, "ambiguous image ID prefix")),
            }
        }
        Reference::parse(name, ShortNames::DockerHub)?;
        Err(not_found())
    }

    /// The image with this manifest digest, if stored.
    pub fn get(&self, manifest: &Digest) -> Result<Option<ImageRow>> {
        Ok(self.store.md().images()?.into_iter().find(|i| i.manifest == *manifest))
    }

    /// Points the full name `tag` at an image (moving it if it named another).
    pub fn tag(&self, manifest: &Digest, tag: &str) -> Result<()> {
        self.store.md().write("tag", |tx| set_tag(tx, tag, manifest))
    }

    /// Docker's `rmi`: removes a name, and the image once nothing names or uses it.
    /// By ID, an image with several names needs `force`; one used by a container
    /// is only untagged with `force`, and refused without.
    pub fn remove(&self, name: &str, force: bool) -> Result<Vec<Removed>> {
        let img = self.resolve(name)?;
        let mut md = self.store.md();
        let leases = md.leases_on(&img.manifest)?;
        let by_tag: Option<String> = [ShortNames::Local, ShortNames::DockerHub]
            .iter()
            .filter_map(|s| Reference::parse(name, *s).ok())
            .filter_map(|r| r.tagged_name())
            .find(|t| img.tags.contains(t));
        let remove_tags: Vec<String> = match &by_tag {
            Some(t) => vec![t.clone()],
            None if img.tags.len() > 1 && !force => {
                return Err(Error::new(
                    ErrorKind::InUse,
                    "remove image",
                    name,
                    format!(
                        "image is referenced by several names ({}); remove them one by one or use -f",
                        img.tags.join(", ")
                    ),
                ))
            }
            None => img.tags.clone(),
        };
        let last_name = remove_tags.len() == img.tags.len();
        if last_name && !leases.is_empty() && !force {
            return Err(Error::new(
                ErrorKind::InUse,
                "remove image",
                name,
                format!("image is used by {} (remove it first, or use -f to only untag)", leases.join(", ")),
            ));
        }
        let delete = last_name && leases.is_empty();
        let manifest = img.manifest;
        md.write("remove image", |tx| {
            for t in &remove_tags {
                tx.execute("DELETE FROM tags WHERE name = ?", [t])?;
            }
            if delete {
                tx.execute("DELETE FROM images WHERE manifest_digest = ?", [manifest.to_string()])?;
            }
            Ok(())
        })?;
        let mut out: Vec<Removed> = remove_tags.into_iter().map(Removed::Untagged).collect();
        if delete {
            out.push(Removed::Deleted(img.config));
        }
        Ok(out)
    }

    /// Records that `holder` (a container) uses an image, so it cannot be removed.
    pub fn add_lease(&self, holder: &str, manifest: &Digest) -> Result<()> {
        self.store.md().write("add lease", |tx| {
            tx.execute(
                "INSERT INTO leases (id, manifest_digest, created) VALUES (?1, ?2, ?3)",
                params![holder, manifest.to_string(), now()],
            )
            .map(|_| ())
        })
    }

    /// Releases a lease taken with `add_lease`.
    pub fn remove_lease(&self, holder: &str) -> Result<()> {
        self.store.md().write("remove lease", |tx| tx.execute("DELETE FROM leases WHERE id = ?", [holder]).map(|_| ()))
    }

    /// An image's layers, bottom first.
    pub fn layers(&self, manifest: &Digest) -> Result<Vec<crate::meta::ImageLayerRow>> {
        self.store.md().image_layers(manifest)
    }

    /// Records that an image was used now (pulled while present, built on, hit in the cache).
    pub fn touch(&self, manifest: &Digest) -> Result<()> {
        self.store.md().write("record image use", |tx| touch_tx(tx, manifest))
    }

    /// Pins an image (never evicted) or unpins it.
    pub fn set_pinned(&self, manifest: &Digest, pinned: bool) -> Result<()> {
        self.store.md().write("pin image", |tx| {
            tx.execute(
                "UPDATE images SET pinned = ?2 WHERE manifest_digest = ?1",
                params![manifest.to_string(), pinned],
            )?;
            Ok(())
        })
    }
}

impl Layers<'_> {
    /// Whether a layer is ready together with the blob it came as (so an image
    /// referencing that blob is complete without fetching anything).
    pub fn has(&self, diff_id: &crate::DiffId, blob: &Digest) -> Result<bool> {
        // The pair, not each half: a stored blob and a stored layer need not belong together.
        self.store.md().layer_blob_known(blob, diff_id)
    }

    /// A stored layer's record (sizes, entry count).
    pub fn info(&self, diff_id: &crate::DiffId) -> Result<Option<crate::meta::LayerRow>> {
        self.store.md().layer(diff_id)
    }
}

/// Reads of this module's tables.
impl crate::meta::Metadata {
    /// Every image with its tags, newest first.
    pub fn images(&self) -> Result<Vec<ImageRow>> {
        let mut st = self
            .conn()
            .prepare(
                "SELECT i.manifest_digest, i.config_digest, i.media_type, i.size, i.created,
                        (SELECT group_concat(name, char(10)) FROM (SELECT name FROM tags t WHERE t.manifest_digest = i.manifest_digest ORDER BY name)),
                        i.remote
                 FROM images i ORDER BY i.added DESC, i.manifest_digest",
            )
            .map_err(db_err("list images"))?;
        let rows = st.query_map([], image_row).map_err(db_err("list images"))?;
        rows.collect::<rusqlite::Result<_>>().map_err(db_err("list images"))
    }

    /// An image's layers, bottom first.
    pub fn image_layers(&self, manifest: &Digest) -> Result<Vec<ImageLayerRow>> {
        let mut st = self
            .conn()
            .prepare("SELECT diff_id, blob_digest, media_type, size FROM image_layers WHERE manifest_digest = ? ORDER BY position")
            .map_err(db_err("list image layers"))?;
        let rows = st
            .query_map([manifest.to_string()], |r| {
                Ok(ImageLayerRow {
                    diff_id: DiffId::new(digest_col(r.get(0)?)?),
                    blob: digest_col(r.get(1)?)?,
                    media_type: r.get(2)?,
                    size: r.get(3)?,
                })
            })
            .map_err(db_err("list image layers"))?;
        rows.collect::<rusqlite::Result<_>>().map_err(db_err("list image layers"))
    }

    /// Leases holding an image.
    pub fn leases_on(&self, manifest: &Digest) -> Result<Vec<String>> {
        let mut st = self
            .conn()
            .prepare("SELECT id FROM leases WHERE manifest_digest = ? ORDER BY id")
            .map_err(db_err("list leases"))?;
        let rows = st.query_map([manifest.to_string()], |r| r.get(0)).map_err(db_err("list leases"))?;
        rows.collect::<rusqlite::Result<_>>().map_err(db_err("list leases"))
    }

    /// Layers and blobs referenced by any image (what gc must keep).
    pub fn referenced(&self) -> Result<(Vec<Digest>, Vec<DiffId>)> {
        let blobs = self.digests(
            "list references",
            "SELECT manifest_digest FROM images UNION SELECT config_digest FROM images UNION SELECT blob_digest FROM image_layers",
        )?;
        let layers = self.digests("list references", "SELECT DISTINCT diff_id FROM image_layers")?;
        Ok((blobs, layers.into_iter().map(DiffId::new).collect()))
    }

    /// Every image with what eviction and `df -v` weigh, most recently used first.
    pub(crate) fn image_uses(&self) -> Result<Vec<ImageUse>> {
        let mut st = self
            .conn()
            .prepare(
                "SELECT i.manifest_digest, i.last_used, i.pinned,
                        EXISTS (SELECT 1 FROM leases l WHERE l.manifest_digest = i.manifest_digest),
                        EXISTS (SELECT 1 FROM tags t WHERE t.manifest_digest = i.manifest_digest),
                        (SELECT group_concat(diff_id, ' ') FROM image_layers l WHERE l.manifest_digest = i.manifest_digest)
                 FROM images i ORDER BY i.last_used DESC, i.manifest_digest",
            )
            .map_err(db_err("weigh images"))?;
        let rows = st
            .query_map([], |r| {
                let layers: Option<String> = r.get(5)?;
                Ok(ImageUse {
                    manifest: digest_col(r.get(0)?)?,
                    last_used: r.get(1)?,
                    pinned: r.get(2)?,
                    leased: r.get(3)?,
                    tagged: r.get(4)?,
                    layers: layers
                        .unwrap_or_default()
                        .split(' ')
                        .filter(|l| !l.is_empty())
                        .map(|l| digest_col(l.to_string()).map(DiffId::new))
                        .collect::<rusqlite::Result<_>>()?,
                })
            })
            .map_err(db_err("weigh images"))?;
        rows.collect::<rusqlite::Result<_>>().map_err(db_err("weigh images"))
    }
}

/// What the budget weighs of one image.
#[derive(Debug, Clone)]
pub(crate) struct ImageUse {
    pub manifest: Digest,
    /// Nanoseconds since the epoch.
    pub last_used: i64,
    pub pinned: bool,
    /// A running pull, build or container holds it.
    pub leased: bool,
    /// It has a name.
    pub tagged: bool,
    /// Its layers, bottom first.
    pub layers: Vec<DiffId>,
}

fn image_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ImageRow> {
    let tags: Option<String> = r.get(5)?;
    Ok(ImageRow {
        manifest: digest_col(r.get(0)?)?,
        config: digest_col(r.get(1)?)?,
        media_type: r.get(2)?,
        size: r.get(3)?,
        created: r.get(4)?,
        tags: tags.map(|t| t.split('\n').map(str::to_string).collect()).unwrap_or_default(),
        remote: r.get(6)?,
    })
}

/// In `tx`: lease `id` holds image `manifest` (a container's hold on its image).
pub(crate) fn add_lease_tx(tx: &Transaction, id: &str, manifest: &Digest, created: i64) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO leases (id, manifest_digest, created) VALUES (?1, ?2, ?3)",
        params![id, manifest.to_string(), created],
    )
    .map(|_| ())
}

/// In `tx`: lease `id` now holds `manifest` instead (its container was committed).
pub(crate) fn move_lease_tx(tx: &Transaction, id: &str, manifest: &str) -> rusqlite::Result<()> {
    tx.execute("UPDATE leases SET manifest_digest = ?1 WHERE id = ?2", params![manifest, id]).map(|_| ())
}

/// In `tx`: lease `id` is gone.
pub(crate) fn drop_lease_tx(tx: &Transaction, id: &str) -> rusqlite::Result<()> {
    tx.execute("DELETE FROM leases WHERE id = ?", [id]).map(|_| ())
}

/// In `tx`: image `manifest` was used now (pulled while present, run, built on, hit).
pub(crate) fn touch_tx(tx: &Transaction, manifest: &Digest) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE images SET last_used = ?2 WHERE manifest_digest = ?1",
        params![manifest.to_string(), crate::meta::now_ns()],
    )
    .map(|_| ())
}

/// In `tx`: image `manifest` and its names are gone (its layers stay for gc);
/// returns whether it was there.
pub(crate) fn remove_tx(tx: &Transaction, manifest: &str) -> rusqlite::Result<bool> {
    tx.execute("DELETE FROM tags WHERE manifest_digest = ?1", [manifest])?;
    Ok(tx.execute("DELETE FROM images WHERE manifest_digest = ?1", [manifest])? > 0)
}

/// In `tx`: whether an image names layer `diff_id`.
pub(crate) fn layer_referenced_tx(tx: &Transaction, diff_id: &str) -> rusqlite::Result<bool> {
    exists(tx, "SELECT 1 FROM image_layers WHERE diff_id = ?1", diff_id)
}

/// In `tx`: whether an image names blob `digest` (as its manifest, config or a layer).
pub(crate) fn blob_referenced_tx(tx: &Transaction, digest: &str) -> rusqlite::Result<bool> {
    exists(
        tx,
        "SELECT 1 FROM images WHERE manifest_digest = ?1 OR config_digest = ?1
         UNION SELECT 1 FROM image_layers WHERE blob_digest = ?1",
        digest,
    )
}

/// In `tx`: whether image `manifest` is pinned or a lease holds it (eviction keeps it).
pub(crate) fn pinned_or_leased_tx(tx: &Transaction, manifest: &str) -> rusqlite::Result<bool> {
    exists(
        tx,
        "SELECT 1 FROM images WHERE manifest_digest = ?1 AND pinned != 0
         UNION SELECT 1 FROM leases WHERE manifest_digest = ?1",
        manifest,
    )
}

/// In `tx`: whether image `manifest` has a name or a lease holds it.
pub(crate) fn named_or_leased_tx(tx: &Transaction, manifest: &str) -> rusqlite::Result<bool> {
    exists(
        tx,
        "SELECT 1 FROM tags WHERE manifest_digest = ?1 UNION SELECT 1 FROM leases WHERE manifest_digest = ?1",
        manifest,
    )
}

/// In `tx`: the blobs and layers (diffIDs) image `manifest` alone names.
pub(crate) fn exclusive_tx(tx: &Transaction, manifest: &str) -> rusqlite::Result<(Vec<String>, Vec<String>)> {
    let column = |sql: &str| -> rusqlite::Result<Vec<String>> {
        let mut st = tx.prepare(sql)?;
        let rows = st.query_map([manifest], |r| r.get(0))?;
        rows.collect()
    };
    let blobs = column(
        "SELECT d FROM (SELECT manifest_digest AS d FROM images WHERE manifest_digest = ?1
                        UNION SELECT config_digest FROM images WHERE manifest_digest = ?1
                        UNION SELECT blob_digest FROM image_layers WHERE manifest_digest = ?1)
         WHERE NOT EXISTS (SELECT 1 FROM image_layers o WHERE o.blob_digest = d AND o.manifest_digest != ?1)
           AND NOT EXISTS (SELECT 1 FROM images o WHERE (o.manifest_digest = d OR o.config_digest = d)
                           AND o.manifest_digest != ?1)",
    )?;
    let layers = column(
        "SELECT DISTINCT diff_id FROM image_layers l WHERE l.manifest_digest = ?1
           AND NOT EXISTS (SELECT 1 FROM image_layers o WHERE o.diff_id = l.diff_id AND o.manifest_digest != ?1)",
    )?;
    Ok((blobs, layers))
}

fn exists(tx: &Transaction, sql: &str, key: &str) -> rusqlite::Result<bool> {
    tx.prepare(sql)?.exists([key])
}
