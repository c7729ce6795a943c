//! A [`CopyPlan`] written as a tar stream rather than into a root (`cp CTR:PATH -`):
//! each entry under the name the plan gives it, its bytes read through the tree's fds
//! as they are written, so nothing of the source is staged and memory stays flat.

use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;

use super::copy::{Attrs, CopyPlan};
use super::tree::Tree;
use crate::error::{Error, Result};
use crate::layer::tar::EntryKind;
use crate::layer::tar_writer::{entry_of, HardLinks, TarWriter};

/// Writes `plan`'s entries of `tree` as a tar to `out`: owners as `attrs` gives them,
/// hard links kept as links, sockets (which tar cannot hold) left out.
pub fn write_tar(tree: &Tree, plan: &CopyPlan, out: impl Write, attrs: Attrs) -> Result<()> {
    let mut tar = TarWriter::new(out);
    let mut links = HardLinks::default();
    let mut buf = vec![0u8; 128 * 1024];
    for (e, target) in &plan.items {
        let werr = |err: std::io::Error| Error::io("write tar", e.rel.display(), err);
        let path = target.as_os_str().as_bytes().to_vec();
        let Some(mut entry) = entry_of(path, e.kind(), &e.stat, &mut links) else { continue };
        if !attrs.keep_owner {
            (entry.uid, entry.gid) = (attrs.uid, attrs.gid);
        }
        if let Some(mode) = attrs.mode {
            entry.mode = mode;
        }
        if entry.kind == EntryKind::Symlink {
            entry.link = e.link.clone().unwrap_or_default();
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
