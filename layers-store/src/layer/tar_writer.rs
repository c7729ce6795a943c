//! A deterministic tar writer: ustar headers, with a PAX extension header only
//! where ustar cannot hold a field (long names, large numbers, xattrs). No user or
//! group names, no access or change times: the same tree gives the same bytes.

use std::collections::HashMap;
use std::io::{self, Write};

use rustix::fs::{FileType, Stat};

use crate::layer::tar::{Entry, EntryKind};

const BLOCK: usize = 512;

/// The name each file with more than one link was first written under, so that its
/// other names go into the tar as hard links to it.
#[derive(Debug, Default)]
pub struct HardLinks(HashMap<(u64, u64), Vec<u8>>);

/// The header of file `path`, of type `ft`, as `m` describes it: its kind, mode,
/// owner, mtime and device numbers, or a hard link to its first name when `links`
/// has seen the inode. `None` for a socket, which a tar cannot hold. A symlink's
/// target and a file's size are the caller's to fill (it reads the file).
pub fn entry_of(path: Vec<u8>, ft: FileType, m: &Stat, links: &mut HardLinks) -> Option<Entry> {
    let mut e = Entry {
        path,
        link: Vec::new(),
        kind: EntryKind::File,
        mode: m.st_mode & 0o7777,
        uid: m.st_uid,
        gid: m.st_gid,
        mtime: (m.st_mtime, 0),
        size: 0,
        dev: (0, 0),
        xattrs: Vec::new(),
        sparse: None,
    };
    let inode = (m.st_dev, m.st_ino);
    match ft {
        FileType::Directory => e.kind = EntryKind::Dir,
        FileType::Symlink => e.kind = EntryKind::Symlink,
        FileType::CharacterDevice | FileType::BlockDevice => {
            e.kind = if ft == FileType::CharacterDevice { EntryKind::Char } else { EntryKind::Block };
            e.dev = (rustix::fs::major(m.st_rdev), rustix::fs::minor(m.st_rdev));
        }
        FileType::Fifo => e.kind = EntryKind::Fifo,
        // Sockets belong to running processes; tar has no type for them.
        FileType::Socket | FileType::Unknown => return None,
        FileType::RegularFile if m.st_nlink > 1 => match links.0.get(&inode) {
            Some(first) => {
                e.kind = EntryKind::Hardlink;
                e.link = first.clone();
            }
            None => {
                links.0.insert(inode, e.path.clone());
            }
        },
        FileType::RegularFile => {}
    }
    Some(e)
}

/// Writes entries, then the end-of-archive marker on `finish`.
pub struct TarWriter<W: Write> {
    inner: W,
    /// Data bytes the current entry still owes.
    owed: u64,
    /// Padding after the current entry's data.
    padding: usize,
}

impl<W: Write> TarWriter<W> {
    /// A writer onto `inner`.
    pub fn new(inner: W) -> Self {
        TarWriter { inner, owed: 0, padding: 0 }
    }

    /// Writes the header of `e`; a regular file's `e.size` bytes follow through `write_data`.
    pub fn append(&mut self, e: &Entry) -> io::Result<()> {
        if self.owed > 0 {
            return Err(io::Error::other(format!("tar entry before the previous one's {} data bytes", self.owed)));
        }
        let size = if e.kind == EntryKind::File { e.size } else { 0 };
        let mut path = e.path.clone();
        if e.kind == EntryKind::Dir && !path.ends_with(b"/") {
            path.push(b'/');
        }
        let mut pax: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        if path.len() > 100 {
            pax.push((b"path".to_vec(), path.clone()));
        }
        if e.link.len() > 100 {
            pax.push((b"linkpath".to_vec(), e.link.clone()));
        }
        for (key, value, max) in
            [("uid", e.uid as u64, 0o7777777), ("gid", e.gid as u64, 0o7777777), ("size", size, 0o77777777777)]
        {
            if value > max {
                pax.push((key.as_bytes().to_vec(), value.to_string().into_bytes()));
            }
        }
        let secs = e.mtime.0;
        if !(0..=0o77777777777).contains(&secs) {
            pax.push((b"mtime".to_vec(), secs.to_string().into_bytes()));
        }
        for (k, v) in &e.xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(k);
            pax.push((key, v.clone()));
        }
        if !pax.is_empty() {
            let body = pax_records(&pax);
            let name = pax_name(&path);
            let h = header(&name, b'x', 0o644, 0, 0, body.len() as u64, 0, b"", (0, 0));
            self.inner.write_all(&h)?;
            self.inner.write_all(&body)?;
            self.inner.write_all(&[0u8; BLOCK][..pad(body.len() as u64)])?;
        }
        let flag = match e.kind {
            EntryKind::File => b'0',
            EntryKind::Hardlink => b'1',
            EntryKind::Symlink => b'2',
            EntryKind::Char => b'3',
            EntryKind::Block => b'4',
            EntryKind::Dir => b'5',
            EntryKind::Fifo => b'6',
        };
        let h = header(&path, flag, e.mode, e.uid as u64, e.gid as u64, size, secs.max(0), &e.link, e.dev);
        self.inner.write_all(&h)?;
        self.owed = size;
        self.padding = pad(size);
        Ok(())
    }

    /// Writes data of the current entry; errors if more than its size.
    pub fn write_data(&mut self, buf: &[u8]) -> io::Result<()> {
        if buf.len() as u64 > self.owed {
            return Err(io::Error::other("tar entry data longer than its header says (file grew while read)"));
        }
        self.inner.write_all(buf)?;
        self.owed -= buf.len() as u64;
        if self.owed == 0 && self.padding > 0 {
            self.inner.write_all(&[0u8; BLOCK][..self.padding])?;
            self.padding = 0;
        }
        Ok(())
    }

    /// Whether the current entry still owes data (a file shrank while read).
    pub fn owed(&self) -> u64 {
        self.owed
    }

    /// Writes the end marker (two zero blocks) and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        if self.owed > 0 {
            return Err(io::Error::other(format!("tar ended {} bytes short of the last entry", self.owed)));
        }
        self.inner.write_all(&[0u8; 2 * BLOCK])?;
        Ok(self.inner)
    }
}

fn pad(n: u64) -> usize {
    (BLOCK - (n % BLOCK as u64) as usize) % BLOCK
}

/// `"%d %s=%s\n"` records, where the length counts itself.
fn pax_records(records: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in records {
        let rest = k.len() + v.len() + 3; // ' ', '=', '\n'
        let mut len = rest + 1;
        while len != rest + len.to_string().len() {
            len = rest + len.to_string().len();
        }
        out.extend_from_slice(len.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(k);
        out.push(b'=');
        out.extend_from_slice(v);
        out.push(b'\n');
    }
    out
}

/// GNU tar's name for an extension header: `DIR/PaxHeaders/BASE`, cut to fit.
fn pax_name(path: &[u8]) -> Vec<u8> {
    let trimmed = path.strip_suffix(b"/").unwrap_or(path);
    let (dir, base) = match trimmed.iter().rposition(|&b| b == b'/') {
        Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
        None => (&b"."[..], trimmed),
    };
    let mut name = dir.to_vec();
    name.extend_from_slice(b"/PaxHeaders/");
    name.extend_from_slice(base);
    if name.len() > 100 {
        name = b"PaxHeaders/".to_vec();
        name.extend_from_slice(&base[..base.len().min(89)]);
    }
    name
}

#[allow(clippy::too_many_arguments)]
fn header(
    name: &[u8],
    flag: u8,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: i64,
    link: &[u8],
    dev: (u32, u32),
) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    let cut = |s: &[u8], n: usize| s[..s.len().min(n)].to_vec();
    h[..name.len().min(100)].copy_from_slice(&cut(name, 100));
    octal(&mut h[100..108], (mode & 0o7777) as u64);
    octal(&mut h[108..116], uid.min(0o7777777));
    octal(&mut h[116..124], gid.min(0o7777777));
    octal(&mut h[124..136], size.min(0o77777777777));
    octal(&mut h[136..148], (mtime as u64).min(0o77777777777));
    h[156] = flag;
    h[157..157 + link.len().min(100)].copy_from_slice(&cut(link, 100));
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    if matches!(flag, b'3' | b'4') {
        octal(&mut h[329..337], dev.0 as u64);
        octal(&mut h[337..345], dev.1 as u64);
    }
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|&b| b as u64).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    h
}

/// Zero-padded octal with a terminating NUL, filling `field`.
fn octal(field: &mut [u8], v: u64) {
    let s = format!("{v:0width$o}\0", width = field.len() - 1);
    field.copy_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::tar::TarReader;

    fn entry(path: &str, kind: EntryKind) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            link: Vec::new(),
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: (1_700_000_000, 0),
            size: 0,
            dev: (0, 0),
            xattrs: Vec::new(),
            sparse: None,
        }
    }

    #[test]
    fn round_trips_through_our_reader() {
        let long = format!("{}/file", "d".repeat(150));
        let mut f = entry(&long, EntryKind::File);
        f.size = 5;
        f.uid = 3_000_000;
        f.xattrs = vec![(b"user.k".to_vec(), b"v\n=1".to_vec())];
        let mut l = entry("link", EntryKind::Symlink);
        l.link = "t".repeat(120).into_bytes();
        let mut c = entry("dev/null", EntryKind::Char);
        c.dev = (1, 3);
        let mut w = TarWriter::new(Vec::new());
        w.append(&entry("dir", EntryKind::Dir)).unwrap();
        w.append(&f).unwrap();
        w.write_data(b"hello").unwrap();
        w.append(&l).unwrap();
        w.append(&c).unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len() % BLOCK, 0);

        let mut r = TarReader::new(&bytes[..], 1 << 20);
        let d = r.next_entry().unwrap().unwrap();
        assert_eq!((d.path.as_slice(), d.kind), (&b"dir/"[..], EntryKind::Dir));
        let got = r.next_entry().unwrap().unwrap();
        assert_eq!(got.path, long.as_bytes());
        assert_eq!((got.size, got.uid, got.mtime.0), (5, 3_000_000, 1_700_000_000));
        assert_eq!(got.xattrs, f.xattrs);
        let mut data = [0u8; 5];
        assert_eq!(r.read_data(&mut data).unwrap(), 5);
        assert_eq!(&data, b"hello");
        let got = r.next_entry().unwrap().unwrap();
        assert_eq!(got.link, l.link);
        let got = r.next_entry().unwrap().unwrap();
        assert_eq!((got.kind, got.dev), (EntryKind::Char, (1, 3)));
        assert!(r.next_entry().unwrap().is_none());
    }

    #[test]
    fn pax_lengths_count_themselves() {
        // 9 + 1 + 1 = "10 a=bbbbb\n" is 11 bytes, so the length is 11, which has two digits.
        let rec = pax_records(&[(b"a".to_vec(), b"bbbbb".to_vec())]);
        assert_eq!(rec, b"11 a=bbbbb\n");
        // 98 bytes without the length: two digits would make 100, which needs three: 101.
        let rec = pax_records(&[(b"k".to_vec(), vec![b'x'; 94])]);
        assert_eq!(rec.len(), 101);
        assert!(rec.starts_with(b"101 k="));
    }

    #[test]
    fn data_must_match_the_header() {
        let mut f = entry("f", EntryKind::File);
        f.size = 2;
        let mut w = TarWriter::new(Vec::new());
        w.append(&f).unwrap();
        assert!(w.write_data(b"abc").is_err());
        w.write_data(b"a").unwrap();
        assert!(w.finish().is_err(), "one byte short");
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // the test makes its files by path
    fn entries_of_files_keep_their_kind_and_a_second_name_is_a_hard_link() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("a"), b"x").unwrap();
        std::fs::hard_link(d.join("a"), d.join("b")).unwrap();
        std::fs::write(d.join("single"), b"y").unwrap();
        symlink("a", d.join("l")).unwrap();
        std::fs::create_dir(d.join("sub")).unwrap();
        let _socket = std::os::unix::net::UnixListener::bind(d.join("sock")).unwrap();
        use std::os::unix::fs::MetadataExt;
        let of = |name: &str, links: &mut HardLinks| {
            let m = rustix::fs::lstat(d.join(name)).unwrap();
            entry_of(name.as_bytes().to_vec(), FileType::from_raw_mode(m.st_mode), &m, links)
        };
        let mut links = HardLinks::default();
        let first = of("a", &mut links).unwrap();
        assert_eq!(
            (first.kind, first.mode),
            (EntryKind::File, std::fs::metadata(d.join("a")).unwrap().mode() & 0o7777)
        );
        let second = of("b", &mut links).unwrap();
        assert_eq!((second.kind, second.link.as_slice()), (EntryKind::Hardlink, &b"a"[..]));
        assert_eq!(of("single", &mut links).unwrap().kind, EntryKind::File);
        assert_eq!(of("single", &mut links).unwrap().kind, EntryKind::File, "one link: never a hard link");
        let l = of("l", &mut links).unwrap();
        assert!(l.kind == EntryKind::Symlink && l.link.is_empty(), "the target is the caller's to read");
        assert_eq!(of("sub", &mut links).unwrap().kind, EntryKind::Dir);
        assert!(of("sock", &mut links).is_none(), "a socket has no tar entry");
    }
}
