//! Known-remote images (format 14): an image recorded from its manifest and config
//! while its layers stay in a registry repository (`build --push` assembles one from
//! a build cache's records without downloading its layers). Whatever reads an image's
//! layers asks [`Images::require_local`] first, so a remote image is never taken for
//! a present one; the layers, once fetched by the caller, make it local again.

use rusqlite::{params, OptionalExtension, Transaction};

use crate::content::digest::Digest;
use crate::error::{Error, ErrorKind, Result};
use crate::images::record::ImageBlobs;
use crate::images::Images;
use crate::meta::{db_err, ImageLayerRow, ImageRow};
use crate::store::Ingest;

/// Format 14: the repository a remote image's layers are in; NULL for a local image.
pub(crate) fn add_remote(tx: &Transaction) -> rusqlite::Result<()> {
    let has: bool = tx.prepare("SELECT 1 FROM pragma_table_info('images') WHERE name = 'remote'")?.exists([])?;
    if !has {
        tx.execute_batch("ALTER TABLE images ADD COLUMN remote TEXT")?;
    }
    Ok(())
}

/// In `tx`: records where a new image's layers are (`None`: here). An image recorded
/// again with its layers here stops being remote; one already local stays local.
pub(crate) fn set_remote_tx(
    tx: &Transaction,
    manifest: &Digest,
    remote: Option<&str>,
    new: bool,
) -> rusqlite::Result<()> {
    match (remote, new) {
        (Some(r), true) => {
            tx.execute("UPDATE images SET remote = ?2 WHERE manifest_digest = ?1", params![manifest.to_string(), r])?
        }
        (None, _) => {
            tx.execute("UPDATE images SET remote = NULL WHERE manifest_digest = ?1", [manifest.to_string()])?
        }
        (Some(_), false) => 0,
    };
    Ok(())
}

/// A remote image's layers that are not in the store, and where they are.
#[derive(Debug, Clone)]
pub struct RemoteImage {
    /// The image's manifest digest.
    pub manifest: Digest,
    /// The repository (`HOST/NAME`) that holds its layer blobs.
    pub source: String,
    /// Its layers not in the store, bottom first.
    pub missing: Vec<ImageLayerRow>,
    /// How many layers it has.
    pub layers: usize,
}

impl std::fmt::Display for RemoteImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bytes: u64 = self.missing.iter().map(|l| l.size).sum();
        write!(
            f,
            "{} of its {} layers ({:.1} MB) are in {}, not fetched yet",
            self.missing.len(),
            self.layers,
            bytes as f64 / 1e6,
            self.source
        )
    }
}

impl Images<'_> {
    /// Records an image whose layer blobs are in the repository `source` (`HOST/NAME`)
    /// and need not be here: its manifest and config are stored, its layers named.
    pub fn record_remote(&self, ingest: Ingest, blobs: ImageBlobs, tags: &[String], source: &str) -> Result<ImageRow> {
        self.record_with(ingest, blobs, tags, Some(source), &|_, _| Ok(()))
    }

    /// The image's layers that are not here, if it is remote. One whose layers all
    /// arrived since (fetched, or brought by another image) is local from now on.
    pub fn remote(&self, manifest: &Digest) -> Result<Option<RemoteImage>> {
        let source: Option<String> = self
            .store
            .md()
            .conn()
            .query_row("SELECT remote FROM images WHERE manifest_digest = ?1", [manifest.to_string()], |r| r.get(0))
            .optional()
            .map_err(db_err("look up image"))?
            .flatten();
        let Some(source) = source else { return Ok(None) };
        let rows = self.layers(manifest)?;
        let mut missing = Vec::new();
        for l in &rows {
            if !self.store.layers().has(&l.diff_id, &l.blob)?
                && !missing.iter().any(|m: &ImageLayerRow| m.diff_id == l.diff_id)
            {
                missing.push(l.clone());
            }
        }
        if missing.is_empty() {
            self.store.md().write("settle remote image", |tx| set_remote_tx(tx, manifest, None, false))?;
            return Ok(None);
        }
        Ok(Some(RemoteImage { manifest: *manifest, source, missing, layers: rows.len() }))
    }

    /// Every remote image, with what it lacks.
    pub fn remotes(&self) -> Result<Vec<RemoteImage>> {
        let mut out = Vec::new();
        for img in self.list()?.iter().filter(|i| i.remote.is_some()) {
            out.extend(self.remote(&img.manifest)?);
        }
        Ok(out)
    }

    /// Fails with [`ErrorKind::Remote`] while any of the image's layers is not here.
    pub fn require_local(&self, manifest: &Digest) -> Result<()> {
        match self.remote(manifest)? {
            None => Ok(()),
            Some(r) => Err(Error::new(ErrorKind::Remote, "use image", manifest, r.to_string())),
        }
    }
}
