//! A layer's blob in another compression (a cache export's `compression=zstd`): made
//! once from a stored blob of the layer, checked against the layer's diffID as it is
//! decompressed, committed as a blob of its own paired with the layer, and found
//! again by (diffID, compression, level), so the next export of that layer makes
//! nothing.

use std::fs::File;
use std::io::{self, BufWriter, Write};

use rusqlite::OptionalExtension;

use crate::content::compression::{Compression, Level};
use crate::content::digest::{DiffId, Digest, HashingWriter};
use crate::error::{Error, Result};
use crate::images::oci::Descriptor;

/// The table variants are found in (format 13, registered in `meta`). A row's blob
/// is a stored blob paired with its layer in `layer_blobs`; gc forgets both together.
pub(crate) const TABLES: &str = r#"
CREATE TABLE IF NOT EXISTS blob_variants (
    diff_id     TEXT NOT NULL,
    compression TEXT NOT NULL,
    level       INTEGER NOT NULL,
    blob_digest TEXT NOT NULL,
    size        INTEGER NOT NULL,
    PRIMARY KEY (diff_id, compression, level)
);
"#;

/// In `tx`: layer `diff_id`'s variants are gone (gc removes the layer).
pub(crate) fn forget_layer_tx(tx: &rusqlite::Transaction, diff_id: &str) -> rusqlite::Result<()> {
    tx.execute("DELETE FROM blob_variants WHERE diff_id = ?1", [diff_id]).map(|_| ())
}

/// In `tx`: the variant that is blob `blob` is gone (gc removes the blob).
pub(crate) fn forget_blob_tx(tx: &rusqlite::Transaction, blob: &str) -> rusqlite::Result<()> {
    tx.execute("DELETE FROM blob_variants WHERE blob_digest = ?1", [blob]).map(|_| ())
}

/// The level column: -1 for the compression's default.
fn level_col(level: Level) -> i64 {
    level.get().map_or(-1, i64::from)
}

impl super::Layers<'_> {
    /// The blob of layer `diff_id` in compression `to` at `level`: a stored one made
    /// before, or one made now from the stored blob `from` (which must decompress to
    /// `diff_id`).
    pub fn blob_in(&self, diff_id: &DiffId, from: &Digest, to: Compression, level: Level) -> Result<Descriptor> {
        if let Some(d) = self.known_variant(diff_id, to, level)? {
            return Ok(d);
        }
        let content = self.store.content();
        let mut ingest = content.ingest()?;
        let staged = ingest.staged_path("blob");
        let (digest, size) = recompress(&content, from, &staged, diff_id, to, level)?;
        let desc = Descriptor { media_type: to.oci_media_type().into(), digest, size, urls: None, annotations: None };
        ingest.add_blob(desc.clone(), staged);
        self.store.commit_with(ingest, None, &|tx| {
            super::put_layer_blob(tx, &digest, diff_id)?;
            tx.execute(
                "INSERT OR REPLACE INTO blob_variants (diff_id, compression, level, blob_digest, size)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                rusqlite::params![diff_id.to_string(), to.name(), level_col(level), digest.to_string(), size],
            )?;
            Ok(())
        })?;
        Ok(desc)
    }

    /// A variant made before whose blob is still stored.
    fn known_variant(&self, diff_id: &DiffId, to: Compression, level: Level) -> Result<Option<Descriptor>> {
        let row: Option<(String, u64)> = self
            .store
            .md()
            .conn()
            .query_row(
                "SELECT v.blob_digest, v.size FROM blob_variants v
                   JOIN blobs b ON b.digest = v.blob_digest AND b.state = 'ready'
                  WHERE v.diff_id = ?1 AND v.compression = ?2 AND v.level = ?3",
                rusqlite::params![diff_id.to_string(), to.name(), level_col(level)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| Error::sql("look up blob variant", diff_id, e))?;
        let Some((digest, size)) = row else { return Ok(None) };
        let digest = Digest::parse(&digest)?;
        if !self.store.content().blob_path(&digest).exists() {
            return Ok(None);
        }
        Ok(Some(Descriptor { media_type: to.oci_media_type().into(), digest, size, urls: None, annotations: None }))
    }
}

/// Re-encodes the stored blob `from`, checking it decompresses to layer `diff_id`,
/// into a blob at `dst` in compression `to`; returns the new blob's digest and size.
fn recompress(
    content: &crate::content::Content<'_>,
    from: &Digest,
    dst: &std::path::Path,
    diff_id: &DiffId,
    to: Compression,
    level: Level,
) -> Result<(Digest, u64)> {
    let what = diff_id.to_string();
    let io_err = |e: io::Error| Error::io("recompress layer", &what, e);
    let mut tar = content.open_decoded(from).map_err(io_err)?;
    let out = HashingWriter::new(BufWriter::with_capacity(128 << 10, File::create(dst).map_err(io_err)?));
    // Hashed on its way into the encoder: the tar's digest, its diffID.
    let mut tee = HashingWriter::new(to.encoder_at(out, level).map_err(io_err)?);
    io::copy(&mut tar, &mut tee).map_err(io_err)?;
    let got = tee.hasher.finish();
    if got != diff_id.digest() {
        return Err(Error::mismatch("recompress layer", diff_id, got));
    }
    let mut out = tee.inner.finish().map_err(io_err)?;
    out.inner.flush().map_err(io_err)?;
    Ok((out.hasher.finish(), out.size))
}
