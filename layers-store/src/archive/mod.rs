//! Images in and out of files: OCI layouts (a directory or a tar) and Docker's
//! `docker save` archives.

// The layout dir the caller names (reached through `fsroot::UserDir`), and digests beneath it.
#[allow(clippy::disallowed_methods)]
pub mod layout;
