//! A cache in a registry: the cache manifest under a tag of a repository, its config
//! and layers as blobs of that repository. Read: the manifest and config only (the
//! config is carried in the manifest where it fits), then each layer when a step's
//! image is needed (streamed into the store, verified).
//! Written: blobs the registry has are not sent again (HEAD first, a mount from
//! another repository of the same registry), then the config and the manifest.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context};
use layers_store::digest::Digest;
use layers_store::oci::Descriptor;
use layers_store::{Reference, ShortNames, Store};

use tokio::task::JoinHandle;

use super::format::CachedLayer;
use crate::registry::config::RegistriesConfig;
use crate::registry::resume::{self, Notices};
use crate::registry::Repository;

/// A cache ref to read from.
pub struct RegistrySource {
    repo: Arc<Repository>,
    /// `HOST/NAME`, for mounts into another repository of the same registry.
    pub reference: Reference,
    /// Runs the layer fetches, also while the build goes on (`prefetch`): the one
    /// that read the manifest, stopped before a container starts (`settle`) and
    /// started again by a later fetch.
    rt: Mutex<Option<tokio::runtime::Runtime>>,
    /// Four fetches at once, as a pull does.
    limit: Arc<tokio::sync::Semaphore>,
    /// Fetches started and not waited for yet, by blob digest.
    started: Mutex<BTreeMap<Digest, JoinHandle<anyhow::Result<()>>>>,
    /// The fetch tasks' own handle on the store, opened with the first.
    handle: Mutex<Option<Arc<Store>>>,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().context("start runtime")
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

impl RegistrySource {
    /// Fetches the cache manifest `reference` names and its config, both verified.
    pub fn open(reference: &str, registries: &RegistriesConfig) -> anyhow::Result<(RegistrySource, Vec<u8>, Vec<u8>)> {
        let r = Reference::parse(reference, ShortNames::DockerHub)?;
        let repo = Arc::new(crate::push::open_repository(&r, registries, true, &[])?);
        let wanted = r.digest.map(|d| d.to_string()).or_else(|| r.tag.clone()).unwrap_or_else(|| "latest".into());
        let rt = runtime()?;
        let limit = open_timeout();
        let (manifest, config) = rt.block_on(async {
            let read = async {
                let notices = silent();
                let (manifest, _) =
                    crate::pull::fetch_manifest(&repo, &wanted, r.digest, resume::MAX_TRIES, &notices).await?;
                let config = match super::format::embedded_config(&manifest).map_err(|e| anyhow!("{reference}: {e}"))? {
                    Some(c) => c,
                    None => {
                        let m: layers_store::oci::Manifest =
                            serde_json::from_slice(&manifest).with_context(|| format!("cache manifest {reference}"))?;
                        crate::pull::fetch_json_blob(repo.clone(), &m.config, notices).await?
                    }
                };
                anyhow::Ok((manifest, config))
            };
            // An optional source: a registry that hangs costs the build this long at most.
            tokio::time::timeout(limit, read)
                .await
                .map_err(|_| anyhow!("no cache read within {}s ($LAYERS_CACHE_FROM_TIMEOUT)", limit.as_secs_f64()))?
        })?;
        let source = RegistrySource {
            repo,
            reference: r,
            // Kept: the layer fetches reuse its threads and its connection to the registry.
            rt: Mutex::new(Some(rt)),
            limit: Arc::new(tokio::sync::Semaphore::new(4)),
            started: Mutex::default(),
            handle: Mutex::default(),
        };
        Ok((source, manifest, config))
    }

    /// Starts streaming each of `layers` into the store (verified, unpacked,
    /// committed) unless already started; the build goes on meanwhile.
    pub fn prefetch(&self, store: &Store, layers: &[&CachedLayer]) -> anyhow::Result<()> {
        let rt = self.runtime()?;
        let handle = {
            let mut h = self.handle.lock().map_err(|_| anyhow!("a fetch panicked"))?;
            match &*h {
                Some(s) => s.clone(),
                None => h.insert(Arc::new(store.reopen()?)).clone(),
            }
        };
        let mut started = self.started.lock().map_err(|_| anyhow!("a fetch panicked"))?;
        let events = crate::progress::Progress::lines(true);
        for l in layers {
            if started.contains_key(&l.blob.digest) {
                continue;
            }
            let (repo, handle, limit, blob, diff) =
                (self.repo.clone(), handle.clone(), self.limit.clone(), l.blob.clone(), l.diff_id);
            let line = events.layer(&blob.digest.short(), blob.size);
            let what = format!("cache {}: layer {}", self.reference, blob.digest);
            let task = rt.spawn(async move {
                let _permit = limit.acquire_owned().await?;
                let (_, _, ingest) =
                    crate::pull::fetch_layer(repo, handle.clone(), blob, diff, silent(), line).await.context(what)?;
                tokio::task::spawn_blocking(move || handle.commit(ingest)).await??;
                anyhow::Ok(())
            });
            started.insert(l.blob.digest, task);
        }
        Ok(())
    }

    /// Streams each of `layers` into the store (or waits for its prefetch to end).
    pub fn fetch(&self, store: &Store, layers: &[&CachedLayer]) -> anyhow::Result<()> {
        if layers.is_empty() {
            return Ok(());
        }
        self.prefetch(store, layers)?;
        let rt = self.runtime()?;
        let tasks: Vec<_> = {
            let mut started = self.started.lock().map_err(|_| anyhow!("a fetch panicked"))?;
            layers.iter().filter_map(|l| started.remove(&l.blob.digest)).collect()
        };
        let mut first_error = None;
        for t in tasks {
            if let Err(e) = rt.block_on(t).map_err(anyhow::Error::from).and_then(|r| r) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// A handle on the fetch runtime, started if it is not running.
    fn runtime(&self) -> anyhow::Result<tokio::runtime::Handle> {
        let mut rt = self.rt.lock().map_err(|_| anyhow!("a fetch panicked"))?;
        Ok(match &*rt {
            Some(r) => r.handle().clone(),
            None => rt.insert(runtime()?).handle().clone(),
        })
    }

    /// Waits for every fetch started and stops the runtime's threads: a container
    /// is started from a single-threaded process. A fetch that failed is tried
    /// again, and its error shown, where its layer is needed.
    pub fn settle(&self) {
        let Ok(mut rt) = self.rt.lock() else { return };
        let Some(r) = rt.take() else { return };
        let tasks = self.started.lock().map(|mut s| std::mem::take(&mut *s)).unwrap_or_default();
        for (_, t) in tasks {
            let _ = r.block_on(t);
        }
        r.shutdown_timeout(std::time::Duration::from_secs(5));
    }
}

impl Drop for RegistrySource {
    fn drop(&mut self) {
        // A prefetch nobody waited for (the build failed first) is abandoned: its
        // ingest is staged under tmp/ and never committed.
        if let Some(rt) = self.rt.get_mut().ok().and_then(Option::take) {
            rt.shutdown_timeout(std::time::Duration::from_secs(5));
        }
    }
}

/// Pushes a cache (its config and the layers its manifest names) to `reference`.
/// A layer not in the store must be in the registry already (or in `siblings`, other
/// repositories of the same registry to mount from).
pub fn export(
    store: &Store,
    reference: &str,
    registries: &RegistriesConfig,
    config: &[u8],
    config_desc: &Descriptor,
    layers: &[Descriptor],
    siblings: &[String],
) -> anyhow::Result<super::Sent> {
    let r = Reference::parse(reference, ShortNames::DockerHub)?;
    if r.digest.is_some() {
        return Err(anyhow!("give a tag to write the cache to, not a digest"));
    }
    let scratch = super::super::scratch::ScratchDir(store.scratch_dir("cache-export")?);
    let config_path = scratch.path().join("config.json");
    std::fs::write(&config_path, config).context("stage the cache config")?;
    let mut blobs: Vec<(std::path::PathBuf, Descriptor)> =
        layers.iter().map(|d| (store.blob_path(&d.digest), d.clone())).collect();
    blobs.push((config_path, config_desc.clone()));
    let manifest = super::format::manifest(config_desc, config, layers)?;
    let repo = crate::push::open_repository(&r, registries, true, siblings)?;
    let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
    let o = crate::push::PushOptions { chunk_size: 0, tls_verify: true, quiet: true };
    let sent =
        crate::push::push_parts(repo, siblings, blobs, &tag, (layers_store::oci::MEDIA_TYPE_MANIFEST, &manifest), &o)?;
    let mut out = super::Sent::default();
    for l in layers {
        match sent.iter().find(|(d, _)| *d == l.digest).map(|(_, s)| s) {
            Some(crate::push::Sent::Uploaded(n)) => out.add(*n),
            Some(crate::push::Sent::Mounted(_)) => out.add(0),
            _ => {}
        }
    }
    Ok(out)
}
