//! `UserDir`: a directory a user names on the command line (a build cache, an OCI
//! layout to load or to save into, the parent of `--output type=local`).
//!
//! Such a directory may be shared (a CI cache restored from another job, a path on
//! `/tmp` or NFS), so whoever else can write it must not steer what we do as root.
//! It is opened once and checked: owned by the invoking user or by root, and not
//! writable by others unless it is the user's own. Everything beneath it is reached
//! from that fd with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` (a symlink anywhere
//! below is refused, never followed), subdirectories pass the same owner check,
//! files are opened `O_NONBLOCK` and must be regular files (a FIFO never hangs us),
//! new files are created `O_EXCL` under a temporary name and renamed into place
//! within the directory, and removals are `unlinkat` of a name, which never follows.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::error::{Error, ErrorKind, Result};

const RESOLVE: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_SYMLINKS).union(ResolveFlags::NO_MAGICLINKS);

/// An open directory a user named, and the only door to what is beneath it.
#[derive(Debug)]
pub struct UserDir {
    fd: OwnedFd,
    path: PathBuf,
}

/// How strictly a directory's owner and mode are held.
#[derive(Clone, Copy, PartialEq)]
enum Rule {
    /// We read and write many names in it: nobody else may write it.
    Private,
    /// We only make one new name in it and rename within it: a sticky
    /// world-writable directory (`/tmp`) is fine, others cannot touch our entries.
    StickyParent,
}

impl UserDir {
    /// Opens the existing directory `path`.
    pub fn open(path: &Path) -> Result<UserDir> {
        Self::open_with(path, Rule::Private)
    }

    /// Opens `path`, making it (and missing parents, mode 0755) first.
    pub fn create(path: &Path) -> Result<UserDir> {
        make_dirs(path)?;
        Self::open(path)
    }

    /// Opens the directory that will hold a new entry (`--output type=local`'s
    /// parent), made if missing; a sticky directory such as `/tmp` is accepted.
    pub fn parent_for_new_entry(path: &Path) -> Result<UserDir> {
        make_dirs(path)?;
        Self::open_with(path, Rule::StickyParent)
    }

    fn open_with(path: &Path, rule: Rule) -> Result<UserDir> {
        let fd = rfs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| Error::errno("open directory", path.display(), e))?;
        let dir = UserDir { fd, path: path.to_path_buf() };
        dir.check_owner(rule)?;
        Ok(dir)
    }

    /// Where it is, for messages only (never for access).
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn shown(&self, rel: &str) -> String {
        self.path.join(rel).display().to_string()
    }

    fn check_owner(&self, rule: Rule) -> Result<()> {
        let st = rfs::fstat(&self.fd).map_err(|e| Error::errno("open directory", self.path.display(), e))?;
        let me = rustix::process::geteuid().as_raw();
        let refuse = |why: String| {
            Err(Error::new(
                ErrorKind::Unsafe,
                "open directory",
                self.path.display(),
                format!("{why}: refused, whoever can write it could redirect what layers reads and writes there"),
            ))
        };
        // In a user namespace (rootless) an owner outside it (root, or another user)
        // shows as the overflow ID, and this process has no privilege beyond its user's:
        // such a dir is read or written as the user could by hand, and steers nothing more.
        let outside = !crate::layer::encoding::in_initial_user_namespace() && st.st_uid == overflow_uid();
        if st.st_uid != me && st.st_uid != 0 && !outside {
            return refuse(format!("owned by uid {}, neither you (uid {me}) nor root", st.st_uid));
        }
        let sticky = st.st_mode & 0o1000 != 0;
        if st.st_uid != me && st.st_mode & 0o022 != 0 && !(rule == Rule::StickyParent && sticky) {
            return refuse(format!("writable by others (mode {:o})", st.st_mode & 0o7777));
        }
        Ok(())
    }

    /// The directory at `rel` (`a/b`) beneath this one, each component checked as this
    /// one was; with `create`, missing components are made (mode 0755).
    pub fn dir(&self, rel: &str, create: bool) -> Result<UserDir> {
        let mut cur = UserDir {
            fd: self.fd.try_clone().map_err(|e| Error::io("open directory", self.path.display(), e))?,
            path: self.path.clone(),
        };
        for comp in rel.split('/').filter(|c| !c.is_empty()) {
            let shown = cur.shown(comp);
            if create {
                match rfs::mkdirat(&cur.fd, comp, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(Error::errno("create directory", shown, e)),
                }
            }
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
            let fd = rfs::openat2(&cur.fd, comp, flags, Mode::empty(), RESOLVE).map_err(|e| {
                // O_DIRECTORY | O_NOFOLLOW on a symlink says ENOTDIR: name the symlink.
                let link = rfs::statat(&cur.fd, comp, AtFlags::SYMLINK_NOFOLLOW)
                    .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink);
                beneath_error("open directory", &shown, if link { Errno::LOOP } else { e })
            })?;
            cur = UserDir { fd, path: cur.path.join(comp) };
            cur.check_owner(Rule::Private)?;
        }
        Ok(cur)
    }

    /// Opens the regular file at `rel` for reading, with its size.
    pub fn open_file(&self, rel: &str) -> Result<(File, u64)> {
        let shown = self.shown(rel);
        // O_NONBLOCK: opening a FIFO must not wait for a writer.
        let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY;
        let fd = rfs::openat2(&self.fd, rel, flags, Mode::empty(), RESOLVE)
            .map_err(|e| beneath_error("open file", &shown, e))?;
        let st = rfs::fstat(&fd).map_err(|e| Error::errno("open file", &shown, e))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(Error::new(ErrorKind::InvalidInput, "open file", shown, "not a regular file"));
        }
        rfs::fcntl_setfl(&fd, OFlags::empty()).map_err(|e| Error::errno("open file", &shown, e))?;
        Ok((File::from(fd), st.st_size as u64))
    }

    /// The regular file at `rel` whole, refused if larger than `max` bytes.
    pub fn read_small(&self, rel: &str, max: u64) -> Result<Vec<u8>> {
        let (f, size) = self.open_file(rel)?;
        let too_big =
            || Error::new(ErrorKind::LimitExceeded, "read file", self.shown(rel), format!("larger than {max} bytes"));
        if size > max {
            return Err(too_big());
        }
        let mut bytes = Vec::with_capacity(size as usize);
        f.take(max + 1).read_to_end(&mut bytes).map_err(|e| Error::io("read file", self.shown(rel), e))?;
        if bytes.len() as u64 > max {
            return Err(too_big());
        }
        Ok(bytes)
    }

    /// The size of the regular file `name` in this directory; `None` when nothing
    /// (or something else: a symlink, a directory) is there.
    pub fn file_size(&self, name: &str) -> Option<u64> {
        let st = rfs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
        (FileType::from_raw_mode(st.st_mode) == FileType::RegularFile).then_some(st.st_size as u64)
    }

    /// Whether anything at all is at `name` (not followed).
    pub fn has(&self, name: &str) -> bool {
        rfs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW).is_ok()
    }

    /// A new file in this directory under a temporary name, renamed to its real name
    /// by `NewFile::persist` (and removed if dropped before).
    pub fn new_file(&self) -> Result<NewFile<'_>> {
        static COUNT: AtomicU64 = AtomicU64::new(0);
        loop {
            let n = COUNT.fetch_add(1, Ordering::Relaxed);
            let nanos =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
            let temp = format!(".tmp-layers-{}-{n}-{nanos:08x}", std::process::id());
            let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            match rfs::openat(&self.fd, temp.as_str(), flags, Mode::from_raw_mode(0o644)) {
                Ok(fd) => return Ok(NewFile { dir: self, file: File::from(fd), temp, done: false }),
                Err(Errno::EXIST) => continue,
                Err(e) => return Err(Error::errno("create file", self.shown(&temp), e)),
            }
        }
    }

    /// Writes `content` to `name`, atomically (a temporary file renamed over it).
    pub fn write_file(&self, name: &str, content: &mut dyn Read) -> Result<u64> {
        let mut f = self.new_file()?;
        let n = io::copy(content, f.file()).map_err(|e| Error::io("write file", self.shown(name), e))?;
        f.persist(name)?;
        Ok(n)
    }

    /// The names in this directory (not `.` and `..`).
    pub fn names(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let dir = rfs::Dir::read_from(&self.fd).map_err(|e| Error::errno("list directory", self.path.display(), e))?;
        for entry in dir {
            let entry = entry.map_err(|e| Error::errno("list directory", self.path.display(), e))?;
            let n = entry.file_name().to_string_lossy();
            if n != "." && n != ".." {
                out.push(n.into_owned());
            }
        }
        Ok(out)
    }

    /// Removes the non-directory `name` (a symlink itself, never what it points to).
    pub fn remove_file(&self, name: &str) -> Result<()> {
        match rfs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(Error::errno("remove file", self.shown(name), e)),
        }
    }

    /// Makes the new, empty directory `name` (mode 0700), failing if anything is there.
    pub fn make_new_dir(&self, name: &str) -> Result<UserDir> {
        rfs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o700))
            .map_err(|e| Error::errno("create directory", self.shown(name), e))?;
        self.dir(name, false)
    }

    /// Removes the directory tree at `name` (never following a symlink); absent is fine.
    pub fn remove_tree(&self, name: &str) -> Result<()> {
        let sub = crate::fsroot::Root::from_fd(
            self.fd.try_clone().map_err(|e| Error::io("remove", self.shown(name), e))?,
            self.path.clone(),
        );
        let top = sub.top().map_err(|e| Error::io("remove", self.shown(name), e))?;
        top.remove(name.as_bytes()).map_err(|e| Error::io("remove", self.shown(name), e))
    }

    /// Renames `from` to `to`, both in this directory (`to` replaced if it is a file
    /// or an empty directory).
    pub fn rename(&self, from: &str, to: &str) -> Result<()> {
        rfs::renameat(&self.fd, from, &self.fd, to).map_err(|e| Error::errno("rename", self.shown(to), e))
    }

    /// This directory as a `Root` to fill through (the layer unpacker's door).
    pub fn into_root(self) -> crate::fsroot::Root {
        crate::fsroot::Root::from_fd(self.fd, self.path)
    }
}

impl AsFd for UserDir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A file being written in a `UserDir`, under a temporary name until `persist`.
pub struct NewFile<'a> {
    dir: &'a UserDir,
    file: File,
    temp: String,
    done: bool,
}

impl NewFile<'_> {
    /// The open file, to write to.
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// Flushes it to disk and renames it to `name`, replacing what was there.
    pub fn persist(mut self, name: &str) -> Result<()> {
        self.file.sync_all().map_err(|e| Error::io("write file", self.dir.shown(name), e))?;
        self.dir.rename(&self.temp, name)?;
        self.done = true;
        Ok(())
    }
}

impl Drop for NewFile<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.dir.remove_file(&self.temp);
        }
    }
}

/// Makes `path` and its missing parents (the path the user typed is theirs to resolve).
fn make_dirs(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|e| Error::io("create directory", path.display(), e))
}

/// Names a symlink met beneath the directory as the reason.
fn beneath_error(op: &'static str, shown: &str, e: Errno) -> Error {
    match e {
        Errno::LOOP | Errno::XDEV => {
            Error::new(ErrorKind::Unsafe, op, shown, "a symlink on the way: refused, never followed")
        }
        e => Error::errno(op, shown, e),
    }
}

/// The ID a user namespace shows for an owner it does not map.
fn overflow_uid() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/overflowuid").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(65534)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn symlinks_beneath_are_refused_and_never_followed() {
        let t = tempfile::tempdir().unwrap();
        let victim = t.path().join("victim");
        std::fs::create_dir(&victim).unwrap();
        std::fs::write(victim.join("k1"), "keep").unwrap();
        let cache = t.path().join("cache");
        std::fs::create_dir_all(cache.join("blobs")).unwrap();
        std::os::unix::fs::symlink(&victim, cache.join("blobs/sha256")).unwrap();
        std::os::unix::fs::symlink(victim.join("k1"), cache.join("index.json")).unwrap();
        let d = UserDir::open(&cache).unwrap();
        let e = d.dir("blobs/sha256", true).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsafe, "{e}");
        assert!(e.to_string().contains("blobs/sha256: a symlink"), "{e}");
        let e = d.read_small("index.json", 100).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsafe, "{e}");
        // Replacing the symlink replaces the link, not its target.
        d.write_file("index.json", &mut &b"new"[..]).unwrap();
        assert_eq!(std::fs::read_to_string(victim.join("k1")).unwrap(), "keep");
        assert_eq!(std::fs::read_to_string(cache.join("index.json")).unwrap(), "new");
        d.remove_file("index.json").unwrap();
        assert!(victim.join("k1").exists());
    }

    #[test]
    fn a_fifo_is_refused_without_waiting_for_a_writer() {
        let t = tempfile::tempdir().unwrap();
        rfs::mknodat(rfs::CWD, t.path().join("index.json"), FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
        let d = UserDir::open(t.path()).unwrap();
        let e = d.read_small("index.json", 100).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }

    #[test]
    fn a_directory_others_can_write_is_refused_unless_a_sticky_parent() {
        let t = tempfile::tempdir().unwrap();
        let shared = t.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        let me = rustix::process::geteuid().as_raw();
        // Ours: the user's own choice, accepted.
        UserDir::open(&shared).unwrap();
        if me == 0 {
            rfs::chown(&shared, Some(rustix::fs::Uid::from_raw(4242)), None).unwrap();
            let e = UserDir::open(&shared).unwrap_err();
            assert!(e.to_string().contains("owned by uid 4242"), "{e}");
            rfs::chown(&shared, Some(rustix::fs::Uid::from_raw(0)), None).unwrap();
        }
        let sticky = t.path().join("sticky");
        std::fs::create_dir(&sticky).unwrap();
        std::fs::set_permissions(&sticky, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let d = UserDir::parent_for_new_entry(&sticky).unwrap();
        d.make_new_dir("out").unwrap();
    }
}
