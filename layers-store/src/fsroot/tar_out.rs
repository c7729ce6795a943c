//! A [`CopyPlan`] written as a tar stream rather than into a root (`cp CTR:PATH -`):
//! each entry under the name the plan gives it, its bytes read through the tree's fds
//! as they are written, so nothing of the source is staged and memory stays flat.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::FileType;

use super::copy::{Attrs, CopyPlan};
use super::tree::Tree;
use crate::error::{Error, Result};
use crate::layer::tar::{Entry, EntryKind};
use crate::layer::tar_writer::TarWriter;

/// Writes `plan`'s entries of `tree` as a tar to `out`: owners as `attrs` gives them,
/// hard links kept as links, sockets (which tar cannot hold) left out.
pub fn write_tar(tree: &Tree, plan: &CopyPlan, out: impl Write, attrs: Attrs) -> Result<()> {
    let mut tar = TarWriter::new(out);
    let mut links: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    let mut buf = vec![0u8; 128 * 1024];
    for (e, target) in &plan.items {
        let werr = |err: std::io::Error| Error::io("write tar", e.rel.display(), err);
        let m = &e.stat;
        let (uid, gid) = if attrs.keep_owner { (m.st_uid, m.st_gid) } else { (attrs.uid, attrs.gid) };
        let mut entry = Entry {
            path: target.as_os_str().as_bytes().to_vec(),
            link: Vec::new(),
            kind: EntryKind::File,
            mode: attrs.mode.unwrap_or(m.st_mode & 0o7777),
            uid,
            gid,
            mtime: (m.st_mtime, 0),
            size: 0,
            dev: (0, 0),
            xattrs: Vec::new(),
            sparse: None,
        };
        let inode = (m.st_dev, m.st_ino);
        match e.kind() {
            FileType::Directory => entry.kind = EntryKind::Dir,
            FileType::Symlink => {
                entry.kind = EntryKind::Symlink;
                entry.link = e.link.clone().unwrap_or_default();
            }
            FileType::CharacterDevice | FileType::BlockDevice => {
                let char = e.kind() == FileType::CharacterDevice;
                entry.kind = if char { EntryKind::Char } else { EntryKind::Block };
                entry.dev = (rustix::fs::major(m.st_rdev), rustix::fs::minor(m.st_rdev));
            }
            FileType::Fifo => entry.kind = EntryKind::Fifo,
            FileType::Socket | FileType::Unknown => continue,
            FileType::RegularFile if m.st_nlink > 1 && links.contains_key(&inode) => {
                entry.kind = EntryKind::Hardlink;
                entry.link = links[&inode].clone();
            }
            FileType::RegularFile => {
                if m.st_nlink > 1 {
                    links.insert(inode, entry.path.clone());
                }
            }
        }
        if entry.kind != EntryKind::File {
            tar.append(&entry).map_err(werr)?;
            continue;
        }
        // Sized by the open file: one that changes while read (a running container's)
        // fails rather than writing a header its data does not match.
        let mut f = tree.open_file(&e.rel)?;
        entry.size = f.metadata().map_err(werr)?.len();
        tar.append(&entry).map_err(werr)?;
        let mut left = entry.size;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = f.read(&mut buf[..want]).map_err(werr)?;
            if n == 0 {
                return Err(werr(std::io::Error::other("the file shrank while it was read")));
            }
            tar.write_data(&buf[..n]).map_err(werr)?;
            left -= n as u64;
        }
    }
    tar.finish()
        .map_err(|err| Error::io("write tar", "end of archive", err))?
        .flush()
        .map_err(|err| Error::io("write tar", "end of archive", err))?;
    Ok(())
}
