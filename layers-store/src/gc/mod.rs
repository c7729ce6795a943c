//! Keeping the store tidy and honest: `gc`, `fsck`, `df` (`maintenance.rs`) and the
//! size budget's eviction (`budget.rs`).

pub mod budget;
// Digests and generated names beneath the store root.
#[allow(clippy::disallowed_methods)]
pub mod maintenance;
