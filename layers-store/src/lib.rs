//! `layers-store`: a content-addressed store of OCI image layers, unpacked for overlayfs.
//!
//! ```text
//! <root>/
//!   db.sqlite            metadata: blobs, layers, images, tags, leases (WAL)
//!   blobs/sha256/<hex>   manifests, configs and layer blobs, as received
//!   layers/<hex>/        one unpacked layer per diffID, overlay whiteouts inside
//!   tmp/                 staging; anything here after a crash is garbage
//!   locks/               flock files
//! ```
//! The crate knows nothing of the command line or of registries: callers hand it
//! byte streams and names, it hands back digests, rows and paths.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod compression;
pub mod digest;
pub mod error;
pub mod image;
pub mod images;
// Store-owned paths only (digests, generated names): std::fs is fine there.
#[allow(clippy::disallowed_methods)]
pub mod maintenance;
pub mod metadata;
pub mod reference;
pub mod root;
#[allow(clippy::disallowed_methods)]
pub mod store;
pub mod tar;
pub mod unpack;

pub use compression::Compression;
pub use digest::{ChainId, DiffId, Digest};
pub use error::{Error, ErrorKind, Result};
pub use reference::{Reference, ShortNames};
pub use store::{FetchClaim, Ingest, LayerExpect, NewImage, Store};
pub use unpack::Limits;
