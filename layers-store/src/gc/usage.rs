//! The images and the build cache as Docker's `system df` counts them: how many, how
//! many in use, their unpacked layers' bytes (each layer once, however many images
//! share it) and what removing the unused ones would free.

use std::collections::{HashMap, HashSet};

use super::Gc;
use crate::content::digest::{DiffId, Digest};
use crate::error::Result;
use crate::images::catalog::ImageUse;

/// What a usage listing reads of the store, once: each image's use and layers, the
/// build steps that made images, each layer's unpacked size, and how many containers
/// are based on each image.
pub(super) struct UsageInputs {
    pub uses: Vec<ImageUse>,
    /// Manifest → the cache keys of the steps that made it.
    pub steps: HashMap<Digest, Vec<Digest>>,
    pub sizes: HashMap<DiffId, u64>,
    /// Manifest → containers based on it.
    pub containers: HashMap<Digest, u64>,
}

/// One row of Docker's `system df`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindUsage {
    /// How many.
    pub total: u64,
    /// How many are in use.
    pub active: u64,
    /// Bytes.
    pub size: u64,
    /// Bytes removing the unused ones would free.
    pub reclaimable: u64,
}

/// The store's content by Docker's kinds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContentUsage {
    /// Images (named, or unnamed and not only a build step's): in use when a
    /// container is based on one; their unpacked layers.
    pub images: KindUsage,
    /// Build steps recorded: the layers only step images hold, and the
    /// `RUN --mount=type=cache` dirs; none in use outside a build, all reclaimable.
    pub build_cache: KindUsage,
}

impl Gc<'_> {
    /// Reads what [`UsageInputs`] holds.
    pub(super) fn usage_inputs(&self) -> Result<UsageInputs> {
        let (uses, steps, sizes) = {
            let md = self.store.md();
            let sizes: HashMap<DiffId, u64> =
                md.layers()?.into_iter().map(|l| (l.diff_id, l.uncompressed_size)).collect();
            (md.image_uses()?, md.step_keys()?, sizes)
        };
        let mut containers: HashMap<Digest, u64> = HashMap::new();
        for c in self.store.snapshots().list()? {
            *containers.entry(c.image).or_default() += 1;
        }
        Ok(UsageInputs { uses, steps, sizes, containers })
    }

    /// Images and the build cache, counted as Docker's `system df` counts them.
    pub fn content_usage(&self) -> Result<ContentUsage> {
        let UsageInputs { uses, steps, sizes, containers } = self.usage_inputs()?;
        let based_on = |m: &Digest| containers.contains_key(m);
        let bytes = |layers: &HashSet<DiffId>| layers.iter().map(|l| sizes.get(l).copied().unwrap_or(0)).sum::<u64>();
        let mut images = KindUsage::default();
        let (mut listed, mut active, mut step_only) = (HashSet::new(), HashSet::new(), HashSet::new());
        for u in &uses {
            if steps.contains_key(&u.manifest) && !u.tagged && !based_on(&u.manifest) {
                step_only.extend(u.layers.iter().copied());
                continue;
            }
            images.total += 1;
            listed.extend(u.layers.iter().copied());
            if based_on(&u.manifest) {
                images.active += 1;
                active.extend(u.layers.iter().copied());
            }
        }
        images.size = bytes(&listed);
        images.reclaimable = images.size - bytes(&active);
        let only_cache: HashSet<DiffId> = step_only.difference(&listed).copied().collect();
        let mounts = super::maintenance::contents_usage(&self.store.root().join("cache-mounts"));
        let size = bytes(&only_cache) + mounts;
        let build_cache =
            KindUsage { total: steps.values().map(|k| k.len() as u64).sum(), active: 0, size, reclaimable: size };
        Ok(ContentUsage { images, build_cache })
    }
}
