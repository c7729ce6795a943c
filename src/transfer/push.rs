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
use crate::registry::client::RequestError;
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
    // A remote image's layers are in its source repository: the one mount tried is from there.
    let source = image.remote.as_deref().and_then(|r| Reference::parse(r, ShortNames::DockerHub).ok());
    if let Some(r) = source.filter(|r| r.registry == dest.registry && r.repository != dest.repository) {
        siblings.retain(|s| *s != r.repository);
        siblings.insert(0, r.repository);
    }
    let remote = Remote::open(dest, registries, o.tls_verify, &siblings)?;
    let mut blobs: Vec<Descriptor> = vec![manifest.config.clone()];
    blobs.extend(manifest.layers.iter().cloned());
    let blobs = blobs.into_iter().map(|d| (store.content().blob_path(&d.digest), d)).collect();
    let tag = dest.tag.clone().unwrap_or_else(|| "latest".into());
    push_parts(transfers, &remote, &siblings, blobs, &tag, (&image.media_type, &manifest_bytes), o)?;
    Ok(image.manifest)
}

/// [`push_image`] for any stored image: layers of a remote image (`build --push`'s)
/// that the registry neither has nor mounts from where they are are fetched first,
/// with a line saying so, and the push is made again.
pub fn push_stored(
    puller: &super::obtain::Puller,
    store: &Store,
    image: &ImageRow,
    (dest, also_from): (&Reference, &[String]),
    o: &PushOptions,
) -> anyhow::Result<Digest> {
    let push = || push_image(puller.transfers, store.reopen()?, image, (dest, also_from), puller.registries, o);
    match push() {
        Err(e) if image.remote.is_some() && not_here(&e) => {
            eprintln!(
                "push {dest}: {} did not mount the remote image's layers from {}: fetching them to upload",
                dest.registry,
                image.remote.as_deref().unwrap_or_default()
            );
            super::obtain::fetched(store, puller, image)?;
            push()
        }
        r => r,
    }
}

/// Whether a push failed for a blob that is neither in the registry nor in the store.
fn not_here(e: &anyhow::Error) -> bool {
    e.chain().any(|c| matches!(c.downcast_ref::<RequestError>(), Some(RequestError::NotHere(_))))
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
                .map_err(|e| match e {
                    // Kept typed: `push_stored` fetches the layer and pushes again.
                    RequestError::NotHere(_) => anyhow::Error::new(e).context(what.clone()),
                    e => anyhow!("{what}: {e}"),
                })?;
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
