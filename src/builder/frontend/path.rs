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

/// `path` inside a root (a container's), cleaned as Go's `path.Clean` cleans an
/// absolute path: `..` at the root stays at the root, so `/../x` is `/x`.
pub fn clean_in_root(path: &str) -> PathBuf {
    layers_store::fsroot::in_root(path)
}
