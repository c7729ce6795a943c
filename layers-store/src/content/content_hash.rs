//! BLAKE3 of a file's content: how the build cache and layer trees know a file.
//! Several times faster than sha256 (a build hashes its whole context), never an
//! OCI digest, and printed `blake3:<hex>` so it is not taken for one. A large file
//! is hashed on several cores at once: BLAKE3 is a tree, and its subtrees can be
//! hashed apart and merged into the same root as a sequential pass gives.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

use blake3::hazmat::{left_subtree_len, merge_subtrees_non_root, merge_subtrees_root, ChainingValue, HasherExt, Mode};

use crate::content::digest::{parse_hex, to_hex};

/// The BLAKE3 hash of some content.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentHash(pub [u8; 32]);

/// Below this a file is hashed by one thread: splitting costs more than it saves.
pub const PARALLEL_MIN: u64 = 16 << 20;
/// Subtrees of at most this many bytes are one thread's unit of work.
const PIECE: u64 = 4 << 20;

impl ContentHash {
    const PREFIX: &'static str = "blake3:";

    /// The hash of everything `input` yields.
    pub fn of_reader(input: impl Read) -> io::Result<ContentHash> {
        Self::of_reader_with(input, &mut vec![0u8; 256 << 10])
    }

    /// [`ContentHash::of_reader`] reading through `buf` (reused across many small files).
    pub fn of_reader_with(mut input: impl Read, buf: &mut [u8]) -> io::Result<ContentHash> {
        let mut h = blake3::Hasher::new();
        loop {
            match input.read(buf) {
                Ok(0) => return Ok(ContentHash(*h.finalize().as_bytes())),
                Ok(n) => {
                    h.update(&buf[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The hash of the first `len` bytes of `file`, on up to `threads` threads. A file
    /// shorter than `len` is an error (it changed since its size was read).
    pub fn of_file(file: &File, len: u64, threads: usize) -> io::Result<ContentHash> {
        Self::of_file_in(file, len, threads, PIECE)
    }

    fn of_file_in(file: &File, len: u64, threads: usize, piece: u64) -> io::Result<ContentHash> {
        if len < PARALLEL_MIN.min(piece * 2) || threads <= 1 {
            let mut h = blake3::Hasher::new();
            read_range(file, 0, len, &mut vec![0u8; 256 << 10], |b| {
                h.update(b);
            })?;
            return Ok(ContentHash(*h.finalize().as_bytes()));
        }
        let mut pieces = Vec::new();
        let left = left_subtree_len(len);
        split(0, left, piece, &mut pieces);
        split(left, len - left, piece, &mut pieces);
        let cvs = hash_pieces(file, &pieces, threads)?;
        let mut it = cvs.into_iter();
        let l = merge(left, piece, &mut it)?;
        let r = merge(len - left, piece, &mut it)?;
        Ok(ContentHash(*merge_subtrees_root(&l, &r, Mode::Hash).as_bytes()))
    }

    /// Parses `blake3:<64 lowercase hex>`; anything else (an older record's sha256) is `None`.
    pub fn parse(s: &str) -> Option<ContentHash> {
        s.strip_prefix(Self::PREFIX).and_then(parse_hex).map(ContentHash)
    }
}

/// Feeds `[offset, offset + len)` of `file` to `feed`, through `buf`; ending early is an error.
fn read_range(file: &File, offset: u64, len: u64, buf: &mut [u8], mut feed: impl FnMut(&[u8])) -> io::Result<()> {
    let mut at = offset;
    while at < offset + len {
        let want = (offset + len - at).min(buf.len() as u64) as usize;
        match file.read_at(&mut buf[..want], at) {
            Ok(0) => return Err(changed()),
            Ok(n) => {
                feed(&buf[..n]);
                at += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn changed() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "the file changed while it was read (shorter than its size)")
}

/// The subtrees of `[offset, offset + len)` of at most `piece` bytes, in order; the
/// cut follows BLAKE3's tree (a left subtree is the largest power of two of chunks
/// shorter than the whole). Depth is at most log2(len / piece): bounded by u64.
fn split(offset: u64, len: u64, piece: u64, out: &mut Vec<(u64, u64)>) {
    if len <= piece {
        out.push((offset, len));
        return;
    }
    let left = left_subtree_len(len);
    split(offset, left, piece, out);
    split(offset + left, len - left, piece, out);
}

/// The chaining value of the subtree of `len` bytes whose pieces `cvs` yields, merged as `split` cut it.
fn merge(len: u64, piece: u64, cvs: &mut impl Iterator<Item = ChainingValue>) -> io::Result<ChainingValue> {
    if len <= piece {
        return cvs.next().ok_or_else(|| io::Error::other("a subtree without its hash"));
    }
    let left = left_subtree_len(len);
    let l = merge(left, piece, cvs)?;
    let r = merge(len - left, piece, cvs)?;
    Ok(merge_subtrees_non_root(&l, &r, Mode::Hash))
}

/// Each piece's chaining value, in order, the pieces shared out among `threads`.
fn hash_pieces(file: &File, pieces: &[(u64, u64)], threads: usize) -> io::Result<Vec<ChainingValue>> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = || -> io::Result<Vec<(usize, ChainingValue)>> {
        let mut buf = vec![0u8; 256 << 10];
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(&(offset, len)) = pieces.get(i) else { return Ok(done) };
            let mut h = blake3::Hasher::new();
            h.set_input_offset(offset);
            read_range(file, offset, len, &mut buf, |b| {
                h.update(b);
            })?;
            done.push((i, h.finalize_non_root()));
        }
    };
    let mut all = std::thread::scope(|s| {
        let helpers: Vec<_> = (1..threads.min(pieces.len())).map(|_| s.spawn(work)).collect();
        let mut all = work()?;
        for h in helpers {
            all.extend(h.join().map_err(|_| io::Error::other("a hashing thread panicked"))??);
        }
        io::Result::Ok(all)
    })?;
    all.sort_unstable_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, cv)| cv).collect())
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", Self::PREFIX, to_hex(&self.0))
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests make their files by path
mod tests {
    use super::*;
    use crate::content::digest::Digest;

    #[test]
    fn is_blake3_and_round_trips() {
        let h = ContentHash::of_reader(&b"abc"[..]).unwrap();
        assert_eq!(h.0, *blake3::hash(b"abc").as_bytes());
        assert_eq!(ContentHash::parse(&h.to_string()), Some(h));
        assert!(h.to_string().starts_with("blake3:"));
        assert_eq!(ContentHash::parse(&Digest::of(b"abc").to_string()), None);
        assert_eq!(ContentHash::parse(&format!("blake3:{}", "A".repeat(64))), None);
    }

    #[test]
    fn a_file_hashed_in_pieces_on_threads_hashes_as_blake3_does() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        // Lengths around chunk (1 KiB) and piece boundaries, and odd ones.
        for len in [0usize, 1, 1023, 1024, 1025, 4096, 8191, 8192, 8193, 65_536, 100_001, 300_000] {
            std::fs::write(&path, &data[..len]).unwrap();
            let f = File::open(&path).unwrap();
            let want = *blake3::hash(&data[..len]).as_bytes();
            for (threads, piece) in [(1, 4096), (2, 4096), (3, 1024), (2, 1 << 20)] {
                let got = ContentHash::of_file_in(&f, len as u64, threads, piece).unwrap();
                assert_eq!(got.0, want, "len {len}, {threads} threads, piece {piece}");
            }
        }
    }

    #[test]
    fn a_file_shorter_than_its_size_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 20_000]).unwrap();
        for (threads, piece) in [(1, 4096), (2, 4096)] {
            let f = File::open(&path).unwrap();
            let e = ContentHash::of_file_in(&f, 30_000, threads, piece).unwrap_err();
            assert!(e.to_string().contains("changed while it was read"), "{e}");
        }
    }
}
