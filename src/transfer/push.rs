//! Pushing: an image from the store to a registry. Blobs the registry has are
//! not sent again (HEAD first); a blob another repository of the same registry holds
//! (one the image was pulled from or pushed to) is mounted from there; the others are
//! uploaded, whole or in chunks, up to four at a time, each retried from its start on
//! transient failures. The manifest goes last, byte for byte as stored, so the image
//! keeps its digest.

use anyhow::{anyhow, bail, Context};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use layers_store::images::oci::{Descriptor, Manifest, MAX_JSON};
use layers_store::meta::ImageRow;
use layers_store::{Digest, Reference, ShortNames, Store};

use super::remote::{Remote, Sent};
use super::Transfers;
use crate::registry::config::RegistriesConfig;
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

/// Pushes `image` to `dest` (a tagged reference); returns the manifest digest.
/// `also_from`: other repositories of `dest`'s registry known to hold its blobs (a
/// build cache's), to mount them from.
pub fn push_image(
    transfers: &Transfers,
    store: Store,
    image: &ImageRow,
    (dest, also_from): (&Reference, &[String]),
    registries: &RegistriesConfig,
    o: &PushOptions,
) -> anyhow::Result<Digest> {
    let manifest_bytes = store.content().read_blob(&image.manifest, MAX_JSON)?;
    let manifest: Manifest =
        serde_json::from_slice(&manifest_bytes).with_context(|| format!("read manifest {}", image.manifest))?;
    // Other repositories of the same registry that hold this image: blobs can be mounted from there.
    let mut siblings: Vec<String> = image
        .tags
        .iter()
        .filter_map(|t| Reference::parse(t, ShortNames::DockerHub).ok())
        .filter(|r| r.registry == dest.registry && r.repository != dest.repository)
        .map(|r| r.repository)
        .collect();
    for r in also_from {
        if *r != dest.repository && !siblings.contains(r) {
            siblings.push(r.clone());
        }
    }
    let remote = Remote::open(dest, registries, o.tls_verify, &siblings)?;
    let mut blobs: Vec<Descriptor> = vec![manifest.config.clone()];
    blobs.extend(manifest.layers.iter().cloned());
    let blobs = blobs.into_iter().map(|d| (store.content().blob_path(&d.digest), d)).collect();
    let tag = dest.tag.clone().unwrap_or_else(|| "latest".into());
    push_parts(transfers, &remote, &siblings, blobs, &tag, (&image.media_type, &manifest_bytes), o)?;
    Ok(image.manifest)
}

/// Pushes `blobs` (each read from its path when the registry lacks it), then the
/// manifest under `tag`, checking the digest the registry reports.
pub fn push_parts(
    transfers: &Transfers,
    remote: &Remote,
    siblings: &[String],
    mut blobs: Vec<(std::path::PathBuf, Descriptor)>,
    tag: &str,
    (media_type, manifest_bytes): (&str, &[u8]),
    o: &PushOptions,
) -> anyhow::Result<Vec<(Digest, Sent)>> {
    blobs.dedup_by(|a, b| a.1.digest == b.1.digest);
    let digest = Digest::of(manifest_bytes);
    let events = super::progress::Progress::lines(o.quiet);
    let notices = events.notices();
    let chunk = o.chunk_size;
    let pushed = transfers.block_on(async {
        let sent = stream::iter(blobs.into_iter().map(|(path, desc)| {
            let events = events.clone();
            async move {
                let what = format!("{}: blob {}", remote.display(), desc.digest.short());
                let outcome = resume::retry(&what, resume::MAX_TRIES, &events.notices(), || {
                    remote.push_blob(&path, &desc, siblings, chunk)
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
        let claimed = remote.put_manifest(tag, media_type, manifest_bytes, &notices).await?;
        if let Some(c) = claimed.filter(|c| *c != digest.to_string()) {
            bail!("{}: manifest {tag}: the registry reports digest {c}, not {digest}", remote.display());
        }
        anyhow::Ok(sent)
    })?;
    events.finish();
    let sent = pushed?;
    events.say(format!("Pushed {}:{tag}@{digest}", remote.display()));
    Ok(sent)
}
