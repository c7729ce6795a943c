//! PAX `x` headers, read as Go's `archive/tar` reads them: length-prefixed records,
//! the keys Go applies (path, linkpath, size, uid, gid, mtime, `SCHILY.xattr.*`, GNU
//! sparse), names refused when they hold a NUL, times as Go's parsePAXTime.

use crate::layer::tar::{to_u32, TarError};
use crate::layer::tar_sparse::{self, PaxSparse};

/// What one PAX `x` header says about the next entry.
#[derive(Debug, Default)]
pub(crate) struct Pax {
    pub path: Option<Vec<u8>>,
    pub link: Option<Vec<u8>>,
    pub size: Option<u64>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mtime: Option<(i64, u32)>,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    pub sparse: PaxSparse,
}

pub(crate) fn parse_pax(data: &[u8]) -> Result<Pax, TarError> {
    let mut p = Pax::default();
    let bad = |why: &str| TarError::Malformed(format!("PAX header: {why}"));
    let mut rest = data;
    while !rest.is_empty() {
        let sp = rest.iter().position(|&b| b == b' ').ok_or_else(|| bad("record without length"))?;
        let len: usize = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("bad record length"))?;
        if len <= sp + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err(bad("record length does not match"));
        }
        let rec = &rest[sp + 1..len - 1];
        rest = &rest[len..];
        let eq = rec.iter().position(|&b| b == b'=').ok_or_else(|| bad("record without '='"))?;
        let (key, val) = (&rec[..eq], &rec[eq + 1..]);
        // As Go's validPAXRecord: names may not hold a NUL (a C string would end
        // there, so readers would disagree on the name); xattr values may.
        let names_a_path = matches!(key, b"path" | b"linkpath" | b"uname" | b"gname");
        if key.is_empty() || (names_a_path && val.contains(&0)) || (!names_a_path && key.contains(&0)) {
            let shown = String::from_utf8_lossy(key.split(|&b| b == 0).next().unwrap_or_default()).into_owned();
            return Err(bad(&format!("record {shown:?} holds a NUL byte")));
        }
        let num = |v: &[u8]| -> Result<u64, TarError> {
            std::str::from_utf8(v).ok().and_then(|s| s.parse().ok()).ok_or_else(|| bad("bad number"))
        };
        // As Go: an empty value keeps what the header says.
        if val.is_empty() && !key.starts_with(b"SCHILY.xattr.") {
            continue;
        }
        match key {
            b"path" => p.path = Some(val.to_vec()),
            b"linkpath" => p.link = Some(val.to_vec()),
            b"size" => p.size = Some(num(val)?),
            b"uid" => p.uid = Some(to_u32(num(val)?, "uid")?),
            b"gid" => p.gid = Some(to_u32(num(val)?, "gid")?),
            b"mtime" => p.mtime = Some(pax_time(val).ok_or_else(|| bad("bad mtime"))?),
            k if k.starts_with(b"SCHILY.xattr.") => p.xattrs.push((k[13..].to_vec(), val.to_vec())),
            b"GNU.sparse.major" => p.sparse.major = Some(val.to_vec()),
            b"GNU.sparse.minor" => p.sparse.minor = Some(val.to_vec()),
            b"GNU.sparse.name" => p.sparse.name = Some(val.to_vec()),
            b"GNU.sparse.size" => p.sparse.size = Some(val.to_vec()),
            b"GNU.sparse.realsize" => p.sparse.realsize = Some(val.to_vec()),
            b"GNU.sparse.map" => p.sparse.map = Some(val.to_vec()),
            b"GNU.sparse.numblocks" => p.sparse.numblocks = Some(val.to_vec()),
            b"GNU.sparse.offset" | b"GNU.sparse.numbytes" => {
                if p.sparse.pairs.len() >= 2 * tar_sparse::MAX_FRAGMENTS {
                    return Err(bad("too many sparse map records"));
                }
                // As Go: offsets and lengths alternate, an offset first.
                let want: &[u8] =
                    if p.sparse.pairs.len() % 2 == 0 { b"GNU.sparse.offset" } else { b"GNU.sparse.numbytes" };
                if key != want {
                    return Err(bad("sparse map records out of order"));
                }
                p.sparse.pairs.push(num(val)?);
            }
            _ => {}
        }
    }
    Ok(p)
}

fn pax_time(v: &[u8]) -> Option<(i64, u32)> {
    // As Go's parsePAXTime: every fraction digit must be a digit (only nine count),
    // and the sign is the seconds' own, so `-0.5` is half a second before the epoch.
    let s = std::str::from_utf8(v).ok()?;
    let (secs_text, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs_text.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut nanos: u32 = 0;
    for (i, c) in frac.bytes().take(9).enumerate() {
        nanos += u32::from(c - b'0') * 10u32.pow(8 - i as u32);
    }
    if secs_text.starts_with('-') && nanos > 0 {
        return Some((secs.checked_sub(1)?, 1_000_000_000 - nanos));
    }
    Some((secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(pax_time(b"1700000000.5"), Some((1_700_000_000, 500_000_000)));
        assert_eq!(pax_time(b"-1.5"), Some((-2, 500_000_000)));
        // Go: -0.5 s, not +0.5 s; a non-digit anywhere in the fraction is refused.
        assert_eq!(pax_time(b"-0.5"), Some((-1, 500_000_000)));
        assert_eq!(pax_time(b"1.1234567891"), Some((1, 123_456_789)));
        assert_eq!(pax_time(b"1.123456789x"), None);
        assert_eq!(pax_time(b"1.x"), None);
        assert_eq!(pax_time(b"-"), None);
    }

    #[test]
    fn pax_records() {
        let rec = b"18 path=some/name\n27 SCHILY.xattr.user.a=xyz\n";
        let p = parse_pax(rec).unwrap();
        assert_eq!(p.path.as_deref(), Some(&b"some/name"[..]));
        assert_eq!(p.xattrs, vec![(b"user.a".to_vec(), b"xyz".to_vec())]);
        assert!(parse_pax(b"99 path=x\n").is_err());
        // A NUL in a name is refused by name; in an xattr value it is data.
        let err = parse_pax(b"16 linkpath=a\0b\n").unwrap_err().to_string();
        assert!(err.contains("\"linkpath\" holds a NUL byte"), "{err}");
        assert!(parse_pax(b"26 SCHILY.xattr.user.b=\0\x01\n").is_ok());
        assert!(parse_pax(b"24 SCHILY.xattr.us\0er=x\n").is_err());
    }
}
