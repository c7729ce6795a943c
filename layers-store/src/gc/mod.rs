//! Keeping the store tidy and honest: `gc`, `fsck`, `df` (`maintenance.rs`) and the
//! size budget's eviction (`budget.rs`).

pub mod budget;
// Digests and generated names beneath the store root.
#[allow(clippy::disallowed_methods)]
pub mod maintenance;

/// Keeping the store tidy and honest: garbage collection, fsck, disk usage and the size budget (a facet of [`Store`](crate::Store)).
pub struct Gc<'a> {
    pub(crate) store: &'a crate::Store,
}

impl crate::Store {
    /// Keeping the store tidy and honest: garbage collection, fsck, disk usage and the size budget.
    pub fn gc(&self) -> Gc<'_> {
        Gc { store: self }
    }
}
