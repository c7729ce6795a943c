//! A tree to read from: a build context, another stage's or image's root filesystem,
//! a container's root for `cp`. Paths resolve with `RESOLVE_IN_ROOT`, so `..` and
//! symlinks never lead out of it; walks never follow a symlink (a symlink is read as
//! one); files open `O_NOFOLLOW` (`O_NONBLOCK` where only a small one is wanted).

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{openat2, AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::error::{Error, ErrorKind, Result};

/// Which paths of a tree a walk leaves out (`.dockerignore` for a build context).
pub trait Filter {
    /// Whether `rel` (and, for a directory, all beneath it) is left out.
    fn excludes(&self, rel: &Path) -> bool;
}

/// Leaves nothing out.
pub struct Everything;

impl Filter for Everything {
    fn excludes(&self, _: &Path) -> bool {
        false
    }
}

/// A directory tree reached through a directory fd, nothing resolved outside it.
pub struct Tree {
    root: OwnedFd,
    /// For messages ("build context", "image of web").
    pub name: String,
}

/// One entry of a tree: its path relative to the tree's root and what it is.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Relative to the tree's root (empty: the root itself).
    pub rel: PathBuf,
    /// As `lstat` gives it.
    pub stat: rustix::fs::Stat,
    /// Symlink target.
    pub link: Option<Vec<u8>>,
}

impl Entry {
    /// What it is (from its mode).
    pub fn kind(&self) -> FileType {
        kind(&self.stat)
    }

    /// Its modification time.
    pub(super) fn mtime(&self) -> rustix::fs::Timespec {
        rustix::fs::Timespec { tv_sec: self.stat.st_mtime as _, tv_nsec: self.stat.st_mtime_nsec as _ }
    }
}

pub(super) fn kind(st: &rustix::fs::Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

impl Tree {
    /// The tree at `dir`; `name` says what it is in messages.
    pub fn open(dir: &Path, name: &str) -> Result<Tree> {
        let root = rustix::fs::open(dir, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| Error::errno("open", format!("{name} {}", dir.display()), e))?;
        Ok(Tree { root, name: name.to_string() })
    }

    /// `name: rel`, for messages.
    fn what(&self, rel: &Path) -> String {
        format!("{}: {}", self.name, rel.display())
    }

    fn open_in(&self, rel: &Path, flags: OFlags) -> rustix::io::Result<OwnedFd> {
        let rel = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
        openat2(
            &self.root,
            rel,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )
    }

    /// What `rel` is, not following it if it is a symlink.
    pub fn stat(&self, rel: &Path) -> rustix::io::Result<rustix::fs::Stat> {
        let fd = self.open_in(rel, OFlags::PATH | OFlags::NOFOLLOW)?;
        rustix::fs::fstat(&fd)
    }

    /// Whether `rel` is a directory (not a symlink to one).
    pub fn is_dir(&self, rel: &Path) -> bool {
        self.stat(rel).is_ok_and(|s| kind(&s) == FileType::Directory)
    }

    /// Every entry under `rel` (itself first), parents before children, names sorted;
    /// those `filter` excludes are left out (a dir's contents with it).
    pub fn walk(&self, rel: &Path, filter: &dyn Filter, out: &mut Vec<Entry>) -> Result<()> {
        let stat = self.stat(rel).map_err(|e| Error::errno("read", self.what(rel), e))?;
        if !rel.as_os_str().is_empty() && filter.excludes(rel) {
            return Ok(());
        }
        let at = |e| Error::errno("read", self.what(rel), e);
        match kind(&stat) {
            FileType::Symlink => {
                let parent = self
                    .open_in(rel.parent().unwrap_or(Path::new("")), OFlags::PATH | OFlags::DIRECTORY)
                    .map_err(at)?;
                let Some(name) = rel.file_name() else {
                    return Err(Error::new(
                        ErrorKind::InvalidInput,
                        "read",
                        self.what(rel),
                        "a symlink without a name",
                    ));
                };
                let link = Some(rustix::fs::readlinkat(&parent, name, Vec::new()).map_err(at)?.into_bytes());
                out.push(Entry { rel: rel.to_path_buf(), stat, link });
            }
            FileType::Directory => {
                out.push(Entry { rel: rel.to_path_buf(), stat, link: None });
                let dir = self.open_in(rel, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW).map_err(at)?;
                self.walk_dir(&dir, rel, filter, out)?;
            }
            _ => out.push(Entry { rel: rel.to_path_buf(), stat, link: None }),
        }
        Ok(())
    }

    /// The entries below the open directory `dir` (at `rel`). Each child is one name
    /// looked up in `dir` without following it, so nothing resolves outside the tree.
    /// Recursion is bounded by the kernel's own path limit (`PATH_MAX` from the root).
    fn walk_dir(&self, dir: &OwnedFd, rel: &Path, filter: &dyn Filter, out: &mut Vec<Entry>) -> Result<()> {
        let mut names: Vec<CString> = rustix::fs::Dir::read_from(dir)
            .map_err(|e| Error::errno("read", self.what(rel), e))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_owned())
            .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
            .collect();
        names.sort();
        for name in names {
            let child = rel.join(OsStr::from_bytes(name.as_bytes()));
            if filter.excludes(&child) {
                continue;
            }
            let at = |e| Error::errno("read", self.what(&child), e);
            let stat = rustix::fs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW).map_err(at)?;
            match kind(&stat) {
                FileType::Symlink => {
                    let link = Some(rustix::fs::readlinkat(dir, &name, Vec::new()).map_err(at)?.into_bytes());
                    out.push(Entry { rel: child, stat, link });
                }
                FileType::Directory => {
                    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                    let sub = rustix::fs::openat(dir, &name, flags, Mode::empty()).map_err(at)?;
                    out.push(Entry { rel: child.clone(), stat, link: None });
                    self.walk_dir(&sub, &child, filter, out)?;
                }
                _ => out.push(Entry { rel: child, stat, link: None }),
            }
        }
        Ok(())
    }

    /// A regular file's whole content, at most `max` bytes (a Dockerfile, `.dockerignore`).
    /// Symlinks resolve inside the tree, as BuildKit reads them from the context:
    /// `Dockerfile -> /etc/shadow` means the context's own `etc/shadow`. `Ok(None)` if absent.
    pub fn read_small(&self, rel: &Path, max: u64) -> Result<Option<Vec<u8>>> {
        // Non-blocking, so a FIFO cannot hang us at open.
        let fd = match self.open_in(rel, OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(Error::errno("read", self.what(rel), e)),
        };
        let st = rustix::fs::fstat(&fd).map_err(|e| Error::errno("read", self.what(rel), e))?;
        if kind(&st) != FileType::RegularFile {
            return Err(Error::new(ErrorKind::InvalidInput, "read", self.what(rel), "not a regular file"));
        }
        let mut out = Vec::new();
        File::from(fd)
            .take(max.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(|e| Error::io("read", self.what(rel), e))?;
        if out.len() as u64 > max {
            return Err(Error::new(
                ErrorKind::LimitExceeded,
                "read",
                self.what(rel),
                format!("larger than the limit of {max} bytes"),
            ));
        }
        Ok(Some(out))
    }

    /// A regular file opened for reading (for hashing and copying).
    pub fn open_file(&self, rel: &Path) -> Result<File> {
        let fd = self
            .open_in(rel, OFlags::RDONLY | OFlags::NOFOLLOW)
            .map_err(|e| Error::errno("read", self.what(rel), e))?;
        Ok(File::from(fd))
    }
}
