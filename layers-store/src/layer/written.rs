//! A new layer's listing ([`crate::layer::listing::Listing`]), kept while the
//! extractor writes the layer (or a commit's tar reads an upper dir that becomes one)
//! instead of walking the layer dir again afterwards. Each node is recorded from the
//! kernel's own answer once it is finished (a stat and its extended attributes, read
//! through the descriptor the extractor holds, so no path is looked up again), with
//! the content digest that was computed as its bytes passed. What the tar does to the
//! tree as it goes (a later entry replacing an earlier one, a directory replaced with
//! its subtree, hardlinks, whiteouts, opaque markers, parents made implicitly) is done
//! to the records as well, so they end as the tree ends: the same lines, in the same
//! order, as [`crate::layer::listing::Listing::of`] would read (debug builds check that on every layer).

use std::collections::BTreeSet;

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

    /// The directory `dir` as it is now.
    pub(crate) fn of_dir(dir: &crate::fsroot::Subdir) -> std::io::Result<Node> {
        Ok(Node::of(&dir.stat_self()?, Tail::Nothing, dir.xattrs_self()?))
    }

    /// The node in the record's compact form (numbers as LEB128, a digest as its 32
    /// bytes): a file's record is about a third of its line.
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.kind);
        for n in [u64::from(self.mode), u64::from(self.uid), u64::from(self.gid), self.size] {
            put(out, n);
        }
        match (&self.tail, self.kind) {
            (Tail::Content(FileDigest::Plain(d)), b'f') => {
                out.push(TAIL_PLAIN);
                out.extend_from_slice(d);
            }
            (Tail::Content(FileDigest::Runs(d)), b'f') => {
                out.push(TAIL_RUNS);
                out.extend_from_slice(d);
            }
            (Tail::Link(target), b'l') => {
                out.push(TAIL_LINK);
                put_bytes(out, target);
            }
            (_, b'c' | b'b') => {
                out.push(TAIL_DEVICE);
                put(out, u64::from(self.rdev.0));
                put(out, u64::from(self.rdev.1));
            }
            _ => out.push(TAIL_NONE),
        }
        put(out, self.xattrs.len() as u64);
        for (name, value) in &self.xattrs {
            put_bytes(out, name);
            put_bytes(out, value);
        }
    }
}

const TAIL_NONE: u8 = 0;
const TAIL_PLAIN: u8 = 1;
const TAIL_RUNS: u8 = 2;
const TAIL_LINK: u8 = 3;
const TAIL_DEVICE: u8 = 4;

/// Appends `n` as LEB128.
fn put(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Reads what `Node::encode` wrote (our own bytes: a short read gives zeros and empty
/// slices, never a panic).
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn byte(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }

    fn num(&mut self) -> u64 {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte();
            n |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                break;
            }
        }
        n
    }

    fn bytes(&mut self, len: usize) -> &'a [u8] {
        let (a, rest) = self.0.split_at(len.min(self.0.len()));
        self.0 = rest;
        a
    }

    fn counted(&mut self) -> &'a [u8] {
        let len = self.num() as usize;
        self.bytes(len)
    }
}

/// The line past its path, from a node's compact form: ` KIND MODE UID GID SIZE
/// TAIL[ XATTR=VALUE…]\n`, as [`crate::layer::listing::Listing::of`] writes it.
fn write_rest(encoded: &[u8], out: &mut Vec<u8>) {
    let mut f = Fields(encoded);
    let kind = f.byte() as char;
    let (mode, uid, gid, size) = (f.num(), f.num(), f.num(), f.num());
    out.extend_from_slice(format!(" {kind} {mode:o} {uid} {gid} {size} ").as_bytes());
    match f.byte() {
        tag @ (TAIL_PLAIN | TAIL_RUNS) => {
            let mut d = [0u8; 32];
            let got = f.bytes(32);
            d[..got.len()].copy_from_slice(got);
            if tag == TAIL_PLAIN { FileDigest::Plain(d) } else { FileDigest::Runs(d) }.write(out);
        }
        TAIL_LINK => escape(out, f.counted()),
        TAIL_DEVICE => {
            let (major, minor) = (f.num(), f.num());
            out.extend_from_slice(format!("{major}:{minor}").as_bytes());
        }
        _ => out.push(b'-'),
    }
    for _ in 0..f.num() {
        out.push(b' ');
        escape(out, f.counted());
        out.push(b'=');
        escape(out, f.counted());
    }
    out.push(b'\n');
}

/// One node's record in one allocation: its key's length (4 bytes), its key (the
/// escaped path), then the node's compact form. Ordered, compared and looked up by
/// the key alone.
#[derive(Debug)]
struct Record(Box<[u8]>);

impl Record {
    /// The record of `key` whose node's compact form `node` writes (`len`: about
    /// how long it is).
    fn build(key: &[u8], len: usize, node: impl FnOnce(&mut Vec<u8>)) -> Record {
        let mut b = Vec::with_capacity(4 + key.len() + len);
        b.extend_from_slice(&(key.len() as u32).to_le_bytes());
        b.extend_from_slice(key);
        node(&mut b);
        Record(b.into_boxed_slice())
    }

    fn new(key: &[u8], node: &Node) -> Record {
        Record::build(key, 48, |b| node.encode(b))
    }

    /// The same node under another key (a hardlink's other name).
    fn renamed(&self, key: &[u8]) -> Record {
        Record::build(key, self.node().len(), |b| b.extend_from_slice(self.node()))
    }

    fn key_len(&self) -> usize {
        let mut n = [0u8; 4];
        n.copy_from_slice(&self.0[..4]);
        u32::from_le_bytes(n) as usize
    }

    fn key(&self) -> &[u8] {
        &self.0[4..4 + self.key_len()]
    }

    fn node(&self) -> &[u8] {
        &self.0[4 + self.key_len()..]
    }
}

impl std::borrow::Borrow<[u8]> for Record {
    fn borrow(&self) -> &[u8] {
        self.key()
    }
}

impl PartialEq for Record {
    fn eq(&self, other: &Record) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Record {}

impl PartialOrd for Record {
    fn partial_cmp(&self, other: &Record) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Record {
    fn cmp(&self, other: &Record) -> std::cmp::Ordering {
        self.key().cmp(other.key())
    }
}

/// The records of a layer being written, by escaped path (the root is `.`).
/// Escaping keeps `/` and writes only bytes above the space, so this order is the
/// order of the listing's sorted lines, and a subtree is a range of it. A record is
/// one allocation of about 60 bytes for a file (its line would be about 100, in two):
/// a layer of 50,000 small files holds about half the memory it did.
#[derive(Debug, Default)]
pub struct Written {
    nodes: BTreeSet<Record>,
}

/// The key of `path` (beneath the root; the root is `""`).
fn key(path: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(path.len() + 8);
    escape(&mut k, if path.is_empty() { b"." } else { path });
    k
}

impl Written {
    /// Records `node` at `path`, over what was there.
    pub(crate) fn set(&mut self, path: &[u8], node: Node) {
        self.nodes.replace(Record::new(&key(path), &node));
    }

    /// Whether `path` has a record.
    pub(crate) fn has(&self, path: &[u8]) -> bool {
        self.nodes.contains(&key(path)[..])
    }

    /// Forgets `path` and, if it was a directory, everything beneath it.
    pub(crate) fn remove_tree(&mut self, path: &[u8]) {
        let mut below = key(path);
        self.nodes.remove(&below[..]);
        below.push(b'/');
        // What is removed is looked up once each: no cost for the records kept.
        let gone: Vec<Vec<u8>> = self
            .nodes
            .range::<[u8], _>((std::ops::Bound::Included(&below[..]), std::ops::Bound::Unbounded))
            .take_while(|r| r.key().starts_with(&below))
            .map(|r| r.key().to_vec())
            .collect();
        for k in gone {
            self.nodes.remove(&k[..]);
        }
    }

    /// Records `to` as another name of the node at `from` (a hardlink: one inode);
    /// `false` if `from` has no record.
    pub(crate) fn link(&mut self, to: &[u8], from: &[u8]) -> bool {
        let Some(record) = self.nodes.get(&key(from)[..]).map(|r| r.renamed(&key(to))) else { return false };
        self.nodes.replace(record);
        true
    }

    /// The listing, packed: one line per node, in the order `Listing::of` sorts
    /// them. The records are freed as their lines are packed; the plain listing is
    /// never whole in memory.
    pub fn into_packed(self) -> Packed {
        let mut line = Vec::with_capacity(256);
        let mut p = Packer::new();
        for r in self.nodes {
            line.clear();
            line.extend_from_slice(r.key());
            write_rest(r.node(), &mut line);
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
        let paths: Vec<&[u8]> = w.nodes.iter().map(|r| r.key()).collect();
        assert_eq!(paths, [&b"."[..], b"a", b"a.d", b"a/bc"]);
        assert!(w.link(b"x", b"a/bc"));
        assert!(!w.link(b"y", b"a/b"));
        let packed = w.into_packed();
        let listing = crate::layer::listing::Listing::unpacked(packed.digest, &packed.bytes).unwrap();
        let listing = String::from_utf8(listing.listing).unwrap();
        assert!(listing.starts_with(". d 755 0 0 0 -\n"), "{listing}");
        assert!(listing.contains("\nx d 755 0 0 0 -\n"), "{listing}");
    }

    /// Each kind of node's compact record gives back the line the text form had.
    #[test]
    fn a_record_gives_back_each_kind_of_line() {
        let d = tempfile::tempdir().unwrap();
        let base = rustix::fs::stat(d.path()).unwrap();
        let node = |kind: FileType, mode: u32, size: i64, rdev: (u32, u32), tail: Tail, x: Vec<(Vec<u8>, Vec<u8>)>| {
            let mut st = base;
            (st.st_mode, st.st_uid, st.st_gid, st.st_size) = (kind.as_raw_mode() | mode, 1000, 70000, size);
            st.st_rdev = rustix::fs::makedev(rdev.0, rdev.1);
            Node::of(&st, tail, x)
        };
        let cases = [
            (
                node(FileType::RegularFile, 0o4755, 300, (0, 0), Tail::Content(FileDigest::Plain([0xab; 32])), vec![]),
                format!(" f 4755 1000 70000 300 b3:{}\n", "ab".repeat(32)),
            ),
            (
                node(
                    FileType::RegularFile,
                    0o600,
                    1 << 40,
                    (0, 0),
                    Tail::Content(FileDigest::Runs([1; 32])),
                    vec![(b"user.a b".to_vec(), b"v%\n".to_vec())],
                ),
                format!(" f 600 1000 70000 1099511627776 z3:{} user.a%20b=v%25%0a\n", "01".repeat(32)),
            ),
            (
                node(FileType::Symlink, 0o777, 9, (0, 0), Tail::Link(b"../t a".to_vec()), vec![]),
                " l 777 1000 70000 9 ../t%20a\n".to_string(),
            ),
            (
                node(FileType::CharacterDevice, 0, 0, (0, 0), Tail::Nothing, vec![]),
                " c 0 1000 70000 0 0:0\n".to_string(),
            ),
            (
                node(FileType::BlockDevice, 0o660, 0, (259, 1 << 20), Tail::Nothing, vec![]),
                " b 660 1000 70000 0 259:1048576\n".to_string(),
            ),
            (
                node(
                    FileType::Directory,
                    0o1777,
                    0,
                    (0, 0),
                    Tail::Nothing,
                    vec![(b"trusted.overlay.opaque".to_vec(), b"y".to_vec()), (b"user.z".to_vec(), vec![])],
                ),
                " d 1777 1000 70000 0 - trusted.overlay.opaque=y user.z=\n".to_string(),
            ),
        ];
        for (n, want) in cases {
            let mut encoded = Vec::new();
            n.encode(&mut encoded);
            let mut line = Vec::new();
            write_rest(&encoded, &mut line);
            assert_eq!(String::from_utf8(line).unwrap(), want);
        }
    }
}
