//! A streaming tar reader: ustar, GNU (long names, base-256 numbers) and PAX
//! (path, linkpath, size, uid, gid, mtime, `SCHILY.xattr.*`). It exists because the
//! header extensions must be size-capped *before* they are buffered (a 64 MiB PAX
//! record is an attack, not a path), and because trailing data after the end of the
//! archive must be seen, not silently skipped.

use std::io::{self, Read};

use crate::layer::tar_pax::{parse_pax, Pax};
use crate::layer::tar_sparse::{self, PaxFormat, SparseMap};

const BLOCK: usize = 512;

/// The type of a tar entry, after header extensions are folded in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file with `size` bytes of data.
    File,
    /// A hardlink to an earlier entry (`link`).
    Hardlink,
    /// A symlink to `link`.
    Symlink,
    /// A character device.
    Char,
    /// A block device.
    Block,
    /// A directory.
    Dir,
    /// A named pipe.
    Fifo,
}

/// One entry's header, extensions applied.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The name as stored (not yet validated).
    pub path: Vec<u8>,
    /// Symlink or hardlink target.
    pub link: Vec<u8>,
    /// What the entry is.
    pub kind: EntryKind,
    /// Permission bits, setuid/setgid/sticky included.
    pub mode: u32,
    /// Numeric owner.
    pub uid: u32,
    /// Numeric group.
    pub gid: u32,
    /// Modification time (seconds, nanoseconds).
    pub mtime: (i64, u32),
    /// Bytes of data following the header.
    pub size: u64,
    /// Device major and minor numbers.
    pub dev: (u32, u32),
    /// Extended attributes from PAX `SCHILY.xattr.*` records.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// A GNU sparse file: where its `size` bytes of data go, and its full size.
    pub sparse: Option<SparseMap>,
}

/// Why a tar stream could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    /// The underlying stream failed (or ended early).
    #[error(transparent)]
    Io(#[from] io::Error),
    /// A header or extension does not follow the format.
    #[error("malformed tar: {0}")]
    Malformed(String),
    /// An extension header is larger than allowed.
    #[error("{0}")]
    Limit(String),
    /// A valid but unsupported feature (sparse files, multi-volume).
    #[error("unsupported tar feature: {0}")]
    Unsupported(String),
}

/// Reads entries one at a time; an entry's data is read through `read_data`.
pub struct TarReader<R> {
    inner: R,
    /// Data bytes of the current entry not yet read.
    remaining: u64,
    /// Padding after the current entry's data.
    padding: u64,
    max_header: u64,
    /// Bytes consumed so far, for error messages.
    offset: u64,
    ended: bool,
}

/// The extension headers before an entry, as Go's archive/tar (what Docker,
/// containerd and Podman read layers with) applies them: a later `x` header
/// replaces an earlier one, and a GNU long name or link wins over PAX `path` and
/// `linkpath` whatever their order.
#[derive(Default)]
struct Pending {
    pax: Pax,
    gnu_name: Option<Vec<u8>>,
    gnu_link: Option<Vec<u8>>,
}

impl<R: Read> TarReader<R> {
    /// A reader that refuses PAX and GNU long-name extensions over `max_header` bytes.
    pub fn new(inner: R, max_header: u64) -> Self {
        TarReader { inner, remaining: 0, padding: 0, max_header, offset: 0, ended: false }
    }

    /// The next entry, or `None` after the end-of-archive marker and a clean tail.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, TarError> {
        if self.ended {
            return Ok(None);
        }
        self.skip_rest()?;
        let mut pending = Pending::default();
        loop {
            let mut h = [0u8; BLOCK];
            if !self.read_block(&mut h)? {
                // EOF without the two zero blocks: GNU tar accepts it, so do we.
                self.ended = true;
                return Ok(None);
            }
            if h.iter().all(|&b| b == 0) {
                self.ended = true;
                self.end_of_archive()?;
                return Ok(None);
            }
            verify_checksum(&h, self.offset)?;
            let size = octal(&h[124..136], "size")?;
            let flag = h[156];
            match flag {
                b'x' | b'g' | b'L' | b'K' => {
                    let data = self.read_extension(size, flag)?;
                    match flag {
                        b'x' => pending.pax = parse_pax(&data)?,
                        b'L' => pending.gnu_name = Some(until_nul(&data).to_vec()),
                        b'K' => pending.gnu_link = Some(until_nul(&data).to_vec()),
                        _ => {} // global PAX headers carry comments (git archive); Go applies none either
                    }
                    continue;
                }
                // Types Go's reader passes on and Docker's and containerd's unpackers
                // refuse ("unhandled tar header type"): a layer they cannot unpack must
                // not mean something here that a scanner reading it with Go skips.
                b'M' | b'V' | b'D' | b'S' | b'7' => {
                    let name = String::from_utf8_lossy(pending.gnu_name.as_deref().unwrap_or(until_nul(&h[..100])))
                        .into_owned();
                    return Err(TarError::Unsupported(format!(
                        "entry type '{}' ({}) for {name:?}: Docker and containerd refuse it{}",
                        flag as char,
                        match flag {
                            b'M' => "GNU multi-volume continuation",
                            b'V' => "GNU volume header",
                            b'D' => "GNU dumpdir",
                            b'S' => "old GNU sparse file",
                            _ => "contiguous file",
                        },
                        if flag == b'S' { " (GNU tar writes PAX sparse files with --format=posix -S)" } else { "" }
                    )));
                }
                _ => {}
            }
            let mut entry = self.header_entry(&h, flag, size)?;
            let Pending { pax, gnu_name, gnu_link } = pending;
            entry.path = gnu_name.or(pax.path).unwrap_or(entry.path);
            entry.link = gnu_link.or(pax.link).unwrap_or(entry.link);
            entry.size = pax.size.unwrap_or(entry.size);
            entry.uid = pax.uid.unwrap_or(entry.uid);
            entry.gid = pax.gid.unwrap_or(entry.gid);
            entry.mtime = pax.mtime.unwrap_or(entry.mtime);
            entry.xattrs = pax.xattrs;
            let pax_sparse = match pax.sparse.format().map_err(TarError::Malformed)? {
                Some(_) if entry.kind != EntryKind::File => None,
                other => other,
            };
            if pax_sparse.is_some() {
                // Go names the file by GNU.sparse.name over every other name.
                if let Some(n) = pax.sparse.name {
                    entry.path = n;
                }
            }
            if entry.kind != EntryKind::File {
                // Links, devices, directories and FIFOs have no data, whatever their
                // size field says: what follows the header is the next header. So
                // Go reads them, and a scanner built on it sees what we extract.
                entry.size = 0;
            }
            self.begin_data(entry.size);
            // Without a size record the file is as long as the entry says (as Go).
            let data_size = entry.size;
            entry.sparse = match pax_sparse {
                Some((PaxFormat::Records(fragments), size)) => {
                    Some(SparseMap { fragments, size: size.unwrap_or(data_size) })
                }
                Some((PaxFormat::InData, size)) => {
                    let max = self.max_header;
                    let next = || {
                        let mut b = [0u8; BLOCK];
                        let mut got = 0;
                        while got < BLOCK {
                            match self.read_data(&mut b[got..]) {
                                Ok(0) => return Err("the entry's data ends in its sparse map".to_string()),
                                Ok(n) => got += n,
                                Err(e) => return Err(e.to_string()),
                            }
                        }
                        Ok(b)
                    };
                    let (fragments, used) = tar_sparse::map_in_data(next, max).map_err(TarError::Malformed)?;
                    entry.size -= used;
                    Some(SparseMap { fragments, size: size.unwrap_or(data_size) })
                }
                None => None,
            };
            if let Some(m) = &entry.sparse {
                tar_sparse::validate(m, entry.size).map_err(TarError::Malformed)?;
            }
            return Ok(Some(entry));
        }
    }

    /// Reads data of the current entry; 0 at its end.
    pub fn read_data(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.remaining.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "tar stream ends inside a file's data"));
        }
        self.remaining -= n as u64;
        self.offset += n as u64;
        Ok(n)
    }

    /// Consumes the reader, returning the inner stream.
    pub fn into_inner(self) -> R {
        self.inner
    }

    fn begin_data(&mut self, size: u64) {
        self.remaining = size;
        self.padding = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
    }

    fn skip_rest(&mut self) -> Result<(), TarError> {
        let n = self.remaining + self.padding;
        if n > 0 {
            let copied = io::copy(&mut (&mut self.inner).take(n), &mut io::sink())?;
            self.offset += copied;
            if copied < n {
                return Err(TarError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "tar stream ends inside an entry",
                )));
            }
        }
        self.remaining = 0;
        self.padding = 0;
        Ok(())
    }

    fn read_block(&mut self, h: &mut [u8; BLOCK]) -> Result<bool, TarError> {
        let mut got = 0;
        while got < BLOCK {
            match self.inner.read(&mut h[got..]) {
                Ok(0) if got == 0 => return Ok(false),
                Ok(0) => return Err(TarError::Malformed(format!("truncated header at byte {}", self.offset))),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.offset += BLOCK as u64;
        Ok(true)
    }

    fn read_extension(&mut self, size: u64, flag: u8) -> Result<Vec<u8>, TarError> {
        if size > self.max_header {
            return Err(TarError::Limit(format!(
                "{} header of {size} bytes exceeds the {} byte limit",
                match flag {
                    b'x' | b'g' => "PAX",
                    _ => "GNU long name",
                },
                self.max_header
            )));
        }
        self.begin_data(size);
        let mut data = vec![0u8; size as usize];
        let mut got = 0;
        while got < data.len() {
            let n = self.read_data(&mut data[got..])?;
            got += n;
        }
        self.skip_rest()?;
        Ok(data)
    }

    /// After a zero block: a second one (or the end of the stream) ends the archive,
    /// anything else is malformed, as Go reads it. Whatever follows the two zero
    /// blocks is read to the end, unused: Docker accepts such layers, and the bytes
    /// are still part of the stream whose digest is the diffID.
    fn end_of_archive(&mut self) -> Result<(), TarError> {
        let mut h = [0u8; BLOCK];
        if self.read_block(&mut h)? && h.iter().any(|&b| b != 0) {
            return Err(TarError::Malformed(format!(
                "a zero block and then a header at byte {}: the end-of-archive marker is two zero blocks",
                self.offset - BLOCK as u64
            )));
        }
        let copied = io::copy(&mut self.inner, &mut io::sink())?;
        self.offset += copied;
        Ok(())
    }

    fn header_entry(&self, h: &[u8; BLOCK], flag: u8, size: u64) -> Result<Entry, TarError> {
        let mut path = until_nul(&h[0..100]).to_vec();
        // Go before 1.8 wrote a USTAR prefix into GNU headers, over the atime and
        // ctime fields; Go reads such a prefix when those fields do not parse as
        // numbers and it is ASCII (golang.org/issues/12594), and so do we.
        let gnu = &h[257..265] == b"ustar  \0";
        let not_a_time = |f: &[u8]| f[0] != 0 && !go_numeric(f);
        let go17 = gnu && (not_a_time(&h[345..357]) || not_a_time(&h[357..369])) && until_nul(&h[345..500]).is_ascii();
        if &h[257..263] == b"ustar\0" || go17 {
            let prefix = until_nul(&h[345..500]);
            if !prefix.is_empty() {
                let mut p = prefix.to_vec();
                p.push(b'/');
                p.extend_from_slice(&path);
                path = p;
            }
        }
        let kind = match flag {
            b'0' => EntryKind::File,
            0 if path.last() == Some(&b'/') => EntryKind::Dir,
            0 => EntryKind::File,
            b'1' => EntryKind::Hardlink,
            b'2' => EntryKind::Symlink,
            b'3' => EntryKind::Char,
            b'4' => EntryKind::Block,
            b'5' => EntryKind::Dir,
            b'6' => EntryKind::Fifo,
            other => {
                return Err(TarError::Unsupported(format!(
                    "entry type {:?} for {:?}",
                    other as char,
                    String::from_utf8_lossy(&path)
                )))
            }
        };
        let dev = if matches!(kind, EntryKind::Char | EntryKind::Block) {
            (
                to_u32(octal(&h[329..337], "devmajor")?, "devmajor")?,
                to_u32(octal(&h[337..345], "devminor")?, "devminor")?,
            )
        } else {
            (0, 0)
        };
        Ok(Entry {
            path,
            link: until_nul(&h[157..257]).to_vec(),
            kind,
            mode: (octal(&h[100..108], "mode")? & 0o7777) as u32,
            uid: to_u32(octal(&h[108..116], "uid")?, "uid")?,
            gid: to_u32(octal(&h[116..124], "gid")?, "gid")?,
            mtime: (signed(&h[136..148], "mtime")?, 0),
            size,
            dev,
            xattrs: Vec::new(),
            sparse: None,
        })
    }
}

fn until_nul(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(i) => &b[..i],
        None => b,
    }
}

pub(crate) fn to_u32(n: u64, what: &str) -> Result<u32, TarError> {
    u32::try_from(n).map_err(|_| TarError::Malformed(format!("{what} {n} out of range")))
}

/// Whether Go's `parseNumeric` reads `field`: base-256, or octal digits between
/// spaces and NULs that fit 64 bits.
fn go_numeric(field: &[u8]) -> bool {
    if field[0] & 0x80 != 0 {
        return true;
    }
    let start = field.iter().position(|&b| b != b' ' && b != 0);
    let end = field.iter().rposition(|&b| b != b' ' && b != 0);
    match (start, end) {
        (Some(s), Some(e)) => {
            let digits = &field[s..=e];
            digits.iter().all(|b| (b'0'..=b'7').contains(b))
                && (digits.len() < 22 || digits[0] == b'1' && digits.len() == 22)
        }
        _ => true,
    }
}

/// Octal ASCII (NUL/space padded) or GNU base-256 (high bit of the first byte set).
fn octal(field: &[u8], what: &str) -> Result<u64, TarError> {
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        if field[0] == 0xff {
            return Err(TarError::Malformed(format!("negative {what}")));
        }
        let mut n: u64 = (field[0] & 0x7f) as u64;
        for &b in &field[1..] {
            n = n
                .checked_mul(256)
                .and_then(|n| n.checked_add(b as u64))
                .ok_or_else(|| TarError::Malformed(format!("{what} overflows")))?;
        }
        return Ok(n);
    }
    let s = field.iter().skip_while(|&&b| b == b' ' || b == 0);
    let mut n: u64 = 0;
    for &b in s {
        match b {
            b'0'..=b'7' => {
                n = n
                    .checked_mul(8)
                    .and_then(|n| n.checked_add((b - b'0') as u64))
                    .ok_or_else(|| TarError::Malformed(format!("{what} overflows")))?
            }
            b' ' | 0 => break,
            _ => return Err(TarError::Malformed(format!("bad octal digit in {what} field"))),
        }
    }
    Ok(n)
}

/// A number that may be negative (a time before 1970): octal, or base-256 in two's
/// complement (GNU tar and Go write and read both).
fn signed(field: &[u8], what: &str) -> Result<i64, TarError> {
    if field.first().is_some_and(|&b| b & 0xc0 == 0xc0) {
        // Negative base-256: the bits inverted are the magnitude minus one.
        let mut n: u64 = (!field[0] & 0x3f) as u64;
        for &b in &field[1..] {
            n = n
                .checked_mul(256)
                .and_then(|n| n.checked_add(!b as u64))
                .filter(|n| *n < i64::MAX as u64)
                .ok_or_else(|| TarError::Malformed(format!("{what} overflows")))?;
        }
        return Ok(-(n as i64) - 1);
    }
    let n = octal(field, what)?;
    i64::try_from(n).map_err(|_| TarError::Malformed(format!("{what} overflows")))
}

fn verify_checksum(h: &[u8; BLOCK], offset: u64) -> Result<(), TarError> {
    let want = octal(&h[148..156], "checksum")?;
    // The checksum field counts as eight spaces.
    let rest = h[..148].iter().chain(&h[156..]);
    let unsigned: u64 = rest.clone().map(|&b| b as u64).sum::<u64>() + 8 * b' ' as u64;
    let signed: i64 = rest.map(|&b| b as i8 as i64).sum::<i64>() + 8 * b' ' as i64;
    if want == unsigned || want as i64 == signed {
        Ok(())
    } else {
        Err(TarError::Malformed(format!("header checksum mismatch at byte {}", offset.saturating_sub(BLOCK as u64))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(octal(b"0000644\0", "m").unwrap(), 0o644);
        assert_eq!(octal(b"   755 \0", "m").unwrap(), 0o755);
        assert_eq!(octal(&[0x80, 0, 0, 0, 0, 0, 1, 0], "s").unwrap(), 256);
        assert!(octal(b"12x", "m").is_err());
    }

    #[test]
    fn negative_times_in_base_256() {
        // -1 and -86400 in GNU base-256 (two's complement, first byte 0xff).
        let mut f = [0xffu8; 12];
        assert_eq!(signed(&f, "mtime").unwrap(), -1);
        let v = (-86400i64).to_be_bytes();
        f[4..].copy_from_slice(&v);
        assert_eq!(signed(&f, "mtime").unwrap(), -86400);
        assert_eq!(signed(b"00000001750\0", "mtime").unwrap(), 0o1750);
    }
}
