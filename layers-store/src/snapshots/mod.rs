//! Containers as snapshots: an upper dir on an image's layers (`containers.rs`:
//! prepare, view, commit, remove) and the overlay mount that stacks them (`mount.rs`).

// Container ids and generated names beneath the store root.
#[allow(clippy::disallowed_methods)]
pub mod containers;
pub mod mount;
