//! Files with holes, at the cost of their data and not their size: hashed
//! (`RunHasher`, `of_file`) and copied (`copy_keeping_holes`).
//!
//! A layer may hold a 60 GB file whose data is a few bytes (a GNU sparse entry): hashing
//! its holes as zeros read 60 GB of nothing. `RunHasher` hashes content as 4 KiB
//! blocks, a run of all-zero blocks as its length alone: a hole costs O(1), and so
//! does any run of zero blocks in the data. The encoding is by content only (not by
//! where the filesystem keeps holes), self-delimiting (`D` + a 4096-byte block, `Z` +
//! a run's block count, `E` + the total length), so two contents with the same
//! digest are the same content.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use rustix::fs::SeekFrom;
use rustix::io::Errno;

const BLOCK: usize = 4096;
const ZERO: [u8; BLOCK] = [0; BLOCK];

/// BLAKE3 of content as blocks and zero runs.
pub struct RunHasher {
    h: blake3::Hasher,
    /// The block being filled (shorter than `BLOCK`).
    partial: Vec<u8>,
    /// Zero blocks seen and not yet written into `h`.
    zeros: u64,
    len: u64,
}

impl Default for RunHasher {
    fn default() -> Self {
        let mut h = blake3::Hasher::new();
        h.update(b"layers zero-run content v1\n");
        RunHasher { h, partial: Vec::with_capacity(BLOCK), zeros: 0, len: 0 }
    }
}

impl RunHasher {
    /// Adds `data`.
    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if !self.partial.is_empty() {
            let take = (BLOCK - self.partial.len()).min(data.len());
            self.partial.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.partial.len() < BLOCK {
                return;
            }
            let block = std::mem::take(&mut self.partial);
            self.block(&block);
            self.partial = block;
            self.partial.clear();
        }
        let mut blocks = data.chunks_exact(BLOCK);
        for b in &mut blocks {
            self.block(b);
        }
        self.partial.extend_from_slice(blocks.remainder());
    }

    /// Adds `n` zero bytes: whole blocks of them cost nothing.
    pub fn zeros(&mut self, mut n: u64) {
        if !self.partial.is_empty() {
            let take = ((BLOCK - self.partial.len()) as u64).min(n) as usize;
            self.update(&ZERO[..take]);
            n -= take as u64;
        }
        self.len += n - n % BLOCK as u64;
        self.zeros += n / BLOCK as u64;
        self.update(&ZERO[..(n % BLOCK as u64) as usize]);
    }

    fn block(&mut self, b: &[u8]) {
        if b == &ZERO[..b.len()] {
            self.zeros += 1;
            return;
        }
        self.flush_zeros();
        self.h.update(b"D");
        self.h.update(b);
    }

    fn flush_zeros(&mut self) {
        if self.zeros > 0 {
            self.h.update(b"Z");
            self.h.update(&self.zeros.to_le_bytes());
            self.zeros = 0;
        }
    }

    /// The digest.
    pub fn finish(mut self) -> [u8; 32] {
        let last = std::mem::take(&mut self.partial);
        if !last.is_empty() {
            self.block(&last);
        }
        self.flush_zeros();
        self.h.update(b"E");
        self.h.update(&self.len.to_le_bytes());
        *self.h.finalize().as_bytes()
    }
}

/// Where `file`'s next data at or after `at` starts (`None`: only holes to the end).
fn next_data(file: &File, at: u64) -> io::Result<Option<u64>> {
    match rustix::fs::seek(file, SeekFrom::Data(at)) {
        Ok(p) => Ok(Some(p)),
        Err(Errno::NXIO) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether the first `size` bytes of `file` have a hole in them (the file's offset
/// is back at 0 after).
pub fn has_hole(file: &File, size: u64) -> io::Result<bool> {
    if size == 0 {
        return Ok(false);
    }
    let hole = rustix::fs::seek(file, SeekFrom::Hole(0));
    rustix::fs::seek(file, SeekFrom::Start(0)).map_err(io::Error::from)?;
    match hole {
        Ok(p) => Ok(p < size),
        // A filesystem without SEEK_HOLE: no holes it can tell of.
        Err(Errno::NXIO | Errno::INVAL | Errno::OPNOTSUPP) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Walks `file`'s first `size` bytes by its data (SEEK_DATA/SEEK_HOLE): `data` gets
/// each piece of data at its offset, `hole` the length of each hole. A file shorter
/// than `size` is an error: it changed while being read.
fn walk(
    file: &File,
    size: u64,
    mut hole: impl FnMut(u64),
    mut data: impl FnMut(u64, &[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let mut buf = vec![0u8; 256 << 10];
    let mut at = 0u64;
    while at < size {
        let Some(start) = next_data(file, at)?.filter(|d| *d < size) else { break };
        hole(start - at);
        let end = rustix::fs::seek(file, SeekFrom::Hole(start)).map_err(io::Error::from)?.min(size);
        let mut pos = start;
        while pos < end {
            let want = ((end - pos) as usize).min(buf.len());
            let n = file.read_at(&mut buf[..want], pos)?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while being read"));
            }
            data(pos, &buf[..n])?;
            pos += n as u64;
        }
        at = end;
    }
    hole(size - at);
    Ok(())
}

/// The `RunHasher` digest of `file`'s first `size` bytes, reading only its data and
/// counting its holes.
pub fn of_file(file: &File, size: u64) -> io::Result<[u8; 32]> {
    let rh = std::cell::RefCell::new(RunHasher::default());
    walk(
        file,
        size,
        |n| rh.borrow_mut().zeros(n),
        |_, d| {
            rh.borrow_mut().update(d);
            Ok(())
        },
    )?;
    Ok(rh.into_inner().finish())
}

/// Copies `src` (its first `size` bytes) into the empty `dst`, data by data: a hole
/// stays a hole, a 4 GiB sparse file stays a few blocks. Returns the bytes of data
/// copied.
pub fn copy_keeping_holes(src: &File, dst: &File, size: u64) -> io::Result<u64> {
    let mut copied = 0u64;
    walk(
        src,
        size,
        |_| {},
        |at, d| {
            copied += d.len() as u64;
            dst.write_all_at(d, at)
        },
    )?;
    dst.set_len(size)?;
    Ok(copied)
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests make their files by path
mod tests {
    use super::*;

    fn of(parts: &[Result<&[u8], u64>]) -> [u8; 32] {
        let mut h = RunHasher::default();
        for p in parts {
            match p {
                Ok(d) => h.update(d),
                Err(n) => h.zeros(*n),
            }
        }
        h.finish()
    }

    #[test]
    fn the_digest_is_of_content_not_of_how_it_arrives() {
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8 + u8::from(i % 7 == 0)).collect();
        let mut with_zeros = data.clone();
        with_zeros.splice(5000..5000, std::iter::repeat_n(0u8, 100_000));
        let whole = of(&[Ok(&with_zeros)]);
        assert_eq!(of(&[Ok(&data[..5000]), Err(100_000), Ok(&data[5000..])]), whole);
        assert_eq!(of(&[Ok(&data[..3]), Ok(&data[3..5000]), Err(1), Err(99_999), Ok(&data[5000..])]), whole);
        // Another content, the same length: another digest; so for a moved zero run.
        assert_ne!(of(&[Ok(&data[..5000]), Err(99_999), Ok(&[1]), Ok(&data[5000..])]), whole);
        assert_ne!(of(&[Err(100_000), Ok(&data)]), whole);
        // Trailing zeros count: the length is in the digest.
        assert_ne!(of(&[Ok(&data)]), of(&[Ok(&data), Err(4096)]));
        assert_ne!(of(&[Ok(&data)]), of(&[Ok(&data), Err(1)]));
    }

    #[test]
    fn a_file_reads_only_its_data_and_gives_the_same_digest() {
        let d = tempfile::tempdir().unwrap();
        let f = File::options().read(true).write(true).create(true).truncate(true).open(d.path().join("s")).unwrap();
        f.write_all_at(b"head", 0).unwrap();
        f.write_all_at(b"tail", (1 << 40) - 4).unwrap();
        let size = 1u64 << 40;
        let t = std::time::Instant::now();
        let got = of_file(&f, size).unwrap();
        assert!(t.elapsed() < std::time::Duration::from_secs(5), "a 1 TiB hole took {:?}", t.elapsed());
        assert_eq!(got, of(&[Ok(b"head"), Err(size - 8), Ok(b"tail")]));
        assert!(has_hole(&f, size).unwrap());
        let g = File::options().read(true).write(true).create(true).truncate(true).open(d.path().join("c")).unwrap();
        // Data extents are whole filesystem blocks: "head" and "tail" are two of them.
        assert!(copy_keeping_holes(&f, &g, size).unwrap() <= 64 << 10);
        assert_eq!(of_file(&g, size).unwrap(), got);
        use std::os::unix::fs::MetadataExt;
        assert!(g.metadata().unwrap().blocks() < 1024, "the copy kept its holes");
    }
}
