//! `RUN --mount=type=cache` dirs: one per id under `<root>/cache-mounts/`, kept across
//! builds, held by a step as its `sharing=` says, packed as a layer tar for a cache
//! export, and filled from such a tar (untrusted: the unpacker's bounds and path
//! rules) when a fresh runner's step first uses one.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::build_cache::BuildCache;
use crate::content::digest::{DiffId, Digest};
use crate::error::{Error, ErrorKind, Result};
use crate::layer::diff::WrittenTar;

/// How a step holds a cache mount (BuildKit's `sharing=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// With any other step using it at the same time (the default).
    Shared,
    /// Alone: a second user waits until the first is done.
    Locked,
    /// Alone, or, while another step uses it, in a fresh empty dir of its own that is
    /// dropped after the step.
    Private,
}

/// A cache mount held for one step: its dir, until dropped.
pub struct HeldMount {
    dir: PathBuf,
    /// The flock that holds it (shared or exclusive).
    lock: File,
    /// A private instance's own dir, removed when dropped.
    throwaway: bool,
    sharing: Sharing,
}

impl HeldMount {
    /// The directory to mount.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether it holds nothing yet (a new cache, or a private instance).
    pub fn is_empty(&self) -> bool {
        fs::read_dir(&self.dir).map(|mut d| d.next().is_none()).unwrap_or(false)
    }

    /// Holds it alone while it is empty, to fill it: returns whether it still is
    /// (another step may have filled it while this one waited). A shared hold goes
    /// exclusive for this (flock drops the shared lock while it waits, so two steps
    /// doing this at once cannot deadlock), and back with [`HeldMount::share_again`].
    pub fn alone_if_empty(&self) -> Result<bool> {
        if !self.is_empty() {
            return Ok(false);
        }
        if self.sharing == Sharing::Shared {
            self.lock.lock().map_err(|e| Error::io("lock cache mount", self.dir.display(), e))?;
        }
        Ok(self.is_empty())
    }

    /// Gives the mount's root dir an owner and mode (a new cache's `uid=`, `gid=`, `mode=`).
    pub fn set_root(&self, uid: u32, gid: u32, mode: u32) -> Result<()> {
        let err = |e: rustix::io::Errno| Error::io("set cache mount owner", self.dir.display(), e.into());
        let (u, g) = (rustix::fs::Uid::from_raw(uid), rustix::fs::Gid::from_raw(gid));
        rustix::fs::chown(&self.dir, Some(u), Some(g)).map_err(err)?;
        rustix::fs::chmod(&self.dir, rustix::fs::Mode::from_raw_mode(mode)).map_err(err)
    }

    /// After [`HeldMount::alone_if_empty`]: a shared mount lets other steps in again.
    pub fn share_again(&self) -> Result<()> {
        match self.sharing {
            Sharing::Shared => {
                self.lock.lock_shared().map_err(|e| Error::io("lock cache mount", self.dir.display(), e))
            }
            Sharing::Locked | Sharing::Private => Ok(()),
        }
    }
}

impl Drop for HeldMount {
    fn drop(&mut self) {
        if self.throwaway {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Most bytes of an id kept in a message or a cache manifest.
pub const MAX_ID: usize = 512;

/// Whether `id` may name a cache mount: at most [`MAX_ID`] bytes of printable text
/// (ids are printed, and come from Dockerfiles and imported caches).
pub fn valid_id(id: &str) -> bool {
    id.len() <= MAX_ID && !id.chars().any(char::is_control)
}

impl BuildCache<'_> {
    /// `<root>/cache-mounts/<sha256 of id>/`, made if missing.
    fn mount_path(&self, id: &str) -> Result<PathBuf> {
        let dir = self.store.root().join("cache-mounts").join(Digest::of(id.as_bytes()).hex());
        fs::create_dir_all(&dir).map_err(|e| Error::io("make cache mount", dir.display(), e))?;
        Ok(dir)
    }

    fn mount_lock(&self, id: &str) -> Result<File> {
        let name = format!("cache-mount-{}", Digest::of(id.as_bytes()).hex());
        crate::store::open_lock(&self.store.root().join("locks").join(name))
    }

    /// Holds the cache mount `id` for a step, as `sharing` says: a shared hold, or
    /// an exclusive one (a private step finding it held gets a fresh dir instead).
    pub fn hold_mount(&self, id: &str, sharing: Sharing) -> Result<HeldMount> {
        let lock = self.mount_lock(id)?;
        let locked = |r: std::io::Result<()>| r.map_err(|e| Error::io("lock cache mount", id, e));
        match sharing {
            Sharing::Shared => locked(lock.lock_shared())?,
            Sharing::Locked => locked(lock.lock())?,
            Sharing::Private => match lock.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    let dir = self.store.scratch_dir("cache-mount-private")?;
                    return Ok(HeldMount { dir, lock, throwaway: true, sharing });
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(Error::io("lock cache mount", id, e)),
            },
        }
        Ok(HeldMount { dir: self.mount_path(id)?, lock, throwaway: false, sharing })
    }

    /// Fills the empty held mount from a layer tar `blob` (compressed or not), which
    /// must be the blob `expect_blob` of the tar `expect_diff`. Unpacked beside it and
    /// moved into place whole: on any failure the mount stays empty. Returns the tar's
    /// size.
    pub fn fill_mount(
        &self,
        held: &HeldMount,
        blob: impl Read + Send,
        expect_blob: Digest,
        expect_diff: DiffId,
    ) -> Result<u64> {
        let what = held.dir.display().to_string();
        if !held.is_empty() {
            return Err(Error::new(ErrorKind::InvalidInput, "fill cache mount", &what, "it is not empty"));
        }
        let scratch = self.store.scratch_dir("cache-mount-fill")?;
        let filled = (|| -> Result<u64> {
            let staged = scratch.join("mount");
            fs::create_dir(&staged).map_err(|e| Error::io("fill cache mount", staged.display(), e))?;
            let root =
                crate::fsroot::Root::open(&staged).map_err(|e| Error::io("fill cache mount", staged.display(), e))?;
            let u = crate::layer::unpack::unpack(blob, None, &root, self.store.limits(), Some(expect_blob))?;
            if u.diff_id != expect_diff {
                return Err(Error::mismatch("fill cache mount", expect_diff, u.diff_id));
            }
            // The empty dir is replaced by the filled one in one rename.
            fs::rename(&staged, &held.dir).map_err(|e| Error::io("fill cache mount", &what, e))?;
            Ok(u.tar_size)
        })();
        let _ = fs::remove_dir_all(&scratch);
        filled
    }

    /// Writes the held mount as a layer tar to `out` (every node as it is, in name order).
    pub fn pack_mount(&self, held: &HeldMount, out: impl Write) -> Result<WrittenTar> {
        crate::layer::diff::write_tar(&held.dir, out, None, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn sharing_holds_a_mount_as_buildkit_does() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Store::open(&dir.path().join("store")).unwrap();
        let cache = store.build_cache();
        let locked = cache.hold_mount("pip", Sharing::Locked).unwrap();
        // Private, while another holds it: a fresh empty dir of its own, gone after.
        let private = cache.hold_mount("pip", Sharing::Private).unwrap();
        assert_ne!(private.dir(), locked.dir());
        assert!(private.is_empty());
        let own = private.dir().to_path_buf();
        drop(private);
        assert!(!own.exists(), "a private instance goes with its step");

        // Shared waits for the locked holder to finish.
        let root = dir.path().join("store");
        let waiter = std::thread::spawn(move || {
            let store = crate::Store::open(&root).unwrap();
            let started = Instant::now();
            let held = store.build_cache().hold_mount("pip", Sharing::Shared).unwrap();
            (started.elapsed(), held.dir().to_path_buf())
        });
        std::thread::sleep(Duration::from_millis(300));
        let shared_dir = locked.dir().to_path_buf();
        drop(locked);
        let (waited, got) = waiter.join().unwrap();
        assert!(waited >= Duration::from_millis(250), "shared went in after {waited:?}");
        assert_eq!(got, shared_dir);

        // Two shared holders at once, one of them filling it alone and sharing again;
        // private gets the mount itself when no one holds it.
        let a = cache.hold_mount("pip", Sharing::Shared).unwrap();
        assert!(a.alone_if_empty().unwrap());
        std::fs::write(a.dir().join("filled"), "x").unwrap();
        a.share_again().unwrap();
        let started = Instant::now();
        let c = cache.hold_mount("pip", Sharing::Shared).unwrap();
        assert!(started.elapsed() < Duration::from_millis(200) && c.dir() == a.dir());
        assert!(!c.alone_if_empty().unwrap(), "filled already: no exclusive hold");
        let b = cache.hold_mount("npm", Sharing::Private).unwrap();
        assert!(!b.throwaway);
    }
}
