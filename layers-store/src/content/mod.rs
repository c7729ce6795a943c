//! Content by digest: digests, the content hashes of files, compression and its
//! members. Ingesting and committing blobs is the store's (`store/ingest.rs`).

pub mod compression;
pub mod content_hash;
pub mod digest;
pub mod members;
