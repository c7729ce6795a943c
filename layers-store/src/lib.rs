//! `layers-store`: a content-addressed store of OCI image layers, unpacked for overlayfs.
//!
//! ```text
//! <root>/
//!   db.sqlite            metadata: blobs, layers, images, tags, leases, containers (WAL)
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

pub mod budget;
// Digests of cache-mount ids beneath the store root.
#[allow(clippy::disallowed_methods)]
pub mod build_cache;
pub mod catalog;
pub mod compression;
pub mod content_hash;
// Container ids and generated names beneath the store root.
#[allow(clippy::disallowed_methods)]
pub mod containers;
pub mod digest;
pub mod encoding;
pub mod error;
pub mod fsroot;
// The layout dir the caller names, and digests beneath it.
#[allow(clippy::disallowed_methods)]
pub mod layout;
// Digests and generated names beneath the store root.
#[allow(clippy::disallowed_methods)]
pub mod maintenance;
pub mod members;
pub mod metadata;
pub mod mount;
pub mod oci;
pub mod record;
pub mod reference;
pub mod sparse;
// The store root, its fixed dirs, digests and staging names.
#[allow(clippy::disallowed_methods)]
pub mod store;
pub mod tar;
/// GNU sparse files in tar: their maps, read and checked.
mod tar_pax;
pub mod tar_sparse;
pub mod tar_writer;
// Committed layer dirs (never changed once in place), walked with lstat and O_NOFOLLOW opens.
#[allow(clippy::disallowed_methods)]
pub mod tree;
pub mod unpack;
// A container's upper dir is walked through directory fds (`walk`); the two functions
// that read the store's own layer dirs by path are marked where they are.
pub mod upper;
// Volume names (checked against Docker's rule: no `/`, no `..`) beneath the store root.
#[allow(clippy::disallowed_methods)]
pub mod volumes;

pub use compression::Compression;
pub use containers::ContainerRow;
pub use content_hash::ContentHash;
pub use digest::{ChainId, DiffId, Digest};
pub use error::{Error, ErrorKind, Result};
pub use record::ImageBlobs;
pub use reference::{Reference, ShortNames};
pub use store::{FetchClaim, Ingest, LayerExpect, Store};
pub use unpack::Limits;
