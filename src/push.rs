//! Pushing: an image from the store to a registry. Blobs the registry has are
//! not sent again (HEAD first); a blob another repository of the same registry holds
//! (one the image was pulled from or pushed to) is mounted from there; the others are
//! uploaded, whole or in chunks, up to four at a time, each retried from its start on
//! transient failures. The manifest goes last, byte for byte as stored, so the image
//! keeps its digest.

use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use layers_store::metadata::ImageRow;
use layers_store::oci::{Descriptor, Manifest, MAX_JSON};
use layers_store::{Digest, Reference, ShortNames, Store};

use crate::registry::client::{Repository, RequestError};
use crate::registry::config::RegistriesConfig;
use crate::registry::credentials;
use crate::registry::resume;

/// How a push goes.
pub struct PushOptions {
    /// Send blobs in chunks of this many bytes; 0: each in one `PUT`.
    pub chunk_size: u64,
    /// Verify TLS certificates.
    pub tls_verify: bool,
    /// Print nothing but errors.
    pub quiet: bool,
}

/// The repository `dest` names, on the registry itself (mirrors serve pulls only),
/// with our credentials for it; blobs may be mounted from `siblings`.
pub fn open_repository(
    dest: &Reference,
    registries: &RegistriesConfig,
    tls_verify: bool,
    siblings: &[String],
) -> anyhow::Result<Repository> {
    let endpoint = registries
        .endpoints(&dest.registry)
        .pop()
        .ok_or_else(|| anyhow!("{dest}: no endpoint for {}", dest.registry))?;
    let creds = credentials::lookup(&endpoint.host)?;
    Ok(Repository::new(&endpoint.host, endpoint.plain_http, tls_verify, &dest.repository, creds)
        .map_err(|e| anyhow!("{}: {e}", endpoint.host))?
        .also_pulling_from(siblings))
}

/// Pushes `image` to `dest` (a tagged reference); returns the manifest digest.
pub fn push_image(
    store: Store,
    image: &ImageRow,
    dest: &Reference,
    registries: &RegistriesConfig,
    o: &PushOptions,
) -> anyhow::Result<Digest> {
    let manifest_bytes = store.read_blob(&image.manifest, MAX_JSON)?;
    let manifest: Manifest =
        serde_json::from_slice(&manifest_bytes).with_context(|| format!("read manifest {}", image.manifest))?;
    // Other repositories of the same registry that hold this image: blobs can be mounted from there.
    let siblings: Vec<String> = image
        .tags
        .iter()
        .filter_map(|t| Reference::parse(t, ShortNames::DockerHub).ok())
        .filter(|r| r.registry == dest.registry && r.repository != dest.repository)
        .map(|r| r.repository)
        .collect();
    let repo = open_repository(dest, registries, o.tls_verify, &siblings)?;
    let mut blobs: Vec<Descriptor> = vec![manifest.config.clone()];
    blobs.extend(manifest.layers.iter().cloned());
    let blobs = blobs.into_iter().map(|d| (store.blob_path(&d.digest), d)).collect();
    let tag = dest.tag.clone().unwrap_or_else(|| "latest".into());
    push_parts(repo, &siblings, blobs, &tag, (&image.media_type, &manifest_bytes), o)?;
    Ok(image.manifest)
}

/// Pushes `blobs` (each read from its path when the registry lacks it), then the
/// manifest under `tag`, checking the digest the registry reports.
pub fn push_parts(
    repo: Repository,
    siblings: &[String],
    mut blobs: Vec<(std::path::PathBuf, Descriptor)>,
    tag: &str,
    (media_type, manifest_bytes): (&str, &[u8]),
    o: &PushOptions,
) -> anyhow::Result<Vec<(Digest, Sent)>> {
    blobs.dedup_by(|a, b| a.1.digest == b.1.digest);
    let digest = Digest::of(manifest_bytes);
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().context("start runtime")?;
    let repo = Arc::new(repo);
    let siblings = siblings.to_vec();
    let events = crate::progress::Progress::lines(o.quiet);
    let notices = events.notices();
    let chunk = o.chunk_size;
    let pushed = rt.block_on(async {
        let sent = stream::iter(blobs.into_iter().map(|(path, desc)| {
            let (repo, siblings, events) = (repo.clone(), siblings.clone(), events.clone());
            async move {
                let what = format!("{}: blob {}", repo.display(), desc.digest.short());
                let outcome = resume::retry(&what, resume::MAX_TRIES, &events.notices(), || {
                    push_blob(&path, &repo, &desc, &siblings, chunk)
                })
                .await
                .map_err(|e| anyhow!("{what}: {e}"))?;
                events.say(format!("{what}: {outcome}"));
                anyhow::Ok((desc.digest, outcome))
            }
        }))
        .buffer_unordered(4)
        .try_collect::<Vec<_>>()
        .await?;
        let what = format!("{}: manifest {tag}", repo.display());
        let claimed =
            resume::retry(&what, resume::MAX_TRIES, &notices, || repo.put_manifest(tag, media_type, manifest_bytes))
                .await
                .map_err(|e| anyhow!("{what}: {e}"))?;
        if let Some(c) = claimed.filter(|c| *c != digest.to_string()) {
            bail!("{what}: the registry reports digest {c}, not {digest}");
        }
        anyhow::Ok(sent)
    });
    events.finish();
    drop(rt);
    let sent = pushed?;
    events.say(format!("Pushed {}:{tag}@{digest}", repo.display()));
    Ok(sent)
}

/// What pushing one blob took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// The registry had it.
    Present,
    /// Mounted from a sibling repository: no bytes moved.
    Mounted(String),
    /// Uploaded, this many bytes.
    Uploaded(u64),
}

impl std::fmt::Display for Sent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sent::Present => write!(f, "already in the registry"),
            Sent::Mounted(from) => write!(f, "mounted from {from}"),
            Sent::Uploaded(n) => write!(f, "uploaded ({n} bytes)"),
        }
    }
}

/// Gets one blob to the registry: already there, mounted, or uploaded.
async fn push_blob(
    path: &std::path::Path,
    repo: &Repository,
    desc: &Descriptor,
    siblings: &[String],
    chunk: u64,
) -> Result<Sent, RequestError> {
    if repo.has_blob(&desc.digest).await? {
        return Ok(Sent::Present);
    }
    // One mount attempt: a registry that cannot mount opens an upload session instead, used below.
    let opened = match siblings.first() {
        Some(from) => match repo.start_upload(Some((&desc.digest, from))).await? {
            None => return Ok(Sent::Mounted(from.clone())),
            Some(l) => Some(l),
        },
        None => repo.start_upload(None).await?,
    };
    let location = opened.ok_or_else(|| RequestError::Invalid("upload not started".into()))?;
    if chunk == 0 || desc.size <= chunk {
        repo.put_blob(&location, &desc.digest, path, desc.size).await?;
    } else {
        let mut at = location;
        let mut offset = 0;
        while offset < desc.size {
            let len = chunk.min(desc.size - offset);
            at = repo.patch_chunk(&at, path, offset, len).await?;
            offset += len;
        }
        repo.finish_upload(&at, &desc.digest).await?;
    }
    Ok(Sent::Uploaded(desc.size))
}
