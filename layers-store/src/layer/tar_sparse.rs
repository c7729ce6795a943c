//! GNU sparse files in tar, read as Go's archive/tar reads them: the PAX formats 0.0
//! (`GNU.sparse.offset`/`numbytes` record pairs), 0.1 (`GNU.sparse.map`), both with
//! `GNU.sparse.numblocks`, and 1.0 (the map in decimal at the start of the entry's
//! data). An entry's data holds only the fragments; the rest of the file is holes.
//! (The old GNU type `S` is refused, as Docker and containerd refuse it.)

/// Where a sparse file's data goes: fragments (offset, length) of a file of `size` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparseMap {
    /// Data fragments in file order, not overlapping; between them, holes.
    pub fragments: Vec<(u64, u64)>,
    /// The file's size, holes included.
    pub size: u64,
}

/// The sparse records of one PAX header, as they came.
#[derive(Debug, Default)]
pub(crate) struct PaxSparse {
    pub major: Option<Vec<u8>>,
    pub minor: Option<Vec<u8>>,
    pub name: Option<Vec<u8>>,
    /// `GNU.sparse.size` (0.0, 0.1).
    pub size: Option<Vec<u8>>,
    /// `GNU.sparse.realsize` (1.0).
    pub realsize: Option<Vec<u8>>,
    /// `GNU.sparse.map` (0.1).
    pub map: Option<Vec<u8>>,
    /// `GNU.sparse.numblocks` (0.0, 0.1): how many fragments the map has.
    pub numblocks: Option<Vec<u8>>,
    /// `GNU.sparse.offset` and `GNU.sparse.numbytes` values in order (0.0).
    pub pairs: Vec<u64>,
}

/// Which PAX sparse format a header's records select (as Go decides it).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PaxFormat {
    /// The map is in the records.
    Records(Vec<(u64, u64)>),
    /// 1.0: the map is at the start of the data.
    InData,
}

/// Each fragment bound: a map larger than this is refused (it would only describe
/// more fragments than a layer entry can hold data for).
pub const MAX_FRAGMENTS: usize = 1 << 20;

fn number(v: &[u8], what: &str) -> Result<u64, String> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| format!("sparse {what} is not a number"))
}

fn pairs(numbers: &[u64]) -> Result<Vec<(u64, u64)>, String> {
    if !numbers.len().is_multiple_of(2) {
        return Err("sparse map has an odd count of numbers".into());
    }
    Ok(numbers.chunks(2).map(|p| (p[0], p[1])).collect())
}

impl PaxSparse {
    /// The format and the file's size (`None`: the entry's own), as Go decides them;
    /// `None` overall: not sparse (or a version Go does not know, which it reads as a
    /// plain file, so do we).
    pub fn format(&self) -> Result<Option<(PaxFormat, Option<u64>)>, String> {
        // Go folds 0.0's offset/numbytes records into the 0.1 map.
        let map: Vec<u64> = if self.pairs.is_empty() {
            match self.map.as_deref().filter(|m| !m.is_empty()) {
                Some(m) => m.split(|&b| b == b',').map(|n| number(n, "map entry")).collect::<Result<_, _>>()?,
                None => Vec::new(),
            }
        } else {
            self.pairs.clone()
        };
        let has_map = !self.pairs.is_empty() || self.map.as_deref().is_some_and(|m| !m.is_empty());
        let in_data = match (self.major.as_deref(), self.minor.as_deref()) {
            (Some(b"0"), Some(b"0" | b"1")) => false,
            (Some(b"1"), Some(b"0")) => true,
            (Some(_), _) | (_, Some(_)) => return Ok(None),
            _ if has_map => false,
            _ => return Ok(None),
        };
        let size = match self.size.as_ref().or(self.realsize.as_ref()) {
            Some(s) => Some(number(s, "size")?),
            None => None,
        };
        if in_data {
            return Ok(Some((PaxFormat::InData, size)));
        }
        let blocks = self.numblocks.as_deref().map(|n| number(n, "numblocks")).transpose()?;
        let blocks = blocks.ok_or("sparse map without GNU.sparse.numblocks")?;
        if blocks.checked_mul(2) != Some(map.len() as u64) {
            return Err(format!("sparse map of {} numbers where GNU.sparse.numblocks says {blocks} pairs", map.len()));
        }
        Ok(Some((PaxFormat::Records(pairs(&map)?), size)))
    }
}

/// A 1.0 map from the first blocks of the data: decimal numbers, one per line (the
/// count, then offset and length pairs), padded to whole blocks. `next_block` gives
/// the data 512 bytes at a time; at most `max_bytes` of map are read.
pub(crate) fn map_in_data(
    mut next_block: impl FnMut() -> Result<[u8; 512], String>,
    max_bytes: u64,
) -> Result<(Vec<(u64, u64)>, u64), String> {
    let mut numbers: Vec<u64> = Vec::new();
    let mut want: Option<u64> = None;
    let mut digits: Vec<u8> = Vec::new();
    let mut read = 0u64;
    loop {
        if read + 512 > max_bytes {
            return Err(format!("sparse map longer than {max_bytes} bytes"));
        }
        let block = next_block()?;
        read += 512;
        for &b in &block {
            if b != b'\n' {
                if digits.len() > 20 {
                    return Err("sparse map number too long".into());
                }
                digits.push(b);
                continue;
            }
            let n = number(&digits, "map entry")?;
            digits.clear();
            match want {
                None => {
                    if n as usize > MAX_FRAGMENTS {
                        return Err(format!("sparse map of {n} fragments (at most {MAX_FRAGMENTS})"));
                    }
                    want = Some(2 * n);
                }
                Some(_) => numbers.push(n),
            }
            if want == Some(numbers.len() as u64) {
                return Ok((pairs(&numbers)?, read));
            }
        }
    }
}

/// Go's rules for a map: fragments in order, not overlapping, within the file; and
/// their lengths add up to the data the entry carries, exactly.
pub fn validate(map: &SparseMap, data: u64) -> Result<(), String> {
    if map.fragments.len() > MAX_FRAGMENTS {
        return Err(format!("sparse map of {} fragments (at most {MAX_FRAGMENTS})", map.fragments.len()));
    }
    let mut end = 0u64;
    let mut total = 0u64;
    for &(offset, len) in &map.fragments {
        let stop = offset.checked_add(len).ok_or("sparse fragment overflows")?;
        if offset < end || stop > map.size {
            return Err(format!("sparse fragment at {offset} (+{len}) overlaps another or passes the end"));
        }
        end = stop;
        total += len;
    }
    if total != data {
        return Err(format!("sparse map covers {total} bytes but the entry holds {data}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_in_records_and_in_data() {
        let blocks = |n: &str| Some(n.as_bytes().to_vec());
        let p = PaxSparse {
            size: Some(b"100".to_vec()),
            pairs: vec![0, 5, 50, 5],
            numblocks: blocks("2"),
            ..Default::default()
        };
        assert_eq!(p.format().unwrap(), Some((PaxFormat::Records(vec![(0, 5), (50, 5)]), Some(100))));
        let p = PaxSparse {
            name: Some(b"f".to_vec()),
            map: Some(b"10,2,20,3".to_vec()),
            size: Some(b"30".to_vec()),
            numblocks: blocks("2"),
            ..Default::default()
        };
        assert_eq!(p.format().unwrap(), Some((PaxFormat::Records(vec![(10, 2), (20, 3)]), Some(30))));
        // As Go: GNU.sparse.numblocks is required and must count the map's pairs.
        let p = PaxSparse { map: Some(b"10,2,20,3".to_vec()), numblocks: blocks("3"), ..Default::default() };
        assert!(p.format().unwrap_err().contains("GNU.sparse.numblocks says 3"));
        let p = PaxSparse { map: Some(b"10,2".to_vec()), ..Default::default() };
        assert!(p.format().unwrap_err().contains("without GNU.sparse.numblocks"));
        // An unknown version, or sparse records without a map: a plain file to Go.
        let p = PaxSparse { major: blocks("2"), minor: blocks("0"), map: Some(b"1,1".to_vec()), ..Default::default() };
        assert_eq!(p.format().unwrap(), None);
        let p = PaxSparse { size: Some(b"100".to_vec()), ..Default::default() };
        assert_eq!(p.format().unwrap(), None);
        let mut block = [0u8; 512];
        block[..11].copy_from_slice(b"2\n0\n5\n50\n5\n");
        let (m, used) = map_in_data(|| Ok(block), 4096).unwrap();
        assert_eq!((m, used), (vec![(0, 5), (50, 5)], 512));
        assert!(map_in_data(|| Ok([b'1'; 512]), 4096).is_err(), "a number without end");
    }

    #[test]
    fn validation_follows_go() {
        let ok = SparseMap { fragments: vec![(0, 5), (50, 5)], size: 100 };
        assert!(validate(&ok, 10).is_ok());
        assert!(validate(&ok, 11).is_err(), "unreferenced data");
        assert!(validate(&SparseMap { fragments: vec![(0, 5), (3, 5)], size: 100 }, 10).is_err(), "overlap");
        assert!(validate(&SparseMap { fragments: vec![(98, 5)], size: 100 }, 5).is_err(), "past the end");
        assert!(validate(&SparseMap { fragments: vec![(u64::MAX, 5)], size: 100 }, 5).is_err(), "overflow");
    }
}
