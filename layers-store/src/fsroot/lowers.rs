//! The merged view of an image's layer dirs (top first), as overlayfs would show
//! it, read without mounting: whether a path is there, what it is, and a small file's
//! content. The names come from the image; each prefix is looked at with `lstat`, so a
//! symlink on the way is seen, never followed.

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The opaque-directory xattr of the encoding this process writes (a store it opens
/// has the same: `Store::open` refuses any other).
fn opaque_xattr() -> &'static [u8] {
    crate::layer::encoding::Encoding::of_process().opaque_xattr()
}

/// Whether a layer path (store-owned, never changed once committed) is a whiteout.
fn is_whiteout_meta(m: &std::fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

fn is_opaque_path(path: &Path) -> bool {
    let mut v = [0u8; 8];
    matches!(rustix::fs::lgetxattr(path, opaque_xattr(), &mut v), Ok(1) if v[0] == b'y')
}

/// Whether `rel` exists in the merged view of `lowers` (top first), following overlay's
/// rules: a whiteout or a non-directory on the way hides it, an opaque dir hides
/// what lies below it in lower layers.
// Layer dirs are the store's own and never change once committed: each prefix is
// lstat'ed in turn, so a symlink on the way is seen, not followed.
#[allow(clippy::disallowed_methods)]
pub fn in_lowers(lowers: &[PathBuf], rel: &Path) -> bool {
    let parts: Vec<_> = rel.components().collect();
    for layer in lowers {
        let mut p = layer.clone();
        let mut opaque_above = false;
        for (i, part) in parts.iter().enumerate() {
            p.push(part);
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                // Not in this layer; lower layers count unless an opaque dir here covers it.
                if opaque_above {
                    return false;
                }
                break;
            };
            if is_whiteout_meta(&m) {
                return false;
            }
            if i + 1 == parts.len() {
                return true;
            }
            if !m.is_dir() {
                return false;
            }
            opaque_above |= is_opaque_path(&p);
        }
    }
    false
}

/// The content of regular file `rel` as the merged view of `lowers` (top first) shows
/// it, at most `max` bytes; `None` if absent, hidden, or not a regular file (a symlink
/// is not followed: its target could lie in any layer).
#[allow(clippy::disallowed_methods)] // layer dirs: see in_lowers; the file itself is opened beneath
pub fn read_visible_file(lowers: &[PathBuf], rel: &str, max: u64) -> Option<Vec<u8>> {
    use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
    let rel = Path::new(rel);
    if !in_lowers(lowers, rel) {
        return None;
    }
    let layer = lowers.iter().find(|l| std::fs::symlink_metadata(l.join(rel)).is_ok())?;
    let dir = rustix::fs::open(layer, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).ok()?;
    // Non-blocking: an image's /etc/passwd may be a FIFO that would hang us at open
    // (the shape of CVE-2024-9676); no symlink is followed, not even inside the layer.
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::CLOEXEC;
    let how = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    let fd = rustix::fs::openat2(&dir, rel, flags, Mode::empty(), how).ok()?;
    let st = rustix::fs::fstat(&fd).ok()?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile || st.st_size as u64 > max {
        return None;
    }
    let mut buf = Vec::new();
    std::fs::File::from(fd).take(max).read_to_end(&mut buf).ok()?;
    Some(buf)
}

/// Whether `rel` is a directory (not a symlink to one) in the merged view of `lowers`.
#[allow(clippy::disallowed_methods)] // layer dirs: see in_lowers
pub fn is_visible_dir(lowers: &[PathBuf], rel: &Path) -> bool {
    in_lowers(lowers, rel)
        && lowers
            .iter()
            .map(|l| l.join(rel))
            .find_map(|p| std::fs::symlink_metadata(p).ok())
            .is_some_and(|m| m.is_dir())
}
