//! A container's upper dir read as a layer: its changes (`layers diff`) and its
//! tar (`layers commit`). The upper dir uses the same encoding as our unpacked
//! layers (whiteouts are char devices 0/0, opaque dirs carry
//! `trusted.overlay.opaque=y`); the tar uses the OCI one (`.wh.NAME`, `.wh..wh..opq`).
//!
//! Walked in byte order of names, parents before children, so the same tree
//! always gives the same tar.

use std::io::{self, Read, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Stat};

use crate::content::digest::{DiffId, HashingWriter};
use crate::error::{Error, ErrorKind, Result};
use crate::fsroot::lowers::in_lowers;
use crate::fsroot::{join, split_last, walk, Node};
use crate::layer::listing::FileDigest;
use crate::layer::tar::{Entry, EntryKind};
use crate::layer::tar_writer::{entry_of, HardLinks, TarWriter};
use crate::layer::written::{self, Tail, Written};

/// The opaque-directory xattr of the encoding this process writes (a store it opens
/// has the same: `Store::open` refuses any other).
fn opaque_xattr() -> &'static [u8] {
    crate::layer::encoding::Encoding::of_process().opaque_xattr()
}

/// What happened to a path, as `docker diff` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChangeKind {
    /// `A`: not in the image.
    Added,
    /// `C`: in the image, changed (or a dir with changes beneath).
    Changed,
    /// `D`: in the image, deleted.
    Deleted,
}

impl ChangeKind {
    /// The letter `docker diff` uses.
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Added => 'A',
            ChangeKind::Changed => 'C',
            ChangeKind::Deleted => 'D',
        }
    }
}

/// One changed path, absolute in the container (`/etc/hosts`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Change {
    /// The path.
    pub path: String,
    /// What happened to it.
    pub kind: ChangeKind,
}

/// What writing an upper dir as a tar produced.
#[derive(Debug, Clone, Copy)]
pub struct WrittenTar {
    /// Digest of the uncompressed tar.
    pub diff_id: DiffId,
    /// Bytes of the uncompressed tar.
    pub size: u64,
    /// Entries written.
    pub entries: u64,
}

fn is_whiteout(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice && st.st_rdev == 0
}

/// The changes an upper dir makes to `lowers` (top first), sorted by path.
pub fn changes(upper: &Path, lowers: &[PathBuf]) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    walk("read upper dir", upper, &mut |node| {
        let rel = Path::new(std::ffi::OsStr::from_bytes(node.rel));
        let path = format!("/{}", rel.display());
        let existed = in_lowers(lowers, rel);
        let kind = if is_whiteout(&node.stat) {
            ChangeKind::Deleted
        } else if existed {
            ChangeKind::Changed
        } else {
            ChangeKind::Added
        };
        if kind == ChangeKind::Deleted && !existed {
            // A whiteout over nothing (overlay made it, or the layer below already hid it).
            return Ok(false);
        }
        out.push(Change { path, kind });
        // Below an added dir everything is added: still listed, as docker diff does.
        Ok(true)
    })?;
    out.sort();
    Ok(out)
}

/// Extended attributes of a node, sorted. With `clean`, overlay's bookkeeping
/// (`trusted.overlay.*` but `opaque`) is first removed from the node, so it reads as
/// one of our unpacked layers.
fn node_xattrs(node: &Node, clean: bool) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let shown = || String::from_utf8_lossy(node.rel).into_owned();
    let mut all = node.xattrs().map_err(|e| Error::io("read xattrs", shown(), e))?;
    if clean {
        let bookkeeping = |name: &[u8]| crate::layer::encoding::is_overlay_private(name) && name != opaque_xattr();
        for (name, _) in all.iter().filter(|(n, _)| bookkeeping(n)) {
            node.remove_xattr(name).map_err(|e| Error::errno("clean upper dir", shown(), e))?;
        }
        all.retain(|(n, _)| !bookkeeping(n));
    }
    Ok(all)
}

/// The attributes a tar entry carries: all but overlay's (an opaque dir is a marker
/// entry in the tar instead).
fn tar_xattrs(all: &[(Vec<u8>, Vec<u8>)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    all.iter().filter(|(n, _)| !crate::layer::encoding::is_overlay_private(n)).cloned().collect()
}

fn is_opaque(all: &[(Vec<u8>, Vec<u8>)]) -> bool {
    all.iter().any(|(n, v)| n == opaque_xattr() && v.first() == Some(&b'y'))
}

/// The record of the layer dir's root, as it is (the walk does not visit it).
fn root_node(upper: &Path) -> Result<written::Node> {
    let err = |e: io::Error| Error::io("read upper dir", upper.display(), e);
    let flags = rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::NOFOLLOW;
    let fd = rustix::fs::open(upper, flags | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty())
        .map_err(|e| err(e.into()))?;
    let top = crate::fsroot::Root::from_fd(fd, upper.to_path_buf()).top().map_err(err)?;
    written::Node::of_dir(&top).map_err(err)
}

/// Files up to this size are read whole before their header is written.
const SMALL_FILE: u64 = 1 << 20;

/// A regular file's content, as read for its tar entry.
enum Content {
    Whole(Vec<u8>),
    Stream(std::fs::File),
}

/// Records the node at `p` in the layer's listing, if one is kept.
fn record(layer: &mut Option<&mut Written>, p: &[u8], st: &Stat, tail: Tail, xattrs: Vec<(Vec<u8>, Vec<u8>)>) {
    if let Some(w) = layer.as_deref_mut() {
        w.set(p, written::Node::of(st, tail, xattrs));
    }
}

fn marker(path: Vec<u8>) -> Entry {
    // Whiteouts carry no meaningful metadata: all zero, so a tree always tars the same.
    Entry {
        path,
        link: Vec::new(),
        kind: EntryKind::File,
        mode: 0,
        uid: 0,
        gid: 0,
        mtime: (0, 0),
        size: 0,
        dev: (0, 0),
        xattrs: Vec::new(),
        sparse: None,
    }
}

/// Writes `upper` as an OCI layer tar to `out` and returns its diffID. With
/// `mtime_clamp` (a build's `SOURCE_DATE_EPOCH`), no entry is newer than it, so the
/// same content gives the same layer whenever it is written. With `layer`, the upper
/// dir is to become a layer dir as it is: overlay's bookkeeping is stripped from each
/// node as it is read, and each node is recorded in `layer` from the same stat and
/// attributes, its content digest computed as its bytes pass (the layer's listing,
/// with no second walk).
pub fn write_tar(
    upper: &Path,
    out: impl Write,
    mtime_clamp: Option<i64>,
    mut layer: Option<&mut Written>,
) -> Result<WrittenTar> {
    if let Some(w) = layer.as_deref_mut() {
        w.set(b"", root_node(upper)?);
    }
    let mut tar = TarWriter::new(HashingWriter::new(out));
    let mut links = HardLinks::default();
    let mut entries = 0u64;
    let mut buf = vec![0u8; 128 * 1024];
    let werr = |p: &[u8], e: io::Error| Error::io("write layer tar", String::from_utf8_lossy(p), e);
    walk("write layer tar", upper, &mut |node| {
        let (rel, m, p) = (node.rel.to_vec(), &node.stat, node.rel);
        let (parent, name) = split_last(p);
        let ft = node.file_type();
        // Symlinks keep theirs: overlay does not mark them, nor do our layers read them.
        let all = node_xattrs(node, layer.is_some() && ft != FileType::Symlink)?;
        if is_whiteout(m) {
            let mut wh = b".wh.".to_vec();
            wh.extend_from_slice(name);
            tar.append(&marker(join(parent, &wh))).map_err(|e| werr(p, e))?;
            entries += 1;
            record(&mut layer, p, m, Tail::Nothing, all);
            return Ok(false);
        }
        let Some(mut e) = entry_of(rel.clone(), ft, m, &mut links) else {
            record(&mut layer, p, m, Tail::Nothing, all);
            return Ok(false);
        };
        if let Some(c) = mtime_clamp {
            e.mtime.0 = e.mtime.0.min(c);
        }
        if e.kind == EntryKind::Symlink {
            e.link = node.read_link().map_err(|err| werr(p, err))?;
        }
        // A hard link's xattrs are its first name's.
        if e.kind != EntryKind::Hardlink {
            e.xattrs = tar_xattrs(&all);
        }
        // A live container (`commit --pause=false`) may rewrite a file while it is read:
        // a small file is read whole first and written as read; a larger one is sized by
        // its open file and streamed, and fails if it shrinks meanwhile.
        let mut content = None;
        if e.kind == EntryKind::File {
            let mut f = node.open_file().map_err(|err| werr(p, err))?;
            let mut bytes = Vec::new();
            (&mut f).take(SMALL_FILE + 1).read_to_end(&mut bytes).map_err(|err| werr(p, err))?;
            if bytes.len() as u64 <= SMALL_FILE {
                e.size = bytes.len() as u64;
                content = Some(Content::Whole(bytes));
            } else {
                f.seek(io::SeekFrom::Start(0)).map_err(|err| werr(p, err))?;
                e.size = f.metadata().map_err(|err| werr(p, err))?.len();
                content = Some(Content::Stream(f));
            }
        }
        tar.append(&e).map_err(|err| werr(p, err))?;
        entries += 1;
        let mut hasher = (layer.is_some() && e.kind == EntryKind::File).then(blake3::Hasher::new);
        match content {
            Some(Content::Whole(bytes)) => {
                if let Some(h) = hasher.as_mut() {
                    h.update(&bytes);
                }
                tar.write_data(&bytes).map_err(|err| werr(p, err))?
            }
            Some(Content::Stream(f)) => {
                let mut f = f.take(e.size);
                loop {
                    let n = f.read(&mut buf).map_err(|err| werr(p, err))?;
                    if n == 0 {
                        break;
                    }
                    if let Some(h) = hasher.as_mut() {
                        h.update(&buf[..n]);
                    }
                    tar.write_data(&buf[..n]).map_err(|err| werr(p, err))?;
                }
                if tar.owed() > 0 {
                    return Err(Error::new(
                        ErrorKind::Io,
                        "write layer tar",
                        String::from_utf8_lossy(p),
                        "file shrank while read",
                    ));
                }
            }
            None => {}
        }
        let opaque = ft == FileType::Directory && is_opaque(&all);
        match (e.kind, hasher) {
            (EntryKind::File, Some(h)) => {
                record(&mut layer, p, m, Tail::Content(FileDigest::Plain(*h.finalize().as_bytes())), all)
            }
            (EntryKind::Hardlink, _) => {
                // Another name of a file recorded above: the same inode, the same line.
                if let Some(w) = layer.as_deref_mut() {
                    if !w.link(p, &e.link) {
                        return Err(Error::new(
                            ErrorKind::Io,
                            "write layer tar",
                            String::from_utf8_lossy(p),
                            "hardlink target not recorded",
                        ));
                    }
                }
            }
            (EntryKind::Symlink, _) => record(&mut layer, p, m, Tail::Link(e.link.clone()), all),
            _ => record(&mut layer, p, m, Tail::Nothing, all),
        }
        if opaque {
            tar.append(&marker(join(&rel, b".wh..wh..opq"))).map_err(|err| werr(p, err))?;
            entries += 1;
        }
        Ok(true)
    })?;
    let h = tar.finish().map_err(|e| werr(upper.as_os_str().as_bytes(), e))?;
    Ok(WrittenTar { diff_id: DiffId::new(h.hasher.finish()), size: h.size, entries })
}
