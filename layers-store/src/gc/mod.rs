//! Keeping the store tidy and honest: `gc`, `fsck`, `df` (`maintenance.rs`), the
//! size budget's eviction (`budget.rs`) and the usage by Docker's kinds (`usage.rs`).
//!
//! gc owns no table. It asks each table's owner: the images catalog what an image
//! names, holds and alone names; content what a handle holds and what it weighs; the
//! layer pairs, the snapshots and the build cache theirs. Every removal is one
//! transaction made of the owners' `_tx` functions, so a rule about a table (a new
//! column, a new holder) is written once, where the table is
//! (`layers-store/tests/sql_owners.rs` keeps it so).

pub mod budget;
// Digests and generated names beneath the store root.
#[allow(clippy::disallowed_methods)]
pub mod maintenance;
// The store's own cache-mounts dir.
#[allow(clippy::disallowed_methods)]
pub mod usage;

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
