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
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
        })
    }
}

/// A compressing writer; `finish` writes the trailer and returns the inner writer.
/// Output depends only on the input (gzip headers carry no time or name).
pub enum Encoder<W: Write> {
    /// Bytes pass through.
    None(W),
    /// gzip at a fast level: layers are written once and read many times, but commit speed matters.
    Gzip(flate2::write::GzEncoder<W>),
    /// zstd, level 3.
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl Compression {
    /// A compressing writer onto `out`.
    pub fn encoder<W: Write>(self, out: W) -> io::Result<Encoder<W>> {
        Ok(match self {
            Compression::None => Encoder::None(out),
            Compression::Gzip => {
                Encoder::Gzip(flate2::write::GzEncoder::new(out, flate2::Compression::new(GZIP_LEVEL)))
            }
            Compression::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(out, 3)?),
        })
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
