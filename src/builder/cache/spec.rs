//! `--cache-to` and `--cache-from` as BuildKit spells them (`type=…,key=value,…`):
//! every option understood or refused by name.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use layers_store::content::compression::Level;
use layers_store::Compression;

/// Which steps `--cache-to` exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The steps of the stage that makes the final image.
    Min,
    /// Every step of every stage built.
    Max,
}

/// Where a cache goes or comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// A directory (an OCI layout).
    Local(PathBuf),
    /// A registry reference.
    Registry(String),
}

/// A `--cache-to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheTo {
    pub place: Place,
    pub mode: Mode,
    /// `ignore-error=true`: a failed export is a warning, not the build's failure.
    pub ignore_error: bool,
    /// `compression=`: the layers' compression, when one was asked for.
    pub compression: Option<Compression>,
    /// `compression-level=`.
    pub level: Level,
    /// `force-compression=true`: every layer in `compression`, the base image's too.
    pub force: bool,
    /// Whether the build's `RUN --mount=type=cache` dirs go too (`cache-mounts=`;
    /// default: with `mode=max`).
    pub cache_mounts: bool,
    /// `cache-mount-max-size=`: a mount whose tar is larger is left out, with a line.
    pub mount_max: u64,
}

/// `cache-mount-max-size`'s default: 2 GiB.
pub const MOUNT_MAX: u64 = 2 << 30;

/// A `--cache-from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheFrom {
    pub place: Place,
}

/// `type=…,key=value,…` into its type and options; each key at most once.
fn options(spec: &str, flag: &str) -> anyhow::Result<(String, BTreeMap<String, String>)> {
    let mut kind = None;
    let mut opts = BTreeMap::new();
    for kv in spec.split(',') {
        let Some((k, v)) = kv.split_once('=') else { bail!("{flag} {spec}: {kv:?} is not KEY=VALUE") };
        if k == "type" {
            kind = Some(v.to_string());
        } else if opts.insert(k.to_string(), v.to_string()).is_some() {
            bail!("{flag} {spec}: {k} given twice");
        }
    }
    Ok((kind.unwrap_or_else(|| "registry".into()), opts))
}

/// Refuses options `allowed` does not list.
fn only(spec: &str, flag: &str, opts: &BTreeMap<String, String>, allowed: &[&str]) -> anyhow::Result<()> {
    match opts.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => bail!("{flag} {spec}: option {k} is not supported"),
        None => Ok(()),
    }
}

/// BuildKit's cache backends this build has no client for, refused with what to use.
fn unsupported_type(flag: &str, spec: &str, kind: &str) -> anyhow::Error {
    let instead = match kind {
        "gha" => "; in GitHub Actions, use a registry (type=registry,ref=ghcr.io/…) or a directory kept by actions/cache (type=local)",
        "s3" | "azblob" => "; use a registry (type=registry,ref=REF) or a directory (type=local)",
        "inline" => "; the image carries no cache: export it beside the image with type=registry,ref=REF",
        _ => " (registry, local)",
    };
    anyhow::anyhow!("{flag} {spec}: type {kind} is not supported{instead}")
}

/// A `true`/`false` option.
fn flag(spec: &str, opts: &BTreeMap<String, String>, key: &str) -> anyhow::Result<bool> {
    match opts.get(key).map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(v) => bail!("--cache-to {spec}: {key}={v}: use true or false"),
    }
}

/// Options every `--cache-to` type takes.
const EXPORT_OPTIONS: [&str; 9] = [
    "mode",
    "ignore-error",
    "image-manifest",
    "oci-mediatypes",
    "compression",
    "compression-level",
    "force-compression",
    "cache-mounts",
    "cache-mount-max-size",
];

impl CacheTo {
    /// Parses `--cache-to type=registry,ref=REF|type=local,dest=DIR[,options]`.
    pub fn parse(spec: &str) -> anyhow::Result<CacheTo> {
        let (kind, opts) = options(spec, "--cache-to")?;
        let (place, own) = match kind.as_str() {
            "local" => {
                let dest = opts.get("dest").with_context(|| format!("--cache-to {spec}: dest= is missing"))?;
                (Place::Local(PathBuf::from(dest)), "dest")
            }
            "registry" => {
                let reference = opts.get("ref").with_context(|| format!("--cache-to {spec}: ref= is missing"))?;
                (Place::Registry(reference.clone()), "ref")
            }
            other => return Err(unsupported_type("--cache-to", spec, other)),
        };
        let mut allowed = EXPORT_OPTIONS.to_vec();
        allowed.push(own);
        only(spec, "--cache-to", &opts, &allowed)?;
        let mode = match opts.get("mode").map(String::as_str) {
            None | Some("min") => Mode::Min,
            Some("max") => Mode::Max,
            Some(m) => bail!("--cache-to {spec}: mode={m}: use min or max"),
        };
        // The cache is always an OCI image manifest with OCI media types (what these
        // ask BuildKit for); asking for the other kind is refused, not ignored.
        for (key, what) in [("image-manifest", "an image manifest"), ("oci-mediatypes", "OCI media types")] {
            if opts.contains_key(key) && !flag(spec, &opts, key)? {
                bail!("--cache-to {spec}: {key}=false is not supported: the cache is always written with {what}");
            }
        }
        let compression = match opts.get("compression").map(String::as_str) {
            None => None,
            Some("gzip") => Some(Compression::Gzip),
            Some("zstd") => Some(Compression::Zstd),
            Some("uncompressed") => Some(Compression::None),
            Some(c) => bail!("--cache-to {spec}: compression={c} is not supported (gzip, zstd, uncompressed)"),
        };
        let level = match opts.get("compression-level") {
            None => Level::DEFAULT,
            Some(l) => {
                let n: u32 =
                    l.parse().map_err(|_| anyhow::anyhow!("--cache-to {spec}: compression-level={l}: not a number"))?;
                // BuildKit's default compression is gzip: a level alone is gzip's.
                Level::new(compression.unwrap_or(Compression::Gzip), n)
                    .map_err(|e| anyhow::anyhow!("--cache-to {spec}: compression-level={l}: {e}"))?
            }
        };
        let force = flag(spec, &opts, "force-compression")?;
        let ignore_error = flag(spec, &opts, "ignore-error")?;
        let cache_mounts = match opts.get("cache-mounts") {
            None => mode == Mode::Max,
            Some(_) => flag(spec, &opts, "cache-mounts")?,
        };
        let mount_max = match opts.get("cache-mount-max-size") {
            None => MOUNT_MAX,
            Some(v) => crate::run::cgroup::parse_bytes(v)
                .map_err(|e| anyhow::anyhow!("--cache-to {spec}: cache-mount-max-size={v}: {e}"))?,
        };
        // A level or force with no compression named is gzip's, as in BuildKit.
        let compression = compression.or((level != Level::DEFAULT || force).then_some(Compression::Gzip));
        Ok(CacheTo { place, mode, ignore_error, compression, level, force, cache_mounts, mount_max })
    }

    /// The destination, as a log line names it.
    pub fn name(&self) -> String {
        self.place.name("dest")
    }
}

impl CacheFrom {
    /// Parses `--cache-from type=registry,ref=REF|type=local,src=DIR` (or REF alone).
    pub fn parse(spec: &str) -> anyhow::Result<CacheFrom> {
        // `--cache-from REF` alone is a registry ref, as with Docker.
        let (kind, opts) = if spec.contains('=') {
            options(spec, "--cache-from")?
        } else {
            ("registry".into(), [("ref".to_string(), spec.to_string())].into())
        };
        let place = match kind.as_str() {
            "local" => {
                only(spec, "--cache-from", &opts, &["src"])?;
                let src = opts.get("src").with_context(|| format!("--cache-from {spec}: src= is missing"))?;
                Place::Local(PathBuf::from(src))
            }
            "registry" => {
                only(spec, "--cache-from", &opts, &["ref"])?;
                let reference = opts.get("ref").with_context(|| format!("--cache-from {spec}: ref= is missing"))?;
                Place::Registry(reference.clone())
            }
            other => return Err(unsupported_type("--cache-from", spec, other)),
        };
        Ok(CacheFrom { place })
    }

    /// The source, as a log line names it.
    pub fn name(&self) -> String {
        self.place.name("src")
    }
}

impl Place {
    /// A directory as `type=local,KEY=DIR`, a registry by its reference.
    fn name(&self, key: &str) -> String {
        match self {
            Place::Local(dir) => format!("type=local,{key}={}", dir.display()),
            Place::Registry(reference) => reference.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_docs_spellings_parse_and_the_other_kinds_are_refused_by_name() {
        let t = CacheTo::parse(
            "type=registry,ref=r.example/c:buildcache,mode=max,image-manifest=true,oci-mediatypes=true,ignore-error=true",
        )
        .unwrap();
        assert_eq!((t.mode, t.ignore_error, t.compression, t.force), (Mode::Max, true, None, false));
        let t =
            CacheTo::parse("type=local,dest=/c,compression=zstd,compression-level=19,force-compression=true").unwrap();
        assert_eq!((t.compression, t.level.get(), t.force), (Some(Compression::Zstd), Some(19), true));
        // A level alone is gzip's, as BuildKit's default compression is.
        let t = CacheTo::parse("type=local,dest=/c,compression-level=9").unwrap();
        assert_eq!((t.compression, t.level.get()), (Some(Compression::Gzip), Some(9)));

        let refused = |spec: &str, want: &str| {
            let e = CacheTo::parse(spec).unwrap_err().to_string();
            assert!(e.contains(want) && e.starts_with("--cache-to "), "{spec}: {e}");
        };
        refused("type=gha,scope=main", "type gha is not supported; in GitHub Actions");
        refused("type=s3,bucket=b", "type s3 is not supported; use a registry");
        refused("type=inline", "type inline is not supported");
        refused("type=local,dest=/c,image-manifest=false", "image-manifest=false is not supported");
        refused("type=local,dest=/c,oci-mediatypes=false", "oci-mediatypes=false is not supported");
        refused("type=local,dest=/c,compression=estargz", "compression=estargz is not supported");
        refused("type=local,dest=/c,compression=gzip,compression-level=10", "gzip takes a level from 0 to 9, not 10");
        refused("type=local,dest=/c,compression=zstd,compression-level=0", "zstd takes a level from 1 to 19, not 0");
        refused("type=local,dest=/c,compression=uncompressed,compression-level=3", "no compression level");
        refused("type=local,dest=/c,ignore-error=yes", "ignore-error=yes: use true or false");
        refused("type=local,dest=/c,tag=x", "option tag is not supported");
        let e = CacheFrom::parse("type=gha").unwrap_err().to_string();
        assert!(e.starts_with("--cache-from type=gha: type gha is not supported"), "{e}");
    }
}
