//! A cache in a registry: the cache manifest under a tag of a repository, its config
//! and layers as blobs of that repository. Read: the manifest and config only, then
//! each layer when a step's image is needed (streamed into the store, verified).
//! Written: blobs the registry has are not sent again (HEAD first, a mount from
//! another repository of the same registry), then the config and the manifest.

use std::sync::Arc;

use anyhow::{anyhow, Context};
use layers_store::oci::Descriptor;
use layers_store::{Reference, ShortNames, Store};

use super::format::CachedLayer;
use crate::registry::config::RegistriesConfig;
use crate::registry::resume::{self, Notices};
use crate::registry::Repository;

/// A cache ref to read from.
pub struct RegistrySource {
    repo: Arc<Repository>,
    /// `HOST/NAME`, for mounts into another repository of the same registry.
    pub reference: Reference,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().context("start runtime")
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
        let (manifest, config) = rt.block_on(async {
            let notices = silent();
            let (manifest, _) =
                crate::pull::fetch_manifest(&repo, &wanted, r.digest, resume::MAX_TRIES, &notices).await?;
            let m: layers_store::oci::Manifest =
                serde_json::from_slice(&manifest).with_context(|| format!("cache manifest {reference}"))?;
            let config = crate::pull::fetch_json_blob(repo.clone(), &m.config, notices).await?;
            anyhow::Ok((manifest, config))
        })?;
        drop(rt);
        Ok((RegistrySource { repo, reference: r }, manifest, config))
    }

    /// Streams each of `layers` the store lacks into it: verified, unpacked, committed.
    pub fn fetch(&self, store: &Store, layers: &[&CachedLayer]) -> anyhow::Result<()> {
        if layers.is_empty() {
            return Ok(());
        }
        // The fetch tasks need a handle of their own on the same store.
        let handle = Arc::new(store.reopen()?);
        let rt = runtime()?;
        let events = crate::progress::Progress::lines(true);
        let fetched = rt.block_on(async {
            // Up to four at once, as a pull does; each committed as it arrives.
            let limit = Arc::new(tokio::sync::Semaphore::new(4));
            let mut tasks = tokio::task::JoinSet::new();
            for l in layers {
                let (repo, handle, limit, blob, diff) =
                    (self.repo.clone(), handle.clone(), limit.clone(), l.blob.clone(), l.diff_id);
                let line = events.layer(&blob.digest.short(), blob.size);
                let what = format!("cache {}: layer {}", self.reference, blob.digest);
                tasks.spawn(async move {
                    let _permit = limit.acquire_owned().await?;
                    let (_, _, ingest) = crate::pull::fetch_layer(repo, handle.clone(), blob, diff, silent(), line)
                        .await
                        .context(what)?;
                    let h = handle.clone();
                    tokio::task::spawn_blocking(move || h.commit(ingest)).await??;
                    anyhow::Ok(())
                });
            }
            while let Some(done) = tasks.join_next().await {
                done??;
            }
            anyhow::Ok(())
        });
        drop(rt);
        fetched
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
) -> anyhow::Result<()> {
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
    let manifest = super::format::manifest(config_desc, layers)?;
    let repo = crate::push::open_repository(&r, registries, true, siblings)?;
    let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
    let o = crate::push::PushOptions { chunk_size: 0, tls_verify: true, quiet: true };
    crate::push::push_parts(repo, siblings, blobs, &tag, (layers_store::oci::MEDIA_TYPE_MANIFEST, &manifest), &o)
}
