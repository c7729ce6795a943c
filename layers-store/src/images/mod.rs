//! Images: the OCI types (`oci.rs`), references (`reference.rs`), names and leases
//! (`catalog.rs`), recording a new image (`record.rs`), and images whose layers
//! are still in a registry (`remote.rs`).

pub mod catalog;
pub mod oci;
pub mod record;
pub mod reference;
pub mod remote;

use crate::store::Store;

/// Images: names, leases, their manifests and configs, recording new ones (a facet
/// of [`Store`]).
pub struct Images<'a> {
    pub(crate) store: &'a Store,
}

impl Store {
    /// Images.
    pub fn images(&self) -> Images<'_> {
        Images { store: self }
    }
}
