//! A config step: a new image with the same layers and the step's config, or for a
//! WORKDIR the image lacks, a layer holding just that directory.

use layers_store::oci::History;

use super::{Executor, State};
use crate::builder::context;
use crate::builder::frontend::path::clean;
use crate::builder::plan::Step;

/// Records the step's config (already applied to `state`) as the stage's next image.
pub fn run(x: &Executor, state: &mut State, step: &Step, mkdir: Option<&str>) -> anyhow::Result<()> {
    // WORKDIR makes its directory when the image lacks it (as BuildKit does).
    let missing = match mkdir {
        Some(d) => !x.visible(state, d)?,
        None => false,
    };
    if let Some(dir) = mkdir.filter(|_| missing) {
        let rel = clean(dir).unwrap_or_default();
        return x.in_step_container(state, step, |c| x.write_root(c, false, |root| context::make_dir(root, &rel)));
    }
    state.config.history.push(History {
        created: Some(x.now()),
        created_by: Some(step.text.clone()),
        comment: Some("layers build".into()),
        empty_layer: true,
    });
    state.config.created = Some(x.now());
    let row = x.store.derive_image(state.image.as_ref().map(|i| &i.manifest), &state.config, &[])?;
    x.store.cache_step(&step.key, &row.manifest)?;
    state.image = Some(row);
    Ok(())
}
