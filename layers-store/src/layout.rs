//! OCI image layouts (`oci-layout`, `index.json`, `blobs/sha256/`): loading them
//! into the store. Blobs are kept as they are (never recompressed); every one is
//! verified against its descriptor before it is trusted.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::digest::Digest;
use crate::error::{Error, ErrorKind, Result};
use crate::image::{ImageConfig, Manifest};
use crate::metadata::ImageLayerRow;
use crate::store::{LayerExpect, NewImage, Store};

/// Layers committed at once while loading a deep image.
const COMMIT_BATCH: usize = 64;

/// Largest manifest, index or config read.
const MAX_JSON: u64 = 4 << 20;

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

/// An OCI image layout directory.
pub struct Layout {
    dir: PathBuf,
}

impl Layout {
    /// Opens a layout, checking its `oci-layout` marker.
    pub fn open(dir: &Path) -> Result<Layout> {
        let marker = dir.join("oci-layout");
        let text = fs::read(&marker).map_err(|e| Error::io("open OCI layout", marker.display(), e))?;
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
        Ok(Layout { dir: dir.to_path_buf() })
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        self.dir.join("blobs/sha256").join(d.hex())
    }

    /// Reads a small blob whole, verifying its digest.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        let p = self.blob_path(d);
        let meta = fs::metadata(&p).map_err(|e| Error::io("read OCI layout blob", d, e))?;
        if meta.len() > MAX_JSON {
            return Err(Error::new(
                ErrorKind::LimitExceeded,
                "read OCI layout blob",
                d,
                format!("over {MAX_JSON} bytes"),
            ));
        }
        let bytes = fs::read(&p).map_err(|e| Error::io("read OCI layout blob", d, e))?;
        let got = Digest::of(&bytes);
        if got != *d {
            return Err(Error::mismatch("read OCI layout blob", d, got));
        }
        Ok(bytes)
    }

    /// The images `index.json` lists (nested indexes are followed; for a
    /// multi-platform index, the entries for `architecture` on linux).
    pub fn images(&self, architecture: &str) -> Result<Vec<LayoutImage>> {
        let index = self.dir.join("index.json");
        let bytes = fs::read(&index).map_err(|e| Error::io("read OCI layout", index.display(), e))?;
        let mut out = Vec::new();
        self.collect(&bytes, None, architecture, &mut out, 0)?;
        Ok(out)
    }

    fn collect(
        &self,
        index: &[u8],
        name: Option<String>,
        arch: &str,
        out: &mut Vec<LayoutImage>,
        depth: u32,
    ) -> Result<()> {
        let bad = |m: String| Error::new(ErrorKind::InvalidInput, "read OCI layout", self.dir.display(), m);
        if depth > 4 {
            return Err(bad("indexes nested too deep".into()));
        }
        let v: Value = serde_json::from_slice(index).map_err(|e| bad(format!("index: {e}")))?;
        for m in v["manifests"].as_array().ok_or_else(|| bad("index without manifests".into()))? {
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
                self.collect(&nested, entry_name, arch, out, depth + 1)?;
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

impl Store {
    /// Loads one image of a layout: verifies and unpacks its layers (those not stored
    /// yet), then records it with `tags`, all in one commit.
    pub fn load_from_layout(&self, layout: &Layout, manifest: &Digest, tags: Vec<String>) -> Result<Loaded> {
        let manifest_bytes = layout.read_blob(manifest)?;
        let m: Manifest = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| Error::new(ErrorKind::InvalidInput, "read image manifest", manifest, e.to_string()))?;
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
        let mut ingest = self.ingest()?;
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
            if self.has_layer(diff, &desc.digest)? || rows[..rows.len() - 1].iter().any(|r| r.diff_id == *diff) {
                continue;
            }
            let f = File::open(layout.blob_path(&desc.digest))
                .map_err(|e| Error::io("read OCI layout blob", desc.digest, e))?;
            let expect = LayerExpect { blob: Some(desc.digest), size: Some(desc.size), diff_id: Some(*diff) };
            self.unpack_layer(&mut ingest, f, &expect)?;
            new_layers += 1;
            // A commit locks each item it moves: bound the open lock files.
            if new_layers % COMMIT_BATCH == 0 {
                self.commit(std::mem::replace(&mut ingest, self.ingest()?), None)?;
            }
        }
        let media = m.media_type.clone().unwrap_or_else(|| crate::image::MEDIA_TYPE_MANIFEST.to_string());
        let mdesc = self.stage_blob(&mut ingest, &manifest_bytes, &media)?;
        let cdesc = self.stage_blob(&mut ingest, &config_bytes, &m.config.media_type)?;
        let image = NewImage {
            manifest: mdesc,
            config: cdesc.clone(),
            layers: rows,
            created: config.created.clone().unwrap_or_default(),
            tags,
        };
        self.commit(ingest, Some(&image))?;
        Ok(Loaded { manifest: *manifest, config: cdesc.digest, new_layers })
    }
}
