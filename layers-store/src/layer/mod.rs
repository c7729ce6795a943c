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
