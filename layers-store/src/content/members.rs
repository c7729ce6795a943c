//! A compressed layer decoded member by member (gzip) or frame by frame (zstd), so
//! what follows the last one is known by its bytes, not by a decoder's message:
//! another member or frame is decoded in turn, the end is the end, anything else
//! is [`TrailingData`].

use std::io::{self, BufRead, Read};

use crate::content::compression::Compression;

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// Bytes after a compressed stream that begin no other member or frame.
#[derive(Debug)]
pub struct TrailingData(pub Compression);

impl std::fmt::Display for TrailingData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Compression::Zstd => {
                f.write_str("data after the zstd stream is not zstd (trailing junk or a corrupt frame)")
            }
            _ => f.write_str("data after the gzip stream is not gzip (trailing junk or a corrupt member)"),
        }
    }
}

impl std::error::Error for TrailingData {}

enum State<R: BufRead> {
    // Boxed: a gzip decoder's state is ten times a zstd one's.
    Gzip(Box<flate2::bufread::GzDecoder<R>>),
    Zstd(zstd::stream::read::Decoder<'static, R>),
    /// Between members: the next bytes decide.
    Between(R),
    Done,
}

/// The decoded content of every member (or frame) of a gzip (or zstd) stream.
pub struct Members<R: BufRead> {
    kind: Compression,
    state: State<R>,
}

impl<R: BufRead> Members<R> {
    /// Decodes `input`, compressed as `kind` (gzip or zstd).
    pub fn new(kind: Compression, input: R) -> Members<R> {
        Members { kind, state: State::Between(input) }
    }

    fn start(&self, input: R) -> io::Result<State<R>> {
        Ok(match self.kind {
            Compression::Zstd => State::Zstd(zstd::stream::read::Decoder::with_buffer(input)?.single_frame()),
            _ => State::Gzip(Box::new(flate2::bufread::GzDecoder::new(input))),
        })
    }
}

/// Whether `head` (what the reader has at hand) begins with `magic`; a head shorter
/// than the magic counts when it is its start (the decoder then finds out).
fn begins(head: &[u8], magic: &[u8]) -> bool {
    let n = head.len().min(magic.len());
    head[..n] == magic[..n]
}

impl<R: BufRead> Read for Members<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match std::mem::replace(&mut self.state, State::Done) {
                State::Done => return Ok(0),
                State::Gzip(mut d) => match d.read(buf)? {
                    0 => self.state = State::Between(d.into_inner()),
                    n => {
                        self.state = State::Gzip(d);
                        return Ok(n);
                    }
                },
                State::Zstd(mut d) => match d.read(buf)? {
                    0 => self.state = State::Between(d.finish()),
                    n => {
                        self.state = State::Zstd(d);
                        return Ok(n);
                    }
                },
                State::Between(mut r) => {
                    let head = r.fill_buf()?;
                    if head.is_empty() {
                        return Ok(0);
                    }
                    // A zstd stream may hold skippable frames (magic 0x184D2A5?, little-endian).
                    let next = match self.kind {
                        Compression::Zstd => {
                            begins(head, ZSTD_MAGIC)
                                || (head.len() >= 4 && head[1..4] == [0x2a, 0x4d, 0x18] && head[0] & 0xf0 == 0x50)
                        }
                        _ => begins(head, GZIP_MAGIC),
                    };
                    if !next {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, TrailingData(self.kind)));
                    }
                    self.state = self.start(r)?;
                }
            }
        }
    }
}
