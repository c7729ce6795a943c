//! A cache in a registry: the cache manifest under a tag of a repository, its config
//! and layers as blobs of that repository. Read: the manifest and config only (the
//! config is carried in the manifest where it fits), then each layer when a step's
//! image is needed (streamed into the store, verified).
//! Written: blobs the registry has are not sent again (HEAD first, a mount from
//! another repository of the same registry), then the config and the manifest.

use std::sync::Arc;

use anyhow::{anyhow, Context};
use layers_store::content::digest::Digest;
use layers_store::images::oci::Descriptor;
use layers_store::{Reference, ShortNames, Store};

use super::format::CachedLayer;
use crate::registry::config::RegistriesConfig;
use crate::registry::resume::{self, Notices};
use crate::transfer::remote::{Remote, Sent};
use crate::transfer::Transfers;

/// A cache ref to read from.
pub struct RegistrySource {
    remote: Remote,
    /// `HOST/NAME`, for mounts into another repository of the same registry.
    pub reference: Reference,
    /// Runs the layer fetches, also while the build goes on (`prefetch`), in the
    /// background; quiesced before a container starts.
    transfers: Transfers,
    /// Four fetches at once, as a pull does.
    limit: Arc<tokio::sync::Semaphore>,
    /// The fetch tasks' own handle on the store, opened with the first.
    handle: std::sync::Mutex<Option<Arc<Store>>>,
}

/// How long reading a registry cache's manifest and config may take:
/// `$LAYERS_CACHE_FROM_TIMEOUT` seconds, default 30.
fn open_timeout() -> std::time::Duration {
    let secs = std::env::var("LAYERS_CACHE_FROM_TIMEOUT").ok().and_then(|v| v.parse::<f64>().ok());
    std::time::Duration::from_secs_f64(secs.filter(|s| s.is_finite() && *s > 0.0).unwrap_or(30.0))
}

fn silent() -> Notices {
    Arc::new(|_: &str| {})
}

/// The background task's key for fetching `blob`.
fn key(blob: &Digest) -> String {
    format!("cache layer {blob}")
}

impl RegistrySource {
    /// Fetches the cache manifest `reference` names and its config, both verified.
    pub fn open(
        reference: &str,
        registries: &RegistriesConfig,
        transfers: &Transfers,
    ) -> anyhow::Result<(RegistrySource, Vec<u8>, Vec<u8>)> {
        let r = Reference::parse(reference, ShortNames::DockerHub)?;
        let remote = Remote::open(&r, registries, true, &[])?;
        let wanted = r.digest.map(|d| d.to_string()).or_else(|| r.tag.clone()).unwrap_or_else(|| "latest".into());
        let limit = open_timeout();
        let (manifest, config) = transfers.block_on(async {
            let read = async {
                let notices = silent();
                let (manifest, _) = remote.manifest(&wanted, r.digest, resume::MAX_TRIES, &notices).await?;
                let config = match super::format::embedded_config(&manifest).map_err(|e| anyhow!("{reference}: {e}"))? {
                    Some(c) => c,
                    None => {
                        let m: layers_store::images::oci::Manifest =
                            serde_json::from_slice(&manifest).with_context(|| format!("cache manifest {reference}"))?;
                        remote.json_blob(&m.config, notices).await?
                    }
                };
                anyhow::Ok((manifest, config))
            };
            // An optional source: a registry that hangs costs the build this long at most.
            tokio::time::timeout(limit, read)
                .await
                .map_err(|_| anyhow!("no cache read within {}s ($LAYERS_CACHE_FROM_TIMEOUT)", limit.as_secs_f64()))?
        })??;
        let source = RegistrySource {
            remote,
            reference: r,
            transfers: transfers.clone(),
            limit: Arc::new(tokio::sync::Semaphore::new(4)),
            handle: std::sync::Mutex::default(),
        };
        Ok((source, manifest, config))
    }

    /// Starts streaming each of `layers` into the store (verified, unpacked,
    /// committed) unless already started; the build goes on meanwhile.
    pub fn prefetch(&self, store: &Store, layers: &[&CachedLayer]) -> anyhow::Result<()> {
        let handle = {
            let mut h = self.handle.lock().map_err(|_| anyhow!("a fetch panicked"))?;
            match &*h {
                Some(s) => s.clone(),
                None => h.insert(Arc::new(store.reopen()?)).clone(),
            }
        };
        let events = crate::transfer::progress::Progress::lines(true);
        for l in layers {
            let (remote, handle, limit, blob, diff) =
                (self.remote.clone(), handle.clone(), self.limit.clone(), l.blob.clone(), l.diff_id);
            let line = events.layer(&blob.digest.short(), blob.size);
            let what = format!("cache {}: layer {}", self.reference, blob.digest);
            self.transfers.spawn_background(&key(&l.blob.digest), async move {
                let _permit = limit.acquire_owned().await?;
                let (_, _, ingest) =
                    remote.fetch_layer(handle.clone(), blob, diff, silent(), line).await.context(what)?;
                tokio::task::spawn_blocking(move || handle.content().commit(ingest)).await??;
                anyhow::Ok(())
            })?;
        }
        Ok(())
    }

    /// Streams each of `layers` into the store (or waits for its prefetch to end).
    pub fn fetch(&self, store: &Store, layers: &[&CachedLayer]) -> anyhow::Result<()> {
        if layers.is_empty() {
            return Ok(());
        }
        self.prefetch(store, layers)?;
        let mut first_error = None;
        for l in layers {
            if let Some(Err(e)) = self.transfers.join(&key(&l.blob.digest)) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl RegistrySource {
    /// Downloads one blob to the file `to` (whoever reads it checks its digest).
    pub fn download(&self, blob: &Descriptor, to: &std::path::Path) -> anyhow::Result<()> {
        let what = format!("cache {}: blob {}", self.reference, blob.digest);
        self.transfers.block_on(self.remote.blob_to_file(blob, to, silent()))?.context(what)
    }
}

/// Pushes a cache (its config and the layers its manifest names, each with the file
/// it is read from if uploaded) to `reference`. A layer whose file is missing must be
/// in the registry already (or in `siblings`, other repositories of the same registry
/// to mount from).
pub fn export(
    store: &Store,
    transfers: &Transfers,
    reference: &str,
    registries: &RegistriesConfig,
    (config_desc, config): (&Descriptor, &[u8]),
    layers: &[(std::path::PathBuf, Descriptor)],
    siblings: &[String],
) -> anyhow::Result<super::Sent> {
    let r = Reference::parse(reference, ShortNames::DockerHub)?;
    if r.digest.is_some() {
        return Err(anyhow!("give a tag to write the cache to, not a digest"));
    }
    let scratch = super::super::scratch::ScratchDir(store.scratch_dir("cache-export")?);
    let config_path = scratch.path().join("config.json");
    std::fs::write(&config_path, config).context("stage the cache config")?;
    let mut blobs = layers.to_vec();
    blobs.push((config_path, config_desc.clone()));
    let layers: Vec<Descriptor> = layers.iter().map(|(_, d)| d.clone()).collect();
    let manifest = super::format::manifest(config_desc, config, &layers)?;
    let remote = Remote::open(&r, registries, true, siblings)?;
    let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
    let o = crate::transfer::push::PushOptions { chunk_size: 0, tls_verify: true, quiet: true };
    let sent = crate::transfer::push::push_parts(
        transfers,
        &remote,
        siblings,
        blobs,
        &tag,
        (layers_store::images::oci::MEDIA_TYPE_MANIFEST, &manifest),
        &o,
    )?;
    let mut out = super::Sent::default();
    for l in &layers {
        match sent.iter().find(|(d, _)| *d == l.digest).map(|(_, s)| s) {
            Some(Sent::Uploaded(n) | Sent::NotMounted { bytes: n, .. }) => out.add(*n),
            Some(Sent::Mounted(_)) => out.add(0),
            _ => {}
        }
    }
    Ok(out)
}
