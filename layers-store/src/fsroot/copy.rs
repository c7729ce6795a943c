//! Copies from a [`Tree`] into a destination root (a mounted container root, a
//! volume's data dir): the layout Docker's COPY gives sources ([`plan`]), where the
//! destination really is once its symlinks are followed inside the root
//! ([`resolve_dest`], [`at_real_dest`]), and the copy itself, which reaches every
//! destination directory through `RESOLVE_IN_ROOT` and replaces what is there (never
//! writes through it).

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{openat2, AtFlags, FileType, Mode, OFlags, ResolveFlags};

use super::tree::{Entry, Filter, Tree};
use crate::error::{Error, ErrorKind, Result};

/// Ownership and mode a copy gives what it writes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Attrs {
    /// Owner of what is written (unless `keep_owner`).
    pub uid: u32,
    /// Group of what is written (unless `keep_owner`).
    pub gid: u32,
    /// `--chmod`: replaces every mode.
    pub mode: Option<u32>,
    /// Keep each entry's own owner (what ADD extracts from an archive), not `uid`/`gid`.
    pub keep_owner: bool,
}

impl Attrs {
    /// Every entry keeps its own owner and mode.
    pub fn kept() -> Attrs {
        Attrs { keep_owner: true, ..Attrs::default() }
    }

    /// Everything owned by `uid`:`gid`, modes kept.
    pub fn owned_by(uid: u32, gid: u32) -> Attrs {
        Attrs { uid, gid, ..Attrs::default() }
    }
}

/// What to copy: entries of a tree, and where each goes.
#[derive(Default)]
pub struct CopyPlan {
    /// (source entry, destination path relative to the destination root).
    pub items: Vec<(Entry, PathBuf)>,
    /// Targets that are a directory source's top, whose contents are copied into
    /// them: one that exists keeps its own mode and owner (BuildKit's rule).
    pub tops: Vec<PathBuf>,
}

/// `dest` (absolute in the destination) as a path relative to its root, `..` unable
/// to climb above it.
pub fn in_root(dest: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for c in Path::new(dest).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Lays out `sources` of `tree` under `dest` (absolute in the destination), Docker's
/// way: a directory's contents go into `dest`; a file goes to `dest/NAME` when `dest`
/// ends in `/` (or there are several sources), else to `dest` itself. `filter` leaves
/// out entries inside a named directory too (`.dockerignore`).
pub fn plan(tree: &Tree, sources: &[PathBuf], dest: &str, filter: &dyn Filter) -> Result<CopyPlan> {
    let dest_rel = in_root(dest);
    let into_dir = dest.ends_with('/') || sources.len() > 1;
    let mut items = Vec::new();
    let mut tops = Vec::new();
    for src in sources {
        let mut entries = Vec::new();
        tree.walk(src, &super::tree::Everything, &mut entries)?;
        let Some(top) = entries.first() else { continue };
        let is_dir = top.kind() == FileType::Directory;
        for e in entries {
            let below = e.rel.strip_prefix(src).unwrap_or(Path::new("")).to_path_buf();
            if !below.as_os_str().is_empty() && filter.excludes(&e.rel) {
                continue;
            }
            if is_dir && below.as_os_str().is_empty() {
                tops.push(dest_rel.clone());
            }
            let target = if is_dir {
                dest_rel.join(&below)
            } else if into_dir {
                dest_rel.join(src.file_name().unwrap_or_default())
            } else {
                dest_rel.clone()
            };
            items.push((e, target));
        }
    }
    Ok(CopyPlan { items, tops })
}

fn uid(u: u32) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(u)
}

fn gid(g: u32) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(g)
}

/// The destination root at `dest_root`, opened to resolve paths beneath it.
fn open_root(dest_root: &Path) -> Result<OwnedFd> {
    rustix::fs::open(dest_root, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| Error::errno("open", dest_root.display(), e))
}

/// A directory in the destination root, created (0755, `attrs`' owner) where missing;
/// resolved inside the root (an image's symlinks are followed within it, as Docker does).
fn dest_dir(root: &OwnedFd, rel: &Path, attrs: Attrs) -> rustix::io::Result<OwnedFd> {
    let mut cur = rustix::io::dup(root)?;
    let mut so_far = PathBuf::new();
    for c in rel.components() {
        let Component::Normal(name) = c else { continue };
        so_far.push(name);
        let open = || {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
            openat2(root, &so_far, flags, Mode::empty(), ResolveFlags::IN_ROOT)
        };
        cur = match open() {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => {
                rustix::fs::mkdirat(&cur, name, Mode::from_raw_mode(0o755))?;
                rustix::fs::chownat(&cur, name, Some(uid(attrs.uid)), Some(gid(attrs.gid)), AtFlags::SYMLINK_NOFOLLOW)?;
                open()?
            }
            Err(e) => return Err(e),
        };
    }
    Ok(cur)
}

/// Makes directory `rel` (and missing parents, root-owned 0755) in the root at `dest_root`.
pub fn make_dir(dest_root: &Path, rel: &Path) -> Result<()> {
    let root = open_root(dest_root)?;
    dest_dir(&root, rel, Attrs::default()).map(drop).map_err(|e| Error::errno("make", format!("/{}", rel.display()), e))
}

/// Whether `rel` is a directory in the destination root (resolved inside it).
fn dest_dir_exists(root: &OwnedFd, rel: &Path) -> bool {
    rel.as_os_str().is_empty()
        || openat2(root, rel, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty(), ResolveFlags::IN_ROOT)
            .is_ok()
}

/// Where `dest` really is in the root at `dest_root`: symlinks on the way, the last
/// component's too, followed inside the root (BuildKit resolves COPY's destination
/// so: `COPY f /link` writes where `/link` points, a dangling link included). At
/// most 40 links, as the kernel allows.
pub fn resolve_dest(dest_root: &Path, dest: &Path) -> Result<PathBuf> {
    resolve_in(&open_root(dest_root)?, dest)
}

/// `resolve_dest` in a root already open.
fn resolve_in(root: &OwnedFd, dest: &Path) -> Result<PathBuf> {
    let mut pending: VecDeque<OsString> = dest.components().map(|c| c.as_os_str().to_owned()).collect();
    let mut resolved = PathBuf::new();
    let mut links = 0;
    while let Some(c) = pending.pop_front() {
        match c.to_str() {
            Some("/") | Some(".") => continue,
            Some("..") => {
                resolved.pop();
                continue;
            }
            _ => {}
        }
        // The parent, reached with no symlink (every one so far was resolved here).
        let parent = openat2(
            root,
            if resolved.as_os_str().is_empty() { Path::new(".") } else { &resolved },
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_SYMLINKS,
        );
        let target = parent.ok().and_then(|p| rustix::fs::readlinkat(&p, c.as_os_str(), Vec::new()).ok());
        match target {
            Some(t) => {
                links += 1;
                if links > 40 {
                    let msg = "too many levels of symbolic links";
                    return Err(Error::new(
                        ErrorKind::InvalidInput,
                        "resolve",
                        format!("destination {}", dest.display()),
                        msg,
                    ));
                }
                let t = PathBuf::from(OsString::from_vec(t.into_bytes()));
                if t.is_absolute() {
                    resolved = PathBuf::new();
                }
                for (i, part) in t.components().map(|c| c.as_os_str().to_owned()).enumerate() {
                    pending.insert(i, part);
                }
            }
            None => resolved.push(&c),
        }
    }
    Ok(resolved)
}

/// `plan` with its destination where it really is in the root at `dest_root`, found
/// once the root is there: `dest` resolved (`resolve_dest`), and a single file
/// copied onto an existing directory put inside it, as BuildKit does.
pub fn at_real_dest(plan: &CopyPlan, dest_root: &Path, dest: &str) -> Result<CopyPlan> {
    let dest_rel = in_root(dest);
    let root = open_root(dest_root)?;
    let real = resolve_in(&root, &dest_rel)?;
    if let [(e, target)] = plan.items.as_slice() {
        let file = e.kind() != FileType::Directory;
        if file && *target == dest_rel && !real.as_os_str().is_empty() && dest_dir_exists(&root, &real) {
            let Some(name) = e.rel.file_name() else {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    "copy",
                    e.rel.display(),
                    "a file source without a name",
                ));
            };
            return Ok(CopyPlan { items: vec![(e.clone(), real.join(name))], tops: Vec::new() });
        }
    }
    if real == dest_rel {
        return Ok(CopyPlan { items: plan.items.clone(), tops: plan.tops.clone() });
    }
    let moved = |t: &PathBuf| t.strip_prefix(&dest_rel).map_or_else(|_| t.clone(), |rest| real.join(rest));
    Ok(CopyPlan {
        items: plan.items.iter().map(|(e, t)| (e.clone(), moved(t))).collect(),
        tops: plan.tops.iter().map(moved).collect(),
    })
}

/// Copies `plan` from `tree` into the root at `dest_root`. Holes in files stay holes;
/// a FIFO is made anew; a device or socket is refused.
pub fn copy(tree: &Tree, plan: &CopyPlan, dest_root: &Path, attrs: Attrs) -> Result<()> {
    let root = open_root(dest_root)?;
    for (e, target) in &plan.items {
        let what = || format!("{} to /{}", e.rel.display(), target.display());
        let at = |err: rustix::io::Errno| Error::errno("copy", what(), err);
        copy_one(tree, &root, plan, e, target, attrs).map_err(|err| match err {
            CopyError::Errno(err) => at(err),
            CopyError::Io(err) => Error::io("copy", what(), err),
            CopyError::Store(err) => err,
            CopyError::Refused(msg) => Error::new(ErrorKind::InvalidInput, "copy", what(), msg),
        })?;
    }
    Ok(())
}

/// Why one entry was not copied (named with the entry by `copy`).
enum CopyError {
    Errno(rustix::io::Errno),
    Io(std::io::Error),
    Store(Error),
    Refused(String),
}

impl From<rustix::io::Errno> for CopyError {
    fn from(e: rustix::io::Errno) -> Self {
        CopyError::Errno(e)
    }
}

fn copy_one(
    tree: &Tree,
    root: &OwnedFd,
    plan: &CopyPlan,
    e: &Entry,
    target: &Path,
    attrs: Attrs,
) -> std::result::Result<(), CopyError> {
    let mode = Mode::from_raw_mode(attrs.mode.unwrap_or(e.stat.st_mode & 0o7777));
    let (owner_uid, owner_gid) = if attrs.keep_owner { (e.stat.st_uid, e.stat.st_gid) } else { (attrs.uid, attrs.gid) };
    let (file_uid, file_gid) = (uid(owner_uid), gid(owner_gid));
    if e.kind() == FileType::Directory {
        let existed = plan.tops.iter().any(|t| t == target) && dest_dir_exists(root, target);
        let dir = dest_dir(root, target, attrs)?;
        if !existed {
            rustix::fs::fchmod(&dir, mode)?;
            rustix::fs::fchown(&dir, Some(file_uid), Some(file_gid))?;
        }
        return Ok(());
    }
    let (Some(parent), Some(name)) = (target.parent(), target.file_name()) else {
        return Err(CopyError::Refused("cannot replace the root".into()));
    };
    let dir = dest_dir(root, parent, attrs)?;
    // Whatever is there (not a directory) is replaced, never written through.
    match rustix::fs::unlinkat(&dir, name, AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(e.into()),
    }
    match e.kind() {
        FileType::Symlink => {
            let link = e.link.clone().unwrap_or_default();
            rustix::fs::symlinkat(OsStr::from_bytes(&link), &dir, name)?;
            rustix::fs::chownat(&dir, name, Some(file_uid), Some(file_gid), AtFlags::SYMLINK_NOFOLLOW)?;
        }
        FileType::RegularFile => {
            let flags = OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let out = std::fs::File::from(rustix::fs::openat(&dir, name, flags, mode)?);
            // Holes stay holes: a 4 GiB sparse file is not written out as zeros.
            let src = tree.open_file(&e.rel).map_err(CopyError::Store)?;
            let size = src.metadata().map_err(CopyError::Io)?.len();
            crate::layer::sparse::copy_keeping_holes(&src, &out, size).map_err(CopyError::Io)?;
            rustix::fs::fchown(&out, Some(file_uid), Some(file_gid))?;
            rustix::fs::fchmod(&out, mode)?;
            let t = rustix::fs::Timestamps { last_access: e.mtime(), last_modification: e.mtime() };
            rustix::fs::futimens(&out, &t)?;
        }
        // A named pipe is made anew, as Docker's copies make one (a volume filled
        // from an image directory holding one, `cp` of a directory with one).
        FileType::Fifo => {
            rustix::fs::mknodat(&dir, name, FileType::Fifo, mode, 0)?;
            rustix::fs::chownat(&dir, name, Some(file_uid), Some(file_gid), AtFlags::SYMLINK_NOFOLLOW)?;
        }
        other => return Err(CopyError::Refused(format!("a {other:?} cannot be copied"))),
    }
    Ok(())
}
