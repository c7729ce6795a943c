//! Content identities. A `Digest` names bytes as stored (a blob), a `DiffId`
//! names an uncompressed layer tar, a `ChainId` names a stack of layers. They are
//! distinct types so one can never be used where another is meant.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, ErrorKind, Result};

const PREFIX: &str = "sha256:";

/// A validated `sha256:<64 lowercase hex>` digest of some bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// Parses the strict form; anything else is rejected before it can become a path.
    pub fn parse(s: &str) -> Result<Digest> {
        let bad = |why: &str| Error::new(ErrorKind::InvalidInput, "parse digest", quote(s), why);
        let hex =
            s.strip_prefix(PREFIX).ok_or_else(|| bad("only sha256 digests are supported (want sha256:<64 hex>)"))?;
        if hex.len() != 64 {
            return Err(bad("want 64 hex characters after sha256:"));
        }
        parse_hex(hex).map(Digest).ok_or_else(|| bad("want lowercase hex"))
    }

    /// The digest of a byte slice.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    /// The 64 hex characters, which name the blob or layer on disk.
    pub fn hex(&self) -> String {
        to_hex(&self.0)
    }

    /// The first 12 hex characters, as Docker shows image IDs.
    pub fn short(&self) -> String {
        self.hex()[..12].to_string()
    }
}

pub(crate) fn to_hex(bytes: &[u8; 32]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(64);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

pub(crate) fn parse_hex(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        out[i] = (hex_val(pair[0])? << 4) | hex_val(pair[1])?;
    }
    Some(out)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn quote(s: &str) -> String {
    let mut q: String = s.chars().take(80).collect();
    if s.len() > q.len() {
        q.push('…');
    }
    format!("{q:?}")
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Digest::parse(s)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A running sha256 that ends in a `Digest`.
#[derive(Clone, Default)]
pub struct Hasher(Sha256);

impl Hasher {
    /// A fresh hasher.
    pub fn new() -> Self {
        Hasher(Sha256::new())
    }
    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    /// The digest of everything fed so far.
    pub fn finish(self) -> Digest {
        Digest(self.0.finalize().into())
    }

    /// The digest and length of everything `input` yields.
    pub fn read_all(mut input: impl std::io::Read) -> std::io::Result<(Digest, u64)> {
        let mut h = Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = input.read(&mut buf)?;
            if n == 0 {
                return Ok((h.finish(), total));
            }
            h.update(&buf[..n]);
            total += n as u64;
        }
    }
}

macro_rules! digest_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Digest);

        impl $name {
            /// Wraps a digest known to mean this.
            pub fn new(d: Digest) -> Self {
                $name(d)
            }
            /// Parses the strict `sha256:<hex>` form.
            pub fn parse(s: &str) -> Result<Self> {
                Digest::parse(s).map($name)
            }
            /// The underlying digest.
            pub fn digest(&self) -> Digest {
                self.0
            }
            /// The 64 hex characters.
            pub fn hex(&self) -> String {
                self.0.hex()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }
    };
}

digest_newtype!(
    /// The digest of a layer's uncompressed tar stream; names the layer dir.
    DiffId
);
digest_newtype!(
    /// The identity of a layer stack: chain(L1) = diffID(L1), chain(L1..n) = sha256(chain(L1..n-1) + " " + diffID(Ln)).
    ChainId
);

impl ChainId {
    /// The chain IDs of every prefix of `diff_ids`, bottom first.
    pub fn chain(diff_ids: &[DiffId]) -> Vec<ChainId> {
        let mut out: Vec<ChainId> = Vec::with_capacity(diff_ids.len());
        for d in diff_ids {
            let next = match out.last() {
                None => ChainId(d.digest()),
                Some(prev) => ChainId(Digest::of(format!("{prev} {d}").as_bytes())),
            };
            out.push(next);
        }
        out
    }
}

/// A writer that hashes (sha256) and counts what passes through to `inner`.
pub struct HashingWriter<W> {
    /// Where the bytes go.
    pub inner: W,
    /// Their digest so far.
    pub hasher: Hasher,
    /// Their count so far.
    pub size: u64,
}

impl<W> HashingWriter<W> {
    /// Hashes and counts what is written to `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter { inner, hasher: Hasher::new(), size: 0 }
    }
}

impl<W: std::io::Write> std::io::Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_everything_but_strict_sha256() {
        let good = format!("sha256:{}", "a".repeat(64));
        assert!(Digest::parse(&good).is_ok());
        for bad in [
            "sha256:".to_string(),
            format!("sha256:{}", "A".repeat(64)),
            format!("sha256:{}", "a".repeat(63)),
            format!("sha256:{}", "a".repeat(65)),
            format!("sha512:{}", "a".repeat(64)),
            format!("sha256:../{}", "a".repeat(61)),
            format!("sha256:{}/", "a".repeat(63)),
        ] {
            let e = Digest::parse(&bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn round_trips_and_hashes() {
        let d = Digest::of(b"");
        assert_eq!(d.to_string(), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(Digest::parse(&d.to_string()).unwrap(), d);
    }

    #[test]
    fn chain_ids_follow_the_oci_rule() {
        let a = DiffId::new(Digest::of(b"a"));
        let b = DiffId::new(Digest::of(b"b"));
        let c = ChainId::chain(&[a, b]);
        assert_eq!(c[0].digest(), a.digest());
        assert_eq!(c[1].digest(), Digest::of(format!("{a} {b}").as_bytes()));
    }
}
