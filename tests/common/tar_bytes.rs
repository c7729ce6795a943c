//! Tar archives built byte by byte, for tests that need entries no tool writes.

use std::fs;
use std::path::{Path, PathBuf};

use super::{layer_dirs, layers_ok};

/// A 512-byte ustar header with its checksum.
pub fn header(name: &str, flag: u8, size: u64, link: &str) -> Vec<u8> {
    let mut h = vec![0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..107].copy_from_slice(b"0000644");
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
    h[136..147].copy_from_slice(b"14000000000");
    h[156] = flag;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    seal(&mut h);
    h
}

/// Writes the checksum of a header whose fields are set.
pub fn seal(h: &mut [u8]) {
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
}

/// `data` padded to whole blocks.
pub fn padded(data: &[u8]) -> Vec<u8> {
    let mut d = data.to_vec();
    d.resize(data.len().div_ceil(512) * 512, 0);
    d
}

/// A PAX `x` header and its records.
pub fn pax(records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (k, v) in records {
        // The length counts itself: find the fixed point.
        let rest = k.len() + v.len() + 3;
        let mut n = rest + 1;
        while n != rest + n.to_string().len() {
            n = rest + n.to_string().len();
        }
        body.extend_from_slice(format!("{n} {k}=").as_bytes());
        body.extend_from_slice(v);
        body.push(b'\n');
    }
    [header("PaxHeaders/x", b'x', body.len() as u64, ""), padded(&body)].concat()
}

/// A GNU long-name (`L`) or long-link (`K`) header.
pub fn gnu_long(flag: u8, name: &str) -> Vec<u8> {
    let mut body = name.as_bytes().to_vec();
    body.push(0);
    [header("././@LongLink", flag, body.len() as u64, ""), padded(&body)].concat()
}

pub fn file(name: &str, data: &[u8]) -> Vec<u8> {
    [header(name, b'0', data.len() as u64, ""), padded(data)].concat()
}

/// `part` (a header, then its data) with the header's owner and mode set.
pub fn owned(mut part: Vec<u8>, uid: u32, gid: u32, mode: u32) -> Vec<u8> {
    part[100..107].copy_from_slice(format!("{mode:07o}").as_bytes());
    part[108..115].copy_from_slice(format!("{uid:07o}").as_bytes());
    part[116..123].copy_from_slice(format!("{gid:07o}").as_bytes());
    seal(&mut part[..512]);
    part
}

pub fn end() -> Vec<u8> {
    vec![0u8; 1024]
}

/// Imports `tar` as IMAGE into a fresh store; returns the store and the layer dir.
pub fn import(work: &Path, image: &str, parts: &[Vec<u8>]) -> (PathBuf, PathBuf) {
    let path = work.join(format!("{image}.tar"));
    fs::write(&path, parts.concat()).unwrap();
    let store = work.join(format!("store-{image}"));
    layers_ok(&store, &["import", "-q", path.to_str().unwrap(), image]);
    let layer = layer_dirs(&store, image).remove(0);
    (store, layer)
}
