//! A layer dir's tree, recorded when the layer is made so `fsck` can prove nothing
//! changed it since: one line per node, parents before children, names in byte
//! order, with its type, mode, owner, size, content digest, link target, device
//! number and every extended attribute (whiteouts are 0/0 char devices, opaque dirs
//! carry `trusted.overlay.opaque`). Mtimes are left out: the tar's are restored
//! after the fact and say nothing about tampering with content.
//!
//! The listing is kept zstd-compressed in the metadata; its digest names it.

use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result};

/// A layer dir's listing and its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    /// sha256 of the listing.
    pub digest: Digest,
    /// The listing, one line per node.
    pub listing: Vec<u8>,
}

/// `%XX` for bytes that would break a line's fields.
fn escape(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        if b <= b' ' || b >= 0x7f || b == b'%' {
            out.extend_from_slice(format!("%{b:02x}").as_bytes());
        } else {
            out.push(b);
        }
    }
}

fn content_digest(p: &Path) -> std::io::Result<Digest> {
    let mut f = fs::File::options().read(true).custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32).open(p)?;
    let mut h = Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finish());
        }
        h.update(&buf[..n]);
    }
}

fn line(out: &mut Vec<u8>, root: &Path, p: &Path, m: &fs::Metadata) -> Result<()> {
    let err = |e: std::io::Error| Error::io("read layer tree", p.display(), e);
    let rel = p.strip_prefix(root).unwrap_or(p);
    let ft = m.file_type();
    let kind = match () {
        _ if ft.is_dir() => 'd',
        _ if ft.is_file() => 'f',
        _ if ft.is_symlink() => 'l',
        _ if ft.is_char_device() => 'c',
        _ if ft.is_block_device() => 'b',
        _ if ft.is_fifo() => 'p',
        _ => 's',
    };
    escape(out, if rel.as_os_str().is_empty() { b"." } else { rel.as_os_str().as_bytes() });
    let size = if ft.is_file() || ft.is_symlink() { m.size() } else { 0 };
    out.extend_from_slice(format!(" {kind} {:o} {} {} {size} ", m.mode() & 0o7777, m.uid(), m.gid()).as_bytes());
    match kind {
        'f' => out.extend_from_slice(content_digest(p).map_err(err)?.to_string().as_bytes()),
        'l' => escape(out, fs::read_link(p).map_err(err)?.as_os_str().as_bytes()),
        'c' | 'b' => {
            out.extend_from_slice(format!("{}:{}", rustix::fs::major(m.rdev()), rustix::fs::minor(m.rdev())).as_bytes())
        }
        _ => out.push(b'-'),
    }
    let names = crate::upper::xattr_names(p).map_err(|e| Error::errno("read layer tree", p.display(), e))?;
    let mut xattrs = Vec::new();
    for name in names {
        let mut value = vec![0u8; 64 * 1024];
        let n = rustix::fs::lgetxattr(p, &name[..], &mut value[..])
            .map_err(|e| Error::errno("read layer tree", p.display(), e))?;
        xattrs.push((name, value[..n].to_vec()));
    }
    xattrs.sort();
    for (name, value) in xattrs {
        out.push(b' ');
        escape(out, &name);
        out.push(b'=');
        escape(out, &value);
    }
    out.push(b'\n');
    Ok(())
}

impl Tree {
    /// Lists the tree at `root` (a layer dir nobody writes to).
    pub fn of(root: &Path) -> Result<Tree> {
        let mut listing = Vec::new();
        let m = fs::symlink_metadata(root).map_err(|e| Error::io("read layer tree", root.display(), e))?;
        line(&mut listing, root, root, &m)?;
        crate::upper::walk(root, &mut |p, m| line(&mut listing, root, p, m).map(|()| true))?;
        Ok(Tree { digest: Digest::of(&listing), listing })
    }

    /// The first line where `self` (as recorded) and `now` differ, as its path (the
    /// recorded line's, or the new one's where the record has ended).
    pub fn first_difference(&self, now: &Tree) -> Option<String> {
        let path = |l: &[u8]| String::from_utf8_lossy(l.split(|b| *b == b' ').next().unwrap_or_default()).into_owned();
        let (mut a, mut b) = (self.listing.split(|c| *c == b'\n'), now.listing.split(|c| *c == b'\n'));
        loop {
            match (a.next(), b.next()) {
                (None, None) => return None,
                (Some(x), Some(y)) if x == y => continue,
                (Some(x), Some(y)) => {
                    let (px, py) = (path(x), path(y));
                    return Some(if px == py { px } else { px.min(py) });
                }
                (Some(x), None) => return Some(path(x)),
                (None, Some(y)) => return Some(path(y)),
            }
        }
    }

    /// The listing compressed for the metadata.
    pub(crate) fn packed(&self) -> Vec<u8> {
        zstd::encode_all(&self.listing[..], 3).unwrap_or_else(|_| self.listing.clone())
    }

    /// A recorded listing back; `None` if it does not match its digest.
    pub(crate) fn unpacked(digest: Digest, packed: &[u8]) -> Option<Tree> {
        let listing = zstd::decode_all(packed).ok()?;
        (Digest::of(&listing) == digest).then_some(Tree { digest, listing })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_anywhere_changes_the_digest_and_names_its_path() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("a/b")).unwrap();
        fs::write(d.path().join("a/b/f"), "one").unwrap();
        fs::write(d.path().join("z"), "z").unwrap();
        std::os::unix::fs::symlink("a b\n", d.path().join("link")).unwrap();
        let before = Tree::of(d.path()).unwrap();
        assert_eq!(Tree::of(d.path()).unwrap(), before, "the same tree lists the same");
        fs::write(d.path().join("a/b/f"), "two").unwrap();
        let after = Tree::of(d.path()).unwrap();
        assert_ne!(after.digest, before.digest);
        assert_eq!(before.first_difference(&after).as_deref(), Some("a/b/f"));
        fs::write(d.path().join("a/b/f"), "one").unwrap();
        fs::write(d.path().join("a/new"), "").unwrap();
        assert_eq!(before.first_difference(&Tree::of(d.path()).unwrap()).as_deref(), Some("a/new"));
        assert!(
            String::from_utf8_lossy(&before.listing).contains("link l 777 "),
            "{}",
            String::from_utf8_lossy(&before.listing)
        );
        assert!(String::from_utf8_lossy(&before.listing).contains(" a%20b%0a"));
        let packed = before.packed();
        assert_eq!(Tree::unpacked(before.digest, &packed), Some(before.clone()));
        assert_eq!(Tree::unpacked(after.digest, &packed), None);
    }
}
