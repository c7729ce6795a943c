//! A cache directory: an OCI image layout holding one cache manifest (`index.json`
//! names it `latest`), so any directory cache (`actions/cache`, a CI volume) can
//! carry it. Written atomically (a new `index.json` renamed into place), and blobs
//! the new manifest does not name are removed, so it does not grow without bound.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use layers_store::digest::{Digest, Hasher};
use layers_store::oci::{Descriptor, MAX_JSON, MEDIA_TYPE_MANIFEST};
use serde_json::{json, Value};

/// A cache directory to read from.
pub struct LocalSource {
    dir: PathBuf,
}

fn blob_path(dir: &Path, d: &Digest) -> PathBuf {
    dir.join("blobs/sha256").join(d.hex())
}

/// A small file whole, at most `MAX_JSON` bytes.
fn read_small(path: &Path) -> anyhow::Result<Vec<u8>> {
    let f = File::open(path).with_context(|| format!("open {}", path.display()))?;
    if !f.metadata()?.is_file() {
        bail!("{}: not a regular file", path.display());
    }
    crate::bounded::read_capped(f, MAX_JSON, &path.display().to_string())
}

impl LocalSource {
    /// Opens `dir` and reads its cache manifest and config, verified against their digests.
    pub fn open(dir: &Path) -> anyhow::Result<(LocalSource, Vec<u8>, Vec<u8>)> {
        let index: Value = serde_json::from_slice(&read_small(&dir.join("index.json"))?)
            .with_context(|| format!("{}: index.json", dir.display()))?;
        let entry = index["manifests"]
            .as_array()
            .and_then(|m| m.first())
            .with_context(|| format!("{}: index.json lists no manifest", dir.display()))?;
        let digest = Digest::parse(entry["digest"].as_str().unwrap_or_default())
            .with_context(|| format!("{}: index.json", dir.display()))?;
        let source = LocalSource { dir: dir.to_path_buf() };
        let manifest = source.read_json(&digest)?;
        let m: Value = serde_json::from_slice(&manifest).with_context(|| format!("cache manifest {digest}"))?;
        let config = Digest::parse(m["config"]["digest"].as_str().unwrap_or_default())
            .with_context(|| format!("cache manifest {digest}: config"))?;
        let config = source.read_json(&config)?;
        Ok((source, manifest, config))
    }

    fn read_json(&self, d: &Digest) -> anyhow::Result<Vec<u8>> {
        let bytes = read_small(&blob_path(&self.dir, d))?;
        let got = Digest::of(&bytes);
        if got != *d {
            bail!("{}: blob {d} has digest {got}", self.dir.display());
        }
        Ok(bytes)
    }

    /// A layer blob (verified by whoever reads it, against its descriptor).
    pub fn open_blob(&self, d: &Descriptor) -> anyhow::Result<File> {
        let path = blob_path(&self.dir, &d.digest);
        File::open(&path).with_context(|| format!("cache {}: blob {}", self.dir.display(), d.digest))
    }
}

/// Copies `content` into `dir`'s blobs as `want`, verifying it; a blob already there is kept.
fn put_blob(dir: &Path, want: &Descriptor, content: &mut dyn Read) -> anyhow::Result<()> {
    let dest = blob_path(dir, &want.digest);
    if std::fs::metadata(&dest).is_ok_and(|m| m.len() == want.size) {
        return Ok(());
    }
    let tmp = dir.join(format!("blobs/sha256/.tmp-{}-{}", std::process::id(), want.digest.hex()));
    let written = (|| -> anyhow::Result<()> {
        let mut out = File::create(&tmp)?;
        let mut h = Hasher::new();
        let mut buf = vec![0u8; 256 << 10];
        let mut size = 0u64;
        loop {
            let n = content.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            out.write_all(&buf[..n])?;
            size += n as u64;
        }
        let got = h.finish();
        if got != want.digest || size != want.size {
            bail!("blob {}: content has digest {got} ({size} bytes)", want.digest);
        }
        out.sync_all()?;
        std::fs::rename(&tmp, &dest)?;
        Ok(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.with_context(|| format!("cache {}: write blob {}", dir.display(), want.digest))
}

/// Writes a cache (its config and the layers its manifest names, read through
/// `blob`) into the directory `dir`, replacing what it held.
pub fn export(
    dir: &Path,
    config: &[u8],
    config_desc: &Descriptor,
    layers: &[Descriptor],
    blob: &dyn Fn(&Descriptor) -> anyhow::Result<Box<dyn Read>>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("blobs/sha256")).with_context(|| format!("create {}", dir.display()))?;
    let marker = dir.join("oci-layout");
    if !marker.exists() {
        std::fs::write(&marker, r#"{"imageLayoutVersion":"1.0.0"}"#)
            .with_context(|| format!("write {}", marker.display()))?;
    }
    for l in layers {
        put_blob(dir, l, &mut *blob(l)?)?;
    }
    put_blob(dir, config_desc, &mut &config[..])?;
    let manifest = super::format::manifest(config_desc, config, layers)?;
    let manifest_desc = Descriptor {
        media_type: MEDIA_TYPE_MANIFEST.into(),
        digest: Digest::of(&manifest),
        size: manifest.len() as u64,
        urls: None,
        annotations: Some([("org.opencontainers.image.ref.name".to_string(), "latest".to_string())].into()),
    };
    put_blob(dir, &manifest_desc, &mut &manifest[..])?;
    let index = serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [manifest_desc]}))?;
    let tmp = dir.join(format!(".index.json.tmp-{}", std::process::id()));
    std::fs::write(&tmp, &index).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join("index.json")).with_context(|| format!("{}: replace index.json", dir.display()))?;
    // What the new index does not reach goes.
    let keep: HashSet<String> =
        layers.iter().chain([config_desc, &manifest_desc]).map(|d| d.digest.hex().to_string()).collect();
    let blobs = dir.join("blobs/sha256");
    for e in std::fs::read_dir(&blobs).with_context(|| format!("list {}", blobs.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !keep.contains(&name) && !name.starts_with(".tmp-") {
            std::fs::remove_file(e.path()).with_context(|| format!("remove {}", e.path().display()))?;
        }
    }
    Ok(())
}
