//! Walking a tree that others write (a container's upper dir) through directory fds,
//! the read side of the [`Root`](crate::fsroot::Root) door: each child is reached from
//! its parent's fd by name, never by a path resolved again from the top, so a
//! directory swapped for a symlink while the walk runs cannot lead it outside.
//!
//! Names are visited in byte order, parents before children. One fd is held per
//! directory level being walked.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

use crate::error::{Error, Result};

/// One node met by [`walk`].
pub struct Node<'a> {
    parent: BorrowedFd<'a>,
    /// Its path below the root, `/`-separated (for names in tars and messages).
    pub rel: &'a [u8],
    /// Its name in its parent.
    pub name: &'a [u8],
    /// Its `lstat`.
    pub stat: Stat,
}

impl Node<'_> {
    /// What kind of node it is (a symlink is not followed).
    pub fn file_type(&self) -> FileType {
        FileType::from_raw_mode(self.stat.st_mode)
    }

    /// Opens it for reading: only a regular file, and never through a symlink.
    pub fn open_file(&self) -> std::io::Result<File> {
        let fd =
            rfs::openat(self.parent, self.name, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?;
        if FileType::from_raw_mode(rfs::fstat(&fd)?.st_mode) != FileType::RegularFile {
            return Err(Errno::INVAL.into());
        }
        Ok(File::from(fd))
    }

    /// A symlink's target.
    pub fn read_link(&self) -> std::io::Result<Vec<u8>> {
        Ok(rfs::readlinkat(self.parent, self.name, Vec::new())?.into_bytes())
    }

    /// The node through its parent's fd (`/proc/self/fd/N/NAME`), for the `l*xattr`
    /// calls, which take no dir fd: the magic link is the parent itself, and the `l`
    /// calls do not follow a final symlink.
    fn proc_path(&self) -> PathBuf {
        let mut p = PathBuf::from(format!("/proc/self/fd/{}", self.parent.as_raw_fd()));
        p.push(std::ffi::OsStr::from_bytes(self.name));
        p
    }

    /// Its extended attributes, sorted by name (none where the filesystem has none).
    pub fn xattrs(&self) -> std::io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let p = self.proc_path();
        super::root::read_xattrs(|buf| rfs::llistxattr(&p, buf), |k, buf| rfs::lgetxattr(&p, k, buf))
    }

    /// Removes an extended attribute.
    pub fn remove_xattr(&self, name: &[u8]) -> std::result::Result<(), Errno> {
        rfs::lremovexattr(self.proc_path(), name)
    }
}

/// A directory level being walked.
struct Level {
    fd: OwnedFd,
    rel: Vec<u8>,
    names: Vec<Vec<u8>>,
    next: usize,
}

/// Names in `dir`, sorted by bytes.
fn sorted_names(dir: &OwnedFd) -> std::result::Result<Vec<Vec<u8>>, Errno> {
    let mut names = Vec::new();
    for entry in rfs::Dir::read_from(dir)? {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Calls `visit` for every node under `root` (not `root` itself), parents first, in
/// name order; a directory's children are visited when `visit` returns true for it.
/// `op` names the walk in errors.
pub fn walk(op: &'static str, root: &Path, visit: &mut dyn FnMut(&Node) -> Result<bool>) -> Result<()> {
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let top = rfs::open(root, dir_flags, Mode::empty()).map_err(|e| Error::errno(op, root.display(), e))?;
    let names = sorted_names(&top).map_err(|e| Error::errno(op, root.display(), e))?;
    let mut stack = vec![Level { fd: top, rel: Vec::new(), names, next: 0 }];
    let shown = |rel: &[u8]| format!("{}/{}", root.display(), String::from_utf8_lossy(rel));
    while let Some(level) = stack.last_mut() {
        let Some(name) = level.names.get(level.next).cloned() else {
            stack.pop();
            continue;
        };
        level.next += 1;
        let mut rel = level.rel.clone();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(&name);
        let stat = match rfs::statat(&level.fd, &name[..], AtFlags::SYMLINK_NOFOLLOW) {
            Ok(s) => s,
            // Gone since the listing (a running container): nothing to visit.
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(Error::errno(op, shown(&rel), e)),
        };
        let node = Node { parent: level.fd.as_fd(), rel: &rel, name: &name, stat };
        let descend = visit(&node)? && node.file_type() == FileType::Directory;
        if descend {
            let fd = rfs::openat(&level.fd, &name[..], dir_flags, Mode::empty())
                .map_err(|e| Error::errno(op, shown(&rel), e))?;
            let names = sorted_names(&fd).map_err(|e| Error::errno(op, shown(&rel), e))?;
            stack.push(Level { fd, rel, names, next: 0 });
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // the test builds its trees by path
mod tests {
    use super::*;

    #[test]
    fn a_directory_swapped_for_a_symlink_mid_walk_is_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let (root, outside) = (t.path().join("root"), t.path().join("outside"));
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::write(root.join("a/mine"), "x").unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret"), "s").unwrap();
        let mut seen = Vec::new();
        let result = walk("test walk", &root, &mut |node| {
            seen.push(String::from_utf8_lossy(node.rel).into_owned());
            if node.rel == b"a" {
                // What a running container can do between our lstat and our descent.
                std::fs::rename(root.join("a"), root.join("was-a")).unwrap();
                std::os::unix::fs::symlink(&outside, root.join("a")).unwrap();
            }
            Ok(true)
        });
        assert!(result.is_err(), "descending into a symlink must fail: {seen:?}");
        assert!(!seen.iter().any(|s| s.contains("secret")), "{seen:?}");
    }

    #[test]
    fn nodes_come_parents_first_in_byte_order() {
        let t = tempfile::tempdir().unwrap();
        for d in ["b/c", "a"] {
            std::fs::create_dir_all(t.path().join(d)).unwrap();
        }
        std::fs::write(t.path().join("b/Z"), "").unwrap();
        std::os::unix::fs::symlink("/etc", t.path().join("b/c/link")).unwrap();
        let mut seen = Vec::new();
        walk("test walk", t.path(), &mut |node| {
            seen.push(String::from_utf8_lossy(node.rel).into_owned());
            Ok(true)
        })
        .unwrap();
        assert_eq!(seen, ["a", "b", "b/Z", "b/c", "b/c/link"]);
    }
}
