//! One repository of a registry, as every transfer talks to it: manifests and
//! configs read and verified, layers streamed into the store (verify → decompress →
//! unpack), blobs pushed (present, mounted from a sibling repository, or uploaded).
//! Pulls, pushes and the build cache all go through it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use futures_util::TryStreamExt;
use layers_store::images::oci::{Descriptor, MAX_JSON};
use layers_store::layer::unpack::Unpacked;
use layers_store::{Digest, Ingest, LayerExpect, Reference, Store};
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::progress::{LayerLine, Progress};
use crate::registry::client::RequestError;
use crate::registry::config::{Endpoint, RegistriesConfig};
use crate::registry::credentials;
use crate::registry::resume::{self, Notices};
use crate::registry::{Repository, ACCEPTED};

/// A repository, with our credentials for its registry.
#[derive(Clone)]
pub struct Remote {
    repo: Arc<Repository>,
}

/// How a blob got to the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// The registry had it.
    Present,
    /// Mounted from another repository of the same registry.
    Mounted(String),
    /// Uploaded: this many bytes.
    Uploaded(u64),
    /// Uploaded (this many bytes) after the registry did not mount it from `from`.
    NotMounted { from: String, bytes: u64 },
}

impl std::fmt::Display for Sent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sent::Present => write!(f, "already in the registry"),
            Sent::Mounted(from) => write!(f, "mounted from {from}"),
            Sent::Uploaded(n) => write!(f, "uploaded ({n} bytes)"),
            Sent::NotMounted { from, bytes } => {
                write!(
                    f,
                    "uploaded ({bytes} bytes): not mounted from {from} (not there, or the registry refuses mounts)"
                )
            }
        }
    }
}

impl Remote {
    /// The repository `dest` names, on the registry itself (mirrors serve pulls only);
    /// blobs may be mounted from `siblings`, other repositories of the same registry.
    pub fn open(
        dest: &Reference,
        registries: &RegistriesConfig,
        tls_verify: bool,
        siblings: &[String],
    ) -> anyhow::Result<Remote> {
        let endpoint = registries
            .endpoints(&dest.registry)
            .pop()
            .ok_or_else(|| anyhow!("{dest}: no endpoint for {}", dest.registry))?;
        let creds = credentials::lookup(&endpoint.host)?;
        let repo = Repository::new(&endpoint.host, endpoint.plain_http, tls_verify, &dest.repository, creds)
            .map_err(|e| anyhow!("{}: {e}", endpoint.host))?
            .also_pulling_from(siblings);
        Ok(Remote { repo: Arc::new(repo) })
    }

    /// The first of `endpoints` (mirrors, then the registry) that serves `reference`'s
    /// top manifest, with that manifest: the rest of a pull stays with it.
    pub async fn first_serving(
        reference: &Reference,
        endpoints: &[Endpoint],
        tls_verify: bool,
        events: &Progress,
    ) -> anyhow::Result<(Remote, Vec<u8>, Digest)> {
        let wanted = match (&reference.digest, &reference.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        };
        let mut last = None;
        for (i, ep) in endpoints.iter().enumerate() {
            // Each endpoint gets its own host's credentials, never another's.
            let creds = credentials::lookup(&ep.host)?;
            let repo = Repository::new(&ep.host, ep.plain_http, tls_verify, &reference.repository, creds)
                .map_err(|e| anyhow!("{}: {e}", ep.host))?;
            let remote = Remote { repo: Arc::new(repo) };
            // A failing mirror hands over to the next endpoint at once; the registry itself gets retries.
            let tries = if i + 1 < endpoints.len() { 1 } else { resume::MAX_TRIES };
            match remote.manifest(&wanted, reference.digest, tries, &events.notices()).await {
                Ok((bytes, digest)) => return Ok((remote, bytes, digest)),
                Err(e) if i + 1 < endpoints.len() => {
                    events.say(format!("{}: {e:#}; trying {}", ep.host, endpoints[i + 1].host));
                    last = Some(e);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("{reference}: no endpoint to pull from")))
    }

    /// `HOST/REPOSITORY`, for messages.
    pub fn display(&self) -> String {
        self.repo.display()
    }

    /// A manifest by tag or digest, its digest verified (the pinned one, if any, and
    /// the one the registry claims).
    pub async fn manifest(
        &self,
        reference: &str,
        pinned: Option<Digest>,
        tries: u32,
        notices: &Notices,
    ) -> anyhow::Result<(Vec<u8>, Digest)> {
        let repo = &self.repo;
        let sep = if reference.starts_with("sha256:") { '@' } else { ':' };
        let what = format!("fetch manifest {}{sep}{reference}", repo.display());
        let (bytes, claimed) = resume::retry(&what, tries, notices, || repo.manifest(reference, ACCEPTED, MAX_JSON))
            .await
            .map_err(|e| anyhow!("{what}: {e}"))?;
        let got = Digest::of(&bytes);
        if let Some(want) = pinned.filter(|w| *w != got) {
            bail!("{what}: digest mismatch: expected {want}, content has digest {got}");
        }
        if let Some(claimed) = claimed.filter(|c| *c != got.to_string() && c.starts_with("sha256:")) {
            bail!("{what}: digest mismatch: the registry says {claimed}, content has digest {got}");
        }
        Ok((bytes, got))
    }

    /// A whole small blob (a config), refusing more than its descriptor's size.
    pub async fn json_blob(&self, desc: &Descriptor, notices: Notices) -> anyhow::Result<Vec<u8>> {
        if desc.size > MAX_JSON {
            bail!("config {}: {} bytes is over the {MAX_JSON} byte limit", desc.digest, desc.size);
        }
        let mut s = std::pin::pin!(resume::blob_stream(self.repo.clone(), desc.digest, desc.size, notices));
        let mut buf = Vec::new();
        while let Some(chunk) = s.try_next().await.with_context(|| format!("fetch config {}", desc.digest))? {
            buf.extend_from_slice(&chunk);
            if buf.len() as u64 > desc.size {
                bail!("config {}: longer than its descriptor's {} bytes", desc.digest, desc.size);
            }
        }
        let got = Digest::of(&buf);
        if got != desc.digest || buf.len() as u64 != desc.size {
            bail!("config {}: digest mismatch: expected {}, got {got} ({} bytes)", desc.digest, desc.digest, buf.len());
        }
        Ok(buf)
    }

    /// Streams one blob into the file `to`, refusing more than its descriptor's size
    /// (whoever reads the file verifies its digest).
    pub async fn blob_to_file(&self, desc: &Descriptor, to: &std::path::Path, notices: Notices) -> anyhow::Result<()> {
        use tokio::io::AsyncWriteExt;
        let mut s = std::pin::pin!(resume::blob_stream(self.repo.clone(), desc.digest, desc.size, notices));
        let mut out = tokio::fs::File::create(to).await.with_context(|| format!("create {}", to.display()))?;
        let mut got = 0u64;
        while let Some(chunk) = s.try_next().await.with_context(|| format!("fetch blob {}", desc.digest))? {
            got += chunk.len() as u64;
            if got > desc.size {
                bail!("blob {}: longer than its descriptor's {} bytes", desc.digest, desc.size);
            }
            out.write_all(&chunk).await.with_context(|| format!("write {}", to.display()))?;
        }
        out.flush().await.with_context(|| format!("write {}", to.display()))?;
        Ok(())
    }

    /// Streams one layer blob into a fresh ingest of `store`: verified, decompressed,
    /// unpacked (not committed).
    pub async fn fetch_layer(
        &self,
        store: Arc<Store>,
        desc: Descriptor,
        diff: layers_store::DiffId,
        notices: Notices,
        line: LayerLine,
    ) -> anyhow::Result<(Unpacked, Duration, Ingest)> {
        let started = Instant::now();
        let stream = resume::blob_stream(self.repo.clone(), desc.digest, desc.size, notices)
            .inspect_ok(move |b| line.advance(b.len() as u64));
        let reader = SyncIoBridge::new(StreamReader::new(Box::pin(stream)));
        let expect = LayerExpect { blob: Some(desc.digest), size: Some(desc.size), diff_id: Some(diff) };
        let (u, ingest) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let mut ingest = store.content().ingest()?;
            // unpack_layer never reads past the descriptor's size: a longer body is cut off and fails verification.
            let u = store
                .layers()
                .unpack(&mut ingest, reader, &expect)
                .with_context(|| format!("pull layer {}", desc.digest))?;
            Ok((u, ingest))
        })
        .await??;
        Ok((u, started.elapsed(), ingest))
    }

    /// Gets one blob (the file at `path`) to the registry: already there, mounted from
    /// the first of `siblings`, or uploaded (in `chunk`-byte pieces when not 0).
    pub async fn push_blob(
        &self,
        path: &std::path::Path,
        desc: &Descriptor,
        siblings: &[String],
        chunk: u64,
    ) -> Result<Sent, RequestError> {
        let repo = &self.repo;
        if repo.has_blob(&desc.digest).await? {
            return Ok(Sent::Present);
        }
        // One mount attempt: a registry that cannot mount opens an upload session instead, used below.
        let here = path.exists();
        let opened = match siblings.first() {
            Some(from) => match repo.start_upload(Some((&desc.digest, from))).await? {
                None => return Ok(Sent::Mounted(from.clone())),
                // The session it opened is left to expire (the registry purges those).
                Some(_) if !here => return Err(RequestError::NotHere(desc.digest)),
                Some(l) => Some(l),
            },
            None if !here => return Err(RequestError::NotHere(desc.digest)),
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
        Ok(match siblings.first() {
            Some(from) => Sent::NotMounted { from: from.clone(), bytes: desc.size },
            None => Sent::Uploaded(desc.size),
        })
    }

    /// Puts the manifest `bytes` under `tag`; returns the digest the registry reports.
    pub async fn put_manifest(
        &self,
        tag: &str,
        media_type: &str,
        bytes: &[u8],
        notices: &Notices,
    ) -> anyhow::Result<Option<String>> {
        let what = format!("{}: manifest {tag}", self.repo.display());
        resume::retry(&what, resume::MAX_TRIES, notices, || self.repo.put_manifest(tag, media_type, bytes))
            .await
            .map_err(|e| anyhow!("{what}: {e}"))
    }
}
