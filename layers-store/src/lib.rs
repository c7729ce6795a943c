//! `layers-store`: a content-addressed store of OCI image layers, unpacked for overlayfs.
//!
//! ```text
//! <root>/
//!   db.sqlite            metadata: blobs, layers, images, tags, leases, containers (WAL)
//!   db.sqlite-writer     the lock its writers queue on
//!   blobs/sha256/<hex>   manifests, configs and layer blobs, as received
//!   layers/<hex>/        one unpacked layer per diffID, overlay whiteouts inside
//!   tmp/                 staging; anything here after a crash is garbage
//!   locks/               flock files
//!   containers/<id>/     upper, work and merged dirs of a container
//!   volumes/<name>/_data named volumes
//! ```
//! The crate knows nothing of the command line or of registries: callers hand it
//! byte streams and names, it hands back digests, rows and paths.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

// `std::fs` on paths is refused crate-wide (clippy.toml): names a tar, an image, a
// container or a build context supplies reach the filesystem only through `fsroot`.
// The modules below opt out, each for the store's own paths alone.

pub mod archive;
// Digests of cache-mount ids beneath the store root.
#[allow(clippy::disallowed_methods)]
pub mod build_cache;
// Cache-mount dirs by the digest of their id, and their lock files, beneath the store root.
#[allow(clippy::disallowed_methods)]
pub mod cache_mounts;
pub mod content;
pub mod error;
pub mod fsroot;
pub mod gc;
pub mod images;
pub mod layer;
pub mod meta;
pub mod snapshots;
// The store root, its fixed dirs, digests and staging names.
#[allow(clippy::disallowed_methods)]
pub mod store;
// Volume names (checked against Docker's rule: no `/`, no `..`) beneath the store root.
#[allow(clippy::disallowed_methods)]
pub mod volumes;

pub use content::compression::Compression;
pub use content::content_hash::ContentHash;
pub use content::digest::{ChainId, DiffId, Digest};
pub use error::{Error, ErrorKind, Result};
pub use images::record::ImageBlobs;
pub use images::reference::{familiar, Reference, ShortNames};
pub use layer::unpack::Limits;
pub use snapshots::containers::ContainerRow;
pub use store::{FetchClaim, Ingest, LayerExpect, Store};
