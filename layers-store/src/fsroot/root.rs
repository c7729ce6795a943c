//! `Root`: the only door into a directory tree we fill from untrusted input.
//!
//! Every lookup starts at the root's directory fd and goes through `openat2` with
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`, so a name from a
//! tar can never reach outside the tree, not through `..`, not through a symlink
//! placed earlier in the same archive. Operations on a child name go through a
//! `Subdir` (an open directory beneath the root) and never follow a final symlink.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, Dev, FileType, Mode, OFlags, ResolveFlags, Timestamps, XattrFlags};
use rustix::io::Errno;

/// The longest path we accept inside a layer, as the kernel's PATH_MAX.
pub const MAX_PATH: usize = 4096;

const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

/// Why a name cannot be a path beneath a root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRule {
    /// Starts with `/`.
    Absolute,
    /// Has a `..` component.
    DotDot,
    /// Contains a NUL byte.
    Nul,
    /// Longer than `MAX_PATH`.
    TooLong,
}

impl std::fmt::Display for PathRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PathRule::Absolute => "absolute path",
            PathRule::DotDot => "path has a '..' component",
            PathRule::Nul => "path contains a NUL byte",
            PathRule::TooLong => "path longer than 4096 bytes",
        })
    }
}

/// A normalized relative path: components joined by `/`, none empty, `.` or `..`.
/// The empty path is the root itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelPath(Vec<u8>);

impl RelPath {
    /// Normalizes `raw` (a leading `./`, repeated and trailing `/`, `.` components
    /// are dropped) and rejects anything that could point outside.
    pub fn parse(raw: &[u8]) -> Result<RelPath, PathRule> {
        if raw.len() > MAX_PATH {
            return Err(PathRule::TooLong);
        }
        if raw.first() == Some(&b'/') {
            return Err(PathRule::Absolute);
        }
        if raw.contains(&0) {
            return Err(PathRule::Nul);
        }
        let mut out = Vec::with_capacity(raw.len());
        for comp in raw.split(|&b| b == b'/') {
            match comp {
                b"" | b"." => continue,
                b".." => return Err(PathRule::DotDot),
                _ => {
                    if !out.is_empty() {
                        out.push(b'/');
                    }
                    out.extend_from_slice(comp);
                }
            }
        }
        Ok(RelPath(out))
    }

    /// Whether this is the root itself.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The path bytes, `a/b/c`.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Splits into the parent path and the last component (empty for the root).
    pub fn split_last(&self) -> (&[u8], &[u8]) {
        split_last(&self.0)
    }
}

/// `a/b/c` as (`a/b`, `c`); `c` as (``, `c`).
pub fn split_last(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

/// `name` beneath `parent` (`""` is the root): `parent/name`.
pub fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut v = parent.to_vec();
    if !v.is_empty() {
        v.push(b'/');
    }
    v.extend_from_slice(name);
    v
}

impl std::fmt::Display for RelPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

impl AsFd for Subdir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// An open directory tree; every access to it goes through this type.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

impl Root {
    /// Opens an existing directory as a root.
    pub fn open(path: &Path) -> io::Result<Root> {
        let fd = rfs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        Ok(Root { fd, path: path.to_path_buf() })
    }

    /// A root at a directory already open (`path` for messages only).
    pub fn from_fd(fd: OwnedFd, path: PathBuf) -> Root {
        Root { fd, path }
    }

    /// Where the root is, for messages only (never for access).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The root directory itself as a `Subdir`.
    pub fn top(&self) -> io::Result<Subdir> {
        Ok(Subdir { fd: self.fd.try_clone()? })
    }

    /// Opens the directory at `rel` beneath the root without following any symlink;
    /// with `create`, missing components are made (mode 0755) as tar extractors do.
    pub fn dir(&self, rel: &[u8], create: bool) -> io::Result<Subdir> {
        if rel.is_empty() {
            return self.top();
        }
        match open_beneath(self.fd.as_fd(), rel) {
            Ok(fd) => return Ok(Subdir { fd }),
            Err(Errno::NOENT) if create => {}
            Err(e) => return Err(e.into()),
        }
        let mut cur = self.fd.try_clone()?;
        for comp in rel.split(|&b| b == b'/') {
            cur = match open_beneath(cur.as_fd(), comp) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => {
                    match rfs::mkdirat(&cur, comp, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    open_beneath(cur.as_fd(), comp)?
                }
                Err(e) => return Err(e.into()),
            };
        }
        Ok(Subdir { fd: cur })
    }

    /// Explains why `dir(rel)` failed: the first component that is a symlink
    /// (`true`) or some other non-directory (`false`).
    pub fn blocking_component(&self, rel: &[u8]) -> Option<(String, bool)> {
        let mut end = 0;
        for comp in rel.split(|&b| b == b'/') {
            end += comp.len();
            let prefix = &rel[..end];
            match rfs::statat(&self.fd, prefix, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => match FileType::from_raw_mode(st.st_mode) {
                    FileType::Directory => {}
                    FileType::Symlink => return Some((String::from_utf8_lossy(prefix).into_owned(), true)),
                    _ => return Some((String::from_utf8_lossy(prefix).into_owned(), false)),
                },
                Err(_) => return None,
            }
            end += 1;
        }
        None
    }

    /// Flushes every dirty page of the filesystem holding the root (one `syncfs`).
    pub fn sync_filesystem(&self) -> io::Result<()> {
        Ok(rfs::syncfs(&self.fd)?)
    }
}

#[allow(clippy::disallowed_methods)] // the resolution this module is the door for
fn open_beneath(dir: BorrowedFd<'_>, rel: &[u8]) -> Result<OwnedFd, Errno> {
    rfs::openat2(
        dir,
        rel,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
        RESOLVE,
    )
}

/// What is at a name, without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Nothing.
    Nothing,
    /// A real directory.
    Dir,
    /// Anything else (file, symlink, device, fifo, socket).
    Other,
}

/// Ownership, permissions and modification time to give a node.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    /// Numeric owner.
    pub uid: u32,
    /// Numeric group.
    pub gid: u32,
    /// Permission bits including setuid, setgid and sticky.
    pub mode: u32,
    /// Seconds and nanoseconds since the epoch.
    pub mtime: (i64, u32),
}

impl Meta {
    fn timestamps(&self) -> Timestamps {
        let t = rustix::time::Timespec { tv_sec: self.mtime.0, tv_nsec: self.mtime.1 as _ };
        Timestamps { last_access: t, last_modification: t }
    }
}

/// An open directory beneath a `Root`; operations take a single child name.
#[derive(Debug)]
pub struct Subdir {
    fd: OwnedFd,
}

impl Subdir {
    /// What is at `name` now.
    pub fn existing(&self, name: &[u8]) -> io::Result<Existing> {
        match rfs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => Ok(Existing::Dir),
            Ok(_) => Ok(Existing::Other),
            Err(Errno::NOENT) => Ok(Existing::Nothing),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes whatever is at `name`, a whole directory tree included; absent is fine.
    pub fn remove(&self, name: &[u8]) -> io::Result<()> {
        match rfs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(Errno::ISDIR) | Err(Errno::PERM) => self.remove_tree(name),
            Err(e) => Err(e.into()),
        }
    }

    fn remove_tree(&self, name: &[u8]) -> io::Result<()> {
        let child = Subdir { fd: open_beneath(self.fd.as_fd(), name)? };
        let mut names = Vec::new();
        for entry in rfs::Dir::read_from(&child.fd)? {
            let entry = entry?;
            let n = entry.file_name().to_bytes();
            if n != b"." && n != b".." {
                names.push(n.to_vec());
            }
        }
        for n in names {
            child.remove(&n)?;
        }
        drop(child);
        match rfs::unlinkat(&self.fd, name, AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens the child directory `name` (never through a symlink).
    pub fn child_dir(&self, name: &[u8]) -> io::Result<Subdir> {
        Ok(Subdir { fd: open_beneath(self.fd.as_fd(), name)? })
    }

    /// Makes a directory; `Ok(false)` if one is already there.
    pub fn mkdir(&self, name: &[u8]) -> io::Result<bool> {
        match rfs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o700)) {
            Ok(()) => Ok(true),
            Err(Errno::EXIST) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates a new regular file with permissions `mode` (less the umask), failing if
    /// anything is at `name`.
    pub fn create_file(&self, name: &[u8], mode: u32) -> io::Result<File> {
        let fd = rfs::openat(
            &self.fd,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode & 0o777),
        )?;
        Ok(File::from(fd))
    }

    /// Creates a symlink `name -> target`; the target is stored, never resolved.
    pub fn symlink(&self, name: &[u8], target: &[u8]) -> io::Result<()> {
        Ok(rfs::symlinkat(target, &self.fd, name)?)
    }

    /// Creates a hardlink `name` to `src_name` in `src` (the source itself, not what it points to).
    pub fn hardlink(&self, name: &[u8], src: &Subdir, src_name: &[u8]) -> io::Result<()> {
        Ok(rfs::linkat(&src.fd, src_name, &self.fd, name, AtFlags::empty())?)
    }

    /// Creates a device node or fifo.
    pub fn mknod(&self, name: &[u8], kind: FileType, major: u32, minor: u32) -> io::Result<()> {
        let dev: Dev = rfs::makedev(major, minor);
        Ok(rfs::mknodat(&self.fd, name, kind, Mode::from_raw_mode(0o600), dev)?)
    }

    /// Sets owner and mode of this directory itself.
    pub fn set_owner_mode(&self, meta: &Meta) -> io::Result<()> {
        set_owner_mode_fd(self.fd.as_fd(), meta)
    }

    /// Sets only the mtime of this directory (done after its children are written).
    pub fn set_mtime(&self, meta: &Meta) -> io::Result<()> {
        Ok(rfs::futimens(&self.fd, &meta.timestamps())?)
    }

    /// Sets owner, mode (not for symlinks) and mtime of `name` without following it.
    pub fn set_meta_at(&self, name: &[u8], meta: &Meta, is_symlink: bool) -> io::Result<()> {
        unmapped_owner_kept(rfs::chownat(
            &self.fd,
            name,
            Some(uid(meta.uid)),
            Some(gid(meta.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        ))?;
        if !is_symlink {
            // The node was created by us a moment ago, in a tree only we write to,
            // so `fchmodat` (which cannot refuse to follow) finds that same node.
            rfs::chmodat(&self.fd, name, Mode::from_raw_mode(meta.mode & 0o7777), AtFlags::empty())?;
        }
        Ok(rfs::utimensat(&self.fd, name, &meta.timestamps(), AtFlags::SYMLINK_NOFOLLOW)?)
    }

    /// Sets an xattr on this directory itself.
    pub fn set_xattr(&self, key: &[u8], value: &[u8]) -> io::Result<()> {
        Ok(rfs::fsetxattr(&self.fd, key, value, XattrFlags::empty())?)
    }

    /// This directory's status.
    pub fn stat_self(&self) -> io::Result<rfs::Stat> {
        Ok(rfs::fstat(&self.fd)?)
    }

    /// The status of `name`, not following it.
    pub fn stat_at(&self, name: &[u8]) -> io::Result<rfs::Stat> {
        Ok(rfs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW)?)
    }

    /// This directory's extended attributes, sorted by name.
    pub fn xattrs_self(&self) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        xattrs_fd(self.fd.as_fd())
    }

    /// The extended attributes of `name` (not following it), sorted by name.
    pub fn xattrs_at(&self, name: &[u8]) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut path = format!("/proc/self/fd/{}/", self.fd.as_raw_fd()).into_bytes();
        path.extend_from_slice(name);
        let path = path.as_slice();
        read_xattrs(|buf| rfs::llistxattr(path, buf), |k, buf| rfs::lgetxattr(path, k, buf))
    }

    /// Sets an xattr on `name` without following it if it is a symlink.
    pub fn set_xattr_at(&self, name: &[u8], key: &[u8], value: &[u8]) -> io::Result<()> {
        // `lsetxattr` needs a path; going through our own verified dir fd keeps it beneath the root.
        let mut path = format!("/proc/self/fd/{}/", self.fd.as_raw_fd()).into_bytes();
        path.extend_from_slice(name);
        Ok(rfs::lsetxattr(path.as_slice(), key, value, XattrFlags::empty())?)
    }
}

/// Sets owner, then mode (chown clears setuid bits), on an open fd.
pub fn set_owner_mode_fd(fd: BorrowedFd<'_>, meta: &Meta) -> io::Result<()> {
    unmapped_owner_kept(rfs::fchown(fd, Some(uid(meta.uid)), Some(gid(meta.gid))))?;
    Ok(rfs::fchmod(fd, Mode::from_raw_mode(meta.mode & 0o7777))?)
}

/// A chown to an ID this user namespace does not map (EINVAL) leaves the node owned
/// by the namespace's root: a rootless user with no subordinate range maps only its
/// own ID, and the image's other owners stay recorded in its layers, not applied
/// (as Podman does with `ignore_chown_errors`). In the initial namespace every ID is
/// mapped, so there it stays an error.
fn unmapped_owner_kept(r: rustix::io::Result<()>) -> io::Result<()> {
    match r {
        Err(rustix::io::Errno::INVAL) if !crate::layer::encoding::in_initial_user_namespace() => Ok(()),
        r => Ok(r?),
    }
}

/// Sets atime and mtime on an open fd (last, after xattrs, which would not move it anyway).
pub fn set_mtime_fd(fd: BorrowedFd<'_>, meta: &Meta) -> io::Result<()> {
    Ok(rfs::futimens(fd, &meta.timestamps())?)
}

/// The extended attributes of an open node, sorted by name.
pub fn xattrs_fd(fd: BorrowedFd<'_>) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    read_xattrs(|buf| rfs::flistxattr(fd, buf), |k, buf| rfs::fgetxattr(fd, k, buf))
}

/// Reads every attribute `list` names with `get`, sorted by name; none where the
/// filesystem has no xattrs. A size query sizes a buffer that was too small.
pub(crate) fn read_xattrs(
    list: impl Fn(&mut [u8]) -> rustix::io::Result<usize>,
    get: impl Fn(&[u8], &mut [u8]) -> rustix::io::Result<usize>,
) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut names = vec![0u8; 256];
    let n = loop {
        match list(&mut names) {
            Ok(n) => break n,
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(Errno::RANGE) => names.resize(list(&mut [])?.max(names.len() * 2), 0),
            Err(e) => return Err(e.into()),
        }
    };
    let mut out = Vec::new();
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let mut value = vec![0u8; 256];
        let len = loop {
            match get(name, &mut value) {
                Ok(len) => break len,
                Err(Errno::RANGE) => value.resize(get(name, &mut [])?.max(value.len() * 2), 0),
                Err(e) => return Err(e.into()),
            }
        };
        value.truncate(len);
        out.push((name.to_vec(), value));
    }
    out.sort();
    Ok(out)
}

/// Sets an xattr on an open fd.
pub fn set_xattr_fd(fd: BorrowedFd<'_>, key: &[u8], value: &[u8]) -> io::Result<()> {
    Ok(rfs::fsetxattr(fd, key, value, XattrFlags::empty())?)
}

fn uid(n: u32) -> rustix::process::Uid {
    rustix::process::Uid::from_raw(n)
}

fn gid(n: u32) -> rustix::process::Gid {
    rustix::process::Gid::from_raw(n)
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // the test inspects a victim dir outside the root
mod tests {
    use super::*;

    #[test]
    fn normalizes_and_rejects() {
        assert_eq!(RelPath::parse(b"./a//b/./c/").unwrap().as_bytes(), b"a/b/c");
        assert!(RelPath::parse(b"./").unwrap().is_root());
        assert_eq!(RelPath::parse(b"/etc").unwrap_err(), PathRule::Absolute);
        assert_eq!(RelPath::parse(b"a/../../x").unwrap_err(), PathRule::DotDot);
        assert_eq!(RelPath::parse(b"..").unwrap_err(), PathRule::DotDot);
        assert_eq!(RelPath::parse(&vec![b'a'; 5000]).unwrap_err(), PathRule::TooLong);
        let p = RelPath::parse(b"a/b/c").unwrap();
        assert_eq!(p.split_last(), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(RelPath::parse(b"c").unwrap().split_last(), (&b""[..], &b"c"[..]));
    }

    #[test]
    fn never_follows_a_symlink_out() {
        let outside = tempfile::tempdir().unwrap();
        let t = tempfile::tempdir().unwrap();
        let root = Root::open(t.path()).unwrap();
        let top = root.top().unwrap();
        top.symlink(b"l", outside.path().as_os_str().as_encoded_bytes()).unwrap();
        // openat2 refuses with ELOOP, or ENOTDIR when O_DIRECTORY meets the link first.
        let refused = [Errno::LOOP.raw_os_error(), Errno::NOTDIR.raw_os_error()];
        for path in [&b"l"[..], b"l/x/y"] {
            let err = root.dir(path, true).unwrap_err();
            assert!(refused.contains(&err.raw_os_error().unwrap()), "{err}");
        }
        assert_eq!(root.blocking_component(b"l/x/y"), Some(("l".to_string(), true)));
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }
}
