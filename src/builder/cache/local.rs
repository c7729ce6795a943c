//! A cache directory: an OCI image layout holding one cache manifest (`index.json`
//! names it `latest`), so any directory cache (`actions/cache`, a CI volume) can
//! carry it. Written atomically (a new `index.json` renamed into place), and blobs
//! the new manifest does not name are removed, so it does not grow without bound.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use anyhow::{bail, Context};
use layers_store::content::digest::{Digest, Hasher};
use layers_store::fsroot::UserDir;
use layers_store::images::oci::{Descriptor, MAX_JSON, MEDIA_TYPE_MANIFEST};
use serde_json::{json, Value};

/// A cache directory to read from (every read beneath it by fd, no symlink followed).
pub struct LocalSource {
    blobs: UserDir,
}

impl LocalSource {
    /// Opens `dir` and reads its cache manifest and config, verified against their digests.
    pub fn open(dir: &Path) -> anyhow::Result<(LocalSource, Vec<u8>, Vec<u8>)> {
        let top = UserDir::open(dir)?;
        let index: Value = serde_json::from_slice(&top.read_small("index.json", MAX_JSON)?)
            .with_context(|| format!("{}: index.json", dir.display()))?;
        let entry = index["manifests"]
            .as_array()
            .and_then(|m| m.first())
            .with_context(|| format!("{}: index.json lists no manifest", dir.display()))?;
        let digest = Digest::parse(entry["digest"].as_str().unwrap_or_default())
            .with_context(|| format!("{}: index.json", dir.display()))?;
        let source = LocalSource { blobs: top.dir("blobs/sha256", false)? };
        let manifest = source.read_json(&digest)?;
        let m: Value = serde_json::from_slice(&manifest).with_context(|| format!("cache manifest {digest}"))?;
        let config = Digest::parse(m["config"]["digest"].as_str().unwrap_or_default())
            .with_context(|| format!("cache manifest {digest}: config"))?;
        let config = source.read_json(&config)?;
        Ok((source, manifest, config))
    }

    fn read_json(&self, d: &Digest) -> anyhow::Result<Vec<u8>> {
        let bytes = self.blobs.read_small(&d.hex(), MAX_JSON)?;
        let got = Digest::of(&bytes);
        if got != *d {
            bail!("{}: blob {d} has digest {got}", self.blobs.path().display());
        }
        Ok(bytes)
    }

    /// A layer blob (verified by whoever reads it, against its descriptor).
    pub fn open_blob(&self, d: &Descriptor) -> anyhow::Result<File> {
        let (f, _) = self.blobs.open_file(&d.digest.hex()).context("cache blob")?;
        Ok(f)
    }
}

/// Copies `content` into the blobs dir as `want`, verifying it; a blob already there is kept.
fn put_blob(blobs: &UserDir, want: &Descriptor, content: &mut dyn Read) -> anyhow::Result<()> {
    if blobs.file_size(&want.digest.hex()) == Some(want.size) {
        return Ok(());
    }
    let written = (|| -> anyhow::Result<()> {
        let mut out = blobs.new_file()?;
        let mut h = Hasher::new();
        let mut buf = vec![0u8; 256 << 10];
        let mut size = 0u64;
        loop {
            let n = content.read(&mut buf)?;
            if n == 0 {
                break;
            }
            size += n as u64;
            if size > want.size {
                bail!("blob {}: content is longer than {} bytes", want.digest, want.size);
            }
            h.update(&buf[..n]);
            out.file().write_all(&buf[..n])?;
        }
        let got = h.finish();
        if got != want.digest || size != want.size {
            bail!("blob {}: content has digest {got} ({size} bytes)", want.digest);
        }
        out.persist(&want.digest.hex())?;
        Ok(())
    })();
    written.with_context(|| format!("cache {}: write blob {}", blobs.path().display(), want.digest))
}

/// Writes a cache (its config and the layers its manifest names, read through
/// `blob`) into the directory `dir`, replacing what it held.
pub fn export(
    dir: &Path,
    config: &[u8],
    config_desc: &Descriptor,
    layers: &[Descriptor],
    blob: &dyn Fn(&Descriptor) -> anyhow::Result<Box<dyn Read>>,
) -> anyhow::Result<super::Sent> {
    let top = UserDir::create(dir)?;
    let blobs = top.dir("blobs/sha256", true)?;
    if top.file_size("oci-layout").is_none() {
        top.write_file("oci-layout", &mut &br#"{"imageLayoutVersion":"1.0.0"}"#[..])?;
    }
    let mut sent = super::Sent::default();
    for l in layers {
        if blobs.file_size(&l.digest.hex()) != Some(l.size) {
            put_blob(&blobs, l, &mut *blob(l)?)?;
            sent.add(l.size);
        }
    }
    put_blob(&blobs, config_desc, &mut &config[..])?;
    let manifest = super::format::manifest(config_desc, config, layers)?;
    let manifest_desc = Descriptor {
        media_type: MEDIA_TYPE_MANIFEST.into(),
        digest: Digest::of(&manifest),
        size: manifest.len() as u64,
        urls: None,
        annotations: Some([("org.opencontainers.image.ref.name".to_string(), "latest".to_string())].into()),
    };
    put_blob(&blobs, &manifest_desc, &mut &manifest[..])?;
    let index = serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [manifest_desc]}))?;
    top.write_file("index.json", &mut &index[..])?;
    // What the new index does not reach goes (names only: unlinkat never follows).
    let keep: HashSet<String> =
        layers.iter().chain([config_desc, &manifest_desc]).map(|d| d.digest.hex().to_string()).collect();
    for name in blobs.names()? {
        if !keep.contains(&name) && !name.starts_with(".tmp-") {
            blobs.remove_file(&name)?;
        }
    }
    Ok(sent)
}
