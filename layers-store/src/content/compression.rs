//! Layer compression, recognised by magic bytes (never by file name or media type alone).

use std::io::{self, BufRead, Read, Write};

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (one or more members).
    Gzip,
    /// zstd (one or more frames).
    Zstd,
}

impl Compression {
    /// Recognises the compression from the first bytes of a blob.
    pub fn detect(head: &[u8]) -> Result<Compression, &'static str> {
        Ok(match head {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
            [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => {
                return Err("xz-compressed layers are not supported (use gzip or zstd)")
            }
            [b'B', b'Z', b'h', ..] => return Err("bzip2-compressed layers are not supported (use gzip or zstd)"),
            _ => Compression::None,
        })
    }

    /// The OCI layer media type for a blob in this compression.
    pub fn oci_media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }

    /// A decoding reader over `input`.
    pub fn decoder<'a, R: BufRead + Send + 'a>(self, input: R) -> io::Result<Box<dyn Read + Send + 'a>> {
        Ok(match self {
            Compression::None => Box::new(input),
            c @ (Compression::Gzip | Compression::Zstd) => Box::new(crate::content::members::Members::new(c, input)),
        })
    }
}

/// A compressing writer; `finish` writes the trailer and returns the inner writer.
/// Output depends only on the input and the level (gzip headers carry no time or name).
pub enum Encoder<W: Write> {
    /// Bytes pass through.
    None(W),
    /// gzip on every core (see [`ParallelGzip`]).
    Gzip(ParallelGzip<W>),
    /// zstd, level 3 unless asked.
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

/// A compression level in the range its compression has; `None` is the default
/// (gzip 1, zstd 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Level(Option<u8>);

impl Level {
    /// The default level of each compression.
    pub const DEFAULT: Level = Level(None);

    /// `level` for `c`: gzip 0-9, zstd 1-19 (the range zstd calls normal); none for an
    /// uncompressed layer.
    pub fn new(c: Compression, level: u32) -> Result<Level, String> {
        let max = match c {
            Compression::None => return Err("an uncompressed layer has no compression level".into()),
            Compression::Gzip => 9,
            Compression::Zstd => 19,
        };
        let min = u32::from(c == Compression::Zstd);
        if !(min..=max).contains(&level) {
            return Err(format!("{} takes a level from {min} to {max}, not {level}", c.name()));
        }
        Ok(Level(Some(level as u8)))
    }

    /// The level as given, if one was.
    pub fn get(self) -> Option<u32> {
        self.0.map(u32::from)
    }
}

impl Compression {
    /// A compressing writer onto `out` at the default level.
    pub fn encoder<W: Write>(self, out: W) -> io::Result<Encoder<W>> {
        self.encoder_at(out, Level::DEFAULT)
    }

    /// A compressing writer onto `out` at `level`.
    pub fn encoder_at<W: Write>(self, out: W, level: Level) -> io::Result<Encoder<W>> {
        Ok(match self {
            Compression::None => Encoder::None(out),
            Compression::Gzip => Encoder::Gzip(ParallelGzip::with_level(out, level.get().unwrap_or(GZIP_LEVEL))),
            Compression::Zstd => {
                Encoder::Zstd(zstd::stream::write::Encoder::new(out, level.get().unwrap_or(3) as i32)?)
            }
        })
    }

    /// Its name as `--compression` options spell it.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// zlib level for new gzip layers.
const GZIP_LEVEL: u32 = 1;

impl<W: Write> Encoder<W> {
    /// Ends the stream.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::None(w) => Ok(w),
            Encoder::Gzip(g) => g.finish(),
            Encoder::Zstd(z) => z.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::None(w) => w.write(buf),
            Encoder::Gzip(g) => g.write(buf),
            Encoder::Zstd(z) => z.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::None(w) => w.flush(),
            Encoder::Gzip(g) => g.flush(),
            Encoder::Zstd(z) => z.flush(),
        }
    }
}

/// One piece as a gzip member: compressed, or stored when compressing it does not
/// make it smaller. The fast level codes every block with fixed Huffman tables, so
/// already-compressed content grows and every reader must Huffman-decode it again;
/// stored blocks are copied straight through. The choice depends on the piece alone.
fn gzip_member(data: &[u8], level: u32) -> io::Result<Vec<u8>> {
    let encode = |level: u32, capacity: usize| {
        let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(capacity), flate2::Compression::new(level));
        enc.write_all(data).and_then(|()| enc.finish())
    };
    let packed = encode(level, data.len() / 2)?;
    if packed.len() < data.len() {
        return Ok(packed);
    }
    encode(0, data.len() + data.len() / 1024 + 64)
}

/// Bytes of input per gzip member.
const GZIP_CHUNK: usize = 1 << 20;

/// gzip on several threads: the input is cut into fixed 1 MiB pieces, each
/// compressed as its own gzip member, written in order. A multi-member gzip stream is
/// plain gzip to every reader (RFC 1952), costs well under 1 % in size at this piece
/// size, and since the cuts depend on the input alone the output is the same on any
/// number of cores.
pub struct ParallelGzip<W: Write> {
    inner: W,
    chunk: Vec<u8>,
    jobs: Option<std::sync::mpsc::SyncSender<(u64, Vec<u8>)>>,
    results: std::sync::mpsc::Receiver<(u64, io::Result<Vec<u8>>)>,
    done: std::collections::BTreeMap<u64, Vec<u8>>,
    workers: Vec<std::thread::JoinHandle<()>>,
    sent: u64,
    written: u64,
    max_in_flight: u64,
}

impl<W: Write> ParallelGzip<W> {
    /// A parallel gzip writer onto `inner`, one worker per core.
    pub fn new(inner: W) -> Self {
        Self::with_level(inner, GZIP_LEVEL)
    }

    /// [`ParallelGzip::new`] at zlib level `level` (0-9).
    pub fn with_level(inner: W, level: u32) -> Self {
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 8);
        let (jobs, job_rx) = std::sync::mpsc::sync_channel::<(u64, Vec<u8>)>(threads);
        let job_rx = std::sync::Arc::new(std::sync::Mutex::new(job_rx));
        let (result_tx, results) = std::sync::mpsc::channel();
        let workers = (0..threads)
            .map(|_| {
                let (rx, tx) = (job_rx.clone(), result_tx.clone());
                std::thread::spawn(move || loop {
                    let job = rx.lock().map(|r| r.recv());
                    let Ok(Ok((seq, data))) = job else { return };
                    let out = gzip_member(&data, level);
                    if tx.send((seq, out)).is_err() {
                        return;
                    }
                })
            })
            .collect();
        ParallelGzip {
            inner,
            chunk: Vec::with_capacity(GZIP_CHUNK),
            jobs: Some(jobs),
            results,
            done: Default::default(),
            workers,
            sent: 0,
            written: 0,
            max_in_flight: 2 * threads as u64,
        }
    }

    fn send_chunk(&mut self) -> io::Result<()> {
        let data = std::mem::replace(&mut self.chunk, Vec::with_capacity(GZIP_CHUNK));
        let jobs = self.jobs.as_ref().ok_or_else(|| io::Error::other("gzip writer already finished"))?;
        jobs.send((self.sent, data)).map_err(|_| io::Error::other("gzip worker gone"))?;
        self.sent += 1;
        while self.sent - self.written >= self.max_in_flight {
            self.collect_one()?;
        }
        Ok(())
    }

    /// Waits for one compressed piece and writes whatever is now in order.
    fn collect_one(&mut self) -> io::Result<()> {
        let (seq, out) = self.results.recv().map_err(|_| io::Error::other("gzip worker gone"))?;
        self.done.insert(seq, out?);
        while let Some(piece) = self.done.remove(&self.written) {
            self.inner.write_all(&piece)?;
            self.written += 1;
        }
        Ok(())
    }

    /// Compresses what is left, writes everything in order, returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        // Empty input still makes one (empty) member: a valid gzip stream.
        if !self.chunk.is_empty() || self.sent == 0 {
            self.send_chunk()?;
        }
        self.jobs = None;
        while self.written < self.sent {
            self.collect_one()?;
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        Ok(self.inner)
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(GZIP_CHUNK - self.chunk.len());
        self.chunk.extend_from_slice(&buf[..n]);
        if self.chunk.len() == GZIP_CHUNK {
            self.send_chunk()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    #[test]
    fn parallel_gzip_is_plain_gzip_and_deterministic() {
        let data: Vec<u8> = (0..3 * super::GZIP_CHUNK + 12345).map(|i| (i * 7 % 251) as u8).collect();
        let compress = |d: &[u8]| {
            let mut w = super::ParallelGzip::new(Vec::new());
            for piece in d.chunks(100_000) {
                w.write_all(piece).unwrap();
            }
            w.finish().unwrap()
        };
        let a = compress(&data);
        assert_eq!(a, compress(&data), "same input, same bytes");
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&a[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
        let empty = compress(&[]);
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&empty[..]).read_to_end(&mut back).unwrap();
        assert!(back.is_empty() && !empty.is_empty());
    }

    #[test]
    fn incompressible_pieces_are_stored_not_grown() {
        // Pseudo-random bytes (xorshift): nothing for deflate to find.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..2 * super::GZIP_CHUNK)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let text: Vec<u8> = b"the same line again\n".iter().copied().cycle().take(super::GZIP_CHUNK).collect();
        let gzip = |d: &[u8]| {
            let mut w = super::ParallelGzip::new(Vec::new());
            w.write_all(d).unwrap();
            w.finish().unwrap()
        };
        // Stored: 5 bytes per 64 KiB block and a member header and trailer over the input.
        let alone = gzip(&noise).len();
        assert!(alone < noise.len() + 1024, "noise grew to {alone} bytes");
        let data = [noise, text].concat();
        let out = gzip(&data);
        assert!(out.len() < alone + 64 * 1024, "the text piece was compressed too: {} bytes", out.len());
        // The first member's first block is a stored one (BTYPE 00).
        assert_eq!((out[10] >> 1) & 3, 0, "first block type");
        // GNU gzip, an independent reader, gives the input back.
        let mut gz = std::process::Command::new("gzip")
            .args(["-dc"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("gzip");
        let mut stdin = gz.stdin.take().unwrap();
        let feeder = std::thread::spawn(move || stdin.write_all(&out));
        let mut back = Vec::new();
        gz.stdout.take().unwrap().read_to_end(&mut back).unwrap();
        feeder.join().unwrap().unwrap();
        assert!(gz.wait().unwrap().success());
        assert_eq!(back, data);
    }
}
