//! Pulling: a registry image into the store, layers streamed straight from
//! the network into verify → decompress → unpack, several at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use layers_store::images::oci::{Descriptor, ImageConfig, Manifest};
use layers_store::layer::unpack::Unpacked;
use layers_store::snapshots::mount::MAX_LAYERS;
use layers_store::{Digest, FetchClaim, ImageBlobs, Ingest, Reference, ShortNames, Store};
use serde_json::Value;
use tokio::sync::Semaphore;

use super::platform::{describe, Platform};
use super::progress::{LayerLine, Progress};
use super::remote::Remote;
use crate::registry::config::{Endpoint, RegistriesConfig};
use crate::registry::resume;
use crate::registry::{DOCKER_LIST, OCI_INDEX};

/// Layers fetched at once: one per core, two to four. Unpacking is CPU-bound, so a
/// layer more than the cores only adds its memory (its pipeline, its listing so far):
/// with four at once on two cores a pull of 20 layers peaked 6 MiB above one of 5,
/// in the same time.
fn parallel_layers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 4)
}

/// Fetched layers committed together (one `syncfs`). Each holds a fetch claim (a lock
/// file) until committed and takes two more lock files to commit, so this bounds the
/// open files of a pull whatever the image's layer count.
const COMMIT_BATCH: usize = 32;

/// Pulls `reference` (`platform`: os/arch[/variant], default the host's) into `store`
/// and returns its manifest digest: `layers pull`, and a build's FROM. The runtime and
/// its threads are gone when this returns.
pub fn pull_image(
    transfers: &super::Transfers,
    store: Store,
    reference: &str,
    platform: Option<&str>,
    registries: &RegistriesConfig,
    tls_verify: bool,
    shown: crate::transfer::progress::Shown,
) -> anyhow::Result<Digest> {
    let platform_arg = platform;
    let (reference, endpoints, platform) = target(reference, platform, registries)?;
    let events = Progress::new(shown);
    // A platform asked for must be the image's own; the host's is a preference only.
    let required = platform_arg.is_some().then_some(&platform);
    let store = Arc::new(store);
    let digest =
        transfers.block_on(pull(Arc::clone(&store), &reference, &endpoints, &platform, required, tls_verify, &events));
    events.finish();
    let digest = digest??;
    if let Some(img) = store.images().get(&digest)? {
        crate::events::by_reference(&store, &img, &reference.to_string(), "pull");
    }
    Ok(digest)
}

/// Fetches the layers a remote image (`build --push`'s) lacks from the repository
/// they are in; the image is local when this returns.
pub fn fetch_remote(
    transfers: &super::Transfers,
    store: &Store,
    image: &layers_store::images::remote::RemoteImage,
    registries: &RegistriesConfig,
    shown: crate::transfer::progress::Shown,
) -> anyhow::Result<()> {
    let source = Reference::parse(&image.source, ShortNames::DockerHub)?;
    let repo = Remote::open(&source, registries, true, &[])?;
    let layers = image.missing.iter().map(|l| (l.descriptor(), l.diff_id)).collect();
    let events = Progress::new(shown);
    events.say(format!("image {}: fetching {image}", image.manifest.short()));
    let store = Arc::new(store.reopen()?);
    let fetched = transfers.block_on(async {
        let (staged, claims) = fetch_layers(&store, &repo, layers, &events).await?;
        store.content().commit(staged)?;
        drop(claims);
        anyhow::Ok(())
    });
    events.finish();
    fetched??;
    store.images().require_local(&image.manifest).with_context(|| format!("fetch {}", image.source))?;
    Ok(())
}

/// What a pull or a remote read starts from: the reference, where to fetch it, the platform.
fn target(
    reference: &str,
    platform: Option<&str>,
    registries: &RegistriesConfig,
) -> anyhow::Result<(Reference, Vec<Endpoint>, Platform)> {
    let reference = Reference::parse(reference, ShortNames::DockerHub)?;
    let endpoints = registries.endpoints(&reference.registry);
    let platform = match platform {
        Some(p) => Platform::parse(p)?,
        None => Platform::host(),
    };
    Ok((reference, endpoints, platform))
}

/// An image manifest's bytes checked, and its config fetched, verified and matched to it.
async fn manifest_and_config(
    repo: &Remote,
    reference: &Reference,
    bytes: &[u8],
    digest: &Digest,
    events: &Progress,
) -> anyhow::Result<(Manifest, Vec<u8>, ImageConfig)> {
    let manifest: Manifest = serde_json::from_slice(bytes).with_context(|| format!("parse manifest {digest}"))?;
    check_manifest(&manifest).with_context(|| reference.to_string())?;
    let config_bytes = repo.json_blob(&manifest.config, events.notices()).await?;
    let config: ImageConfig =
        serde_json::from_slice(&config_bytes).with_context(|| format!("parse config {}", manifest.config.digest))?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        bail!(
            "{reference}: manifest lists {} layers but the config {}",
            manifest.layers.len(),
            config.rootfs.diff_ids.len()
        );
    }
    Ok((manifest, config_bytes, config))
}

/// A registry image known by its manifest and config alone, its layers not fetched.
pub struct RemoteImage {
    pub manifest: Digest,
    pub config: ImageConfig,
}

/// Reads what `reference` names (its platform's manifest, and its config), both
/// verified, without fetching a layer or writing to a store: a build keys a FROM on
/// it and fetches the layers only where a step needs them.
pub fn remote_image(
    transfers: &super::Transfers,
    reference: &str,
    platform: Option<&str>,
    registries: &RegistriesConfig,
    tls_verify: bool,
) -> anyhow::Result<RemoteImage> {
    let (reference, endpoints, platform) = target(reference, platform, registries)?;
    transfers.block_on(async {
        let events = Progress::new(crate::transfer::progress::Shown::Quiet);
        let (repo, mut bytes, mut digest) = Remote::first_serving(&reference, &endpoints, tls_verify, &events).await?;
        let top: Value = serde_json::from_slice(&bytes).with_context(|| format!("parse manifest {digest}"))?;
        if manifest_kind(&top).with_context(|| reference.to_string())? == Kind::Index {
            let chosen = pick_platform(&top, &platform).with_context(|| reference.to_string())?;
            let notices = events.notices();
            (bytes, digest) = repo.manifest(&chosen.to_string(), Some(chosen), resume::MAX_TRIES, &notices).await?;
        }
        let (_, _, config) = manifest_and_config(&repo, &reference, &bytes, &digest, &events).await?;
        Ok(RemoteImage { manifest: digest, config })
    })?
}

/// Picks this platform's manifest from an index, or says what the index offers.
fn pick_platform(index: &Value, platform: &Platform) -> anyhow::Result<Digest> {
    let entries = index["manifests"].as_array().context("image index without manifests")?;
    let found = entries.iter().find(|m| platform.matches(&m["platform"]));
    match found {
        Some(m) => Ok(Digest::parse(m["digest"].as_str().unwrap_or_default())?),
        None => {
            let offered: Vec<String> = entries.iter().map(|m| describe(&m["platform"])).collect();
            let want = match &platform.variant {
                Some(v) => format!("{}/{}/{v}", platform.os, platform.architecture),
                None => format!("{}/{}", platform.os, platform.architecture),
            };
            bail!("no image for platform {want} in the index (it offers: {})", offered.join(", "))
        }
    }
}

/// How one layer's fetch task ended.
enum Fetched {
    /// Unpacked into its own ingest, its claim held until that is committed.
    Done { line: LayerLine, done: (Unpacked, Duration, Ingest), claim: FetchClaim },
    /// Another process holds its claim: fetched (or found) after ours are committed.
    Deferred(Descriptor, layers_store::DiffId),
    /// Committed by another process while this one waited for its turn.
    Present,
}

fn done_line(u: &Unpacked, took: Duration) -> String {
    format!("done ({} in {:.2}s, {} entries)", crate::format::size(u.blob_size), took.as_secs_f64(), u.entries)
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    /// A multi-platform index (OCI) or manifest list (Docker).
    Index,
    /// One image's manifest.
    Image,
}

fn manifest_kind(top: &Value) -> anyhow::Result<Kind> {
    if top["schemaVersion"] == 1 {
        bail!("Docker schema 1 manifests are not supported (re-push the image with a current client)");
    }
    layers_store::archive::layout::refuse_ambiguous(top).map_err(anyhow::Error::msg)?;
    let media = top["mediaType"].as_str().unwrap_or_default();
    Ok(if media == OCI_INDEX || media == DOCKER_LIST || top.get("manifests").is_some() {
        Kind::Index
    } else {
        Kind::Image
    })
}

fn check_manifest(m: &Manifest) -> anyhow::Result<()> {
    if m.schema_version != 2 {
        bail!("manifest schema {} is not supported (Docker schema 1 images are deprecated; re-push with a current client)", m.schema_version);
    }
    // Refused before anything is fetched: such an image could never be mounted.
    if m.layers.len() > MAX_LAYERS {
        bail!(
            "the image has {} layers; overlayfs mounts at most {MAX_LAYERS} (squash it: `layers export` then `layers import`)",
            m.layers.len()
        );
    }
    for l in &m.layers {
        if l.urls.is_some() || l.media_type.contains("foreign") || l.media_type.contains("nondistributable") {
            bail!("layer {} is a foreign layer ({}), which layers does not fetch", l.digest, l.media_type);
        }
    }
    Ok(())
}

/// A present image is tagged again and reported; nothing is fetched. `required`: the
/// platform its config must name (a single manifest's; an index entry names its own).
fn already_present(
    store: &Store,
    reference: &Reference,
    digest: &Digest,
    required: Option<&Platform>,
    events: &Progress,
) -> anyhow::Result<bool> {
    let Some(img) = store.images().get(digest)? else {
        return Ok(false);
    };
    // A remote image's layers are fetched by the pull, like a new image's.
    if img.remote.is_some() && store.images().remote(digest)?.is_some() {
        return Ok(false);
    }
    if let Some(want) = required {
        offers(reference, want, &store.images().config(&img)?)?;
    }
    if let Some(t) = reference.tagged_name() {
        store.images().tag(&img.manifest, &t)?;
    }
    store.images().touch(&img.manifest)?;
    events.say(format!("{reference}: image is up to date ({digest})"));
    Ok(true)
}

/// Refuses an image whose config names another platform than `want`.
fn offers(reference: &Reference, want: &Platform, config: &ImageConfig) -> anyhow::Result<()> {
    let offered = crate::transfer::platform::of_config(config);
    if !want.matches(&offered) {
        bail!("{reference}: no image for platform {want}: it is {} only", describe(&offered));
    }
    Ok(())
}

async fn pull(
    store: Arc<Store>,
    reference: &Reference,
    endpoints: &[Endpoint],
    platform: &Platform,
    required: Option<&Platform>,
    tls_verify: bool,
    events: &Progress,
) -> anyhow::Result<Digest> {
    let started = Instant::now();
    let (repo, mut bytes, mut digest) = Remote::first_serving(reference, endpoints, tls_verify, events).await?;
    let top: Value = serde_json::from_slice(&bytes).with_context(|| format!("parse manifest {digest}"))?;
    let mut required = required;
    if manifest_kind(&top).with_context(|| reference.to_string())? == Kind::Index {
        // The index's entry names the platform; a single manifest's config does.
        required = None;
        let chosen = pick_platform(&top, platform).with_context(|| reference.to_string())?;
        // Checked before fetching it: a present image costs the index request alone.
        if already_present(&store, reference, &chosen, None, events)? {
            return Ok(chosen);
        }
        let notices = events.notices();
        (bytes, digest) = repo.manifest(&chosen.to_string(), Some(chosen), resume::MAX_TRIES, &notices).await?;
    }
    if already_present(&store, reference, &digest, required, events)? {
        return Ok(digest);
    }
    let tag = reference.tagged_name();

    let (manifest, config_bytes, config) = manifest_and_config(&repo, reference, &bytes, &digest, events).await?;
    if let Some(want) = required {
        offers(reference, want, &config)?;
    }

    let layers = manifest.layers.iter().cloned().zip(config.rootfs.diff_ids.iter().copied()).collect();
    let (staged, _claims) = fetch_layers(&store, &repo, layers, events).await?;
    store
        .images()
        .record(
            staged,
            ImageBlobs::Received { manifest: &bytes, config: &config_bytes },
            &tag.into_iter().collect::<Vec<_>>(),
        )
        .context("commit pulled image")?;
    events.say(format!("{reference}: pulled {digest} in {:.2}s", started.elapsed().as_secs_f64()));
    Ok(digest)
}

/// Fetches each of `layers` the store lacks from `repo`, several at once, each verified
/// against its blob digest and diffID; returns what is staged and not yet committed
/// (the caller commits it, with the image it completes) and the fetch claims on it,
/// to be dropped only after that commit (else another process fetches it again).
async fn fetch_layers(
    store: &Arc<Store>,
    repo: &Remote,
    layers: Vec<(Descriptor, layers_store::DiffId)>,
    events: &Progress,
) -> anyhow::Result<(Ingest, Vec<FetchClaim>)> {
    // A layer another process is fetching right now waits until ours are committed and
    // our claims released: we never wait for a claim while holding one (no deadlock).
    // A claim is taken when its fetch starts, not before, so only the running fetches
    // and the staged batch hold one.
    let limit = Arc::new(Semaphore::new(parallel_layers()));
    let mut tasks = tokio::task::JoinSet::new();
    for (desc, diff) in &layers {
        let short = desc.digest.short();
        if store.layers().has(diff, &desc.digest)? {
            events.say(format!("{short}: already exists"));
            continue;
        }
        let notices = events.notices();
        let (repo, store, limit, desc, diff) = (repo.clone(), store.clone(), limit.clone(), desc.clone(), *diff);
        let events = events.clone();
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await?;
            let Some(claim) = store.content().claim_fetch(&desc.digest, false)? else {
                events.say(format!("{short}: another process is fetching it"));
                return Ok(Fetched::Deferred(desc, diff));
            };
            // Looked for before the wait for a turn; another process may have committed
            // it since, and released its claim (without this, it was downloaded twice).
            if store.layers().has(&diff, &desc.digest)? {
                events.say(format!("{short}: already exists (fetched by another process)"));
                return Ok(Fetched::Present);
            }
            let line = events.layer(&short, desc.size);
            let done = repo.fetch_layer(store, desc, diff, notices, line.clone()).await?;
            anyhow::Ok(Fetched::Done { line, done, claim })
        });
    }
    // Everything verified is committed, in batches, even if another layer failed:
    // a retry then fetches only what is missing.
    let mut staged = store.content().ingest()?;
    let mut staged_claims: Vec<FetchClaim> = Vec::new();
    let mut failed = None;
    let mut deferred = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done.map_err(anyhow::Error::from).and_then(|r| r) {
            Ok(Fetched::Done { line, done: (u, took, ingest), claim }) => {
                staged.absorb(ingest);
                staged_claims.push(claim);
                line.done(&done_line(&u, took));
                if staged_claims.len() >= COMMIT_BATCH {
                    store.content().commit(std::mem::replace(&mut staged, store.content().ingest()?))?;
                    staged_claims.clear();
                }
            }
            Ok(Fetched::Deferred(desc, diff)) => deferred.push((desc, diff)),
            Ok(Fetched::Present) => {}
            Err(e) => {
                failed.get_or_insert(e);
                // Nothing more is started; what runs is awaited and committed.
                limit.close();
            }
        }
    }
    if let Some(e) = failed {
        store.content().commit(staged)?;
        return Err(e);
    }
    if !deferred.is_empty() {
        store.content().commit(staged)?;
        staged_claims.clear();
        for (desc, diff) in deferred {
            let short = desc.digest.short();
            let (s, d) = (store.clone(), desc.digest);
            let _claim = tokio::task::spawn_blocking(move || s.content().claim_fetch(&d, true)).await??;
            if store.layers().has(&diff, &desc.digest)? {
                events.say(format!("{short}: already exists (fetched by another process)"));
                continue;
            }
            let line = events.layer(&short, desc.size);
            let (u, took, ingest) = repo.fetch_layer(store.clone(), desc, diff, events.notices(), line.clone()).await?;
            store.content().commit(ingest)?;
            line.done(&done_line(&u, took));
        }
        staged = store.content().ingest()?;
    }
    Ok((staged, staged_claims))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn schema_1_is_refused_and_indexes_are_recognised() {
        let err = manifest_kind(&json!({"schemaVersion": 1, "fsLayers": []})).unwrap_err();
        assert!(err.to_string().contains("schema 1"), "{err}");
        assert_eq!(
            manifest_kind(&json!({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": []})).unwrap(),
            Kind::Index
        );
        assert_eq!(manifest_kind(&json!({"schemaVersion": 2, "manifests": []})).unwrap(), Kind::Index);
        assert_eq!(manifest_kind(&json!({"schemaVersion": 2, "layers": []})).unwrap(), Kind::Image);
    }

    #[test]
    fn a_document_both_index_and_manifest_is_refused() {
        for media in [OCI_INDEX, crate::registry::OCI_MANIFEST, ""] {
            let both = json!({"schemaVersion": 2, "mediaType": media, "manifests": [], "layers": []});
            assert!(manifest_kind(&both).unwrap_err().to_string().contains("both `manifests` and `layers`"));
        }
    }

    #[test]
    fn foreign_layers_are_refused() {
        let layer = |media: &str, urls: Option<Vec<&str>>| json!({"mediaType": media, "digest": digest('a'), "size": 1, "urls": urls});
        let manifest = |l: Value| -> Manifest {
            serde_json::from_value(json!({"schemaVersion": 2, "config": {"mediaType": "x", "digest": digest('b'), "size": 1}, "layers": [l]}))
                .unwrap()
        };
        assert!(check_manifest(&manifest(layer("application/vnd.oci.image.layer.v1.tar+gzip", None))).is_ok());
        let foreign =
            manifest(layer("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", Some(vec!["https://x/y"])));
        assert!(check_manifest(&foreign).unwrap_err().to_string().contains("foreign layer"));
        let nondist = manifest(layer("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", None));
        assert!(check_manifest(&nondist).is_err());
    }

    #[test]
    fn platforms_are_picked_or_listed() {
        let index = json!({"manifests": [
            {"digest": digest('1'), "platform": {"os": "linux", "architecture": "amd64"}},
            {"digest": digest('2'), "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
        ]});
        let arm = Platform::parse("linux/arm/v7").unwrap();
        assert_eq!(pick_platform(&index, &arm).unwrap().to_string(), digest('2'));
        let err = pick_platform(&index, &Platform::parse("windows/amd64").unwrap()).unwrap_err().to_string();
        assert!(err.contains("windows/amd64") && err.contains("linux/amd64, linux/arm/v7"), "{err}");
    }
}
