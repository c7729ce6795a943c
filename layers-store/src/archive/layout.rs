//! OCI image layouts (`oci-layout`, `index.json`, `blobs/sha256/`): loading them
//! into the store. Blobs are kept as they are (never recompressed); every one is
//! verified against its descriptor before it is trusted.

use std::path::Path;

use serde_json::Value;

use super::Archive;
use crate::content::digest::Digest;
use crate::error::{Error, ErrorKind, Result};
use crate::fsroot::UserDir;
use crate::images::oci::{ImageConfig, Manifest};
use crate::meta::ImageLayerRow;
use crate::store::LayerExpect;

/// Layers committed at once while loading a deep image.
const COMMIT_BATCH: usize = 64;

/// Largest manifest, index or config read (and `index.json`, `manifest.json`, `oci-layout`).
pub use crate::images::oci::MAX_JSON;

/// Most index entries one load walks, nested indexes included: a small index that
/// names a large nested index many times over would otherwise fan out to millions.
pub const MAX_INDEX_ENTRIES: usize = 10_000;

/// Refuses a document that is both an index and a manifest (the shape of
/// CVE-2021-41190): readers that pick differently would see different images.
pub fn refuse_ambiguous(doc: &Value) -> std::result::Result<(), String> {
    if doc.get("manifests").is_some() && doc.get("layers").is_some() {
        return Err("the document has both `manifests` and `layers`: ambiguous, refused".into());
    }
    Ok(())
}

/// One image found in a layout: its manifest and the name its index gives it.
#[derive(Debug, Clone)]
pub struct LayoutImage {
    /// The manifest digest.
    pub manifest: Digest,
    /// `org.opencontainers.image.ref.name` (or containerd's `io.containerd.image.name`).
    pub name: Option<String>,
}

/// What a load stored.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The manifest digest.
    pub manifest: Digest,
    /// The config digest (image ID).
    pub config: Digest,
    /// Layers unpacked (the others were in the store already).
    pub new_layers: usize,
}

/// An OCI image layout directory (read beneath its fd: see `user_dir`).
pub struct Layout {
    dir: UserDir,
}

impl Layout {
    /// Opens a layout, checking its `oci-layout` marker.
    pub fn open(dir: &Path) -> Result<Layout> {
        let dir = UserDir::open(dir)?;
        let marker = dir.path().join("oci-layout");
        let text = dir.read_small("oci-layout", MAX_JSON)?;
        let v: Value = serde_json::from_slice(&text)
            .map_err(|e| Error::new(ErrorKind::InvalidInput, "open OCI layout", marker.display(), e.to_string()))?;
        if v["imageLayoutVersion"].as_str().is_none_or(|s| !s.starts_with("1.")) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "open OCI layout",
                marker.display(),
                format!("unsupported imageLayoutVersion {}", v["imageLayoutVersion"]),
            ));
        }
        Ok(Layout { dir })
    }

    fn blob_path(d: &Digest) -> String {
        format!("blobs/sha256/{}", d.hex())
    }

    /// Reads a small blob whole, verifying its digest.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        let bytes = self.dir.read_small(&Self::blob_path(d), MAX_JSON)?;
        let got = Digest::of(&bytes);
        if got != *d {
            return Err(Error::mismatch("read OCI layout blob", d, got));
        }
        Ok(bytes)
    }

    /// The images `index.json` lists (nested indexes are followed; for a
    /// multi-platform index, the entries for `architecture` on linux).
    pub fn images(&self, architecture: &str) -> Result<Vec<LayoutImage>> {
        let bytes = self.dir.read_small("index.json", MAX_JSON)?;
        let mut out = Vec::new();
        let mut budget = MAX_INDEX_ENTRIES;
        self.collect(&bytes, None, architecture, &mut out, 0, &mut budget)?;
        Ok(out)
    }

    fn collect(
        &self,
        index: &[u8],
        name: Option<String>,
        arch: &str,
        out: &mut Vec<LayoutImage>,
        depth: u32,
        budget: &mut usize,
    ) -> Result<()> {
        let bad = |m: String| Error::new(ErrorKind::InvalidInput, "read OCI layout", self.dir.path().display(), m);
        if depth > 4 {
            return Err(bad("indexes nested too deep".into()));
        }
        let v: Value = serde_json::from_slice(index).map_err(|e| bad(format!("index: {e}")))?;
        refuse_ambiguous(&v).map_err(bad)?;
        for m in v["manifests"].as_array().ok_or_else(|| bad("index without manifests".into()))? {
            *budget = budget
                .checked_sub(1)
                .ok_or_else(|| bad(format!("indexes list more than {MAX_INDEX_ENTRIES} entries in all")))?;
            let digest = Digest::parse(m["digest"].as_str().unwrap_or_default())?;
            let ann = &m["annotations"];
            let entry_name = ann["io.containerd.image.name"]
                .as_str()
                .or(ann["org.opencontainers.image.ref.name"].as_str())
                .map(str::to_string)
                .or(name.clone());
            let media = m["mediaType"].as_str().unwrap_or_default();
            if media.contains("index") || media.contains("manifest.list") {
                let nested = self.read_blob(&digest)?;
                self.collect(&nested, entry_name, arch, out, depth + 1, budget)?;
                continue;
            }
            let platform = &m["platform"];
            if platform.is_object() && (platform["os"] != "linux" || platform["architecture"] != arch) {
                continue;
            }
            out.push(LayoutImage { manifest: digest, name: entry_name });
        }
        Ok(())
    }
}

/// Where `save_images` writes: a directory or a tar stream.
pub trait Sink {
    /// Writes a file of `size` bytes at `path` (relative, `/`-separated).
    fn file(&mut self, path: &str, size: u64, content: &mut dyn std::io::Read) -> std::io::Result<()>;
}

/// Writes into a directory a user named (created if missing), beneath its fd: no
/// symlink in it is followed, each file is written aside and renamed into place.
pub struct DirSink(pub UserDir);

impl DirSink {
    /// A sink into `path`, made if missing and checked as `UserDir::create` does.
    pub fn create(path: &Path) -> Result<DirSink> {
        Ok(DirSink(UserDir::create(path)?))
    }
}

impl Sink for DirSink {
    fn file(&mut self, path: &str, _size: u64, content: &mut dyn std::io::Read) -> std::io::Result<()> {
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
        let dir = self.0.dir(parent, true).map_err(std::io::Error::other)?;
        dir.write_file(name, content).map_err(std::io::Error::other)?;
        Ok(())
    }
}

/// Writes a tar (deterministic: fixed modes, owners and times).
pub struct TarSink<W: std::io::Write> {
    tar: crate::layer::tar_writer::TarWriter<W>,
    dirs: std::collections::BTreeSet<String>,
}

impl<W: std::io::Write> TarSink<W> {
    /// A tar onto `out`.
    pub fn new(out: W) -> Self {
        TarSink { tar: crate::layer::tar_writer::TarWriter::new(out), dirs: Default::default() }
    }

    /// Ends the archive.
    pub fn finish(self) -> std::io::Result<W> {
        self.tar.finish()
    }

    fn entry(path: &str, kind: crate::layer::tar::EntryKind, mode: u32, size: u64) -> crate::layer::tar::Entry {
        crate::layer::tar::Entry {
            path: path.as_bytes().to_vec(),
            link: Vec::new(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime: (0, 0),
            size,
            dev: (0, 0),
            xattrs: Vec::new(),
            sparse: None,
        }
    }
}

impl<W: std::io::Write> Sink for TarSink<W> {
    fn file(&mut self, path: &str, size: u64, content: &mut dyn std::io::Read) -> std::io::Result<()> {
        use crate::layer::tar::EntryKind;
        let mut prefix = String::new();
        for part in path.split('/').collect::<Vec<_>>().split_last().map(|(_, dirs)| dirs).unwrap_or(&[]) {
            prefix.push_str(part);
            if self.dirs.insert(prefix.clone()) {
                self.tar.append(&Self::entry(&prefix, EntryKind::Dir, 0o755, 0))?;
            }
            prefix.push('/');
        }
        self.tar.append(&Self::entry(path, EntryKind::File, 0o644, size))?;
        let mut buf = vec![0u8; 128 * 1024];
        loop {
            let n = content.read(&mut buf)?;
            if n == 0 {
                break;
            }
            self.tar.write_data(&buf[..n])?;
        }
        if self.tar.owed() > 0 {
            return Err(std::io::Error::other(format!("{path}: shorter than {size} bytes")));
        }
        Ok(())
    }
}

/// An image to save, with the names to give it.
#[derive(Debug, Clone)]
pub struct SaveImage {
    /// Its manifest digest.
    pub manifest: Digest,
    /// Full names (`docker.io/library/x:tag`).
    pub names: Vec<String>,
}

/// A path from an archive's `manifest.json`: relative, plain components only.
fn archive_path(p: &str) -> Result<&str> {
    let ok = !p.is_empty()
        && !p.starts_with('/')
        && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
        && p.chars().all(|c| c.is_ascii_alphanumeric() || "._-/:".contains(c));
    if !ok {
        return Err(Error::new(ErrorKind::Unsafe, "read docker archive", p, "not a plain relative path"));
    }
    Ok(p)
}

impl Archive<'_> {
    /// Loads one image of a layout: verifies and unpacks its layers (those not stored
    /// yet), then records it with `tags`, all in one commit.
    pub fn load_layout(&self, layout: &Layout, manifest: &Digest, tags: Vec<String>) -> Result<Loaded> {
        let manifest_bytes = layout.read_blob(manifest)?;
        let bad = |m: String| Error::new(ErrorKind::InvalidInput, "read image manifest", manifest, m);
        let v: Value = serde_json::from_slice(&manifest_bytes).map_err(|e| bad(e.to_string()))?;
        refuse_ambiguous(&v).map_err(bad)?;
        let m: Manifest = serde_json::from_value(v).map_err(|e| bad(e.to_string()))?;
        let config_bytes = layout.read_blob(&m.config.digest)?;
        let config: ImageConfig = serde_json::from_slice(&config_bytes)
            .map_err(|e| Error::new(ErrorKind::InvalidInput, "read image config", m.config.digest, e.to_string()))?;
        if config.rootfs.diff_ids.len() != m.layers.len() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "load image",
                manifest,
                format!("manifest lists {} layers but the config {}", m.layers.len(), config.rootfs.diff_ids.len()),
            ));
        }
        let mut ingest = self.store.content().ingest()?;
        let mut new_layers = 0;
        let mut rows = Vec::new();
        for (desc, diff) in m.layers.iter().zip(&config.rootfs.diff_ids) {
            rows.push(ImageLayerRow {
                diff_id: *diff,
                blob: desc.digest,
                media_type: desc.media_type.clone(),
                size: desc.size,
            });
            // Repeated layers in one image are unpacked once.
            let twice = rows[..rows.len() - 1].iter().any(|r| r.diff_id == *diff && r.blob == desc.digest);
            if twice || self.store.layers().has(diff, &desc.digest)? {
                continue;
            }
            let (f, _) = layout.dir.open_file(&Layout::blob_path(&desc.digest))?;
            let expect = LayerExpect { blob: Some(desc.digest), size: Some(desc.size), diff_id: Some(*diff) };
            self.store.layers().unpack(&mut ingest, f, &expect)?;
            new_layers += 1;
            // A commit locks each item it moves: bound the open lock files.
            if new_layers % COMMIT_BATCH == 0 {
                self.store.content().commit(std::mem::replace(&mut ingest, self.store.content().ingest()?))?;
            }
        }
        let image = self.store.images().record(
            ingest,
            crate::images::record::ImageBlobs::Received { manifest: &manifest_bytes, config: &config_bytes },
            &tags,
        )?;
        Ok(Loaded { manifest: *manifest, config: image.config, new_layers })
    }

    /// Writes images as an OCI layout (blobs as stored, never recompressed); with
    /// `docker_manifest`, also Docker's `manifest.json` (the dual format Docker 25+ writes,
    /// which older `docker load` and `podman load` read too).
    pub fn save(&self, images: &[SaveImage], sink: &mut dyn Sink, docker_manifest: bool) -> Result<()> {
        // Before anything is written: an archive of a remote image would lack its layers.
        for img in images {
            self.store.images().require_local(&img.manifest)?;
        }
        let mut written = std::collections::HashSet::new();
        let mut index = Vec::new();
        let mut docker = Vec::new();
        let mut blob = |sink: &mut dyn Sink, d: &Digest| -> Result<()> {
            if !written.insert(*d) {
                return Ok(());
            }
            let p = self.store.content().blob_path(d);
            let mut f = std::fs::File::open(&p).map_err(|e| Error::io("save blob", d, e))?;
            let size = f.metadata().map_err(|e| Error::io("save blob", d, e))?.len();
            sink.file(&format!("blobs/sha256/{}", d.hex()), size, &mut f).map_err(|e| Error::io("save blob", d, e))
        };
        for img in images {
            let bytes = self.store.content().read_blob(&img.manifest, MAX_JSON)?;
            let m: Manifest = serde_json::from_slice(&bytes)
                .map_err(|e| Error::new(ErrorKind::Corrupt, "read image manifest", img.manifest, e.to_string()))?;
            for l in &m.layers {
                blob(sink, &l.digest)?;
            }
            blob(sink, &m.config.digest)?;
            blob(sink, &img.manifest)?;
            let media = m.media_type.clone().unwrap_or_else(|| crate::images::oci::MEDIA_TYPE_MANIFEST.to_string());
            let names: Vec<Option<&String>> =
                if img.names.is_empty() { vec![None] } else { img.names.iter().map(Some).collect() };
            for name in names {
                let mut entry = serde_json::json!({"mediaType": media, "digest": img.manifest, "size": bytes.len()});
                if let Some(n) = name {
                    entry["annotations"] = serde_json::json!({
                        "io.containerd.image.name": n,
                        "org.opencontainers.image.ref.name": n.rsplit_once(':').map(|(_, t)| t).unwrap_or("latest"),
                    });
                }
                index.push(entry);
            }
            docker.push(serde_json::json!({
                "Config": format!("blobs/sha256/{}", m.config.digest.hex()),
                "RepoTags": img.names,
                "Layers": m.layers.iter().map(|l| format!("blobs/sha256/{}", l.digest.hex())).collect::<Vec<_>>(),
            }));
        }
        let json = |v: &Value| serde_json::to_vec(v).unwrap_or_default();
        let small = |sink: &mut dyn Sink, path: &str, bytes: Vec<u8>| {
            sink.file(path, bytes.len() as u64, &mut &bytes[..]).map_err(|e| Error::io("save", path, e))
        };
        small(sink, "oci-layout", json(&serde_json::json!({"imageLayoutVersion": "1.0.0"})))?;
        small(sink, "index.json", json(&serde_json::json!({"schemaVersion": 2, "manifests": index})))?;
        if docker_manifest {
            small(sink, "manifest.json", json(&Value::Array(docker)))?;
        }
        Ok(())
    }

    /// Loads every image a `docker save` archive's `manifest.json` lists (the archive
    /// unpacked into `dir`): layers are verified against the config's diffIDs and kept
    /// as stored; an OCI manifest is made for each image.
    pub fn load_docker_archive(&self, dir: &Path) -> Result<Vec<(Loaded, Vec<String>)>> {
        let dir = UserDir::open(dir)?;
        let text = dir.read_small("manifest.json", MAX_JSON)?;
        let bad = |m: String| Error::new(ErrorKind::InvalidInput, "read docker archive", "manifest.json", m);
        let entries: Vec<Value> = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
        let mut out = Vec::new();
        for e in entries {
            let config_path = archive_path(e["Config"].as_str().ok_or_else(|| bad("an entry without Config".into()))?)?;
            let config_bytes = dir.read_small(config_path, MAX_JSON)?;
            let config: ImageConfig =
                serde_json::from_slice(&config_bytes).map_err(|err| bad(format!("config: {err}")))?;
            let layer_paths: Vec<&str> =
                e["Layers"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
            if layer_paths.len() != config.rootfs.diff_ids.len() {
                return Err(bad(format!(
                    "{} layers listed but the config has {}",
                    layer_paths.len(),
                    config.rootfs.diff_ids.len()
                )));
            }
            let mut ingest = self.store.content().ingest()?;
            let mut descs = Vec::new();
            let mut rows = Vec::new();
            let mut new_layers = 0;
            for (p, diff) in layer_paths.iter().zip(&config.rootfs.diff_ids) {
                let (f, _) = dir.open_file(archive_path(p)?)?;
                // The blob's digest is learned while unpacking (never a second read).
                let u = self.store.layers().unpack(
                    &mut ingest,
                    f,
                    &LayerExpect { blob: None, size: None, diff_id: Some(*diff) },
                )?;
                new_layers += 1;
                let media_type = u.compression.oci_media_type().to_string();
                rows.push(ImageLayerRow {
                    diff_id: *diff,
                    blob: u.blob,
                    media_type: media_type.clone(),
                    size: u.blob_size,
                });
                descs.push(crate::images::oci::Descriptor {
                    media_type,
                    digest: u.blob,
                    size: u.blob_size,
                    urls: None,
                    annotations: None,
                });
                if new_layers % COMMIT_BATCH == 0 {
                    self.store.content().commit(std::mem::replace(&mut ingest, self.store.content().ingest()?))?;
                }
            }
            let tags: Vec<String> = e["RepoTags"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default();
            let image = self.store.images().record(
                ingest,
                crate::images::record::ImageBlobs::ReceivedConfig { config: &config_bytes, layers: descs },
                &[],
            )?;
            out.push((Loaded { manifest: image.manifest, config: image.config, new_layers }, tags));
        }
        Ok(out)
    }
}
