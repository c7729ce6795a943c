//! The store: where content lives on disk and how it gets there.
//!
//! ```text
//! <root>/
//!   db.sqlite            metadata (WAL); rows `pending` → `ready`
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

use crate::digest::{DiffId, Digest};
use crate::error::{Error, ErrorKind, Result};
use crate::metadata::{self, ImageLayerRow, LayerRow, Metadata};
use crate::oci::Descriptor;
use crate::root::Root;
use crate::tree::Tree;
use crate::unpack::{self, Limits, Unpacked};

/// An open layer store.
pub struct Store {
    root: PathBuf,
    md: Mutex<Metadata>,
    /// Held shared for the store's lifetime, so a sweep or gc never runs under our feet.
    store_lock: File,
    limits: Limits,
    /// Run after each commit (the size budget's eviction, `keep_within`); shared by reopened handles.
    after_commit: Mutex<Option<AfterCommit>>,
    /// This handle's name in `held_content` and the lock that shows it alive, taken
    /// with the first commit of content no image names yet.
    holder: std::sync::OnceLock<(String, File)>,
    /// Locks on the ephemeral containers this handle created: held while it lives,
    /// released by the kernel however the process ends, which is how anyone else
    /// knows such a container is abandoned.
    pub(crate) ephemeral: Mutex<Vec<File>>,
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

/// A new image to record: its manifest and config are blobs of the same ingest.
#[derive(Debug, Clone)]
pub(crate) struct NewImage {
    /// The manifest blob.
    pub manifest: Descriptor,
    /// The config blob.
    pub config: Descriptor,
    /// Layers, bottom first.
    pub layers: Vec<ImageLayerRow>,
    /// Creation time from the config.
    pub created: String,
    /// Full names to point at it (moved from any other image, as `docker tag` does).
    pub tags: Vec<String>,
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
    // umask may have taken bits away from 0700 as well as the old format's 0755 added some.
    if meta.mode() & 0o7777 != 0o700 && meta.uid() == rustix::process::geteuid().as_raw() {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(())
}

static STAGING_SEQ: AtomicU64 = AtomicU64::new(0);

/// Held while a blob is fetched and until it is committed; released on drop.
#[derive(Debug)]
pub struct FetchClaim(#[allow(dead_code)] File);

/// Content staged under `tmp/`, committed all at once by [`Store::commit`].
pub struct Ingest {
    dir: PathBuf,
    /// Staging dirs of ingests absorbed into this one.
    absorbed: Vec<PathBuf>,
    /// Names the next staged item in `dir`.
    seq: usize,
    blobs: Vec<(Descriptor, PathBuf)>,
    /// Each staged layer dir with its row and its tree, listed once it is complete.
    layers: Vec<(LayerRow, PathBuf, Tree)>,
}

impl Ingest {
    fn next_name(&mut self) -> usize {
        self.seq += 1;
        self.seq
    }

    /// A fresh path in the staging dir, for content the caller writes itself.
    pub(crate) fn staged_path(&mut self, prefix: &str) -> PathBuf {
        let n = self.next_name();
        self.dir.join(format!("{prefix}-{n}"))
    }

    /// Adds a blob written at a staged path.
    pub(crate) fn add_blob(&mut self, desc: Descriptor, path: PathBuf) {
        self.blobs.push((desc, path));
    }

    /// Adds a complete layer dir (anywhere on the store's filesystem) to be renamed into place.
    pub(crate) fn add_layer(&mut self, row: LayerRow, dir: PathBuf) -> Result<()> {
        let tree = Tree::of(&dir)?;
        self.layers.push((row, dir, tree));
        Ok(())
    }

    /// Takes over everything `other` staged, so both commit with one `syncfs`
    /// (layers unpacked in parallel, each into its own ingest, then committed together).
    pub fn absorb(&mut self, mut other: Ingest) {
        self.blobs.append(&mut other.blobs);
        self.layers.append(&mut other.layers);
        self.absorbed.push(std::mem::take(&mut other.dir));
        self.absorbed.append(&mut other.absorbed);
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // What this handle held and no image came to name is garbage from now on.
        if let Some((name, _)) = self.holder.get() {
            let _ = self.md().write("release held content", |tx| {
                tx.execute("DELETE FROM held_content WHERE holder = ?1", [name]).map(|_| ())
            });
        }
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        // Whatever was not renamed into place is garbage now.
        for dir in std::iter::once(&self.dir).chain(&self.absorbed) {
            if !dir.as_os_str().is_empty() {
                let _ = remove_tree(dir);
            }
        }
    }
}

impl Store {
    /// The default store location: `/var/lib/layers` for root, else `$XDG_DATA_HOME/layers`.
    pub fn default_root() -> PathBuf {
        if rustix::process::geteuid().is_root() {
            return PathBuf::from("/var/lib/layers");
        }
        match std::env::var_os("XDG_DATA_HOME") {
            Some(d) if !d.is_empty() => PathBuf::from(d).join("layers"),
            _ => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into())).join(".local/share/layers"),
        }
    }

    /// Opens (creating if needed) the store at `root` and sweeps crash leftovers when alone.
    /// The root and every dir holding content are made (or put back to) 0700.
    pub fn open(root: &Path) -> Result<Store> {
        if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(|e| Error::io("open store", parent.display(), e))?;
        }
        for d in PRIVATE_DIRS {
            private_dir("open store", &root.join(d))?;
        }
        let md = Metadata::open(&root.join("db.sqlite"))?;
        let lock_path = root.join("locks/store.lock");
        let store_lock = open_lock(&lock_path)?;
        let store = Store {
            root: root.to_path_buf(),
            md: Mutex::new(md),
            store_lock,
            limits: Limits::default(),
            after_commit: Mutex::default(),
            holder: std::sync::OnceLock::new(),
            ephemeral: Mutex::default(),
        };
        match store.store_lock.try_lock() {
            Ok(()) => {
                store.sweep()?;
                store.store_lock.lock_shared().map_err(|e| Error::io("lock store", lock_path.display(), e))?;
            }
            Err(_) => {
                store.store_lock.lock_shared().map_err(|e| Error::io("lock store", lock_path.display(), e))?;
                // Not alone, yet a `run --rm` killed while others run is gone as promptly.
                store.remove_abandoned_containers()?;
            }
        }
        Ok(store)
    }

    /// Replaces the unpack caps (bytes, entries, header size per layer).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
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

    /// Path of a stored blob.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    /// A new, empty dir under `tmp/` (removed by the next sweep if left behind).
    pub fn scratch_dir(&self, what: &str) -> Result<PathBuf> {
        let name = format!("{what}-{}-{}", std::process::id(), STAGING_SEQ.fetch_add(1, Ordering::Relaxed));
        let dir = self.root.join("tmp").join(name);
        fs::create_dir(&dir).map_err(|e| Error::io("make scratch dir", dir.display(), e))?;
        Ok(dir)
    }

    /// Path of an unpacked layer dir.
    pub fn layer_path(&self, d: &DiffId) -> PathBuf {
        self.root.join("layers").join(d.hex())
    }

    /// Starts staging new content.
    pub fn ingest(&self) -> Result<Ingest> {
        let name = format!(
            "ingest-{}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0),
            STAGING_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let dir = self.root.join("tmp").join(name);
        fs::create_dir(&dir).map_err(|e| Error::io("stage", dir.display(), e))?;
        Ok(Ingest { dir, absorbed: Vec::new(), seq: 0, blobs: Vec::new(), layers: Vec::new() })
    }

    /// Unpacks one layer blob into the ingest, checking it against `expect`.
    pub fn unpack_layer(&self, ingest: &mut Ingest, input: impl Read + Send, expect: &LayerExpect) -> Result<Unpacked> {
        let blob_path = ingest.staged_path("blob");
        let blob = File::create(&blob_path).map_err(|e| Error::io("stage", blob_path.display(), e))?;
        self.unpack_into(ingest, input, Some(blob), blob_path, expect)
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
        let mut digests = crate::tree::ContentDigests::default();
        let u = unpack::unpack_hashing(input, sink.as_mut(), &root, &self.limits, expect.blob, &mut digests)?;
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
        ingest.blobs.push((
            Descriptor { media_type, digest: u.blob, size: u.blob_size, urls: None, annotations: None },
            blob_path,
        ));
        let row = LayerRow {
            diff_id: u.diff_id,
            blob: u.blob,
            compressed_size: u.blob_size,
            uncompressed_size: u.tar_size,
            file_count: u.entries,
        };
        let tree = Tree::with_known(&layer_dir, &digests)?;
        ingest.layers.push((row, layer_dir, tree));
        Ok(u)
    }

    /// Claims the right to fetch a blob, so concurrent pulls download it once.
    /// Without `wait`, `Ok(None)` means another process holds it now.
    pub fn claim_fetch(&self, blob: &Digest, wait: bool) -> Result<Option<FetchClaim>> {
        // Not the commit lock's file: flock conflicts between two opens in one process too.
        let name = format!("fetch-{}", blob.hex());
        if wait {
            let f = open_lock(&self.root.join("locks").join(&name))?;
            return lock(f, &name).map(|f| Some(FetchClaim(f)));
        }
        Ok(self.try_lock_object(&name)?.map(FetchClaim))
    }

    /// Stages a small blob (manifest, config) from memory.
    pub fn stage_blob(&self, ingest: &mut Ingest, bytes: &[u8], media_type: &str) -> Result<Descriptor> {
        let n = ingest.next_name();
        let path = ingest.dir.join(format!("blob-{n}"));
        fs::write(&path, bytes).map_err(|e| Error::io("stage", path.display(), e))?;
        let desc = Descriptor {
            media_type: media_type.to_string(),
            digest: Digest::of(bytes),
            size: bytes.len() as u64,
            urls: None,
            annotations: None,
        };
        ingest.blobs.push((desc.clone(), path));
        Ok(desc)
    }

    /// Makes everything staged durable and visible, in one `syncfs` and one final
    /// transaction ([`Store::record_image`] also records an image in it).
    pub fn commit(&self, ingest: Ingest) -> Result<()> {
        self.commit_with(ingest, None, &|_| Ok(()))
    }

    /// `commit`, with `also` run in the final transaction.
    pub(crate) fn commit_with(
        &self,
        ingest: Ingest,
        image: Option<&NewImage>,
        also: &dyn Fn(&rusqlite::Transaction) -> rusqlite::Result<()>,
    ) -> Result<()> {
        // Content no image names yet is held for this handle until one does: it is
        // not garbage to a gc (the budget's, after this commit, or another process's).
        let holder = match image {
            None => Some(self.holder()?),
            Some(_) => None,
        };
        self.commit_inner(ingest, image, holder, also)?;
        // Locks and the database are free again: the budget may evict now.
        let hook = self.after_commit.lock().ok().and_then(|h| h.clone());
        if let Some(h) = hook {
            h(self);
        }
        Ok(())
    }

    /// This handle's holder name, its lock taken (and kept) on first use.
    fn holder(&self) -> Result<&str> {
        if let Some((name, _)) = self.holder.get() {
            return Ok(name);
        }
        let name = format!("holder-{}-{}", std::process::id(), STAGING_SEQ.fetch_add(1, Ordering::Relaxed));
        let lock = self.try_lock_object(&name)?.ok_or_else(|| Error::new(ErrorKind::Io, "lock", &name, "held"))?;
        Ok(&self.holder.get_or_init(|| (name, lock)).0)
    }

    /// Commits; content with `holder` is held for it (see `held_content`), and an
    /// image's content stops being held by anyone.
    fn commit_inner(
        &self,
        mut ingest: Ingest,
        image: Option<&NewImage>,
        holder: Option<&str>,
        also: &dyn Fn(&rusqlite::Transaction) -> rusqlite::Result<()>,
    ) -> Result<()> {
        let blobs = std::mem::take(&mut ingest.blobs);
        let layers = std::mem::take(&mut ingest.layers);
        let ingest_blobs: Vec<Digest> = blobs.iter().map(|(d, _)| d.digest).collect();
        // Lock in a fixed order so two committers of overlapping content cannot deadlock.
        let mut names: Vec<String> = blobs.iter().map(|(d, _)| format!("blob-{}", d.digest.hex())).collect();
        names.extend(layers.iter().map(|(l, _, _)| format!("layer-{}", l.diff_id.hex())));
        names.sort();
        names.dedup();
        let _locks = names
            .iter()
            .map(|n| open_lock(&self.root.join("locks").join(n)).and_then(|f| lock(f, n)))
            .collect::<Result<Vec<_>>>()?;

        // Each staged layer was made from its blob (or the blob from it): the pair is verified.
        let pairs: Vec<(Digest, DiffId)> = layers.iter().map(|(l, _, _)| (l.blob, l.diff_id)).collect();
        let mut md = self.md();
        // An image may hold the same layer or blob twice (empty layers are common): commit each once.
        let mut seen_blobs = std::collections::HashSet::new();
        let mut new_blobs = Vec::new();
        for (d, staged) in blobs {
            if seen_blobs.insert(d.digest) && md.blob_size(&d.digest)?.is_none() {
                new_blobs.push((d, staged));
            }
        }
        let mut seen_layers = std::collections::HashSet::new();
        let mut new_layers = Vec::new();
        for (row, dir, tree) in layers {
            if seen_layers.insert(row.diff_id) && md.layer(&row.diff_id)?.is_none() {
                new_layers.push((row, dir, tree));
            }
        }

        if !new_blobs.is_empty() || !new_layers.is_empty() {
            md.write("stage content", |tx| {
                for (d, _) in &new_blobs {
                    metadata::put_blob(tx, &d.digest, d.size, &d.media_type, "pending")?;
                }
                for (l, _, _) in &new_layers {
                    metadata::put_layer(tx, l, "pending")?;
                }
                Ok(())
            })?;
            self.sync()?;
            for (d, staged) in &new_blobs {
                let dest = self.blob_path(&d.digest);
                fs::rename(staged, &dest).map_err(|e| Error::io("commit blob", d.digest, e))?;
            }
            for (l, staged, _) in &new_layers {
                let dest = self.layer_path(&l.diff_id);
                if dest.exists() {
                    // A leftover with no ready row (it would have been found above): replace it.
                    self.discard(&dest)?;
                }
                fs::rename(staged, &dest).map_err(|e| Error::io("commit layer", l.diff_id, e))?;
            }
        }
        let refused = md.write("commit", |tx| {
            for (d, _) in &new_blobs {
                metadata::put_blob(tx, &d.digest, d.size, &d.media_type, "ready")?;
            }
            for (l, _, tree) in &new_layers {
                metadata::put_layer(tx, l, "ready")?;
                metadata::put_layer_tree(tx, &l.diff_id, tree)?;
            }
            for (blob, diff_id) in &pairs {
                metadata::put_layer_blob(tx, blob, diff_id)?;
            }
            if let Some(h) = holder {
                for d in &ingest_blobs {
                    tx.execute(
                        "INSERT OR IGNORE INTO held_content (holder, digest) VALUES (?1, ?2)",
                        [h, &d.to_string()],
                    )?;
                }
            }
            let Some(img) = image else { return also(tx).map(|()| None) };
            // Checked in this transaction, where no gc can interleave: every pair the image
            // names was verified, and everything it names is still here. The content above
            // is kept either way (valid, and gc's if nothing uses it).
            for l in &img.layers {
                if !metadata::layer_blob_known(tx, &l.blob, &l.diff_id)? {
                    return Ok(Some(format!("layer blob {} is not known to hold diffID {}", l.blob, l.diff_id)));
                }
            }
            for d in [&img.manifest.digest, &img.config.digest] {
                if metadata::blob_size(tx, d)?.is_none() {
                    return Ok(Some(format!("blob {d} is not in the store")));
                }
            }
            crate::catalog::insert_image(tx, img)?;
            for d in img.layers.iter().map(|l| &l.blob).chain([&img.manifest.digest, &img.config.digest]) {
                tx.execute("DELETE FROM held_content WHERE digest = ?1", [d.to_string()])?;
            }
            also(tx).map(|()| None)
        })?;
        match (refused, image) {
            (Some(why), Some(img)) => {
                Err(Error::new(ErrorKind::InvalidInput, "record image", img.manifest.digest, why))
            }
            _ => Ok(()),
        }
    }

    /// One `syncfs` of the store's filesystem: cheaper than an fsync per file, and
    /// it covers the staged tree, the blob and the database's WAL together.
    fn sync(&self) -> Result<()> {
        let r = Root::open(&self.root.join("tmp")).map_err(|e| Error::io("sync", self.root.display(), e))?;
        r.sync_filesystem().map_err(|e| Error::io("sync", self.root.display(), e))
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

    /// Removes crash leftovers: everything in `tmp/` and content whose row stayed `pending`.
    /// Only called while holding the store lock exclusively.
    fn sweep(&self) -> Result<()> {
        // First: an interrupted commit's upper dir is moved back before pending layers go.
        self.sweep_containers()?;
        self.sweep_volumes()?;
        let tmp = self.root.join("tmp");
        for entry in fs::read_dir(&tmp).map_err(|e| Error::io("sweep", tmp.display(), e))? {
            let entry = entry.map_err(|e| Error::io("sweep", tmp.display(), e))?;
            // A scratch mount (export) whose process died.
            if crate::mount::is_mountpoint(&entry.path()) {
                crate::mount::unmount_path(&entry.path(), true)?;
            }
            remove_tree(&entry.path()).map_err(|e| Error::io("sweep", entry.path().display(), e))?;
        }
        let (blobs, layers) = self.md().pending()?;
        for d in &blobs {
            self.discard(&self.blob_path(d))?;
        }
        for l in &layers {
            self.discard(&self.layer_path(l))?;
        }
        if !blobs.is_empty() || !layers.is_empty() {
            self.md().write("sweep", |tx| {
                tx.execute("DELETE FROM blobs WHERE state = 'pending'", [])?;
                tx.execute("DELETE FROM layers WHERE state = 'pending'", [])?;
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Takes the store lock exclusively and sweeps, for gc: `false` (still holding it
    /// shared) while another process has the store open.
    pub(crate) fn try_lock_exclusive(&self) -> Result<bool> {
        // Let go of our shared hold first, so only other processes' holds make try_lock fail.
        self.store_lock.unlock().map_err(|e| Error::io("lock store", self.root.display(), e))?;
        if self.store_lock.try_lock().is_err() {
            self.store_lock_shared()?;
            return Ok(false);
        }
        self.sweep()?;
        Ok(true)
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

    /// Hashes a stored blob from disk.
    pub(crate) fn hash_blob(&self, d: &Digest) -> io::Result<(Digest, u64)> {
        crate::digest::Hasher::read_all(File::open(self.blob_path(d))?)
    }
}

fn open_lock(path: &Path) -> Result<File> {
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

/// Removes a file or a whole tree; absent is fine. Our own staged trees only.
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}
