//! Images in and out of files: OCI layouts (a directory or a tar) and Docker's
//! `docker save` archives.

// The layout dir the caller names (reached through `fsroot::UserDir`), and digests beneath it.
#[allow(clippy::disallowed_methods)]
pub mod layout;

/// Images in and out of OCI layouts and docker-archives (a facet of [`Store`](crate::Store)).
pub struct Archive<'a> {
    pub(crate) store: &'a crate::Store,
}

impl crate::Store {
    /// Images in and out of OCI layouts and docker-archives.
    pub fn archive(&self) -> Archive<'_> {
        Archive { store: self }
    }
}
