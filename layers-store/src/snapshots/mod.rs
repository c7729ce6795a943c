//! Containers as snapshots: an upper dir on an image's layers (`containers.rs`:
//! prepare, view, remove; `commit.rs`: commit) and the overlay mount that stacks them
//! (`mount.rs`).

// The container's own dir and staging paths beneath the store root.
#[allow(clippy::disallowed_methods)]
pub mod commit;
// Container ids and generated names beneath the store root.
#[allow(clippy::disallowed_methods)]
pub mod containers;
pub mod mount;
