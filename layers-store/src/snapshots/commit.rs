//! Committing a container: its upper dir becomes a layer and its image plus that
//! layer a new image; a stopped container's upper dir moves into the store as the
//! layer itself, a running one's is written out as a tar and unpacked from it.

use super::containers::{ContainerRow, Snapshots};
use crate::content::compression::Compression;
use crate::content::digest::HashingWriter;
use crate::content::digest::{DiffId, Digest};
use crate::error::{Error, ErrorKind, Result};
use crate::images::oci::{Descriptor, History, ImageConfig};
use crate::images::record::ImageBlobs;
use crate::layer::diff;
use crate::meta::{ImageRow, LayerRow};
use crate::store::LayerExpect;
use rusqlite::params;
use std::fs;

/// How `Snapshots::commit` makes the new image.
#[derive(Debug, Clone)]
pub struct CommitOptions {
    /// Compression of the new layer blob.
    pub compression: Compression,
    /// The history entry's `created_by`.
    pub created_by: String,
    /// The history entry's comment.
    pub comment: Option<String>,
    /// The config's `author`.
    pub author: Option<String>,
    /// When, RFC 3339 (config `created` and the history entry).
    pub created: String,
    /// Full names to point at the new image.
    pub tags: Vec<String>,
    /// No file in the layer newer than this (seconds since the epoch; reproducible builds).
    pub mtime_clamp: Option<i64>,
    /// The config the new image gets (its `rootfs`, `history` and `created` are filled
    /// in); `None`: the container's image's config.
    pub config: Option<ImageConfig>,
    /// What becomes of the upper dir.
    pub upper: UpperDir,
}

/// How a commit takes the container's upper dir.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpperDir {
    /// Nothing writes to it (the container is stopped): the dir itself becomes the
    /// layer (no copy), and the container goes on from the new image with an empty one.
    Move,
    /// A process may be writing to it (a paused, running container): the layer is
    /// unpacked from the tar just written, so no later write reaches it; the
    /// container keeps its image and its changes, as after `docker commit`.
    Copy,
}

/// What a commit made.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The new image's manifest digest.
    pub manifest: Digest,
    /// Its config digest (the image ID).
    pub config: Digest,
    /// The new layer.
    pub diff_id: DiffId,
    /// The new layer's blob.
    pub blob: Descriptor,
    /// Entries in the new layer.
    pub entries: u64,
}

impl Snapshots<'_> {
    /// Commits a container's upper dir as a new layer on its image, and the image
    /// plus that layer as a new image. With [`UpperDir::Move`], the upper dir itself
    /// becomes the layer dir (no re-extract) and the container goes on from the new
    /// image with an empty upper dir, so its view does not change (refused while it is
    /// mounted); with [`UpperDir::Copy`], no layer dir is ever a live upper dir.
    pub fn commit(&self, c: &ContainerRow, opts: &CommitOptions) -> Result<Committed> {
        if opts.upper == UpperDir::Move && self.is_mounted(c) {
            return Err(Error::new(
                ErrorKind::InUse,
                "commit container",
                &c.name,
                format!("mounted at {}; unmount it first", self.merged_dir(c).display()),
            ));
        }
        let spec = self.mount_spec(c)?;
        let Some((upper, work)) = spec.upper else {
            return Err(Error::new(ErrorKind::Corrupt, "commit container", &c.name, "no upper dir"));
        };
        let parent = self.store.images().get(&c.image)?.ok_or_else(|| {
            Error::new(ErrorKind::NotFound, "commit container", &c.name, format!("its image {} is gone", c.image))
        })?;

        let mut ingest = self.store.content().ingest()?;
        let blob_path = ingest.staged_path("blob");
        let file = fs::File::create(&blob_path).map_err(|e| Error::io("stage", blob_path.display(), e))?;
        let io_err = |e: std::io::Error| Error::io("write layer blob", c.name.as_str(), e);
        let mut enc = opts
            .compression
            .encoder(std::io::BufWriter::with_capacity(128 * 1024, HashingWriter::new(file)))
            .map_err(io_err)?;
        // Moved, the upper dir is the layer: cleaned and listed as the tar reads it.
        let mut listing = crate::layer::written::Written::default();
        let moved = (opts.upper == UpperDir::Move).then_some(&mut listing);
        let tar = diff::write_tar(&upper, &mut enc, opts.mtime_clamp, moved)?;
        let hashed = enc.finish().map_err(io_err)?.into_inner().map_err(|e| io_err(e.into_error()))?;
        let blob = Descriptor {
            media_type: opts.compression.oci_media_type().to_string(),
            digest: hashed.hasher.finish(),
            size: hashed.size,
            urls: None,
            annotations: None,
        };

        let mut config: ImageConfig = match &opts.config {
            Some(c) => c.clone(),
            None => self.store.images().config(&parent)?,
        };
        config.rootfs.diff_ids.push(tar.diff_id);
        config.created = Some(opts.created.clone());
        config.history.push(History {
            created: Some(opts.created.clone()),
            created_by: Some(opts.created_by.clone()),
            comment: opts.comment.clone(),
            empty_layer: false,
        });
        if let Some(a) = &opts.author {
            config.extra.insert("author".into(), serde_json::Value::String(a.clone()));
        }
        let mut layers = self.store.images().manifest(&parent)?.layers;
        layers.push(blob.clone());
        let image = ImageBlobs::New { config: &config, layers };
        let made = |row: ImageRow| Committed {
            manifest: row.manifest,
            config: row.config,
            diff_id: tar.diff_id,
            blob: blob.clone(),
            entries: tar.entries,
        };
        if opts.upper == UpperDir::Copy {
            // The blob just written is the layer's only source: unpacked into a new dir.
            let expect = LayerExpect { blob: Some(blob.digest), size: Some(blob.size), diff_id: Some(tar.diff_id) };
            self.store.unpack_staged_blob(&mut ingest, blob_path, &expect)?;
            return self.store.images().record(ingest, image, &opts.tags).map(made);
        }
        ingest.add_blob(blob.clone(), blob_path);
        let row = LayerRow {
            diff_id: tar.diff_id,
            blob: blob.digest,
            compressed_size: blob.size,
            uncompressed_size: tar.size,
            file_count: tar.entries,
        };
        ingest.add_layer(row, upper.clone(), listing)?;

        // Recorded before the upper dir moves: a crash from here on is undone by the next sweep.
        self.set_committing(c, Some(tar.diff_id))?;
        let committed = self.store.images().record_with(ingest, image, &opts.tags, None, &|tx, new_image| {
            let new_image = new_image.to_string();
            tx.execute(
                "UPDATE containers SET manifest_digest = ?1, committing = NULL WHERE id = ?2",
                params![new_image, c.id],
            )?;
            crate::images::catalog::move_lease_tx(tx, &c.lease(), &new_image)?;
            Ok(())
        });
        let row = match committed {
            Ok(row) => row,
            Err(e) => {
                if upper.exists() {
                    let _ = self.set_committing(c, None);
                }
                return Err(e);
            }
        };
        // The layer existed already (same changes committed before): the upper dir was not moved.
        if upper.exists() {
            self.store.discard(&upper)?;
        }
        self.store.discard(&work)?;
        for d in [&upper, &work] {
            fs::create_dir(d).map_err(|e| Error::io("commit container", d.display(), e))?;
        }
        Ok(made(row))
    }

    pub(crate) fn set_committing(&self, c: &ContainerRow, layer: Option<DiffId>) -> Result<()> {
        self.store.md().write("record commit", |tx| {
            tx.execute(
                "UPDATE containers SET committing = ?1 WHERE id = ?2",
                params![layer.map(|l| l.to_string()), c.id],
            )
            .map(|_| ())
        })
    }
}
