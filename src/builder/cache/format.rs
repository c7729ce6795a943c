//! The shared build cache's format: one OCI image manifest per cache ref. Its config
//! (media type [`MEDIA_TYPE`]) lists the cached steps; its layers are the steps'
//! layer blobs exactly as stored, each annotated with its diffID.
//!
//! ```json
//! {"version": 1, "steps": [{"key": "sha256:…", "parent": "sha256:…",
//!   "instruction": "RUN make", "config": "{…the step image's config, byte for byte…}",
//!   "layers": [0, 3], "inputs": [["build arg V", "sha256:…"], ["src/main.c", "sha256:…"]]}]}
//! ```
//! `layers` index the manifest's layers, bottom first. After the steps' layers come
//! the build's `RUN --mount=type=cache` dirs, each a layer tar annotated with its id
//! ([`MOUNT_ANNOTATION`]) and its diffID, which no step names. A step's config is kept as text
//! so the image made from a record has the same ID as on the machine that made it. A
//! small cache config also travels in the manifest (its descriptor's `data`), sparing
//! a reader one round trip.

use std::collections::BTreeMap;

use base64::Engine as _;
use layers_store::content::digest::{DiffId, Digest};
use layers_store::images::oci::{Descriptor, ImageConfig, Manifest};
use serde::{Deserialize, Serialize};

/// The cache config's media type.
pub const MEDIA_TYPE: &str = "application/vnd.layers.build-cache.v1+json";
/// The format version this code reads and writes.
pub const VERSION: u32 = 1;
/// The annotation naming a layer blob's diffID.
pub const DIFF_ID_ANNOTATION: &str = "vnd.layers.diff-id";
/// The annotation naming the cache mount a layer blob holds (by its `id=`).
pub const MOUNT_ANNOTATION: &str = "vnd.layers.cache-mount";
/// Most steps one cache holds (a bound on what an import trusts).
pub const MAX_STEPS: usize = 10_000;

/// The cache config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    pub version: u32,
    pub steps: Vec<StepRecord>,
}

/// One cached step.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepRecord {
    /// The step's cache key.
    pub key: Digest,
    /// The key of the step before it (or of its base).
    pub parent: Digest,
    /// The instruction as shown (after expansion).
    pub instruction: String,
    /// The step image's config, byte for byte.
    pub config: String,
    /// Its layers: indices into the manifest's layers, bottom first.
    pub layers: Vec<usize>,
    /// What it read, by name, each with a digest (to explain a miss of it elsewhere).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<(String, String)>,
}

/// A layer of a cached step: its blob and diffID.
#[derive(Debug, Clone)]
pub struct CachedLayer {
    pub blob: Descriptor,
    pub diff_id: DiffId,
}

/// A step of an imported cache, checked: its config parses and its layers are the
/// manifest's, as many as its config's diffIDs.
#[derive(Debug, Clone)]
pub struct CachedStep {
    pub record: StepRecord,
    pub config: ImageConfig,
    pub layers: Vec<CachedLayer>,
}

/// What a cache holds: its steps by key, and its cache mounts' blobs by id.
#[derive(Debug, Default)]
pub struct Cache {
    pub steps: BTreeMap<Digest, CachedStep>,
    pub mounts: BTreeMap<String, CachedLayer>,
}

/// Reads a cache manifest and its config (both verified by the caller against their
/// digests) into its steps and mounts, refusing anything malformed or hostile by name.
pub fn read(manifest: &[u8], config: &[u8]) -> Result<Cache, String> {
    let m: Manifest = serde_json::from_slice(manifest).map_err(|e| format!("cache manifest: {e}"))?;
    if m.config.media_type != MEDIA_TYPE {
        return Err(format!("cache manifest: config media type {} is not {MEDIA_TYPE}", m.config.media_type));
    }
    let c: CacheConfig = serde_json::from_slice(config).map_err(|e| format!("cache config: {e}"))?;
    if c.version != VERSION {
        return Err(format!("cache config: format version {} (this layers reads {VERSION})", c.version));
    }
    if c.steps.len() > MAX_STEPS {
        return Err(format!("cache config: {} steps (at most {MAX_STEPS})", c.steps.len()));
    }
    let mut layers = Vec::new();
    let mut mounts = BTreeMap::new();
    for d in &m.layers {
        let diff = d
            .annotations
            .as_ref()
            .and_then(|a| a.get(DIFF_ID_ANNOTATION))
            .ok_or_else(|| format!("cache manifest: layer {} has no {DIFF_ID_ANNOTATION}", d.digest))?;
        let diff_id = Digest::parse(diff).map_err(|e| format!("cache manifest: layer {}: {e}", d.digest))?;
        let blob = Descriptor { annotations: None, urls: None, ..d.clone() };
        let layer = CachedLayer { blob, diff_id: DiffId::new(diff_id) };
        if let Some(id) = d.annotations.as_ref().and_then(|a| a.get(MOUNT_ANNOTATION)) {
            if !layers_store::cache_mounts::valid_id(id) {
                return Err(format!("cache manifest: layer {}: a cache mount id that is not printable text", d.digest));
            }
            // The first of an id is the one used, as the first source of a step is.
            mounts.entry(id.clone()).or_insert_with(|| layer.clone());
        }
        layers.push(layer);
    }
    let mut steps = BTreeMap::new();
    for r in c.steps {
        let config: ImageConfig =
            serde_json::from_str(&r.config).map_err(|e| format!("cache step {}: config: {e}", r.key))?;
        let mine = r
            .layers
            .iter()
            .map(|i| {
                layers.get(*i).cloned().ok_or_else(|| format!("cache step {}: layer index {i} out of range", r.key))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let diff_ids: Vec<DiffId> = mine.iter().map(|l| l.diff_id).collect();
        if diff_ids != config.rootfs.diff_ids {
            return Err(format!("cache step {}: its layers are not its config's diffIDs", r.key));
        }
        steps.insert(r.key, CachedStep { record: r, config, layers: mine });
    }
    Ok(Cache { steps, mounts })
}

/// Makes the cache config and manifest for `steps` (each with its layers) and the
/// cache `mounts` (by id): the manifest's layers are every distinct blob of the
/// steps, in order of first use, then the mounts'.
pub fn write(
    steps: &[(StepRecord, Vec<CachedLayer>)],
    mounts: &[(String, CachedLayer)],
) -> serde_json::Result<(Vec<u8>, Descriptor, Vec<Descriptor>)> {
    let mut blobs: Vec<CachedLayer> = Vec::new();
    let mut records = Vec::new();
    for (r, ls) in steps {
        let mut r = r.clone();
        r.layers = ls
            .iter()
            .map(|l| match blobs.iter().position(|b| b.blob.digest == l.blob.digest) {
                Some(i) => i,
                None => {
                    blobs.push(l.clone());
                    blobs.len() - 1
                }
            })
            .collect();
        records.push(r);
    }
    let config = serde_json::to_vec(&CacheConfig { version: VERSION, steps: records })?;
    let desc = Descriptor {
        media_type: MEDIA_TYPE.to_string(),
        digest: Digest::of(&config),
        size: config.len() as u64,
        urls: None,
        annotations: None,
    };
    let mut layers: Vec<Descriptor> = blobs
        .into_iter()
        .map(|l| Descriptor {
            annotations: Some([(DIFF_ID_ANNOTATION.to_string(), l.diff_id.to_string())].into()),
            ..l.blob
        })
        .collect();
    layers.extend(mounts.iter().map(|(id, l)| {
        Descriptor {
            annotations: Some(
                [(DIFF_ID_ANNOTATION.to_string(), l.diff_id.to_string()), (MOUNT_ANNOTATION.to_string(), id.clone())]
                    .into(),
            ),
            ..l.blob.clone()
        }
    }));
    Ok((config, desc, layers))
}

/// Most bytes of cache config the manifest carries in itself.
pub const EMBED_MAX: usize = 64 << 10;

/// The cache manifest's bytes: an OCI image manifest of the config and layers. A
/// config of at most [`EMBED_MAX`] bytes is also carried in its descriptor's `data`
/// (OCI 1.1), which saves a reader one round trip to the registry before the build
/// can start; the blob is pushed as well, for readers that ignore `data`.
pub fn manifest(desc: &Descriptor, config: &[u8], layers: &[Descriptor]) -> serde_json::Result<Vec<u8>> {
    let mut config_desc = serde_json::to_value(desc)?;
    if config.len() <= EMBED_MAX {
        config_desc["data"] = base64::engine::general_purpose::STANDARD.encode(config).into();
    }
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": layers_store::images::oci::MEDIA_TYPE_MANIFEST,
        "config": config_desc,
        "layers": layers,
    }))
}

/// The config a cache manifest carries in itself, if it does: checked against the
/// config descriptor's size and digest, and refused by name where it differs.
pub fn embedded_config(manifest: &[u8]) -> Result<Option<Vec<u8>>, String> {
    #[derive(Deserialize)]
    struct WithData {
        config: DataDescriptor,
    }
    #[derive(Deserialize)]
    struct DataDescriptor {
        digest: Digest,
        size: u64,
        data: Option<String>,
    }
    let m: WithData = serde_json::from_slice(manifest).map_err(|e| format!("cache manifest: {e}"))?;
    let Some(data) = m.config.data else { return Ok(None) };
    let d = m.config.digest;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| format!("cache manifest: config {d}: data is not base64: {e}"))?;
    if bytes.len() as u64 != m.config.size || Digest::of(&bytes) != d {
        return Err(format!("cache manifest: config {d}: its data does not match its digest and size"));
    }
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(config: &[u8]) -> Descriptor {
        Descriptor {
            media_type: MEDIA_TYPE.into(),
            digest: Digest::of(config),
            size: config.len() as u64,
            urls: None,
            annotations: None,
        }
    }

    #[test]
    fn a_small_config_travels_in_the_manifest_and_is_checked() {
        let config = br#"{"version":1,"steps":[]}"#;
        let m = manifest(&desc(config), config, &[]).unwrap();
        assert_eq!(embedded_config(&m).unwrap().as_deref(), Some(&config[..]));

        // Data that is not the descriptor's blob is refused by name, never used.
        let mut v: serde_json::Value = serde_json::from_slice(&m).unwrap();
        v["config"]["data"] = base64::engine::general_purpose::STANDARD.encode(br#"{"version":1,"steps":[1]}"#).into();
        let e = embedded_config(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(e.contains(&desc(config).digest.to_string()) && e.contains("does not match"), "{e}");
        v["config"]["data"] = "not base64!".into();
        assert!(embedded_config(&serde_json::to_vec(&v).unwrap()).unwrap_err().contains("not base64"));
    }

    #[test]
    fn a_large_config_is_only_a_blob() {
        let config = vec![b' '; EMBED_MAX + 1];
        let m = manifest(&desc(&config), &config, &[]).unwrap();
        assert!(m.len() < 1024);
        assert_eq!(embedded_config(&m).unwrap(), None);
    }
}
