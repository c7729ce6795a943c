//! `RUN --mount=type=cache` dirs in a shared cache (what BuildKit never exports,
//! moby/buildkit#1512): each mount the build used goes as a layer tar of its own,
//! named by its id; a fresh runner's step that misses and uses that id finds it
//! filled from there. A mount is never an input of a step's key, so a seeded mount
//! changes no key (as in BuildKit).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context;
use layers_store::cache_mounts::{HeldMount, Sharing};
use layers_store::content::digest::{Digest, HashingWriter};
use layers_store::images::oci::Descriptor;
use layers_store::{Compression, Store};

use super::format::CachedLayer;
use super::{CacheTo, Imported, Source};
use crate::builder::scratch::ScratchDir;

impl Imported {
    /// Fills the held (empty) cache mount `id` from the imported cache that has it:
    /// its blob fetched now (only a step that uses the mount and runs gets here),
    /// unpacked with the unpacker's bounds and path rules. Returns the source's name
    /// and the tar's size; none when no source has the id. On a failure the mount
    /// stays empty.
    pub fn seed_mount(&self, store: &Store, id: &str, held: &HeldMount) -> anyhow::Result<Option<(String, u64)>> {
        let Some((i, layer)) = self.mounts.get(id) else { return Ok(None) };
        let blob = self.open_mount(store, id)?;
        let size = store.build_cache().fill_mount(held, blob, layer.blob.digest, layer.diff_id)?;
        Ok(Some((self.names.get(*i).cloned().unwrap_or_default(), size)))
    }

    /// Whether an imported cache has a blob of cache mount `id`.
    pub fn has_mount(&self, id: &str) -> bool {
        self.mounts.contains_key(id)
    }

    /// The imported blob of cache mount `id`, if a source has one.
    fn mount(&self, id: &str) -> Option<&CachedLayer> {
        self.mounts.get(id).map(|(_, l)| l)
    }

    /// Reads the imported blob of cache mount `id` (one in a registry is fetched first).
    pub fn open_mount(&self, store: &Store, id: &str) -> anyhow::Result<Box<dyn std::io::Read + Send>> {
        let (i, layer) = self.mounts.get(id).context("no such imported cache mount")?;
        let file = match &self.sources[*i] {
            Source::Local(s) => s.open_blob(&layer.blob)?,
            Source::Registry(s) => {
                let scratch = ScratchDir(store.scratch_dir("cache-mount-blob")?);
                let path = scratch.path().join("blob");
                s.download(&layer.blob, &path)?;
                // Open before the scratch dir goes: the open file outlives its name.
                File::open(&path).with_context(|| format!("open {}", path.display()))?
            }
        };
        Ok(Box::new(BufReader::with_capacity(128 << 10, file)))
    }

    /// The registry the imported blob of mount `id` is in, if it is in one.
    fn mount_registry(&self, id: &str) -> Option<&str> {
        let (i, _) = self.mounts.get(id)?;
        match &self.sources[*i] {
            Source::Registry(s) => Some(&s.reference.registry),
            Source::Local(_) => None,
        }
    }
}

/// The cache mounts an export writes: each id with its layer, the files of the
/// blobs packed here, and a line for each mount left out.
pub struct Packed {
    pub layers: Vec<(String, CachedLayer)>,
    pub files: BTreeMap<Digest, PathBuf>,
    pub notes: Vec<String>,
    /// Where the packed blobs are, until the export is written.
    _scratch: ScratchDir,
}

impl Packed {
    /// No cache mounts.
    pub fn none(store: &Store) -> anyhow::Result<Packed> {
        let scratch = ScratchDir(store.scratch_dir("cache-mounts-export")?);
        Ok(Packed { layers: Vec::new(), files: BTreeMap::new(), notes: Vec::new(), _scratch: scratch })
    }

    /// Where blob `d` is read from: a file packed for this export (a cache mount), or the store.
    pub fn path_of(&self, store: &Store, d: &Descriptor) -> PathBuf {
        self.files.get(&d.digest).cloned().unwrap_or_else(|| store.content().blob_path(&d.digest))
    }

    /// The id of a mount carried on from an imported cache with this blob.
    pub fn carried(&self, blob: &Digest) -> Option<&str> {
        self.layers
            .iter()
            .find(|(_, l)| l.blob.digest == *blob && !self.files.contains_key(blob))
            .map(|(id, _)| id.as_str())
    }

    /// Fetches the blobs of carried mounts whose source is not on `registry`: a push
    /// there must upload them (one on it is found there or mounted).
    pub fn fetch_carried(&mut self, store: &Store, imported: &Imported, registry: &str) -> anyhow::Result<()> {
        let carried: Vec<(String, Descriptor)> = self
            .layers
            .iter()
            .filter(|(id, l)| !self.files.contains_key(&l.blob.digest) && imported.mount_registry(id) != Some(registry))
            .map(|(id, l)| (id.clone(), l.blob.clone()))
            .collect();
        for (n, (id, blob)) in carried.into_iter().enumerate() {
            let path = self._scratch.path().join(format!("carried-{n}"));
            let mut from = imported.open_mount(store, &id)?;
            let mut file = File::create(&path).with_context(|| format!("create {}", path.display()))?;
            std::io::copy(&mut from, &mut file).with_context(|| format!("cache mount {id}: fetch its blob"))?;
            self.files.insert(blob.digest, path);
        }
        Ok(())
    }
}

/// Packs each cache mount in `ids` that holds something (a mount left empty here,
/// its step all hits, carries the imported cache's blob of it on); each in `to`'s
/// compression, gzip by default. Content that did not change packs to the same blob,
/// which a destination that has it is not sent again.
pub fn pack(store: &Store, imported: &Imported, ids: &[String], to: &CacheTo) -> anyhow::Result<Packed> {
    let mut out = Packed::none(store)?;
    for (n, id) in ids.iter().enumerate() {
        let held = store.build_cache().hold_mount(id, Sharing::Shared)?;
        if held.is_empty() {
            if let Some(l) = imported.mount(id) {
                out.layers.push((id.clone(), l.clone()));
            }
            continue;
        }
        let path = out._scratch.path().join(format!("mount-{n}"));
        match pack_one(store, &held, &path, to).with_context(|| format!("cache mount {id}"))? {
            Some(layer) => {
                out.files.insert(layer.blob.digest, path);
                out.layers.push((id.clone(), layer));
            }
            None => out.notes.push(format!(
                "cache mount {id}: larger than cache-mount-max-size ({} bytes of tar); not exported",
                to.mount_max
            )),
        }
    }
    Ok(out)
}

/// Writes one held mount as a compressed layer tar at `path`; none when its tar
/// would be larger than `to.mount_max`.
fn pack_one(
    store: &Store,
    held: &HeldMount,
    path: &std::path::Path,
    to: &CacheTo,
) -> anyhow::Result<Option<CachedLayer>> {
    let compression = to.compression.unwrap_or(Compression::Gzip);
    let file = File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut encoder =
        compression.encoder_at(HashingWriter::new(BufWriter::with_capacity(128 << 10, file)), to.level)?;
    let mut capped = Capped { inner: &mut encoder, left: to.mount_max, over: false };
    let written = store.build_cache().pack_mount(held, &mut capped);
    if capped.over {
        return Ok(None);
    }
    let written = written?;
    let mut blob = encoder.finish()?;
    blob.flush()?;
    let blob = Descriptor {
        media_type: compression.oci_media_type().into(),
        digest: blob.hasher.finish(),
        size: blob.size,
        urls: None,
        annotations: None,
    };
    Ok(Some(CachedLayer { blob, diff_id: written.diff_id }))
}

/// A writer that takes at most `left` bytes, then fails (and says so in `over`).
struct Capped<W> {
    inner: W,
    left: u64,
    over: bool,
}

impl<W: Write> Write for Capped<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() as u64 > self.left {
            self.over = true;
            return Err(std::io::Error::other("over the size cap"));
        }
        let n = self.inner.write(buf)?;
        self.left -= n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
