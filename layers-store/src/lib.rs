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
//! ```
//! The crate knows nothing of the command line or of registries: callers hand it
//! byte streams and names, it hands back digests, rows and paths.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

// Store-owned paths only (digests of cache ids): std::fs is fine there.
#[allow(clippy::disallowed_methods)]
pub mod build_cache;
pub mod compression;
// Store-owned paths only (container ids, generated names): std::fs is fine there.
pub mod catalog;
#[allow(clippy::disallowed_methods)]
pub mod containers;
pub mod digest;
pub mod error;
pub mod oci;
// Store-owned paths only (digests, generated names): std::fs is fine there.
#[allow(clippy::disallowed_methods)]
pub mod maintenance;
// Paths the caller names (a layout dir) and digests beneath it.
#[allow(clippy::disallowed_methods)]
pub mod layout;
pub mod metadata;
pub mod mount;
pub mod record;
pub mod reference;
pub mod root;
#[allow(clippy::disallowed_methods)]
pub mod store;
pub mod tar;
pub mod tar_writer;
// Store-owned layer dirs, walked with lstat and O_NOFOLLOW opens.
#[allow(clippy::disallowed_methods)]
pub mod tree;
pub mod unpack;
// A container's upper dir, written by the container: walked through directory fds
// (`walk`); only the store's own layer dirs are read by path (two functions, marked).
pub mod upper;
pub mod walk;

pub use compression::Compression;
pub use containers::ContainerRow;
pub use digest::{ChainId, DiffId, Digest};
pub use error::{Error, ErrorKind, Result};
pub use record::ImageBlobs;
pub use reference::{Reference, ShortNames};
pub use store::{FetchClaim, Ingest, LayerExpect, Store};
pub use unpack::Limits;
