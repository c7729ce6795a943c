//! A config step: a new image with the same layers and the step's config, or for a
//! WORKDIR the image lacks, a layer holding just that directory.

use layers_store::images::oci::History;

use super::{Executor, State};
use crate::builder::frontend::path::clean;
use crate::builder::plan::Step;

/// Records the step's config (already applied to `state`) as the stage's next image;
/// without `record`, only its history entry (a later step of the run records them).
pub fn run(x: &Executor, state: &mut State, step: &Step, mkdir: Option<&str>, record: bool) -> anyhow::Result<()> {
    // WORKDIR makes its directory when the image lacks it (as BuildKit does).
    let missing = match mkdir {
        // The root is always there (`WORKDIR /` made a layer of nothing each time).
        Some(d) if clean(d).is_some_and(|p| p.as_os_str().is_empty()) => false,
        Some(d) => !x.visible(state, d)?,
        None => false,
    };
    if let Some(dir) = mkdir.filter(|_| missing) {
        let rel = clean(dir).unwrap_or_default();
        return x.in_step_container(state, step, |c| {
            x.write_root(c, false, |root| layers_store::fsroot::make_dir(root, &rel).map_err(Into::into))
        });
    }
    state.config.history.push(History {
        created: Some(x.now()),
        created_by: Some(step.text.clone()),
        comment: Some("layers build".into()),
        empty_layer: true,
    });
    if !record {
        return Ok(());
    }
    state.config.created = Some(x.now());
    let row = x.store.images().derive(state.image.as_ref().map(|i| &i.manifest), &state.config, &[])?;
    x.store.build_cache().record(&step.key, &row.manifest)?;
    state.image = Some(row);
    Ok(())
}
