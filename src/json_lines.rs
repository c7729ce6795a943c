//! Files of JSON lines appended to while they are read: a container's log
//! (`run/log.rs`) and the store's event log (`events.rs`).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

/// Longest line read back: more is not something we wrote (a log writes lines of
/// at most 16 KiB of output, escaped into JSON).
const MAX_LINE: u64 = 64 << 10;

/// Reads lines of a file as they come (a reader kept at its position can be read
/// again after the file grew: `logs -f`, `events`).
pub struct Reader {
    inner: BufReader<File>,
    line: Vec<u8>,
}

impl Reader {
    /// Opens `path`; `None` when it does not exist.
    pub fn open(path: &Path) -> io::Result<Option<Reader>> {
        match File::open(path) {
            Ok(f) => Ok(Some(Reader { inner: BufReader::new(f), line: Vec::new() })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Opens `path` at its end: only what is appended from now on is read.
    pub fn open_at_end(path: &Path) -> io::Result<Option<Reader>> {
        use std::io::Seek;
        let Some(mut r) = Reader::open(path)? else { return Ok(None) };
        r.inner.seek(io::SeekFrom::End(0))?;
        Ok(Some(r))
    }

    /// Whether this reader reads the file now at `path` (not one rotated away from it).
    pub fn is(&self, path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (self.inner.get_ref().metadata(), std::fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        }
    }

    /// The next whole line read as a `T`; `None` at the end for now (a half-written
    /// line waits). A line that is not a `T` (a crash mid-write) is skipped, not fatal.
    pub fn next<T: serde::de::DeserializeOwned>(&mut self) -> io::Result<Option<T>> {
        loop {
            let mut limited = Read::take(&mut self.inner, MAX_LINE + 1 - self.line.len() as u64);
            let n = limited.read_until(b'\n', &mut self.line)?;
            if !self.line.ends_with(b"\n") {
                if self.line.len() as u64 > MAX_LINE {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "a line longer than any we write"));
                }
                if n == 0 || !self.line.is_empty() {
                    return Ok(None);
                }
            }
            let line = std::mem::take(&mut self.line);
            if let Ok(e) = serde_json::from_slice::<T>(&line) {
                return Ok(Some(e));
            }
        }
    }
}
