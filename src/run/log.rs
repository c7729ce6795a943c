//! A container's output log, in Docker's `json-file` format: one JSON object per
//! line, `{"log":"text\n","stream":"stdout","time":"2026-01-02T03:04:05.123456789Z"}`,
//! so stdout and stderr stay apart and every line has its time. The log is capped
//! (`max-size`) and rotates through `max-file` files: `log.json`, `log.json.1`, …
//! (oldest highest), as Docker's `--log-opt max-size=10m,max-file=3` does.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// The current file's name in the container's dir.
/// The current log file (`dir.rs` names every file of a container).
const FILE: &str = super::container::dir::LOG;
/// A line longer than this is written in pieces (Docker splits at 16 KiB too).
const MAX_LINE: usize = 16 << 10;

/// Which of the container's outputs a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// `--log-opt`: how big the log grows and how many files it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogOptions {
    pub max_size: u64,
    pub max_files: u32,
}

impl Default for LogOptions {
    /// 10 MB in 3 files: a chatty container keeps its last 20-30 MB.
    fn default() -> Self {
        LogOptions { max_size: 10_000_000, max_files: 3 }
    }
}

impl LogOptions {
    /// Parses `--log-opt max-size=10m` and `--log-opt max-file=3` (each repeatable).
    pub fn parse(opts: &[String]) -> anyhow::Result<LogOptions> {
        let mut o = LogOptions::default();
        for opt in opts {
            match opt.split_once('=') {
                Some(("max-size", v)) => {
                    o.max_size = super::cgroup::parse_bytes(v).map_err(|e| anyhow::anyhow!("--log-opt {opt}: {e}"))?;
                    if o.max_size < 4096 {
                        bail!("--log-opt {opt}: at least 4k");
                    }
                }
                Some(("max-file", v)) => {
                    o.max_files = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=100).contains(n))
                        .with_context(|| format!("--log-opt {opt}: a number of files from 1 to 100"))?;
                }
                _ => bail!("--log-opt {opt}: unknown option (supported: max-size=SIZE, max-file=N)"),
            }
        }
        Ok(o)
    }
}

/// One line of the log.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    pub log: String,
    pub stream: String,
    pub time: String,
}

/// Appends a container's output to its log.
pub struct LogWriter {
    dir: PathBuf,
    file: File,
    size: u64,
    opts: LogOptions,
    /// Each stream's line so far (written when it ends, or reaches MAX_LINE).
    partial: [Vec<u8>; 2],
}

impl LogWriter {
    /// Opens (appending to) the log in the container dir `dir`.
    pub fn open(dir: &Path, opts: LogOptions) -> anyhow::Result<LogWriter> {
        let path = dir.join(FILE);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("open container log {}", path.display()))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(LogWriter { dir: dir.to_path_buf(), file, size, opts, partial: [Vec::new(), Vec::new()] })
    }

    /// Output the container wrote: logged a line at a time.
    pub fn write(&mut self, stream: Stream, mut bytes: &[u8]) {
        let i = stream as usize;
        while !bytes.is_empty() {
            let room = MAX_LINE - self.partial[i].len();
            let take = match bytes.iter().take(room).position(|&b| b == b'\n') {
                Some(nl) => nl + 1,
                None => bytes.len().min(room),
            };
            self.partial[i].extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.partial[i].ends_with(b"\n") || self.partial[i].len() >= MAX_LINE {
                let line = std::mem::take(&mut self.partial[i]);
                self.entry(stream, &line);
            }
        }
    }

    /// Writes what is left of unterminated lines (the container ended mid-line).
    pub fn flush(&mut self) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let line = std::mem::take(&mut self.partial[stream as usize]);
            if !line.is_empty() {
                self.entry(stream, &line);
            }
        }
    }

    fn entry(&mut self, stream: Stream, line: &[u8]) {
        // Not UTF-8: replaced, as Docker's json-file driver does.
        let e = Entry {
            log: String::from_utf8_lossy(line).into_owned(),
            stream: stream.name().into(),
            time: now_rfc3339(),
        };
        let Ok(mut json) = serde_json::to_vec(&e) else { return };
        json.push(b'\n');
        if self.size > 0 && self.size + json.len() as u64 > self.opts.max_size {
            self.rotate();
        }
        // A full disk loses log lines, never the container.
        if self.file.write_all(&json).is_ok() {
            self.size += json.len() as u64;
        }
    }

    fn rotate(&mut self) {
        let name = |n: u32| if n == 0 { self.dir.join(FILE) } else { self.dir.join(format!("{FILE}.{n}")) };
        let keep = self.opts.max_files.max(1) - 1;
        if keep == 0 {
            let _ = self.file.set_len(0);
        } else {
            for n in (0..keep).rev() {
                let _ = std::fs::rename(name(n), name(n + 1));
            }
        }
        if let Ok(f) = OpenOptions::new().create(true).append(true).open(name(0)) {
            self.file = f;
        }
        self.size = 0;
    }
}

/// Now, as RFC 3339 with nanoseconds (UTC): a log line's time.
pub fn now_rfc3339() -> String {
    crate::format::rfc3339_nanos(i64::try_from(now_nanos()).unwrap_or(i64::MAX))
}

/// An RFC 3339 time as nanoseconds since the epoch.
pub fn nanos(rfc3339: &str) -> Option<i128> {
    let secs = layers_store::images::oci::parse_rfc3339(rfc3339)?;
    let frac = rfc3339.get(19..).and_then(|r| r.strip_prefix('.')).unwrap_or("");
    let digits: String = frac.chars().take_while(char::is_ascii_digit).take(9).collect();
    let sub = if digits.is_empty() { 0 } else { format!("{digits:0<9}").parse::<i128>().ok()? };
    Some(i128::from(secs) * 1_000_000_000 + sub)
}

/// `--since`/`--until` as Docker takes them: an RFC 3339 time, Unix seconds
/// (`1700000000.5`), or a duration before now (`10m`, `1h30m`, `45s`).
pub fn parse_since(s: &str, now_nanos: i128) -> anyhow::Result<i128> {
    if let Some(n) = nanos(s) {
        return Ok(n);
    }
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok((secs * 1e9) as i128);
        }
    }
    let d = crate::format::duration_ns(s).with_context(|| format!("{s:?}: not a time, Unix seconds or duration"))?;
    Ok(now_nanos - i128::from(d))
}

/// Now, in nanoseconds since the epoch.
pub fn now_nanos() -> i128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i128).unwrap_or(0)
}

/// The log's files in the container dir `dir`, oldest first.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut rotated: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n = name.strip_prefix(FILE)?.strip_prefix('.')?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
    let mut out: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    out.push(dir.join(FILE));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(dir: &Path) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for f in files(dir) {
            let Some(mut r) = crate::json_lines::Reader::open(&f).unwrap() else { continue };
            while let Some(e) = r.next::<Entry>().unwrap() {
                out.push((e.stream, e.log));
            }
        }
        out
    }

    #[test]
    fn lines_keep_their_stream_split_at_newlines_and_rotate() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LogWriter::open(dir.path(), LogOptions { max_size: 4096, max_files: 2 }).unwrap();
        w.write(Stream::Stdout, b"a\nb");
        w.write(Stream::Stderr, b"err\n");
        w.write(Stream::Stdout, b"c\n\xff\n");
        w.write(Stream::Stdout, b"tail");
        w.flush();
        let got = read_all(dir.path());
        let want =
            [("stdout", "a\n"), ("stderr", "err\n"), ("stdout", "bc\n"), ("stdout", "\u{fffd}\n"), ("stdout", "tail")];
        assert_eq!(got, want.map(|(s, l)| (s.to_string(), l.to_string())));

        // Past max-size: rotated, and only max-file files kept.
        for i in 0..200 {
            w.write(Stream::Stdout, format!("line {i:04} {}\n", "x".repeat(40)).as_bytes());
        }
        assert_eq!(files(dir.path()).len(), 2);
        let got = read_all(dir.path());
        assert!(got.len() < 100 && got.last().unwrap().1.starts_with("line 0199"), "{}", got.len());
        let total: u64 = files(dir.path()).iter().map(|f| f.metadata().unwrap().len()).sum();
        assert!(total <= 2 * 4096, "{total}");
    }

    #[test]
    fn a_long_line_is_written_in_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LogWriter::open(dir.path(), LogOptions::default()).unwrap();
        w.write(Stream::Stdout, &vec![b'x'; MAX_LINE * 2 + 10]);
        w.flush();
        let got = read_all(dir.path());
        assert_eq!(got.iter().map(|g| g.1.len()).collect::<Vec<_>>(), [MAX_LINE, MAX_LINE, 10]);
    }

    #[test]
    fn since_takes_times_seconds_and_durations() {
        let now = 1_700_000_000_000_000_000i128;
        assert_eq!(parse_since("2023-11-14T22:13:20.5Z", now).unwrap(), now + 500_000_000);
        assert_eq!(parse_since("1700000000", now).unwrap(), now);
        assert_eq!(parse_since("1h30m", now).unwrap(), now - 5400 * 1_000_000_000);
        assert_eq!(parse_since("250ms", now).unwrap(), now - 250_000_000);
        assert!(parse_since("yesterday", now).is_err());
        assert_eq!(nanos(&now_string_at(now)), Some(now));
    }

    fn now_string_at(n: i128) -> String {
        let secs = layers_store::images::oci::rfc3339((n / 1_000_000_000) as i64);
        format!("{}.{:09}Z", secs.trim_end_matches('Z'), n % 1_000_000_000)
    }

    #[test]
    fn options_parse_like_dockers() {
        let o = LogOptions::parse(&["max-size=1m".into(), "max-file=5".into()]).unwrap();
        assert_eq!(o, LogOptions { max_size: 1 << 20, max_files: 5 });
        assert!(LogOptions::parse(&["mode=non-blocking".into()]).unwrap_err().to_string().contains("unknown option"));
        assert!(LogOptions::parse(&["max-file=0".into()]).is_err());
    }
}
