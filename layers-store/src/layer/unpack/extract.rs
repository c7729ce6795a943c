//! The writing end of an unpack: tar entries into a tree beneath its root (openat2,
//! no symlink followed out), OCI whiteouts made overlay whiteouts, and each node
//! recorded for the layer's tree listing as it is finished, file contents hashed as
//! they are written ([`Written`]).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::Arc;

use rustix::fs::FileType;
use rustix::io::Errno;

use super::attrs::{apply_xattrs, create_mode, finish_file};
use super::files::{Done, Files, NewJob, MAX_FILE};
use super::{Backlog, Limits, CHUNK};
use crate::error::{Error, ErrorKind, Result};
use crate::fsroot::{Meta, RelPath, Root, Subdir};
use crate::layer::listing::FileDigest;
use crate::layer::sparse::RunHasher;
use crate::layer::tar::{Entry, EntryKind, TarError, TarReader};
use crate::layer::tar_sparse::SparseMap;
use crate::layer::written::{Node, Tail, Written};

/// The opaque-directory xattr of the encoding this process writes (a store it opens
/// has the same: `Store::open` refuses any other).
fn opaque_xattr() -> &'static [u8] {
    crate::layer::encoding::Encoding::of_process().opaque_xattr()
}

/// Threads that make small files while the calling thread parses the tar: two, as
/// files in different directories are made in parallel (a pull of 50,000 small files
/// in 500 directories: 0.36 s with one, 0.34 s with two, 0.42 s with none).
const WRITERS: usize = 2;

/// Writes every entry of the tar stream `reader` into `root`; returns the entry count.
pub(super) fn extract(
    reader: impl Read,
    backlog: &Backlog,
    root: &Root,
    limits: &Limits,
    written: &mut Written,
) -> Result<u64> {
    std::thread::scope(|s| {
        let files = Files::new(s, WRITERS);
        let mut x = Extractor {
            root,
            cache: None,
            dir_times: HashMap::new(),
            buf: vec![0u8; CHUNK],
            written,
            holes: 0,
            max_bytes: limits.max_bytes,
            max_path: limits.max_path,
            files,
            backlog,
            failed: None,
        };
        let mut tar = TarReader::new(reader, limits.max_header);
        let result = x.entries(&mut tar, limits);
        x.files.close(|d| record(x.written, &mut x.failed, d));
        // The first failing entry in tar order is the story, whichever thread saw it.
        match (result, x.failed.take()) {
            (Err((i, e)), Some((j, _))) if i < j => Err(e),
            (_, Some((_, e))) | (Err((_, e)), None) => Err(e),
            (Ok(entries), None) => x.done(entries),
        }
    })
}

/// Records what a writer made, or keeps its error if it is the earliest so far.
fn record(written: &mut Written, failed: &mut Option<(u64, Error)>, done: Done) {
    match done.node {
        Ok(node) => written.set(&done.path, node),
        Err(err) if failed.as_ref().is_none_or(|(i, _)| done.index < *i) => {
            *failed = Some((done.index, map_io(entry_subject(&done.path), err)));
        }
        Err(_) => {}
    }
}

impl Extractor<'_, '_, '_> {
    /// Writes the entries; an error comes with the number of the entry it belongs to.
    fn entries<R: Read>(&mut self, tar: &mut TarReader<R>, limits: &Limits) -> Result<u64, (u64, Error)> {
        let mut entries: u64 = 0;
        while let Some(entry) = tar.next_entry().map_err(|e| (entries + 1, tar_error(e, entries)))? {
            entries += 1;
            if entries > limits.max_entries {
                return Err((
                    entries,
                    Error::new(
                        ErrorKind::LimitExceeded,
                        "unpack",
                        "layer",
                        format!("more than {} entries", limits.max_entries),
                    ),
                ));
            }
            self.entry(tar, &entry, entries).map_err(|e| (entries, e))?;
            self.files.poll(|d| record(self.written, &mut self.failed, d));
            if self.failed.is_some() {
                return Ok(entries);
            }
        }
        self.settle();
        self.finish().map_err(|e| (entries, e))?;
        Ok(entries)
    }

    /// The end of a whole unpack: the root recorded if the tar never named it.
    fn done(&mut self, entries: u64) -> Result<u64> {
        if !self.written.has(b"") {
            // The root as the store made it: the tar never named it.
            let top = self.root.top().map_err(|e| Error::io("unpack", "layer root", e))?;
            self.written.set(b"", Node::of_dir(&top).map_err(|e| Error::io("unpack", "layer root", e))?);
        }
        Ok(entries)
    }

    /// Waits for every file in flight, recording each.
    fn settle(&mut self) {
        self.files.settle(|d| record(self.written, &mut self.failed, d));
    }
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

struct Extractor<'r, 'scope, 'env> {
    root: &'r Root,
    /// The last parent directory opened; most entries share their predecessor's.
    cache: Option<(Vec<u8>, Arc<Subdir>)>,
    /// Directory mtimes, applied at the end so writing children cannot move them.
    dir_times: HashMap<Vec<u8>, Meta>,
    buf: Vec<u8>,
    /// The layer's tree listing, kept as it is written.
    written: &'r mut Written,
    /// Bytes of sparse files' holes so far, and what they may add up to.
    holes: u64,
    max_bytes: u64,
    max_path: usize,
    /// Small files being made by the writers.
    files: Files<'scope, 'env>,
    /// Whether this thread is behind the decoder (then it hands small files off).
    backlog: &'r Backlog,
    /// The earliest writer's error, with its entry's number.
    failed: Option<(u64, Error)>,
}

/// Names an entry in messages, printable whatever bytes it holds.
fn entry_subject(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    let s: String =
        if s.len() > 200 { format!("{}…", s.chars().take(200).collect::<String>()) } else { s.into_owned() };
    format!("layer entry {s:?}")
}

/// A member name as Docker, containerd and GNU tar read it: a leading `/` is
/// dropped, so `/etc/passwd` is `etc/passwd` beneath the layer root (still checked
/// for `..` and length by `RelPath`).
fn beneath(raw: &[u8]) -> &[u8] {
    let start = raw.iter().position(|&b| b != b'/').unwrap_or(raw.len());
    &raw[start..]
}

impl Extractor<'_, '_, '_> {
    /// Writes entry number `index` (from 1) of the stream.
    fn entry<R: Read>(&mut self, tar: &mut TarReader<R>, e: &Entry, index: u64) -> Result<()> {
        let subject = || entry_subject(&e.path);
        let path = RelPath::parse(beneath(&e.path))
            .map_err(|rule| Error::new(ErrorKind::Unsafe, "unpack", subject(), rule.to_string()))?;
        self.fits(&path, &subject)?;
        if self.files.touches(path.as_bytes()) {
            self.settle();
        }
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
            self.written.set(b"", Node::of_dir(&top).map_err(io_err)?);
            self.dir_times.insert(Vec::new(), meta);
            return Ok(());
        }

        let dir = self.parent(parent, &subject)?;
        match e.kind {
            EntryKind::Dir => {
                if dir.existing(name).map_err(io_err)? == crate::fsroot::Existing::Other {
                    self.settle();
                    dir.remove(name).map_err(io_err)?;
                    self.written.remove_tree(path.as_bytes());
                    self.cache = None;
                }
                let dir = self.parent(parent, &subject)?;
                dir.mkdir(name).map_err(io_err)?;
                let child = dir.child_dir(name).map_err(io_err)?;
                child.set_owner_mode(&meta).map_err(io_err)?;
                apply_xattrs(&e.xattrs, |k, v| child.set_xattr(k, v)).map_err(io_err)?;
                self.written.set(path.as_bytes(), Node::of_dir(&child).map_err(io_err)?);
                self.dir_times.insert(path.as_bytes().to_vec(), meta);
            }
            EntryKind::File => {
                if e.sparse.is_none()
                    && e.size <= MAX_FILE
                    && self.backlog.behind()
                    && !self.written.has(path.as_bytes())
                {
                    // Nothing is at the path (no record, none in flight): a writer makes it.
                    let name_at = path.as_bytes().len() - name.len();
                    let path = path.as_bytes().to_vec();
                    let job = NewJob { index, path, name_at, dir, meta, xattrs: e.xattrs.clone() };
                    let (written, failed) = (&mut *self.written, &mut self.failed);
                    return self
                        .files
                        .add(job, e.size as usize, |buf| read_all(tar, buf), |d| record(written, failed, d))
                        .map_err(io_err);
                }
                let file = match dir.create_file(name, create_mode(&meta)) {
                    Ok(f) => f,
                    Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                        self.settle();
                        dir.remove(name).map_err(io_err)?;
                        self.written.remove_tree(path.as_bytes());
                        self.cache = None;
                        self.parent(parent, &subject)?.create_file(name, create_mode(&meta)).map_err(io_err)?
                    }
                    Err(err) => return Err(io_err(err)),
                };
                let digest = match &e.sparse {
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
                };
                let node = finish_file(&file, &meta, &e.xattrs, digest).map_err(io_err)?;
                self.written.set(path.as_bytes(), node);
            }
            EntryKind::Symlink => {
                self.replace(path.as_bytes(), &subject, |d| d.symlink(name, &e.link))?;
                let dir = self.parent(parent, &subject)?;
                dir.set_meta_at(name, &meta, true).map_err(io_err)?;
                apply_xattrs(&e.xattrs, |k, v| dir.set_xattr_at(name, k, v)).map_err(io_err)?;
                let node = node_at(&dir, name, Tail::Link(e.link.clone())).map_err(io_err)?;
                self.written.set(path.as_bytes(), node);
            }
            EntryKind::Hardlink => {
                // The target may be in flight, and is recorded only once made.
                self.settle();
                let target = RelPath::parse(beneath(&e.link)).map_err(|rule| {
                    Error::new(ErrorKind::Unsafe, "unpack", subject(), format!("hardlink target: {rule}"))
                })?;
                self.fits(&target, &subject)?;
                if target == path {
                    return Ok(());
                }
                let (tparent, tname) = target.split_last();
                if tname.is_empty() {
                    return Err(Error::new(ErrorKind::Unsafe, "unpack", subject(), "hardlink to the layer root"));
                }
                let tdir = self.root.dir(tparent, false).map_err(|err| blocked(self.root, tparent, subject(), err))?;
                if tdir.existing(tname).map_err(io_err)? == crate::fsroot::Existing::Nothing {
                    return Err(Error::new(
                        ErrorKind::InvalidInput,
                        "unpack",
                        subject(),
                        format!("hardlink target {:?} is not in this layer", String::from_utf8_lossy(&e.link)),
                    ));
                }
                self.replace(path.as_bytes(), &subject, |d| d.hardlink(name, &tdir, tname))?;
                if !self.written.link(path.as_bytes(), target.as_bytes()) {
                    // Only a node this layer wrote can be linked to (checked above).
                    return Err(Error::new(
                        ErrorKind::InvalidInput,
                        "unpack",
                        subject(),
                        "hardlink target has no record",
                    ));
                }
            }
            // No process in a user namespace may make a device node (whiteouts aside):
            // a rootless store leaves them out, as Docker's and containers/storage's
            // unpackers do in one. The layer's blob and diffID keep them.
            EntryKind::Char | EntryKind::Block if !crate::layer::encoding::in_initial_user_namespace() => {}
            EntryKind::Char | EntryKind::Block | EntryKind::Fifo => {
                let kind = match e.kind {
                    EntryKind::Char => FileType::CharacterDevice,
                    EntryKind::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                self.replace(path.as_bytes(), &subject, |d| d.mknod(name, kind, e.dev.0, e.dev.1))?;
                let dir = self.parent(parent, &subject)?;
                dir.set_meta_at(name, &meta, false).map_err(io_err)?;
                apply_xattrs(&e.xattrs, |k, v| dir.set_xattr_at(name, k, v)).map_err(io_err)?;
                let node = node_at(&dir, name, Tail::Nothing).map_err(io_err)?;
                self.written.set(path.as_bytes(), node);
            }
        }
        Ok(())
    }

    /// Creates the node at `path` with `make`; if something is in the way, removes it
    /// first (last entry wins).
    fn replace(
        &mut self,
        path: &[u8],
        subject: &dyn Fn() -> String,
        make: impl Fn(&Subdir) -> io::Result<()>,
    ) -> Result<()> {
        let (parent, name) = crate::fsroot::split_last(path);
        let dir = self.parent(parent, subject)?;
        match make(&dir) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                // What is removed may be a directory with files in flight beneath it.
                self.settle();
                dir.remove(name).map_err(|err| map_io(subject(), err))?;
                self.written.remove_tree(path);
                self.cache = None;
                let dir = self.parent(parent, subject)?;
                make(&dir).map_err(|err| map_io(subject(), err))
            }
            Err(err) => Err(map_io(subject(), err)),
        }
    }

    fn whiteout(&mut self, parent: &[u8], target: &[u8], meta: &Meta, subject: &dyn Fn() -> String) -> Result<()> {
        if target == b".wh..opq" {
            let dir = self.parent(parent, subject)?;
            dir.set_xattr(opaque_xattr(), b"y").map_err(|err| map_io(subject(), err))?;
            let node = Node::of_dir(&dir).map_err(|err| map_io(subject(), err))?;
            self.written.set(parent, node);
            return Ok(());
        }
        if target.starts_with(b".wh.") {
            // aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs): meaningless outside aufs, skipped as Docker does.
            return Ok(());
        }
        if target.is_empty() || target == b"." || target == b".." {
            return Err(Error::new(ErrorKind::Unsafe, "unpack", subject(), "whiteout names no file"));
        }
        let path = crate::fsroot::join(parent, target);
        if self.files.touches(&path) {
            self.settle();
        }
        self.replace(&path, subject, |d| d.mknod(target, FileType::CharacterDevice, 0, 0))?;
        let dir = self.parent(parent, subject)?;
        let wh_meta = Meta { mode: 0, ..*meta };
        dir.set_meta_at(target, &wh_meta, false).map_err(|err| map_io(subject(), err))?;
        let node = node_at(&dir, target, Tail::Nothing).map_err(|err| map_io(subject(), err))?;
        self.written.set(&path, node);
        Ok(())
    }

    /// Refuses a path longer than the store's location allows (`Limits::max_path`).
    fn fits(&self, path: &RelPath, subject: &dyn Fn() -> String) -> Result<()> {
        let (n, max) = (path.as_bytes().len(), self.max_path);
        if n > max {
            return Err(Error::new(
                ErrorKind::LimitExceeded,
                "unpack",
                subject(),
                format!(
                    "path of {n} bytes is longer than this store's limit of {max} (PATH_MAX less the store's own path)"
                ),
            ));
        }
        Ok(())
    }

    fn parent(&mut self, parent: &[u8], subject: &dyn Fn() -> String) -> Result<Arc<Subdir>> {
        match &self.cache {
            Some((p, dir)) if p.as_slice() == parent => Ok(Arc::clone(dir)),
            _ => {
                let dir = self.root.dir(parent, true).map_err(|err| blocked(self.root, parent, subject(), err))?;
                self.record_implicit(parent).map_err(|err| map_io(subject(), err))?;
                let dir = Arc::new(dir);
                self.cache = Some((parent.to_vec(), Arc::clone(&dir)));
                Ok(dir)
            }
        }
    }

    fn copy_data<R: Read>(&mut self, tar: &mut TarReader<R>, mut file: &File) -> io::Result<FileDigest> {
        let mut h = blake3::Hasher::new();
        loop {
            let n = tar.read_data(&mut self.buf)?;
            if n == 0 {
                return Ok(FileDigest::Plain(*h.finalize().as_bytes()));
            }
            h.update(&self.buf[..n]);
            file.write_all(&self.buf[..n])?;
        }
    }

    /// Writes a sparse file's fragments where they go, leaving the rest as holes; its
    /// digest counts the holes' lengths, never reads or hashes their zeros.
    fn copy_sparse<R: Read>(&mut self, tar: &mut TarReader<R>, file: &File, map: &SparseMap) -> io::Result<FileDigest> {
        use std::os::unix::fs::FileExt;
        let mut h = RunHasher::default();
        let mut hashed = 0u64;
        for &(offset, len) in &map.fragments {
            h.zeros(offset.saturating_sub(hashed));
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
        h.zeros(map.size.saturating_sub(hashed));
        file.set_len(map.size)?;
        Ok(FileDigest::Runs(h.finish()))
    }

    /// Records the directories of `parent` that have no record: made just now as
    /// parents of an entry (the tar named none of them before).
    fn record_implicit(&mut self, parent: &[u8]) -> io::Result<()> {
        if parent.is_empty() || self.written.has(parent) {
            return Ok(());
        }
        let mut end = 0;
        while end < parent.len() {
            end = parent[end..].iter().position(|&b| b == b'/').map_or(parent.len(), |i| end + i);
            let dir = &parent[..end];
            if !self.written.has(dir) {
                let node = Node::of_dir(&self.root.dir(dir, false)?)?;
                self.written.set(dir, node);
            }
            end += 1;
        }
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

/// Reads a file's data, all `buf.len()` bytes of it.
fn read_all<R: Read>(tar: &mut TarReader<R>, buf: &mut [u8]) -> io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        match tar.read_data(&mut buf[got..])? {
            0 => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file data shorter than its header says")),
            n => got += n,
        }
    }
    Ok(())
}

/// The node `name` of `dir` as it is now, not following it.
fn node_at(dir: &Subdir, name: &[u8], tail: Tail) -> io::Result<Node> {
    Ok(Node::of(&dir.stat_at(name)?, tail, dir.xattrs_at(name)?))
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
