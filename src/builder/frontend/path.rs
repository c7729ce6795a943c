//! Paths as a Dockerfile writes them, made relative to a root.

use std::path::{Component, Path, PathBuf};

/// `a/./b/../c` → `a/c`; `None` if it climbs above its start.
pub fn clean(path: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir if !out.pop() => return None,
            _ => {}
        }
    }
    Some(out)
}
