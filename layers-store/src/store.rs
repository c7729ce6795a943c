//! The store: where content lives on disk and how it gets there.
//!
//! ```text
//! <root>/
//!   db.sqlite            metadata (WAL); rows `pending` → `ready`
//!   db.sqlite-writer     the lock its writers queue on
//!   blobs/sha256/<hex>   manifests, configs, layer blobs as received
//!   layers/<hex>/        one unpacked layer per diffID, overlay whiteouts inside
//!   tmp/                 staging; garbage after a crash
//!   locks/               store.lock (shared by every process, exclusive to sweep and gc)
//!                        and one flock file per digest being committed
//! ```
//! New content is staged under `tmp/`, flushed with one `syncfs`, renamed into
//! place under a per-digest lock and only then marked `ready`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::content::digest::{DiffId, Digest};
use crate::content::Content;
use crate::error::{Error, ErrorKind, Result};
use crate::fsroot::Root;
use crate::images::oci::Descriptor;
use crate::layer::unpack::{self, Limits, Unpacked};
use crate::layer::Layers;
use crate::meta::{LayerRow, Metadata};

pub(crate) mod ingest;
mod open;
pub use ingest::Ingest;

/// An open layer store.
pub struct Store {
    root: PathBuf,
    md: Mutex<Metadata>,
    /// Held shared for the store's lifetime, so a sweep or gc never runs under our feet.
    store_lock: File,
    /// How overlay state is written in its layer dirs (recorded in the store).
    encoding: crate::layer::encoding::Encoding,
    limits: Limits,
    /// Run after each commit (the size budget's eviction, `keep_within`); shared by reopened handles.
    after_commit: Mutex<Option<AfterCommit>>,
    /// This handle's name in `held_content` and the lock that shows it alive, taken
    /// with the first commit of content no image names yet.
    holder: std::sync::OnceLock<(String, File)>,
    /// Locks on the ephemeral containers this handle created: held while it lives,
    /// released by the kernel however the process ends, which is how anyone else
    /// knows such a container is abandoned.
    pub(crate) ephemeral: Mutex<Vec<(String, File)>>,
}

/// What runs after each commit.
pub(crate) type AfterCommit = std::sync::Arc<dyn Fn(&Store) + Send + Sync>;

/// What is expected of a layer blob; any mismatch fails the unpack.
#[derive(Debug, Clone, Copy, Default)]
pub struct LayerExpect {
    /// The blob digest (from a manifest).
    pub blob: Option<Digest>,
    /// The blob size (from a manifest).
    pub size: Option<u64>,
    /// The diffID (from a config).
    pub diff_id: Option<DiffId>,
}

/// The store root and the dirs beneath it that hold image or container content, or
/// their staging. A layer may carry setuid-root files and device nodes, and a root
/// process in a container may write more into its upper dir: no other host user may
/// reach any of it (the shape of CVE-2021-41091), so each of these is 0700 and owned
/// by the store's user. Layer and upper dirs beneath keep the image's modes: they are
/// root filesystems.
const PRIVATE_DIRS: [&str; 9] =
    ["", "blobs", "blobs/sha256", "layers", "tmp", "locks", "containers", "cache-mounts", "volumes"];

/// Makes `dir` (its parent exists) with mode 0700, or puts an existing one we own
/// back to 0700 (earlier versions made them 0755).
pub(crate) fn private_dir(op: &'static str, dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let err = |e| Error::io(op, dir.display(), e);
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(err(e)),
    }
    let meta = fs::metadata(dir).map_err(err)?;
    if !meta.is_dir() {
        return Err(Error::new(ErrorKind::InvalidInput, op, dir.display(), "not a directory"));
    }
    // Whoever owns it can change what the store holds: it must be ours (a 0777 dir
    // of another user was used as found).
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            op,
            dir.display(),
            format!("owned by uid {}, not by this user (uid {me}); a store must be its user's own", meta.uid()),
        ));
    }
    // umask may have taken bits away from 0700 as well as the old format's 0755 added some.
    if meta.mode() & 0o7777 != 0o700 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(())
}

static STAGING_SEQ: AtomicU64 = AtomicU64::new(0);

/// Held while a blob is fetched and until it is committed; released on drop.
#[derive(Debug)]
pub struct FetchClaim(#[allow(dead_code)] File);

impl Drop for Store {
    fn drop(&mut self) {
        // What this handle held and no image came to name is garbage from now on.
        if let Some((name, _)) = self.holder.get() {
            let _ = self.md().write("release held content", |tx| ingest::release_holder_tx(tx, name));
        }
    }
}

impl Store {
    /// The default store location: `/var/lib/layers` for root, else `$XDG_DATA_HOME/layers`.
    /// A rootless user, root inside its own user namespace, keeps its store in its home.
    pub fn default_root() -> PathBuf {
        if rustix::process::geteuid().is_root() && crate::layer::encoding::in_initial_user_namespace() {
            return PathBuf::from("/var/lib/layers");
        }
        match std::env::var_os("XDG_DATA_HOME") {
            Some(d) if !d.is_empty() => PathBuf::from(d).join("layers"),
            _ => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into())).join(".local/share/layers"),
        }
    }

    /// How overlay state is written in this store's layer dirs.
    pub fn encoding(&self) -> crate::layer::encoding::Encoding {
        self.encoding
    }

    /// Replaces the unpack caps (bytes, entries, header size per layer); the path
    /// limit stays within what this store's location allows.
    pub fn set_limits(&mut self, limits: Limits) {
        // `open` set it to what the location allows.
        let max_path = limits.max_path.min(self.limits.max_path);
        self.limits = Limits { max_path, ..limits };
    }

    /// Another handle on the same store, with the same limits and budget (for work
    /// that owns its handle, as a pull's tasks do).
    pub fn reopen(&self) -> Result<Store> {
        let mut s = Store::open(&self.root)?;
        s.set_limits(self.limits);
        s.set_after_commit(self.after_commit.lock().ok().and_then(|h| h.clone()));
        Ok(s)
    }

    pub(crate) fn set_after_commit(&self, hook: Option<AfterCommit>) {
        if let Ok(mut h) = self.after_commit.lock() {
            *h = hook;
        }
    }

    /// What an unpack into this store accepts (`--max-layer-size`, `--max-layer-entries`).
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Where the store is.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn md(&self) -> MutexGuard<'_, Metadata> {
        self.md.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new, empty dir under `tmp/` (removed by the next sweep if left behind).
    pub fn scratch_dir(&self, what: &str) -> Result<PathBuf> {
        let name = format!("{what}-{}-{}", std::process::id(), STAGING_SEQ.fetch_add(1, Ordering::Relaxed));
        let dir = self.root.join("tmp").join(name);
        fs::create_dir(&dir).map_err(|e| Error::io("make scratch dir", dir.display(), e))?;
        Ok(dir)
    }

    /// Unpacks a layer blob the caller has written to `blob_path` (a staged path of
    /// this ingest), which is then committed as it is: not copied again.
    pub(crate) fn unpack_staged_blob(
        &self,
        ingest: &mut Ingest,
        blob_path: PathBuf,
        expect: &LayerExpect,
    ) -> Result<Unpacked> {
        let input = File::open(&blob_path).map_err(|e| Error::io("stage", blob_path.display(), e))?;
        self.unpack_into(ingest, input, None, blob_path, expect)
    }

    /// Unpacks `input` into a new staged layer dir, copying it into `sink` if given;
    /// the blob at `blob_path` and the layer are then staged for commit.
    fn unpack_into(
        &self,
        ingest: &mut Ingest,
        input: impl Read + Send,
        mut sink: Option<File>,
        blob_path: PathBuf,
        expect: &LayerExpect,
    ) -> Result<Unpacked> {
        let layer_dir = ingest.staged_path("layer");
        fs::create_dir(&layer_dir).map_err(|e| Error::io("stage", layer_dir.display(), e))?;
        fs::set_permissions(&layer_dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(|e| Error::io("stage", layer_dir.display(), e))?;
        let root = Root::open(&layer_dir).map_err(|e| Error::io("stage", layer_dir.display(), e))?;
        // A known size bounds what is read even when the content turns out wrong.
        let input = input.take(expect.size.map_or(u64::MAX, |n| n + 1));
        let mut written = crate::layer::written::Written::default();
        let u = unpack::unpack_hashing(input, sink.as_mut(), &root, &self.limits, expect.blob, &mut written)?;
        // unpack checked the blob digest itself (see why there); size and diffID are ours.
        if let Some(want) = expect.size.filter(|w| *w != u.blob_size) {
            return Err(Error::new(
                ErrorKind::DigestMismatch,
                "verify layer blob",
                u.blob,
                format!("size {} but expected {want}", u.blob_size),
            ));
        }
        if let Some(want) = expect.diff_id.filter(|w| *w != u.diff_id) {
            return Err(Error::mismatch("verify layer diffID", want, u.diff_id));
        }
        let media_type = u.compression.oci_media_type().to_string();
        ingest.add_blob(
            Descriptor { media_type, digest: u.blob, size: u.blob_size, urls: None, annotations: None },
            blob_path,
        );
        let row = LayerRow {
            diff_id: u.diff_id,
            blob: u.blob,
            compressed_size: u.blob_size,
            uncompressed_size: u.tar_size,
            file_count: u.entries,
        };
        let tree = written.into_packed();
        // Every layer a debug build writes proves the records equal what a walk reads.
        #[cfg(debug_assertions)]
        tree.assert_walk_agrees(&layer_dir, u.diff_id, false)?;
        ingest.add_layer_tree(row, layer_dir, tree);
        Ok(u)
    }

    /// Moves `path` into `tmp/` and deletes it there (a crash midway leaves only tmp garbage).
    pub(crate) fn discard(&self, path: &Path) -> Result<()> {
        let name = format!("discard-{}-{}", std::process::id(), STAGING_SEQ.fetch_add(1, Ordering::Relaxed));
        let tmp = self.root.join("tmp").join(name);
        match fs::rename(path, &tmp) {
            Ok(()) => remove_tree(&tmp).map_err(|e| Error::io("remove", path.display(), e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", path.display(), e)),
        }
    }

    /// Takes the lock file `locks/NAME` (a blob's or layer's commit lock, `blob-HEX`,
    /// `layer-HEX`; a fetch claim) if nobody holds it: `None` while someone does.
    pub(crate) fn try_lock_object(&self, name: &str) -> Result<Option<File>> {
        let f = open_lock(&self.root.join("locks").join(name))?;
        match f.try_lock() {
            Ok(()) => Ok(Some(f)),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(Error::io("lock", name, e)),
        }
    }

    /// Returns to the shared store lock after `try_lock_exclusive`.
    pub(crate) fn store_lock_shared(&self) -> Result<()> {
        self.store_lock.lock_shared().map_err(|e| Error::io("lock store", self.root.display(), e))
    }

    /// Hashes a stored blob from disk.
    pub(crate) fn hash_blob(&self, d: &Digest) -> io::Result<(Digest, u64)> {
        crate::content::digest::Hasher::read_all(File::open(self.content().blob_path(d))?)
    }
}

pub(crate) fn open_lock(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| Error::io("open lock", path.display(), e))
}

fn lock(f: File, name: &str) -> Result<File> {
    f.lock().map_err(|e| Error::io("lock", name, e))?;
    Ok(f)
}

/// The longest path the store puts before a layer's own paths, less the store root:
/// `/containers/<64 hex>/merged/`, `/layers/<64 hex>/`, a staging dir's name.
const STORE_PREFIX: usize = 128;

/// The longest entry path a layer in the store at `root` may have: the kernel's
/// PATH_MAX (4096 with its NUL) less the store's own path and directories, so every
/// path the store opens by name stays within it (a 4095-byte entry failed with
/// `File name too long` when the layer's tree was listed).
pub fn path_limit(root: &Path) -> usize {
    let root_len = root.canonicalize().map_or(root.as_os_str().len(), |p| p.as_os_str().len());
    (crate::fsroot::MAX_PATH - 1).saturating_sub(root_len + STORE_PREFIX)
}

/// Removes what process `pid` staged under `<root>/tmp/` (names `what-PID-…`: the
/// first all-digit field is the PID), for a command stopped by a signal, so nothing
/// it staged waits for the next command's sweep. Never crosses a mount point
/// (`RESOLVE_NO_XDEV`); what cannot be removed is left to the sweep. Returns how many
/// entries went.
pub fn remove_staged_by(root: &Path, pid: u32) -> usize {
    let tmp = root.join("tmp");
    let (Ok(dir), Ok(entries)) = (crate::fsroot::Root::open(&tmp), fs::read_dir(&tmp)) else { return 0 };
    let Ok(top) = dir.top() else { return 0 };
    let pid = pid.to_string();
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(n) = name.to_str() else { continue };
        let first_number = n.split('-').find(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()));
        if first_number == Some(pid.as_str()) && top.remove(n.as_bytes()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Removes a file or a whole tree; absent is fine. Our own staged trees only.
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    // Another process may be removing the same tree (a stopped command's staging
    // helper, racing the next command's sweep): what vanished meanwhile is removed.
    for _ in 0..3 {
        let done = match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(path),
            Ok(_) => fs::remove_file(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        match done {
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            other => return other,
        }
    }
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        _ => fs::remove_dir_all(path),
    }
}

impl Content<'_> {
    /// Path of a stored blob.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.store.root.join("blobs/sha256").join(d.hex())
    }

    /// Claims the right to fetch a blob, so concurrent pulls download it once.
    /// Without `wait`, `Ok(None)` means another process holds it now.
    pub fn claim_fetch(&self, blob: &Digest, wait: bool) -> Result<Option<FetchClaim>> {
        // Not the commit lock's file: flock conflicts between two opens in one process too.
        let name = format!("fetch-{}", blob.hex());
        if wait {
            let f = open_lock(&self.store.root.join("locks").join(&name))?;
            return lock(f, &name).map(|f| Some(FetchClaim(f)));
        }
        Ok(self.store.try_lock_object(&name)?.map(FetchClaim))
    }

    /// A stored blob's bytes decompressed, the compression recognised by its magic
    /// bytes (a stored layer blob; a plain one passes through).
    pub(crate) fn open_decoded(&self, d: &Digest) -> io::Result<Box<dyn Read + Send>> {
        use std::io::BufRead;
        let mut input = io::BufReader::with_capacity(1 << 20, File::open(self.blob_path(d))?);
        let compression = crate::Compression::detect(input.fill_buf()?).map_err(io::Error::other)?;
        compression.decoder(input)
    }

    /// Reads a whole blob, refusing ones larger than `max` bytes and verifying the digest.
    pub fn read_blob(&self, d: &Digest, max: u64) -> Result<Vec<u8>> {
        let path = self.blob_path(d);
        let f = File::open(&path).map_err(|e| Error::io("read blob", d, e))?;
        let mut buf = Vec::new();
        f.take(max + 1).read_to_end(&mut buf).map_err(|e| Error::io("read blob", d, e))?;
        if buf.len() as u64 > max {
            return Err(Error::new(ErrorKind::LimitExceeded, "read blob", d, format!("larger than {max} bytes")));
        }
        let got = Digest::of(&buf);
        if got != *d {
            return Err(Error::mismatch("read blob", d, got));
        }
        Ok(buf)
    }
}

impl Layers<'_> {
    /// Path of an unpacked layer dir.
    pub fn path(&self, d: &DiffId) -> PathBuf {
        self.store.root.join("layers").join(d.hex())
    }

    /// Unpacks one layer blob into the ingest, checking it against `expect`.
    pub fn unpack(&self, ingest: &mut Ingest, input: impl Read + Send, expect: &LayerExpect) -> Result<Unpacked> {
        let blob_path = ingest.staged_path("blob");
        let blob = File::create(&blob_path).map_err(|e| Error::io("stage", blob_path.display(), e))?;
        self.store.unpack_into(ingest, input, Some(blob), blob_path, expect)
    }
}
