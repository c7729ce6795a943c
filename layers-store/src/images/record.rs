//! Recording an image: its manifest and config blobs and its layer rows, in one call
//! (pull, import, load, commit and build all end here), and reading them back typed.

use super::catalog::NewImage;
use crate::content::digest::Digest;
use crate::error::{Error, ErrorKind, Result};
use crate::images::oci::{Descriptor, ImageConfig, Manifest, MAX_JSON, MEDIA_TYPE_CONFIG, MEDIA_TYPE_MANIFEST};
use crate::images::Images;
use crate::meta::{ImageLayerRow, ImageRow};
use crate::store::Ingest;

/// The blobs of an image to record.
pub enum ImageBlobs<'a> {
    /// As received (from a registry or an OCI layout): kept byte for byte.
    Received {
        /// The manifest's bytes.
        manifest: &'a [u8],
        /// The config's bytes.
        config: &'a [u8],
    },
    /// A config as received (a docker archive's) under a new OCI manifest naming `layers`.
    ReceivedConfig {
        /// The config's bytes.
        config: &'a [u8],
        /// The layer blobs, bottom first.
        layers: Vec<Descriptor>,
    },
    /// Made here: `config` is written out, and a new OCI manifest names it and `layers`.
    New {
        /// The config; its `rootfs.diff_ids` pair with `layers`.
        config: &'a ImageConfig,
        /// The layer blobs, bottom first.
        layers: Vec<Descriptor>,
    },
}

fn corrupt(op: &'static str, d: &Digest, e: serde_json::Error) -> Error {
    Error::new(ErrorKind::Corrupt, op, d, e.to_string())
}

/// An OCI manifest for `config_bytes` and `layers`, with everything `record_image` needs.
fn new_manifest(config_bytes: Vec<u8>, layers: Vec<Descriptor>) -> Result<(Vec<u8>, Manifest, Vec<u8>, ImageConfig)> {
    let digest = Digest::of(&config_bytes);
    let config: ImageConfig = serde_json::from_slice(&config_bytes).map_err(|e| corrupt("record image", &digest, e))?;
    let desc = Descriptor {
        media_type: MEDIA_TYPE_CONFIG.to_string(),
        digest,
        size: config_bytes.len() as u64,
        urls: None,
        annotations: None,
    };
    let m = Manifest::new(desc, layers);
    let bytes = serde_json::to_vec(&m)
        .map_err(|e| Error::new(ErrorKind::InvalidInput, "record image", "manifest", e.to_string()))?;
    Ok((bytes, m, config_bytes, config))
}

impl Images<'_> {
    /// The manifest of a stored image.
    pub fn manifest(&self, image: &ImageRow) -> Result<Manifest> {
        serde_json::from_slice(&self.store.content().read_blob(&image.manifest, MAX_JSON)?)
            .map_err(|e| corrupt("read image manifest", &image.manifest, e))
    }

    /// The config of a stored image.
    pub fn config(&self, image: &ImageRow) -> Result<ImageConfig> {
        serde_json::from_slice(&self.store.content().read_blob(&image.config, MAX_JSON)?)
            .map_err(|e| corrupt("read image config", &image.config, e))
    }

    /// Stages the image's manifest and config in `ingest`, commits everything staged
    /// there, and records the image with its layers and `tags` in the same transaction.
    /// Every layer must be in the store (or staged) already.
    pub fn record(&self, ingest: Ingest, blobs: ImageBlobs, tags: &[String]) -> Result<ImageRow> {
        self.record_with(ingest, blobs, tags, None, &|_, _| Ok(()))
    }

    /// `record_image`, with `also` run in its transaction (given the new manifest
    /// digest); with `remote`, the repository its layers are in (they need not be here).
    pub(crate) fn record_with(
        &self,
        mut ingest: Ingest,
        blobs: ImageBlobs,
        tags: &[String],
        remote: Option<&str>,
        also: &dyn Fn(&rusqlite::Transaction, &Digest) -> rusqlite::Result<()>,
    ) -> Result<ImageRow> {
        let (manifest_bytes, manifest, config_bytes, config) = match blobs {
            ImageBlobs::Received { manifest, config } => {
                let d = Digest::of(manifest);
                let m: Manifest = serde_json::from_slice(manifest).map_err(|e| corrupt("record image", &d, e))?;
                let c: ImageConfig =
                    serde_json::from_slice(config).map_err(|e| corrupt("record image", &m.config.digest, e))?;
                (manifest.to_vec(), m, config.to_vec(), c)
            }
            ImageBlobs::ReceivedConfig { config, layers } => new_manifest(config.to_vec(), layers)?,
            ImageBlobs::New { config, layers } => {
                let bytes = serde_json::to_vec(config)
                    .map_err(|e| Error::new(ErrorKind::InvalidInput, "record image", "config", e.to_string()))?;
                // Never write what no reader (ours included) takes back.
                if bytes.len() as u64 > crate::images::oci::MAX_JSON {
                    let why = format!(
                        "{} bytes, over the {} an image config may have (too many history entries, labels or variables)",
                        bytes.len(),
                        crate::images::oci::MAX_JSON
                    );
                    return Err(Error::new(ErrorKind::LimitExceeded, "record image", "config", why));
                }
                new_manifest(bytes, layers)?
            }
        };
        let digest = Digest::of(&manifest_bytes);
        if manifest.layers.len() != config.rootfs.diff_ids.len() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "record image",
                digest,
                format!("{} layers but {} diffIDs", manifest.layers.len(), config.rootfs.diff_ids.len()),
            ));
        }
        let rows = manifest
            .layers
            .iter()
            .zip(&config.rootfs.diff_ids)
            .map(|(d, diff_id)| ImageLayerRow {
                diff_id: *diff_id,
                blob: d.digest,
                media_type: d.media_type.clone(),
                size: d.size,
            })
            .collect();
        let media_type = manifest.media_type.as_deref().unwrap_or(MEDIA_TYPE_MANIFEST);
        let manifest_desc = self.store.content().stage_blob(&mut ingest, &manifest_bytes, media_type)?;
        let config_desc = self.store.content().stage_blob(&mut ingest, &config_bytes, &manifest.config.media_type)?;
        if config_desc.digest != manifest.config.digest {
            return Err(Error::mismatch("record image config", manifest.config.digest, config_desc.digest));
        }
        let image = NewImage {
            manifest: manifest_desc,
            config: config_desc,
            layers: rows,
            created: config.created.clone().unwrap_or_default(),
            tags: tags.to_vec(),
            remote: remote.map(str::to_string),
        };
        self.store.commit_with(ingest, Some(&image), &|tx| also(tx, &digest))?;
        self.get(&digest)?.ok_or_else(|| Error::new(ErrorKind::Corrupt, "record image", digest, "not recorded"))
    }
}
