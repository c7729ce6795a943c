//! One layer: tar read and written (`tar*.rs`), unpacked into a layer dir with
//! overlay's whiteouts (`unpack.rs`), in the store's on-disk encoding (`encoding.rs`),
//! its listing for fsck (`listing.rs`), sparse files (`sparse.rs`), and the diff of a
//! container's upper dir against its layers (`diff.rs`).

// A container's upper dir is walked through directory fds (`fsroot::walk`).
pub mod diff;
pub mod encoding;
// Committed layer dirs (never changed once in place), walked with lstat and O_NOFOLLOW opens.
#[allow(clippy::disallowed_methods)]
pub mod listing;
pub mod sparse;
pub mod tar;
/// GNU sparse files in tar: their maps, read and checked.
mod tar_pax;
pub mod tar_sparse;
pub mod tar_writer;
pub mod unpack;
// The store's own blob files and staging dir, named by digest (no path from input).
#[allow(clippy::disallowed_methods)]
pub(crate) mod variants;
pub mod written;
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::content::digest::{DiffId, Digest};
use crate::error::{Error, Result};

/// Layer dirs: unpacked from a blob, found by diffID (a facet of [`Store`](crate::Store)).
pub struct Layers<'a> {
    pub(crate) store: &'a crate::Store,
}

impl crate::Store {
    /// Layer dirs: unpacked from a blob, found by diffID.
    pub fn layers(&self) -> Layers<'_> {
        Layers { store: self }
    }
}

/// The tables layers live in (format 5, registered in `meta`): each layer dir's tree as listed when it was made (`listing.rs`), for fsck;
/// and the (blob, diffID) pairs we have seen belong together, because we
/// decompressed that blob to that diffID ourselves (or made the blob from the layer).
/// An image may name a pair only if it is here: a manifest pairing a stored blob
/// with a stored diffID it does not hold must not pass as "already present".
/// Seeded with the pairs of the layers already stored (each verified when unpacked)
/// and, so that an upgraded store keeps working, the pairs its images name; `fsck`
/// verifies every pair by decompressing its blob.
pub(crate) const TABLES: &str = r#"
CREATE TABLE IF NOT EXISTS layer_blobs (
    blob_digest TEXT PRIMARY KEY,
    diff_id     TEXT NOT NULL
);
INSERT OR IGNORE INTO layer_blobs (blob_digest, diff_id) SELECT blob_digest, diff_id FROM layers WHERE state = 'ready';
INSERT OR IGNORE INTO layer_blobs (blob_digest, diff_id) SELECT blob_digest, diff_id FROM image_layers;
CREATE TABLE IF NOT EXISTS layer_trees (
    diff_id TEXT PRIMARY KEY,
    digest  TEXT NOT NULL,
    listing BLOB NOT NULL
);
"#;

/// Reads of this module's tables.
impl crate::meta::Metadata {
    /// Whether `blob` is known to decompress to `diff_id`, both stored and ready.
    pub fn layer_blob_known(&self, blob: &Digest, diff_id: &DiffId) -> Result<bool> {
        layer_blob_known(self.conn(), blob, diff_id).map_err(|e| Error::sql("look up layer blob", blob, e))
    }

    /// A layer's tree as recorded when it was made: `None` if none was (made before
    /// format 5), `Some(Err(digest))` if the record does not match its digest.
    pub fn layer_tree(
        &self,
        diff_id: &DiffId,
    ) -> Result<Option<std::result::Result<crate::layer::listing::Listing, String>>> {
        let row: Option<(String, Vec<u8>)> = self
            .conn()
            .query_row("SELECT digest, listing FROM layer_trees WHERE diff_id = ?", [diff_id.to_string()], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(|e| Error::sql("read layer tree", diff_id, e))?;
        Ok(row.map(|(digest, packed)| {
            Digest::parse(&digest).ok().and_then(|d| crate::layer::listing::Listing::unpacked(d, &packed)).ok_or(digest)
        }))
    }

    /// Every (blob, diffID) pair recorded as belonging together.
    pub fn layer_blobs(&self) -> Result<Vec<(Digest, DiffId)>> {
        let err = |e| Error::sql("list layer blobs", "layer_blobs", e);
        let mut stmt =
            self.conn().prepare("SELECT blob_digest, diff_id FROM layer_blobs ORDER BY blob_digest").map_err(err)?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).map_err(err)?;
        let mut out = Vec::new();
        for row in rows {
            let (b, d) = row.map_err(err)?;
            out.push((Digest::parse(&b)?, DiffId::parse(&d)?));
        }
        Ok(out)
    }
}

/// Whether `blob` is known to decompress to `diff_id`, both stored and ready (also
/// inside a transaction: a commit checks it where gc cannot interleave).
pub(crate) fn layer_blob_known(conn: &Connection, blob: &Digest, diff_id: &DiffId) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT 1 FROM layer_blobs p
           JOIN layers l ON l.diff_id = p.diff_id AND l.state = 'ready'
           JOIN blobs b ON b.digest = p.blob_digest AND b.state = 'ready'
          WHERE p.blob_digest = ?1 AND p.diff_id = ?2",
        [blob.to_string(), diff_id.to_string()],
        |_| Ok(()),
    )
    .optional()
    .map(|o| o.is_some())
}

/// Records that `blob` decompresses to `diff_id` (a pair we verified).
pub(crate) fn put_layer_blob(tx: &Transaction, blob: &Digest, diff_id: &DiffId) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT OR IGNORE INTO layer_blobs (blob_digest, diff_id) VALUES (?1, ?2)",
        params![blob.to_string(), diff_id.to_string()],
    )?;
    Ok(())
}

/// Records a layer dir's tree as it was made.
pub(crate) fn put_layer_tree(
    tx: &Transaction,
    diff_id: &DiffId,
    tree: &crate::layer::listing::Packed,
) -> rusqlite::Result<()> {
    // The listing is written into a blob of its size in place: bound as a parameter,
    // SQLite would copy it twice (the binding, then the record), megabytes at once for
    // a layer of many small files.
    tx.execute(
        "INSERT OR REPLACE INTO layer_trees (diff_id, digest, listing) VALUES (?1, ?2, zeroblob(?3))",
        params![diff_id.to_string(), tree.digest.to_string(), tree.bytes.len() as i64],
    )?;
    let mut blob = tx.blob_open(rusqlite::MAIN_DB, "layer_trees", "listing", tx.last_insert_rowid(), false)?;
    blob.write_at(&tree.bytes, 0)?;
    Ok(())
}

/// In `tx`: the blobs recorded as decompressing to `diff_id`.
pub(crate) fn blobs_of_tx(tx: &Transaction, diff_id: &str) -> rusqlite::Result<Vec<String>> {
    let mut st = tx.prepare("SELECT blob_digest FROM layer_blobs WHERE diff_id = ?1")?;
    let rows = st.query_map([diff_id], |r| r.get(0))?;
    rows.collect()
}

/// In `tx`: layer `diff_id`'s tree and blob pairs are gone (gc removes the layer).
pub(crate) fn forget_layer_tx(tx: &Transaction, diff_id: &str) -> rusqlite::Result<()> {
    tx.execute("DELETE FROM layer_trees WHERE diff_id = ?1", [diff_id])?;
    tx.execute("DELETE FROM layer_blobs WHERE diff_id = ?1", [diff_id])?;
    variants::forget_layer_tx(tx, diff_id)
}

/// In `tx`: blob `blob`'s pair is gone (gc removes the blob).
pub(crate) fn forget_blob_tx(tx: &Transaction, blob: &str) -> rusqlite::Result<()> {
    tx.execute("DELETE FROM layer_blobs WHERE blob_digest = ?1", [blob])?;
    variants::forget_blob_tx(tx, blob)
}
