//! A new layer's listing ([`Listing`]), kept while the extractor writes the layer
//! instead of walking the layer dir again afterwards. Each node is recorded from the
//! kernel's own answer once it is finished (a stat and its extended attributes, read
//! through the descriptor the extractor holds, so no path is looked up again), with
//! the content digest that was computed as its bytes passed. What the tar does to the
//! tree as it goes (a later entry replacing an earlier one, a directory replaced with
//! its subtree, hardlinks, whiteouts, opaque markers, parents made implicitly) is done
//! to the records as well, so they end as the tree ends: the same lines, in the same
//! order, as [`Listing::of`] would read (debug builds check that on every layer).

use std::collections::BTreeMap;

use rustix::fs::{FileType, Stat};

use crate::layer::listing::{escape, FileDigest, Packed, Packer};

/// What a node's line ends with besides its attributes.
#[derive(Debug, Clone)]
pub(crate) enum Tail {
    /// A regular file's content digest.
    Content(FileDigest),
    /// A symlink's target.
    Link(Vec<u8>),
    /// Anything else: a device's numbers come from its stat.
    Nothing,
}

/// One node's line, unescaped.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    kind: u8,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    rdev: (u32, u32),
    tail: Tail,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Node {
    /// The node as `st` and `xattrs` (sorted) show it, ending with `tail`.
    pub(crate) fn of(st: &Stat, tail: Tail, xattrs: Vec<(Vec<u8>, Vec<u8>)>) -> Node {
        let kind = match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => b'd',
            FileType::RegularFile => b'f',
            FileType::Symlink => b'l',
            FileType::CharacterDevice => b'c',
            FileType::BlockDevice => b'b',
            FileType::Fifo => b'p',
            _ => b's',
        };
        let size = if matches!(kind, b'f' | b'l') { st.st_size as u64 } else { 0 };
        let rdev = (rustix::fs::major(st.st_rdev), rustix::fs::minor(st.st_rdev));
        Node { kind, mode: st.st_mode & 0o7777, uid: st.st_uid, gid: st.st_gid, size, rdev, tail, xattrs }
    }

    /// The line past its path: ` KIND MODE UID GID SIZE TAIL[ XATTR=VALUE…]\n`.
    fn rest(&self, out: &mut Vec<u8>) {
        let kind = self.kind as char;
        out.extend_from_slice(format!(" {kind} {:o} {} {} {} ", self.mode, self.uid, self.gid, self.size).as_bytes());
        match (&self.tail, self.kind) {
            (Tail::Content(d), b'f') => d.write(out),
            (Tail::Link(target), b'l') => escape(out, target),
            (_, b'c' | b'b') => out.extend_from_slice(format!("{}:{}", self.rdev.0, self.rdev.1).as_bytes()),
            _ => out.push(b'-'),
        }
        for (name, value) in &self.xattrs {
            out.push(b' ');
            escape(out, name);
            out.push(b'=');
            escape(out, value);
        }
        out.push(b'\n');
    }
}

/// The records of a layer being written: each node's line past its path, by its
/// escaped path (the root is `.`). Escaping keeps `/` and writes only bytes above the
/// space, so this order is the order of the listing's sorted lines, and a subtree is
/// a range of it.
#[derive(Debug, Default)]
pub struct Written {
    nodes: BTreeMap<Box<[u8]>, Box<[u8]>>,
}

/// The key of `path` (beneath the root; the root is `""`).
fn key(path: &[u8]) -> Box<[u8]> {
    let mut k = Vec::with_capacity(path.len() + 8);
    escape(&mut k, if path.is_empty() { b"." } else { path });
    k.into_boxed_slice()
}

impl Written {
    /// Records `node` at `path`, over what was there.
    pub(crate) fn set(&mut self, path: &[u8], node: Node) {
        let mut rest = Vec::with_capacity(112);
        node.rest(&mut rest);
        self.nodes.insert(key(path), rest.into_boxed_slice());
    }

    /// Whether `path` has a record.
    pub(crate) fn has(&self, path: &[u8]) -> bool {
        self.nodes.contains_key(&key(path))
    }

    /// Forgets `path` and, if it was a directory, everything beneath it.
    pub(crate) fn remove_tree(&mut self, path: &[u8]) {
        let k = key(path);
        self.nodes.remove(&k);
        let mut below = k.into_vec();
        below.push(b'/');
        let gone: Vec<Box<[u8]>> = self
            .nodes
            .range::<[u8], _>((std::ops::Bound::Included(&below[..]), std::ops::Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(&below))
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            self.nodes.remove(&k);
        }
    }

    /// Records `to` as another name of the node at `from` (a hardlink: one inode);
    /// `false` if `from` has no record.
    pub(crate) fn link(&mut self, to: &[u8], from: &[u8]) -> bool {
        match self.nodes.get(&key(from)).cloned() {
            Some(rest) => {
                self.nodes.insert(key(to), rest);
                true
            }
            None => false,
        }
    }

    /// The listing, packed: one line per node, in the order [`Listing::of`] sorts
    /// them. The records are freed as their lines are packed; the plain listing is
    /// never whole in memory.
    pub fn into_packed(self) -> Packed {
        let mut p = Packer::new(self.nodes.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum());
        let mut line = Vec::with_capacity(256);
        for (path, rest) in self.nodes {
            line.clear();
            line.extend_from_slice(&path);
            line.extend_from_slice(&rest);
            p.add(&line);
        }
        p.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory owned by root, mode 755.
    fn dir() -> Node {
        let d = tempfile::tempdir().unwrap();
        let mut st = rustix::fs::stat(d.path()).unwrap();
        (st.st_mode, st.st_uid, st.st_gid) = (rustix::fs::FileType::Directory.as_raw_mode() | 0o755, 0, 0);
        Node::of(&st, Tail::Nothing, Vec::new())
    }

    #[test]
    fn a_replaced_directory_takes_its_subtree_and_only_its_own() {
        let mut w = Written::default();
        for p in ["", "a", "a/b", "a/b/c", "a/bc", "a.d"] {
            w.set(p.as_bytes(), dir());
        }
        w.remove_tree(b"a/b");
        let paths: Vec<&[u8]> = w.nodes.keys().map(|k| &k[..]).collect();
        assert_eq!(paths, [&b"."[..], b"a", b"a.d", b"a/bc"]);
        assert!(w.link(b"x", b"a/bc"));
        assert!(!w.link(b"y", b"a/b"));
        let packed = w.into_packed();
        let listing = crate::layer::listing::Listing::unpacked(packed.digest, &packed.bytes).unwrap();
        let listing = String::from_utf8(listing.listing).unwrap();
        assert!(listing.starts_with(". d 755 0 0 0 -\n"), "{listing}");
        assert!(listing.contains("\nx d 755 0 0 0 -\n"), "{listing}");
    }
}
