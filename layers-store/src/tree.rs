//! A layer dir's tree, recorded when the layer is made so `fsck` can prove nothing
//! changed it since: one line per node, sorted by (escaped) path, so parents come
//! before their children, with its type, mode, owner, size, content digest, link target, device
//! number and every extended attribute (whiteouts are 0/0 char devices, opaque dirs
//! carry `trusted.overlay.opaque`). Mtimes are left out: the tar's are restored
//! after the fact and say nothing about tampering with content.
//!
//! Content is hashed with BLAKE3 (`b3:` in the listing): several times faster than
//! sha256 here, and the listing only has to show a change, not name content across
//! systems. Files written by the unpacker are hashed as their bytes pass
//! ([`ContentDigests`]), so listing a fresh layer reads no file back.
//!
//! The listing is kept zstd-compressed in the metadata; its digest names it.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};

use crate::digest::Digest;
use crate::error::{Error, ErrorKind, Result};

/// Content digests of files just written, by inode: what the unpacker saw pass.
#[derive(Debug, Default)]
pub struct ContentDigests(HashMap<u64, [u8; 32]>);

impl ContentDigests {
    /// Records the content digest of the file with inode `ino`.
    pub(crate) fn insert(&mut self, ino: u64, digest: [u8; 32]) {
        self.0.insert(ino, digest);
    }
}

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

fn content_digest(p: &Path) -> std::io::Result<[u8; 32]> {
    let f = fs::File::options().read(true).custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32).open(p)?;
    Ok(crate::content_hash::ContentHash::of_reader(f)?.0)
}

fn line(out: &mut Vec<u8>, root: &Path, p: &Path, m: &fs::Metadata, known: &ContentDigests) -> Result<()> {
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
        'f' => {
            let digest = match known.0.get(&m.ino()) {
                Some(d) => *d,
                None => content_digest(p).map_err(err)?,
            };
            out.extend_from_slice(b"b3:");
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend(digest.iter().flat_map(|b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]));
        }
        'l' => escape(out, fs::read_link(p).map_err(err)?.as_os_str().as_bytes()),
        'c' | 'b' => {
            out.extend_from_slice(format!("{}:{}", rustix::fs::major(m.rdev()), rustix::fs::minor(m.rdev())).as_bytes())
        }
        _ => out.push(b'-'),
    }
    // Every one, overlay's whiteout and opaque markers included: they are the layer's content.
    for (name, value) in all_xattrs(p)? {
        out.push(b' ');
        escape(out, &name);
        out.push(b'=');
        escape(out, &value);
    }
    out.push(b'\n');
    Ok(())
}

/// Directories waiting to be listed, and how many listers are busy with one.
struct Work {
    queue: Mutex<(Vec<std::path::PathBuf>, usize)>,
    ready: Condvar,
}

impl Work {
    /// One lister: takes directories until none is left and nobody can add more.
    fn run(&self, root: &Path, known: &ContentDigests) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        loop {
            let dir = {
                let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    if let Some(d) = q.0.pop() {
                        q.1 += 1;
                        break d;
                    }
                    if q.1 == 0 {
                        self.ready.notify_all();
                        return Ok(out);
                    }
                    q = self.ready.wait(q).unwrap_or_else(|p| p.into_inner());
                }
            };
            let listed = self.list(root, &dir, known, &mut out);
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.1 -= 1;
            if let Err(e) = listed {
                // Nobody waits for directories that will not come.
                q.0.clear();
                self.ready.notify_all();
                return Err(e);
            }
            self.ready.notify_all();
        }
    }

    /// Lines for the children of `dir`; child directories go back on the queue.
    fn list(&self, root: &Path, dir: &Path, known: &ContentDigests, out: &mut Vec<Vec<u8>>) -> Result<()> {
        let err = |e| Error::io("read layer tree", dir.display(), e);
        let mut subdirs = Vec::new();
        for entry in fs::read_dir(dir).map_err(err)? {
            let p = entry.map_err(err)?.path();
            let m = fs::symlink_metadata(&p).map_err(|e| Error::io("read layer tree", p.display(), e))?;
            let mut l = Vec::with_capacity(160);
            line(&mut l, root, &p, &m, known)?;
            out.push(l);
            if m.is_dir() {
                subdirs.push(p);
            }
        }
        if !subdirs.is_empty() {
            self.queue.lock().unwrap_or_else(|p| p.into_inner()).0.append(&mut subdirs);
        }
        Ok(())
    }
}

impl Tree {
    /// Lists the tree at `root` (a layer dir nobody writes to), reading every file.
    pub fn of(root: &Path) -> Result<Tree> {
        Tree::with_known(root, &ContentDigests::default())
    }

    /// Lists the tree at `root`, taking the content digests of files in `known` as given.
    /// Directories are listed by as many threads as there are cores (at most 4); the
    /// lines are then sorted by path, which keeps parents before their children.
    pub fn with_known(root: &Path, known: &ContentDigests) -> Result<Tree> {
        let m = fs::symlink_metadata(root).map_err(|e| Error::io("read layer tree", root.display(), e))?;
        let mut first = Vec::new();
        line(&mut first, root, root, &m, known)?;
        let work = Work { queue: Mutex::new((vec![root.to_path_buf()], 0)), ready: Condvar::new() };
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
        let mut lines: Vec<Vec<u8>> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads).map(|_| s.spawn(|| work.run(root, known))).collect();
            let mut all = vec![first];
            let mut failed = None;
            for w in workers {
                match w.join().unwrap_or_else(|_| {
                    Err(Error::new(ErrorKind::Io, "read layer tree", root.display(), "a lister panicked"))
                }) {
                    Ok(mut l) => all.append(&mut l),
                    Err(e) => failed = failed.or(Some(e)),
                }
            }
            failed.map_or(Ok(all), Err)
        })?;
        lines.sort_unstable();
        let listing = lines.concat();
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

/// Extended attributes of a node of a layer dir (not following a symlink), sorted.
fn all_xattrs(p: &Path) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let err = |e: rustix::io::Errno| Error::errno("read xattrs", p.display(), e);
    let mut names = vec![0u8; 64 * 1024];
    let n = match rustix::fs::llistxattr(p, &mut names[..]) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => 0,
        Err(e) => return Err(err(e)),
    };
    let mut out = Vec::new();
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let mut value = vec![0u8; 64 * 1024];
        let len = rustix::fs::lgetxattr(p, name, &mut value[..]).map_err(err)?;
        value.truncate(len);
        out.push((name.to_vec(), value));
    }
    out.sort();
    Ok(out)
}
