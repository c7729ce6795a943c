//! Streaming layer unpack: one pass from compressed bytes to an overlay-format
//! layer dir, in three stages joined by bounded channels (constant memory).
//!
//! ```text
//! read:    input ─► sha256 (blob digest) ─► copy to the staged blob ─┐
//! decode:  ◄──────────────────────────────────────────────────────────┘ gunzip/unzstd ─┐
//! write:   ◄───────────────────────────────────────────────────────────────────────────┘
//!          sha256 (diffID) ─► tar headers ─► Root (openat2, no symlinks) ─► disk
//! ```
//! Decoding is the critical path; the read stage's hashing and copying run on
//! whichever core the writer leaves idle.
//! OCI whiteouts become overlay whiteouts: `.wh.NAME` a 0/0 char device `NAME`,
//! `.wh..wh..opq` the xattr `trusted.overlay.opaque=y` on its directory.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Cursor, Read, Write};
use std::os::fd::AsFd;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread;

use rustix::fs::FileType;
use rustix::io::Errno;

use crate::compression::Compression;
use crate::digest::{DiffId, Digest, Hasher};
use crate::error::{Error, ErrorKind, Result};
use crate::root::{set_mtime_fd, set_owner_mode_fd, set_xattr_fd, Meta, RelPath, Root, Subdir};
use crate::tar::{Entry, EntryKind, TarError, TarReader};
use crate::tar_sparse::SparseMap;
use crate::tree::ContentDigests;

const CHUNK: usize = 128 * 1024;
const CHANNEL_DEPTH: usize = 4;
const OPAQUE_XATTR: &[u8] = b"trusted.overlay.opaque";

/// Caps that stop hostile layers (gzip bombs, huge headers) early.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most uncompressed bytes one layer may have.
    pub max_bytes: u64,
    /// Most tar entries one layer may have.
    pub max_entries: u64,
    /// Largest PAX or GNU long-name header.
    pub max_header: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_bytes: 64 << 30, max_entries: 4_000_000, max_header: 1 << 20 }
    }
}

/// What one pass over a layer blob learned.
#[derive(Debug, Clone, Copy)]
pub struct Unpacked {
    /// Digest of the blob as given.
    pub blob: Digest,
    /// Size of the blob as given.
    pub blob_size: u64,
    /// Compression found by magic bytes.
    pub compression: Compression,
    /// Digest of the uncompressed tar.
    pub diff_id: DiffId,
    /// Size of the uncompressed tar.
    pub tar_size: u64,
    /// Number of tar entries.
    pub entries: u64,
}

/// Unpacks the layer blob `input` into the (empty) tree `root`, copying the blob
/// bytes into `blob_sink` as they pass. Digests are computed on the way and
/// returned. With `expected_blob`, a different blob digest is the error, and it wins
/// over any failure downstream (a corrupt gzip stream, a bad tar) that it explains;
/// to learn the digest, up to `MAX_DRAIN` more bytes are read after such a failure
/// (beyond that, the downstream failure is reported and reading stops).
pub fn unpack(
    input: impl Read + Send,
    blob_sink: Option<&mut File>,
    root: &Root,
    limits: &Limits,
    expected_blob: Option<Digest>,
) -> Result<Unpacked> {
    unpack_hashing(input, blob_sink, root, limits, expected_blob, &mut ContentDigests::default())
}

/// [`unpack`], recording each regular file's content digest in `digests` as it is written.
pub fn unpack_hashing(
    input: impl Read + Send,
    blob_sink: Option<&mut File>,
    root: &Root,
    limits: &Limits,
    expected_blob: Option<Digest>,
    digests: &mut ContentDigests,
) -> Result<Unpacked> {
    let (blob_tx, blob_rx) = pipe();
    let (tar_tx, tar_rx) = pipe();
    thread::scope(|s| {
        let verify = expected_blob.is_some();
        // Named, so a profile tells the stages apart.
        let read = thread::Builder::new()
            .name("layer-read".into())
            .spawn_scoped(s, move || read_stage(input, blob_sink, blob_tx, verify))
            .map_err(|e| Error::io("unpack", "layer", e))?;
        let decode = thread::Builder::new()
            .name("layer-decode".into())
            .spawn_scoped(s, move || decode_stage(blob_rx, tar_tx, limits))
            .map_err(|e| Error::io("unpack", "layer", e))?;
        let mut tar = tar_rx.reader(true);
        let written = extract(&mut tar, root, limits, digests);
        if written.is_err() {
            // Upstream stages see the hang-up and stop; their "receiver gone" is not the story.
            drop(tar.rx);
        } else {
            while tar.rx.recv().is_ok() {}
        }
        let read = read.join().unwrap_or_else(|_| Err(panicked()));
        let decoded = decode.join().unwrap_or_else(|_| Err(panicked()));
        // Wrong content is the cause, and it explains whatever failed downstream of it.
        if let (Some(want), Ok((got, _))) = (expected_blob, &read) {
            if want != *got {
                return Err(Error::mismatch("verify layer blob", want, got));
            }
        }
        // The earliest stage's own error is the cause; later stages only saw the stream end.
        match (read, decoded, written) {
            (Err(Fail::Err(e)), _, _) | (_, Err(Fail::Err(e)), _) | (_, _, Err(e)) => Err(e),
            (Err(Fail::ReceiverGone), _, _) | (_, Err(Fail::ReceiverGone), _) => {
                Err(Error::new(ErrorKind::Io, "unpack", "layer", "writer stopped before the stream ended"))
            }
            (Ok((blob, blob_size)), Ok(compression), Ok(entries)) => Ok(Unpacked {
                blob,
                blob_size,
                compression,
                diff_id: DiffId::new(tar.hasher.expect("the writer's reader hashes").finish()),
                tar_size: tar.size,
                entries,
            }),
        }
    })
}

/// Most bytes read after a later stage failed, only to learn the blob digest: a blob
/// served without end must not keep us reading once we have given up on it.
const MAX_DRAIN: u64 = 16 << 20;

fn panicked() -> Fail {
    Fail::Err(Error::new(ErrorKind::Io, "unpack", "layer", "a pipeline thread panicked"))
}

enum Fail {
    Err(Error),
    /// A later stage gave up first; its error is the one to report.
    ReceiverGone,
}

/// Stage 1: read the blob, hash it, keep a copy. Off the decoder's thread, which is
/// the pipeline's critical path.
fn read_stage(
    mut input: impl Read,
    mut sink: Option<&mut File>,
    out: PipeTx,
    verify: bool,
) -> Result<(Digest, u64), Fail> {
    let mut hasher = Hasher::new();
    let mut size = 0u64;
    let mut downstream_gone = false;
    let mut drained = 0u64;
    loop {
        let mut buf = out.buffer();
        let n = fill(&mut input, &mut buf).map_err(|e| Fail::Err(Error::io("read layer", "input", e)))?;
        if n == 0 {
            return Ok((hasher.finish(), size));
        }
        buf.truncate(n);
        hasher.update(&buf);
        size += n as u64;
        if downstream_gone {
            drained += n as u64;
            if drained > MAX_DRAIN {
                return Err(Fail::ReceiverGone);
            }
            continue;
        }
        if let Some(sink) = sink.as_mut() {
            sink.write_all(&buf).map_err(|e| Fail::Err(Error::io("store layer blob", "staged blob", e)))?;
        }
        match out.send(buf) {
            Ok(()) => {}
            // Keep hashing: the digest may explain why a later stage gave up.
            Err(Fail::ReceiverGone) if verify => downstream_gone = true,
            Err(e) => return Err(e),
        }
    }
}

/// Stage 2: recognise the compression and decode.
fn decode_stage(input: PipeRx, out: PipeTx, limits: &Limits) -> Result<Compression, Fail> {
    let mut src = input.reader(false);
    let mut head = [0u8; 6];
    let n = fill(&mut src, &mut head).map_err(|e| Fail::Err(Error::io("read layer", "input", e)))?;
    let compression = Compression::detect(&head[..n])
        .map_err(|why| Fail::Err(Error::new(ErrorKind::InvalidInput, "read layer", "input", why)))?;
    let mut buffered = BufReader::with_capacity(CHUNK, Cursor::new(&head[..n]).chain(&mut src));
    let mut decoder = compression.decoder(&mut buffered).map_err(|e| Fail::Err(decode_error(compression, e)))?;
    let mut total: u64 = 0;
    loop {
        let mut buf = out.buffer();
        let n = fill(&mut decoder, &mut buf).map_err(|e| Fail::Err(decode_error(compression, e)))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > limits.max_bytes {
            return Err(Fail::Err(Error::new(
                ErrorKind::LimitExceeded,
                "unpack",
                "layer",
                format!("uncompressed size exceeds the limit of {} bytes", limits.max_bytes),
            )));
        }
        buf.truncate(n);
        out.send(buf)?;
    }
    drop(decoder);
    // A decoder may stop at the end of its stream; anything after it is not part of the layer.
    let mut rest = [0u8; 1];
    if fill(&mut buffered, &mut rest).map_err(|e| Fail::Err(Error::io("read layer", "input", e)))? > 0 {
        return Err(Fail::Err(Error::new(
            ErrorKind::InvalidInput,
            "read layer",
            "input",
            "trailing data after the compressed stream",
        )));
    }
    Ok(compression)
}

struct PipeTx {
    tx: SyncSender<Vec<u8>>,
    recycled: Receiver<Vec<u8>>,
}

struct PipeRx {
    rx: Receiver<Vec<u8>>,
    recycle: SyncSender<Vec<u8>>,
}

/// A bounded channel of chunks between two stages; spent chunks travel back to be
/// reused instead of zeroing new ones.
fn pipe() -> (PipeTx, PipeRx) {
    let (tx, rx) = sync_channel(CHANNEL_DEPTH);
    let (recycle, recycled) = sync_channel(CHANNEL_DEPTH + 2);
    (PipeTx { tx, recycled }, PipeRx { rx, recycle })
}

impl PipeTx {
    fn buffer(&self) -> Vec<u8> {
        let mut buf = self.recycled.try_recv().unwrap_or_default();
        buf.resize(CHUNK, 0);
        buf
    }

    fn send(&self, buf: Vec<u8>) -> Result<(), Fail> {
        self.tx.send(buf).map_err(|_| Fail::ReceiverGone)
    }
}

impl PipeRx {
    fn reader(self, hash: bool) -> ChannelReader {
        ChannelReader {
            rx: self.rx,
            recycle: self.recycle,
            cur: Vec::new(),
            pos: 0,
            hasher: hash.then(Hasher::new),
            size: 0,
        }
    }
}

fn decode_error(c: Compression, e: io::Error) -> Error {
    let what = match c {
        Compression::None => "read layer",
        Compression::Gzip => "decompress gzip layer",
        Compression::Zstd => "decompress zstd layer",
    };
    let kind = match e.kind() {
        io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput | io::ErrorKind::UnexpectedEof => {
            ErrorKind::InvalidInput
        }
        _ => ErrorKind::Io,
    };
    let msg = match (c, e.kind()) {
        (_, io::ErrorKind::UnexpectedEof) => format!("truncated input ({e})"),
        // MultiGzDecoder reads past a member's end looking for the next one.
        (Compression::Gzip, _) if e.to_string().contains("invalid gzip header") => {
            "data after the gzip stream is not gzip (trailing junk or a corrupt member)".to_string()
        }
        (Compression::Zstd, _) if e.to_string().contains("Unknown frame descriptor") => {
            "data after the zstd stream is not zstd (trailing junk or a corrupt frame)".to_string()
        }
        _ => e.to_string(),
    };
    Error::new(kind, what, "input", msg)
}

/// Reads until `buf` is full or the stream ends.
fn fill(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// A stage's view of its input stream; the writer's also hashes it into the diffID.
struct ChannelReader {
    rx: Receiver<Vec<u8>>,
    recycle: SyncSender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
    hasher: Option<Hasher>,
    size: u64,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    if let Some(h) = self.hasher.as_mut() {
                        h.update(&chunk);
                    }
                    self.size += chunk.len() as u64;
                    let spent = std::mem::replace(&mut self.cur, chunk);
                    let _ = self.recycle.try_send(spent);
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Writes every entry; returns the entry count.
fn extract(reader: &mut ChannelReader, root: &Root, limits: &Limits, digests: &mut ContentDigests) -> Result<u64> {
    let mut tar = TarReader::new(reader, limits.max_header);
    let mut x = Extractor {
        root,
        cache: None,
        dir_times: HashMap::new(),
        buf: vec![0u8; CHUNK],
        digests,
        holes: 0,
        max_bytes: limits.max_bytes,
    };
    let mut entries: u64 = 0;
    while let Some(entry) = tar.next_entry().map_err(|e| tar_error(e, entries))? {
        entries += 1;
        if entries > limits.max_entries {
            return Err(Error::new(
                ErrorKind::LimitExceeded,
                "unpack",
                "layer",
                format!("more than {} entries", limits.max_entries),
            ));
        }
        x.entry(&mut tar, &entry)?;
    }
    x.finish()?;
    Ok(entries)
}

fn tar_error(e: TarError, entries: u64) -> Error {
    let subject = format!("tar entry #{}", entries + 1);
    match e {
        TarError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            Error::new(ErrorKind::InvalidInput, "read tar", subject, "stream ends early (truncated layer)")
        }
        TarError::Io(e) => Error::io("read tar", subject, e),
        TarError::Malformed(m) | TarError::Unsupported(m) => {
            Error::new(ErrorKind::InvalidInput, "read tar", subject, m)
        }
        TarError::Limit(m) => Error::new(ErrorKind::LimitExceeded, "read tar", subject, m),
    }
}

struct Extractor<'r> {
    root: &'r Root,
    /// The last parent directory opened; most entries share their predecessor's.
    cache: Option<(Vec<u8>, Subdir)>,
    /// Directory mtimes, applied at the end so writing children cannot move them.
    dir_times: HashMap<Vec<u8>, Meta>,
    buf: Vec<u8>,
    /// Content digests of the files written, for the layer's tree listing.
    digests: &'r mut ContentDigests,
    /// Bytes of sparse files' holes so far, and what they may add up to.
    holes: u64,
    max_bytes: u64,
}

/// Names an entry in messages, printable whatever bytes it holds.
fn entry_subject(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    let s: String =
        if s.len() > 200 { format!("{}…", s.chars().take(200).collect::<String>()) } else { s.into_owned() };
    format!("layer entry {s:?}")
}

impl Extractor<'_> {
    fn entry<R: Read>(&mut self, tar: &mut TarReader<R>, e: &Entry) -> Result<()> {
        let subject = || entry_subject(&e.path);
        let path = RelPath::parse(&e.path)
            .map_err(|rule| Error::new(ErrorKind::Unsafe, "unpack", subject(), rule.to_string()))?;
        let (parent, name) = path.split_last();
        let meta = Meta { uid: e.uid, gid: e.gid, mode: e.mode, mtime: e.mtime };
        let io_err = |err: io::Error| map_io(subject(), err);

        if let Some(target) = name.strip_prefix(b".wh.") {
            return self.whiteout(parent, target, &meta, &subject);
        }
        if name.is_empty() {
            if e.kind != EntryKind::Dir {
                return Err(Error::new(ErrorKind::Unsafe, "unpack", subject(), "entry would replace the layer root"));
            }
            let top = self.root.top().map_err(io_err)?;
            top.set_owner_mode(&meta).map_err(io_err)?;
            apply_xattrs(&e.xattrs, |k, v| top.set_xattr(k, v)).map_err(io_err)?;
            self.dir_times.insert(Vec::new(), meta);
            return Ok(());
        }

        let dir = self.parent(parent, &subject)?;
        match e.kind {
            EntryKind::Dir => {
                if dir.existing(name).map_err(io_err)? == crate::root::Existing::Other {
                    dir.remove(name).map_err(io_err)?;
                    self.cache = None;
                }
                let dir = self.parent(parent, &subject)?;
                dir.mkdir(name).map_err(io_err)?;
                let child = dir.child_dir(name).map_err(io_err)?;
                child.set_owner_mode(&meta).map_err(io_err)?;
                apply_xattrs(&e.xattrs, |k, v| child.set_xattr(k, v)).map_err(io_err)?;
                self.dir_times.insert(path.as_bytes().to_vec(), meta);
            }
            EntryKind::File => {
                let file = match dir.create_file(name) {
                    Ok(f) => f,
                    Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                        dir.remove(name).map_err(io_err)?;
                        self.cache = None;
                        self.parent(parent, &subject)?.create_file(name).map_err(io_err)?
                    }
                    Err(err) => return Err(io_err(err)),
                };
                match &e.sparse {
                    None => self.copy_data(tar, &file).map_err(io_err)?,
                    Some(map) => {
                        // Holes count against the layer's size limit as if written:
                        // whoever reads the file (a hash, a copy) reads them.
                        self.holes = self.holes.saturating_add(map.size.saturating_sub(e.size));
                        if self.holes > self.max_bytes {
                            return Err(Error::new(
                                ErrorKind::LimitExceeded,
                                "unpack",
                                subject(),
                                format!("sparse files larger than the limit of {} bytes", self.max_bytes),
                            ));
                        }
                        self.copy_sparse(tar, &file, map).map_err(io_err)?
                    }
                }
                set_owner_mode_fd(file.as_fd(), &meta).map_err(io_err)?;
                apply_xattrs(&e.xattrs, |k, v| set_xattr_fd(file.as_fd(), k, v)).map_err(io_err)?;
                set_mtime_fd(file.as_fd(), &meta).map_err(io_err)?;
            }
            EntryKind::Symlink => {
                self.replace(parent, name, &subject, |d| d.symlink(name, &e.link))?;
                let dir = self.parent(parent, &subject)?;
                dir.set_meta_at(name, &meta, true).map_err(io_err)?;
                apply_xattrs(&e.xattrs, |k, v| dir.set_xattr_at(name, k, v)).map_err(io_err)?;
            }
            EntryKind::Hardlink => {
                let target = RelPath::parse(&e.link).map_err(|rule| {
                    Error::new(ErrorKind::Unsafe, "unpack", subject(), format!("hardlink target: {rule}"))
                })?;
                if target == path {
                    return Ok(());
                }
                let (tparent, tname) = target.split_last();
                if tname.is_empty() {
                    return Err(Error::new(ErrorKind::Unsafe, "unpack", subject(), "hardlink to the layer root"));
                }
                let tdir = self.root.dir(tparent, false).map_err(|err| blocked(self.root, tparent, subject(), err))?;
                if tdir.existing(tname).map_err(io_err)? == crate::root::Existing::Nothing {
                    return Err(Error::new(
                        ErrorKind::InvalidInput,
                        "unpack",
                        subject(),
                        format!("hardlink target {:?} is not in this layer", String::from_utf8_lossy(&e.link)),
                    ));
                }
                self.replace(parent, name, &subject, |d| d.hardlink(name, &tdir, tname))?;
            }
            EntryKind::Char | EntryKind::Block | EntryKind::Fifo => {
                let kind = match e.kind {
                    EntryKind::Char => FileType::CharacterDevice,
                    EntryKind::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                self.replace(parent, name, &subject, |d| d.mknod(name, kind, e.dev.0, e.dev.1))?;
                let dir = self.parent(parent, &subject)?;
                dir.set_meta_at(name, &meta, false).map_err(io_err)?;
                apply_xattrs(&e.xattrs, |k, v| dir.set_xattr_at(name, k, v)).map_err(io_err)?;
            }
        }
        Ok(())
    }

    /// Creates a node with `make`; if something is in the way, removes it first (last entry wins).
    fn replace(
        &mut self,
        parent: &[u8],
        name: &[u8],
        subject: &dyn Fn() -> String,
        make: impl Fn(&Subdir) -> io::Result<()>,
    ) -> Result<()> {
        let dir = self.parent(parent, subject)?;
        match make(dir) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                dir.remove(name).map_err(|err| map_io(subject(), err))?;
                self.cache = None;
                let dir = self.parent(parent, subject)?;
                make(dir).map_err(|err| map_io(subject(), err))
            }
            Err(err) => Err(map_io(subject(), err)),
        }
    }

    fn whiteout(&mut self, parent: &[u8], target: &[u8], meta: &Meta, subject: &dyn Fn() -> String) -> Result<()> {
        if target == b".wh..opq" {
            let dir = self.parent(parent, subject)?;
            return dir.set_xattr(OPAQUE_XATTR, b"y").map_err(|err| map_io(subject(), err));
        }
        if target.starts_with(b".wh.") {
            // aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs): meaningless outside aufs, skipped as Docker does.
            return Ok(());
        }
        if target.is_empty() || target == b"." || target == b".." {
            return Err(Error::new(ErrorKind::Unsafe, "unpack", subject(), "whiteout names no file"));
        }
        self.replace(parent, target, subject, |d| d.mknod(target, FileType::CharacterDevice, 0, 0))?;
        let dir = self.parent(parent, subject)?;
        let wh_meta = Meta { mode: 0, ..*meta };
        dir.set_meta_at(target, &wh_meta, false).map_err(|err| map_io(subject(), err))
    }

    fn parent(&mut self, parent: &[u8], subject: &dyn Fn() -> String) -> Result<&Subdir> {
        let hit = matches!(&self.cache, Some((p, _)) if p.as_slice() == parent);
        if !hit {
            let dir = self.root.dir(parent, true).map_err(|err| blocked(self.root, parent, subject(), err))?;
            self.cache = Some((parent.to_vec(), dir));
        }
        Ok(&self.cache.as_ref().expect("just filled").1)
    }

    fn copy_data<R: Read>(&mut self, tar: &mut TarReader<R>, mut file: &File) -> io::Result<()> {
        let mut h = blake3::Hasher::new();
        loop {
            let n = tar.read_data(&mut self.buf)?;
            if n == 0 {
                let ino = rustix::fs::fstat(file)?.st_ino;
                self.digests.insert(ino, *h.finalize().as_bytes());
                return Ok(());
            }
            h.update(&self.buf[..n]);
            file.write_all(&self.buf[..n])?;
        }
    }

    /// Writes a sparse file's fragments where they go, leaving the rest as holes; its
    /// digest is of the whole content, holes read as zeros.
    fn copy_sparse<R: Read>(&mut self, tar: &mut TarReader<R>, file: &File, map: &SparseMap) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let mut h = blake3::Hasher::new();
        let zeros = [0u8; 64 << 10];
        let mut hashed = 0u64;
        let zero_to = |h: &mut blake3::Hasher, to: u64, hashed: &mut u64| {
            while *hashed < to {
                let n = (to - *hashed).min(zeros.len() as u64) as usize;
                h.update(&zeros[..n]);
                *hashed += n as u64;
            }
        };
        for &(offset, len) in &map.fragments {
            zero_to(&mut h, offset, &mut hashed);
            let mut at = offset;
            while at < offset + len {
                let want = (offset + len - at).min(self.buf.len() as u64) as usize;
                let n = tar.read_data(&mut self.buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "sparse data ends early"));
                }
                file.write_all_at(&self.buf[..n], at)?;
                h.update(&self.buf[..n]);
                at += n as u64;
            }
            hashed = at;
        }
        zero_to(&mut h, map.size, &mut hashed);
        file.set_len(map.size)?;
        let ino = rustix::fs::fstat(file)?.st_ino;
        self.digests.insert(ino, *h.finalize().as_bytes());
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.cache = None;
        let mut dirs: Vec<_> = self.dir_times.drain().collect();
        // Children sort after their parents; apply deepest first.
        dirs.sort_unstable_by(|a, b| b.0.cmp(&a.0));
        for (path, meta) in dirs {
            match self.root.dir(&path, false) {
                Ok(d) => d.set_mtime(&meta).map_err(|err| map_io(entry_subject(&path), err))?,
                // Replaced by a non-directory later in the layer: nothing to date.
                Err(err) if matches!(err.raw_os_error(), Some(e) if e == Errno::LOOP.raw_os_error() || e == Errno::NOTDIR.raw_os_error() || e == Errno::NOENT.raw_os_error()) =>
                    {}
                Err(err) => return Err(map_io(entry_subject(&path), err)),
            }
        }
        Ok(())
    }
}

/// Applies tar xattrs, dropping overlay's private ones: a layer must not forge overlay state.
fn apply_xattrs(xattrs: &[(Vec<u8>, Vec<u8>)], mut set: impl FnMut(&[u8], &[u8]) -> io::Result<()>) -> io::Result<()> {
    for (k, v) in xattrs {
        if k.starts_with(b"trusted.overlay.") || k.starts_with(b"user.overlay.") {
            continue;
        }
        // Which attribute, in words: a bare errno says nothing of the entry's xattrs.
        set(k, v).map_err(|e| {
            let why = match e.raw_os_error() {
                Some(n) if n == Errno::NOTSUP.raw_os_error() => "the filesystem does not support it".to_string(),
                Some(n) if n == Errno::RANGE.raw_os_error() || n == Errno::TOOBIG.raw_os_error() => {
                    "its name or value is too long".to_string()
                }
                Some(n) if n == Errno::INVAL.raw_os_error() || n == Errno::PERM.raw_os_error() => {
                    "the kernel refuses that name".to_string()
                }
                _ => e.to_string(),
            };
            io::Error::other(format!("extended attribute {:?}: {why}", String::from_utf8_lossy(k)))
        })?;
    }
    Ok(())
}

/// Names the component that stopped a lookup beneath the root, if one did.
fn blocked(root: &Root, rel: &[u8], subject: String, err: io::Error) -> Error {
    match root.blocking_component(rel) {
        Some((comp, true)) => {
            Error::new(ErrorKind::Unsafe, "unpack", subject, format!("path goes through symlink {comp:?}"))
        }
        Some((comp, false)) => {
            Error::new(ErrorKind::InvalidInput, "unpack", subject, format!("{comp:?} is not a directory"))
        }
        None => map_io(subject, err),
    }
}

fn map_io(subject: String, err: io::Error) -> Error {
    match err.raw_os_error() {
        Some(e) if e == Errno::LOOP.raw_os_error() || e == Errno::XDEV.raw_os_error() => {
            Error::new(ErrorKind::Unsafe, "unpack", subject, "path goes through a symlink")
        }
        Some(e) if e == Errno::NOTDIR.raw_os_error() => {
            Error::new(ErrorKind::InvalidInput, "unpack", subject, "a parent of this path is not a directory")
        }
        _ => Error::io("unpack", subject, err),
    }
}
