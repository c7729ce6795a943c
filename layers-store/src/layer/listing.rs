//! A layer dir's tree, recorded when the layer is made so `fsck` can prove nothing
//! changed it since: one line per node, sorted by (escaped) path, so parents come
//! before their children, with its type, mode, owner, size, content digest, link target, device
//! number and every extended attribute (whiteouts are 0/0 char devices, opaque dirs
//! carry `trusted.overlay.opaque`). Mtimes are left out: the tar's are restored
//! after the fact and say nothing about tampering with content.
//!
//! Content is hashed with BLAKE3 (`b3:` in the listing): several times faster than
//! sha256 here, and the listing only has to show a change, not name content across
//! systems. A file with holes is hashed by its data and the length of its zero runs
//! (`z3:`, [`crate::layer::sparse`]): a 60 GB sparse file costs its few bytes of data.
//! A layer the unpacker writes gets its listing from what it wrote, as it wrote it
//! ([`crate::layer::written`]): its files hashed as their bytes passed, no file read
//! back and no path looked up again; a committed upper dir gets its listing from
//! what the commit's tar read, in the same walk. Which of the two schemes a file gets
//! follows where its holes are; `fsck` compares a file whose record used the other
//! one by the record's ([`Listing::reconciled`]).
//!
//! The listing is kept zstd-compressed in the metadata; its digest names it.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};

use crate::content::digest::Digest;
use crate::error::{Error, ErrorKind, Result};

/// A file's content digest, by the scheme that hashed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileDigest {
    /// BLAKE3 of the bytes (`b3:`).
    Plain([u8; 32]),
    /// Blocks and zero runs (`z3:`), for files with holes.
    Runs([u8; 32]),
}

impl FileDigest {
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let (prefix, d) = match self {
            FileDigest::Plain(d) => (b"b3:", d),
            FileDigest::Runs(d) => (b"z3:", d),
        };
        out.extend_from_slice(prefix);
        out.extend(d.iter().flat_map(|b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]));
    }
}

/// A layer dir's listing and its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// sha256 of the listing.
    pub digest: Digest,
    /// The listing, one line per node.
    pub listing: Vec<u8>,
}

/// `%XX` for bytes that would break a line's fields.
pub(crate) fn escape(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        if b <= b' ' || b >= 0x7f || b == b'%' {
            out.extend_from_slice(format!("%{b:02x}").as_bytes());
        } else {
            out.push(b);
        }
    }
}

/// The bytes `escape` turned into `%XX` back.
fn unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let hex =
            s.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
        match (s[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// The digest of the file at `p`: by its zero runs if it has holes (`runs` says
/// which scheme instead, to compare with a record).
fn content_digest(p: &Path, runs: Option<bool>) -> std::io::Result<FileDigest> {
    let f = fs::File::options().read(true).custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32).open(p)?;
    let size = f.metadata()?.len();
    if runs.map_or_else(|| crate::layer::sparse::has_hole(&f, size), Ok)? {
        return Ok(FileDigest::Runs(crate::layer::sparse::of_file(&f, size)?));
    }
    Ok(FileDigest::Plain(crate::content::content_hash::ContentHash::of_reader(f)?.0))
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
        'f' => content_digest(p, None).map_err(err)?.write(out),
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
    fn run(&self, root: &Path) -> Result<Vec<Vec<u8>>> {
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
            let listed = self.list(root, &dir, &mut out);
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
    fn list(&self, root: &Path, dir: &Path, out: &mut Vec<Vec<u8>>) -> Result<()> {
        let err = |e| Error::io("read layer tree", dir.display(), e);
        let mut subdirs = Vec::new();
        for entry in fs::read_dir(dir).map_err(err)? {
            let p = entry.map_err(err)?.path();
            let m = fs::symlink_metadata(&p).map_err(|e| Error::io("read layer tree", p.display(), e))?;
            let mut l = Vec::with_capacity(160);
            line(&mut l, root, &p, &m)?;
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

impl Listing {
    /// Lists the tree at `root` (a layer dir nobody writes to), reading every file.
    /// Directories are listed by as many threads as there are cores (at most 4); the
    /// lines are then sorted by path, which keeps parents before their children.
    pub fn of(root: &Path) -> Result<Listing> {
        let m = fs::symlink_metadata(root).map_err(|e| Error::io("read layer tree", root.display(), e))?;
        let mut first = Vec::new();
        line(&mut first, root, root, &m)?;
        let work = Work { queue: Mutex::new((vec![root.to_path_buf()], 0)), ready: Condvar::new() };
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
        let mut lines: Vec<Vec<u8>> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads).map(|_| s.spawn(|| work.run(root))).collect();
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
        Ok(Listing::from_lines(lines))
    }

    /// The listing of these lines, sorted.
    fn from_lines(lines: Vec<Vec<u8>>) -> Listing {
        let listing = lines.concat();
        Listing { digest: Digest::of(&listing), listing }
    }

    /// The first line where `self` (as recorded) and `now` differ, as its path (the
    /// recorded line's, or the new one's where the record has ended).
    pub fn first_difference(&self, now: &Listing) -> Option<String> {
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

    /// `now` with each file whose recorded line used the other content scheme
    /// (`b3:`/`z3:`, chosen by where the file's holes were) hashed again by the
    /// record's scheme, so a layout change alone is no difference; content still is.
    pub fn reconciled(&self, mut now: Listing, root: &Path) -> Result<Listing> {
        let field = |l: &[u8], i: usize| l.split(|b| *b == b' ').nth(i).map(<[u8]>::to_vec);
        let recorded: HashMap<Vec<u8>, Vec<u8>> = self
            .listing
            .split(|c| *c == b'\n')
            .filter(|l| field(l, 1).as_deref() == Some(b"f"))
            .filter_map(|l| Some((field(l, 0)?, field(l, 6)?)))
            .collect();
        let mut changed = false;
        let mut lines: Vec<Vec<u8>> = Vec::new();
        for l in now.listing.split(|c| *c == b'\n').filter(|l| !l.is_empty()) {
            let (Some(path), Some(hash)) = (field(l, 0), field(l, 6)) else {
                lines.push(l.to_vec());
                continue;
            };
            let other =
                recorded.get(&path).filter(|r| field(l, 1).as_deref() == Some(b"f") && r.get(..3) != hash.get(..3));
            let Some(other) = other else {
                lines.push(l.to_vec());
                continue;
            };
            let runs = other.starts_with(b"z3:");
            let rel = if path == b"." { Vec::new() } else { unescape(&path) };
            let p = root.join(std::ffi::OsStr::from_bytes(&rel));
            let d = content_digest(&p, Some(runs)).map_err(|e| Error::io("read layer tree", p.display(), e))?;
            let mut again = Vec::new();
            d.write(&mut again);
            let fields: Vec<&[u8]> = l.split(|b| *b == b' ').collect();
            let mut line = fields[..6].join(&b' ');
            line.push(b' ');
            line.extend_from_slice(&again);
            for f in &fields[7..] {
                line.push(b' ');
                line.extend_from_slice(f);
            }
            lines.push(line);
            changed = true;
        }
        if changed {
            let listing: Vec<u8> = lines
                .into_iter()
                .flat_map(|mut l| {
                    l.push(b'\n');
                    l
                })
                .collect();
            now = Listing { digest: Digest::of(&listing), listing };
        }
        Ok(now)
    }

    /// A recorded listing back; `None` if it does not match its digest.
    pub(crate) fn unpacked(digest: Digest, packed: &[u8]) -> Option<Listing> {
        let listing = zstd::decode_all(packed).ok()?;
        (Digest::of(&listing) == digest).then_some(Listing { digest, listing })
    }
}

/// A listing as the metadata keeps it: zstd-compressed, named by the digest of its
/// plain bytes. A staged layer holds only this until its commit, so an image's
/// listings cost their compressed size, not their plain one, whatever its layer count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    /// sha256 of the plain listing.
    pub digest: Digest,
    /// Its zstd frame.
    pub bytes: Vec<u8>,
}

/// Packs a listing given in pieces, hashing and compressing each as it comes: the
/// plain listing is never whole in memory.
pub(crate) struct Packer {
    hasher: crate::content::digest::Hasher,
    encoder: zstd::stream::raw::Encoder<'static>,
    out: Vec<u8>,
}

impl Packer {
    pub(crate) fn new() -> Packer {
        use zstd::stream::raw::CParameter;
        // Level 3 is zstd's default. A sorted listing's matches are near (the lines
        // before, sharing their paths' prefixes): a 128 KiB window and 16 KiB tables
        // pack it as well as zstd's default 2 MiB window and larger tables do (on the
        // pull bench's layers, 64K-entry tables gave 0.97-1.00x the default's size and
        // these 4K-entry ones 0.95-1.00x that), so the layers unpacked at once do not
        // each hold megabytes. A context and its parameters only fail to be made out
        // of memory.
        let mut encoder = zstd::stream::raw::Encoder::new(3).expect("a zstd context");
        for p in [CParameter::WindowLog(17), CParameter::HashLog(12), CParameter::ChainLog(12)] {
            encoder.set_parameter(p).expect("a valid zstd parameter");
        }
        Packer { hasher: crate::content::digest::Hasher::new(), encoder, out: Vec::new() }
    }

    /// Appends `bytes` to the listing.
    pub(crate) fn add(&mut self, mut bytes: &[u8]) {
        use zstd::stream::raw::{InBuffer, Operation, OutBuffer};
        self.hasher.update(bytes);
        while !bytes.is_empty() {
            self.out.reserve(bytes.len().min(64 << 10) / 2 + 1024);
            let mut input = InBuffer::around(bytes);
            let at = self.out.len();
            let mut output = OutBuffer::around_pos(&mut self.out, at);
            // Compressing into memory with room reserved fails only on a bug of ours.
            let _ = self.encoder.run(&mut input, &mut output).expect("zstd compresses into memory");
            let used = input.pos();
            bytes = &bytes[used..];
        }
    }

    pub(crate) fn finish(mut self) -> Packed {
        use zstd::stream::raw::{Operation, OutBuffer};
        loop {
            self.out.reserve(4096);
            let at = self.out.len();
            let mut output = OutBuffer::around_pos(&mut self.out, at);
            let left = self.encoder.finish(&mut output, true).expect("zstd compresses into memory");
            if left == 0 {
                break;
            }
        }
        self.out.shrink_to_fit();
        Packed { digest: self.hasher.finish(), bytes: self.out }
    }
}

impl Packed {
    /// Debug builds: panics unless this listing of the layer `what` equals a walk of
    /// `dir`. With `reconcile`, a file recorded by the other hashing scheme is compared
    /// by the record's (a commit hashes every file whole; a walk hashes one with holes
    /// by its runs).
    #[cfg(debug_assertions)]
    pub(crate) fn assert_walk_agrees(&self, dir: &Path, what: impl std::fmt::Display, reconcile: bool) -> Result<()> {
        let walked = Listing::of(dir)?;
        let mut recorded = Listing::unpacked(self.digest, &self.bytes).expect("a packed listing unpacks");
        if reconcile {
            recorded = walked.reconciled(recorded, dir)?;
        }
        if let Some(path) = walked.first_difference(&recorded) {
            panic!("the recorded listing of layer {what} differs from the walk at {path:?}");
        }
        Ok(())
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
        let before = Listing::of(d.path()).unwrap();
        assert_eq!(Listing::of(d.path()).unwrap(), before, "the same tree lists the same");
        fs::write(d.path().join("a/b/f"), "two").unwrap();
        let after = Listing::of(d.path()).unwrap();
        assert_ne!(after.digest, before.digest);
        assert_eq!(before.first_difference(&after).as_deref(), Some("a/b/f"));
        fs::write(d.path().join("a/b/f"), "one").unwrap();
        fs::write(d.path().join("a/new"), "").unwrap();
        assert_eq!(before.first_difference(&Listing::of(d.path()).unwrap()).as_deref(), Some("a/new"));
        assert!(
            String::from_utf8_lossy(&before.listing).contains("link l 777 "),
            "{}",
            String::from_utf8_lossy(&before.listing)
        );
        assert!(String::from_utf8_lossy(&before.listing).contains(" a%20b%0a"));
        let mut packer = Packer::new();
        packer.add(&before.listing);
        let packed = packer.finish();
        assert_eq!(packed.digest, before.digest);
        assert_eq!(Listing::unpacked(before.digest, &packed.bytes), Some(before.clone()));
        assert_eq!(Listing::unpacked(after.digest, &packed.bytes), None);
    }

    #[test]
    fn a_file_that_only_gained_or_lost_holes_is_no_difference() {
        use std::os::unix::fs::FileExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        let mut content = vec![0u8; 1 << 20];
        content[..4].copy_from_slice(b"head");
        fs::write(&p, &content).unwrap();
        let dense = Listing::of(d.path()).unwrap();
        assert!(String::from_utf8_lossy(&dense.listing).contains(" b3:"));
        // The same content, written with a hole.
        fs::remove_file(&p).unwrap();
        let f = fs::File::create(&p).unwrap();
        f.write_all_at(b"head", 0).unwrap();
        f.set_len(1 << 20).unwrap();
        drop(f);
        let holed = Listing::of(d.path()).unwrap();
        if !String::from_utf8_lossy(&holed.listing).contains(" z3:") {
            eprintln!("SKIPPED: this filesystem keeps no holes");
            return;
        }
        assert_ne!(holed.digest, dense.digest);
        assert_eq!(dense.reconciled(holed.clone(), d.path()).unwrap().digest, dense.digest);
        assert_eq!(holed.reconciled(Listing::of(d.path()).unwrap(), d.path()).unwrap().digest, holed.digest);
        // Content changed as well: still a difference.
        fs::OpenOptions::new().write(true).open(&p).unwrap().write_all_at(b"x", 500_000).unwrap();
        let changed = dense.reconciled(Listing::of(d.path()).unwrap(), d.path()).unwrap();
        assert_ne!(changed.digest, dense.digest);
        assert_eq!(dense.first_difference(&changed).as_deref(), Some("f"));
    }
}
