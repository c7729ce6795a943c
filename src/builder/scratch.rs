//! Scratch dirs of a build (fetched URLs, here-documents, views), removed when dropped.

use std::path::{Path, PathBuf};

/// A scratch dir, removed when dropped.
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
