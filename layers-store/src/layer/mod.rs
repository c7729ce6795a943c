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
