//! Files of JSON lines appended to while they are read: a container's log
//! (`run/log.rs`) and the store's event log (`events.rs`).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::Context;

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

/// Follows the file at one path as it grows and as it is rotated (renamed away, a new
/// file made in its place): what the old file still had, then the new one's lines.
pub struct Follower {
    path: PathBuf,
    current: Option<Reader>,
}

impl Follower {
    /// Follows `path` from its current end (or its start, once it is made).
    pub fn at_end(path: &Path) -> anyhow::Result<Follower> {
        let current = Reader::open_at_end(path).with_context(|| format!("open {}", path.display()))?;
        Ok(Follower { path: path.to_path_buf(), current })
    }

    /// Reads `files` (oldest first, the last the current one: the one followed) whole,
    /// each line through `each`, then follows on from where that left off.
    pub fn after_reading<T: serde::de::DeserializeOwned>(
        files: &[PathBuf],
        mut each: impl FnMut(T) -> anyhow::Result<()>,
    ) -> anyhow::Result<Follower> {
        let mut current = None;
        for path in files {
            current = Reader::open(path).with_context(|| format!("read {}", path.display()))?;
            if let Some(r) = current.as_mut() {
                while let Some(line) = r.next().with_context(|| format!("read {}", path.display()))? {
                    each(line)?;
                }
            }
        }
        Ok(Follower { path: files.last().cloned().unwrap_or_default(), current })
    }

    /// Passes each line appended since the last call to `each`.
    pub fn poll<T: serde::de::DeserializeOwned>(
        &mut self,
        mut each: impl FnMut(T) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let read = || format!("read {}", self.path.display());
        // Rotated (or made) since it was opened: the old file finished, then the new one.
        let rotated = self.current.as_ref().is_none_or(|r| !r.is(&self.path));
        if let Some(r) = self.current.as_mut() {
            while let Some(line) = r.next().with_context(read)? {
                each(line)?;
            }
        }
        if rotated {
            if let Some(mut r) = Reader::open(&self.path).with_context(read)? {
                while let Some(line) = r.next().with_context(read)? {
                    each(line)?;
                }
                self.current = Some(r);
            }
        }
        Ok(())
    }
}
