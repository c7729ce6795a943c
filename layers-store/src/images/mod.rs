//! Images: the OCI types (`oci.rs`), references (`reference.rs`), names and leases
//! (`catalog.rs`), and recording a new image (`record.rs`).

pub mod catalog;
pub mod oci;
pub mod record;
pub mod reference;
