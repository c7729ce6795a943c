//! Content by digest: digests, the content hashes of files, compression and its
//! members. Ingesting and committing blobs is the store's (`store/ingest.rs`).

pub mod compression;
pub mod content_hash;
pub mod digest;
pub mod members;

/// Content by digest: blobs ingested, staged and committed, read back (a facet of [`Store`](crate::Store)).
pub struct Content<'a> {
    pub(crate) store: &'a crate::Store,
}

impl crate::Store {
    /// Content by digest: blobs ingested, staged and committed, read back.
    pub fn content(&self) -> Content<'_> {
        Content { store: self }
    }
}
