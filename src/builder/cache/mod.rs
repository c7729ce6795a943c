//! The shared build cache: steps recorded by key (the step image's config and
//! layers), exported to a registry (`--cache-to type=registry,ref=REF`) or a directory
//! (`type=local,dest=DIR`) and imported from them (`--cache-from`). Import reads the
//! manifest and config only; a layer is read when the build needs the step's image
//! locally, once.

pub mod format;
pub mod local;
mod mounts;
pub mod registry;
pub mod spec;

use anyhow::Context;
use layers_store::content::digest::Digest;
use layers_store::meta::ImageRow;
use layers_store::{ImageBlobs, LayerExpect, Store};
use std::collections::BTreeMap;

pub use format::CachedStep;
pub use spec::{CacheFrom, CacheTo, Mode, Place};

use crate::registry::config::RegistriesConfig;

/// Where an imported step's blobs are.
enum Source {
    Local(local::LocalSource),
    Registry(Box<registry::RegistrySource>),
}

/// A step the executor made (or found) an image for: what an export records.
pub struct Made {
    /// Its stage's index in the plan.
    pub stage: usize,
    pub key: Digest,
    pub parent: Digest,
    pub text: String,
    /// What the step read, by name.
    pub inputs: crate::builder::plan::ReadSet,
    /// The image, or the key of an imported step not made locally.
    pub image: Result<ImageRow, Digest>,
}

/// The steps of every `--cache-from` that could be read, by key (the first source wins).
#[derive(Default)]
pub struct Imported {
    sources: Vec<Source>,
    /// Each source as the command line named it.
    names: Vec<String>,
    steps: BTreeMap<Digest, (usize, CachedStep)>,
    /// Cache mounts' blobs by id (the first source wins).
    mounts: BTreeMap<String, (usize, format::CachedLayer)>,
}

/// A cache source whose records read but whose blobs did not (missing, wrong,
/// stalled): as an unreachable source, a warning; the build goes on without it.
#[derive(Debug)]
pub struct SourceFailed {
    pub index: usize,
    pub name: String,
    pub reason: String,
}

impl std::fmt::Display for SourceFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "--cache-from {}: {}", self.name, self.reason)
    }
}

impl std::error::Error for SourceFailed {}

impl Imported {
    /// Reads each source's manifest and config; one that cannot be read is a warning
    /// (`warn`) and the build goes on without it.
    /// `say` gets one line per source read (`imported N steps from REF`).
    pub fn load(
        from: &[CacheFrom],
        registries: &RegistriesConfig,
        transfers: &crate::transfer::Transfers,
        warn: &dyn Fn(&str),
        say: &dyn Fn(&str),
    ) -> Imported {
        let mut imported = Imported::default();
        for f in from {
            let read = match &f.place {
                Place::Local(src) => local::LocalSource::open(src).and_then(|(source, manifest, config)| {
                    let cache = format::read(&manifest, &config).map_err(anyhow::Error::msg)?;
                    Ok((Source::Local(source), cache))
                }),
                Place::Registry(reference) => registry::RegistrySource::open(reference, registries, transfers)
                    .and_then(|(source, manifest, config)| {
                        let cache = format::read(&manifest, &config).map_err(anyhow::Error::msg)?;
                        Ok((Source::Registry(Box::new(source)), cache))
                    }),
            };
            match read {
                Ok((source, cache)) => {
                    let i = imported.sources.len();
                    imported.sources.push(source);
                    imported.names.push(f.name());
                    let (n, m) = (cache.steps.len(), cache.mounts.len());
                    let mounts = if m > 0 { format!(" and {m} cache mount{}", plural(m)) } else { String::new() };
                    say(&format!("imported {n} step{}{mounts} from {}", plural(n), f.name()));
                    for (key, step) in cache.steps {
                        imported.steps.entry(key).or_insert((i, step));
                    }
                    for (id, layer) in cache.mounts {
                        imported.mounts.entry(id).or_insert((i, layer));
                    }
                }
                Err(e) => warn(&format!("--cache-from {}: {e:#}; going on without it", f.name())),
            }
        }
        imported
    }

    /// Imported steps on `parent` or with `instruction`.
    pub fn like(&self, parent: &Digest, instruction: &str) -> Vec<&format::StepRecord> {
        self.steps
            .values()
            .map(|(_, s)| &s.record)
            .filter(|r| r.parent == *parent || r.instruction == instruction)
            .collect()
    }

    /// The imported step with this key.
    pub fn find(&self, key: &Digest) -> Option<&CachedStep> {
        self.steps.get(key).map(|(_, s)| s)
    }

    /// Reads a blob of an imported step (one from a registry is fetched into the store first).
    pub fn open_blob(
        &self,
        store: &Store,
        key: &Digest,
        blob: &layers_store::images::oci::Descriptor,
    ) -> anyhow::Result<Box<dyn std::io::Read>> {
        let (i, step) = self.steps.get(key).context("no such cached step")?;
        match &self.sources[*i] {
            Source::Local(s) => Ok(Box::new(s.open_blob(blob)?)),
            Source::Registry(s) => {
                let layers: Vec<_> = step.layers.iter().filter(|l| l.blob.digest == blob.digest).collect();
                s.fetch(store, &layers)?;
                let path = store.content().blob_path(&blob.digest);
                Ok(Box::new(std::fs::File::open(&path).with_context(|| format!("open {}", path.display()))?))
            }
        }
    }

    /// Starts fetching the layers of the imported step `key` that the store lacks,
    /// while the build goes on: for a step whose image the build will need (one of
    /// the target's). A failure shows when the image is made (`materialize`).
    pub fn prefetch(&self, store: &Store, key: &Digest) {
        let Some((i, step)) = self.steps.get(key) else { return };
        if let Source::Registry(s) = &self.sources[*i] {
            let missing: Vec<&format::CachedLayer> = step
                .layers
                .iter()
                .filter(|l| !store.layers().has(&l.diff_id, &l.blob.digest).unwrap_or(false))
                .collect();
            let _ = s.prefetch(store, &missing);
        }
    }

    /// Repositories of `registry` that imported caches came from (blobs can be mounted from there).
    pub fn repositories_on(&self, registry: &str) -> Vec<String> {
        self.sources
            .iter()
            .filter_map(|s| match s {
                Source::Registry(r) if r.reference.registry == registry => Some(r.reference.repository.clone()),
                _ => None,
            })
            .collect()
    }

    /// The registries imported caches came from.
    pub fn registries(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in &self.sources {
            if let Source::Registry(r) = s {
                if !out.contains(&r.reference.registry) {
                    out.push(r.reference.registry.clone());
                }
            }
        }
        out
    }

    /// Makes the image of the imported step `key` in `store`: its layers not stored yet
    /// are read from the source (verified against the record), then the image is
    /// recorded with the record's config, byte for byte, and cached under `key`.
    pub fn materialize(&self, store: &Store, key: &Digest) -> anyhow::Result<ImageRow> {
        let i = self.steps.get(key).context("no such cached step")?.0;
        self.make(store, key).map_err(|e| {
            let name = self.names.get(i).cloned().unwrap_or_default();
            anyhow::Error::new(SourceFailed { index: i, name, reason: crate::one_line(&e) })
        })
    }

    /// Records the image of the imported step `key` as remote, its layers left in the
    /// registry cache the step came from (`build --push` mounts them from there);
    /// `None` for a step of a directory cache. Not recorded as the step's cached image:
    /// a later build's step on it finds it in the registry cache again.
    pub fn record_remote(&self, store: &Store, key: &Digest) -> anyhow::Result<Option<ImageRow>> {
        let (i, step) = self.steps.get(key).context("no such cached step")?;
        let Source::Registry(s) = &self.sources[*i] else { return Ok(None) };
        let layers = step.layers.iter().map(|l| l.blob.clone()).collect();
        let blobs = ImageBlobs::ReceivedConfig { config: step.record.config.as_bytes(), layers };
        let source = format!("{}/{}", s.reference.registry, s.reference.repository);
        Ok(Some(store.images().record_remote(store.content().ingest()?, blobs, &[], &source)?))
    }

    /// Drops the steps of source `index` (it failed while the build used it).
    pub fn without(&mut self, index: usize) {
        self.steps.retain(|_, (i, _)| *i != index);
    }

    fn make(&self, store: &Store, key: &Digest) -> anyhow::Result<ImageRow> {
        let (i, step) = self.steps.get(key).context("no such cached step")?;
        let mut ingest = store.content().ingest()?;
        let mut missing: Vec<&format::CachedLayer> = Vec::new();
        for l in &step.layers {
            if !store.layers().has(&l.diff_id, &l.blob.digest)?
                && !missing.iter().any(|m| m.blob.digest == l.blob.digest)
            {
                missing.push(l);
            }
        }
        let source = match &self.sources[*i] {
            Source::Registry(s) => {
                // Streamed from the registry into the store, each committed as it arrives.
                s.fetch(store, &missing)?;
                missing.clear();
                None
            }
            Source::Local(s) => Some(s),
        };
        for l in missing {
            let input = source.context("a cache source without blobs")?.open_blob(&l.blob)?;
            let expect = LayerExpect { blob: Some(l.blob.digest), size: Some(l.blob.size), diff_id: Some(l.diff_id) };
            store
                .layers()
                .unpack(&mut ingest, std::io::BufReader::new(input), &expect)
                .with_context(|| format!("cached layer {}", l.blob.digest))?;
        }
        let layers = step.layers.iter().map(|l| l.blob.clone()).collect();
        let blobs = ImageBlobs::ReceivedConfig { config: step.record.config.as_bytes(), layers };
        let row = store.images().record(ingest, blobs, &[])?;
        store.build_cache().record(key, &row.manifest)?;
        Ok(row)
    }
}

/// The steps a build made, as an export reads them.
pub struct Steps<'a> {
    pub made: &'a [Made],
    /// The stage whose steps `mode=min` exports.
    pub target: usize,
    /// The layers of the images the stages start from: not the build's own.
    pub base_layers: &'a std::collections::BTreeSet<layers_store::DiffId>,
    /// The ids of the `RUN --mount=type=cache` dirs its steps use.
    pub mounts: &'a [String],
}

/// Writes the steps a build made to `to`: every step (`mode=max`) or those of the
/// stage `target` (`mode=min`). Blobs come from the store, or from the imported
/// cache for steps that were never made here; with `compression=`, the build's own
/// layers (with `force-compression`, every layer made here) in that compression.
pub fn export(
    store: &Store,
    registries: &RegistriesConfig,
    transfers: &crate::transfer::Transfers,
    imported: &Imported,
    built: &Steps,
    to: &CacheTo,
) -> anyhow::Result<Exported> {
    use format::{CachedLayer, StepRecord};
    use layers_store::images::oci::{Descriptor, MAX_JSON};
    let mut steps: Vec<(StepRecord, Vec<CachedLayer>)> = Vec::new();
    let mut imported_blobs: BTreeMap<Digest, Digest> = BTreeMap::new();
    let mut variants: BTreeMap<Digest, Descriptor> = BTreeMap::new();
    for m in built.made.iter().filter(|m| to.mode == Mode::Max || m.stage == built.target) {
        if steps.iter().any(|(r, _)| r.key == m.key) {
            continue;
        }
        let (config, layers) = match &m.image {
            Ok(row) => {
                let config = String::from_utf8(store.content().read_blob(&row.config, MAX_JSON)?)
                    .with_context(|| format!("config {} is not UTF-8", row.config))?;
                let mut layers = Vec::new();
                for l in store.images().layers(&row.manifest)? {
                    let blob = l.descriptor();
                    let blob = match variants.get(&blob.digest) {
                        Some(v) => v.clone(),
                        None => {
                            let v = recompressed(store, to, built, &l.diff_id, &blob)?;
                            variants.insert(blob.digest, v.clone());
                            v
                        }
                    };
                    layers.push(CachedLayer { blob, diff_id: l.diff_id });
                }
                (config, layers)
            }
            // Layers this build did not make locally keep the compression of the
            // cache that brought them (made elsewhere, not by this build).
            Err(key) => {
                let c = imported.find(key).context("an imported step went missing")?;
                for l in &c.layers {
                    imported_blobs.entry(l.blob.digest).or_insert(*key);
                }
                (c.record.config.clone(), c.layers.clone())
            }
        };
        let record = StepRecord {
            key: m.key,
            parent: m.parent,
            instruction: m.text.clone(),
            config,
            layers: Vec::new(),
            inputs: m.inputs.clone(),
        };
        steps.push((record, layers));
    }
    let mut packed = match to.cache_mounts {
        true => mounts::pack(store, imported, built.mounts, to)?,
        false => mounts::Packed::none(store)?,
    };
    let (config, desc, layers) = format::write(&steps, &packed.layers)?;
    let sent = match &to.place {
        Place::Local(dest) => {
            let blob = |d: &Descriptor| -> anyhow::Result<Box<dyn std::io::Read>> {
                if let Ok(f) = std::fs::File::open(packed.path_of(store, d)) {
                    return Ok(Box::new(std::io::BufReader::new(f)));
                }
                if let Some(id) = packed.carried(&d.digest) {
                    return Ok(imported.open_mount(store, id)?);
                }
                let key = imported_blobs
                    .get(&d.digest)
                    .with_context(|| format!("blob {} is in no store or cache", d.digest))?;
                imported.open_blob(store, key, d)
            };
            local::export(dest, &config, &desc, &layers, &blob)?
        }
        Place::Registry(reference) => {
            let r = layers_store::Reference::parse(reference, layers_store::ShortNames::DockerHub)?;
            // A mount carried from an imported cache to a registry its source is not on
            // must be uploaded: its blob is fetched for that.
            packed.fetch_carried(store, imported, &r.registry)?;
            let siblings: Vec<String> =
                imported.repositories_on(&r.registry).into_iter().filter(|s| *s != r.repository).collect();
            let files: Vec<_> = layers.iter().map(|d| (packed.path_of(store, d), d.clone())).collect();
            registry::export(store, transfers, reference, registries, (&desc, &config), &files, &siblings)?
        }
    };
    Ok(Exported { steps: steps.len(), mounts: packed.layers.len(), sent, notes: std::mem::take(&mut packed.notes) })
}

/// The blob to export for layer `diff_id`, stored as `blob`: itself, or (with
/// `compression=`, for a layer of the build's own or any with `force-compression`)
/// a blob of it in that compression and level, made once and kept in the store.
fn recompressed(
    store: &Store,
    to: &CacheTo,
    built: &Steps,
    diff_id: &layers_store::DiffId,
    blob: &layers_store::images::oci::Descriptor,
) -> anyhow::Result<layers_store::images::oci::Descriptor> {
    let Some(want) = to.compression else { return Ok(blob.clone()) };
    if !to.force && built.base_layers.contains(diff_id) {
        return Ok(blob.clone());
    }
    // A level asked for is honoured even in the blob's own compression (the build
    // writes gzip at level 1); otherwise a blob already in it stays as it is.
    if to.level == layers_store::content::compression::Level::DEFAULT && compression_of(&blob.media_type) == want {
        return Ok(blob.clone());
    }
    store
        .layers()
        .blob_in(diff_id, &blob.digest, want, to.level)
        .with_context(|| format!("layer {}: make its {} blob", blob.digest, want.name()))
}

/// A layer blob's compression as its media type (OCI or Docker) names it.
fn compression_of(media_type: &str) -> layers_store::Compression {
    if media_type.ends_with("gzip") {
        layers_store::Compression::Gzip
    } else if media_type.ends_with("zstd") {
        layers_store::Compression::Zstd
    } else {
        layers_store::Compression::None
    }
}

/// Layer blobs a cache export wrote that its destination lacked.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sent {
    pub layers: usize,
    pub bytes: u64,
}

impl Sent {
    fn add(&mut self, bytes: u64) {
        self.layers += 1;
        self.bytes += bytes;
    }
}

/// What a cache export wrote: its step records and cache mounts, the layers new to
/// the destination, and a line for each mount left out.
#[derive(Debug)]
pub struct Exported {
    pub steps: usize,
    pub mounts: usize,
    pub sent: Sent,
    pub notes: Vec<String>,
}

impl std::fmt::Display for Exported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (n, m, s) = (self.steps, self.mounts, self.sent);
        let mb = s.bytes as f64 / 1e6;
        let mounts = if m > 0 { format!(" and {m} cache mount{}", plural(m)) } else { String::new() };
        write!(f, "{n} step{}{mounts} ({} new layer{}, {mb:.1} MB)", plural(n), s.layers, plural(s.layers))
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
