//! `layers history`: how an image was made, newest step first, as Docker prints it.

use std::process::ExitCode;

use clap::Args;
use layers_store::Store;

use crate::format;
use crate::template;

// Arguments of `layers history`.
#[derive(Args)]
pub struct HistoryArgs {
    /// Full IDs and commands.
    #[arg(long)]
    no_trunc: bool,
    /// Only the image ID.
    #[arg(short, long)]
    quiet: bool,
    /// Sizes in bytes, times in RFC 3339 (`-H=false`).
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set)]
    human: bool,
    /// `table` (default), `json`, or a Go template (`{{.CreatedBy}}`).
    #[arg(long)]
    format: Option<String>,
    /// Image name or ID.
    image: String,
}

const HEADERS: &[(&str, &str)] = &[
    ("ID", "IMAGE"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("CreatedBy", "CREATED BY"),
    ("Size", "SIZE"),
    ("Comment", "COMMENT"),
];

pub fn history(store: &Store, a: &HistoryArgs) -> anyhow::Result<ExitCode> {
    let img = store.images().resolve(&a.image)?;
    let config = store.images().config(&img)?;
    let id = if a.no_trunc { img.config.to_string() } else { img.config.short() };
    if a.quiet {
        outln!("{id}");
        return Ok(ExitCode::SUCCESS);
    }
    // Steps that made a layer take the layers in order; the others made none.
    let mut diff_ids = config.rootfs.diff_ids.iter();
    let mut rows = Vec::new();
    let history: Vec<layers_store::images::oci::History> = if config.history.is_empty() {
        // An image without history: one step per layer, made by nobody knows what.
        config.rootfs.diff_ids.iter().map(|_| layers_store::images::oci::History::default()).collect()
    } else {
        config.history.clone()
    };
    for h in &history {
        let size = if h.empty_layer {
            0
        } else {
            diff_ids.next().and_then(|d| store.layers().info(d).ok().flatten()).map_or(0, |l| l.uncompressed_size)
        };
        let mut created_by = h.created_by.clone().unwrap_or_default();
        if !a.no_trunc && created_by.chars().count() > 45 {
            created_by = format!("{}…", created_by.chars().take(44).collect::<String>());
        }
        let created = h.created.clone().unwrap_or_default();
        rows.push(serde_json::json!({
            "ID": "<missing>",
            "CreatedSince": if a.human { format::ago(&created) } else { created.clone() },
            "CreatedAt": created,
            "CreatedBy": created_by,
            "Size": if a.human { format::size(size) } else { size.to_string() },
            "Comment": h.comment.clone().unwrap_or_default(),
        }));
    }
    rows.reverse();
    if let Some(top) = rows.first_mut() {
        top["ID"] = id.into();
    }
    let columns = "{{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}";
    outln!("{}", template::listing(a.format.as_deref(), columns, HEADERS, &rows)?);
    Ok(ExitCode::SUCCESS)
}
