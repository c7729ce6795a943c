//! `layers ps`: containers as Docker lists them (its columns, `--filter`, `--format`,
//! `--no-trunc`, `-q`, `-s`), plus the containers `mount` holds open.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use layers_store::{ContainerRow, Store};

use super::options::label_matches;
use crate::format;
use crate::run::container::config::Source;
use crate::run::container::{ContainerConfig, ContainerDir};
use crate::run::state::Status;
use crate::template;

// Arguments of `layers ps`.
#[derive(Args)]
pub struct PsArgs {
    /// Show every container, not only running or mounted ones.
    #[arg(short, long)]
    all: bool,
    /// Show only IDs.
    #[arg(short, long)]
    quiet: bool,
    /// Full IDs and commands.
    #[arg(long)]
    no_trunc: bool,
    /// Show each container's size (its writable layer).
    #[arg(short, long)]
    size: bool,
    /// Only containers matching: status=, name=, id=, ancestor=, label=KEY[=VALUE], exited=CODE.
    #[arg(short, long, value_name = "FILTER")]
    filter: Vec<String>,
    /// `table` (default), `json`, or a Go template (`{{.ID}} {{.Names}}`, `table {{.ID}}\t{{.Status}}`).
    #[arg(long)]
    format: Option<String>,
}

/// One container as `ps` sees it.
struct Seen {
    c: ContainerRow,
    config: ContainerConfig,
    status: Status,
    mounted: bool,
}

impl Seen {
    fn status(&self) -> String {
        let when = |t: i64| format::ago_secs(t);
        match &self.status {
            Status::Running(r) => format!("Up {}", format::duration(layers_store::meta::now() - r.started)),
            Status::Paused(r) => format!("Up {} (Paused)", format::duration(layers_store::meta::now() - r.started)),
            Status::Restarting(e) => format!("Restarting ({}) {}", e.code, when(e.finished)),
            Status::Exited(e) => format!("Exited ({}) {}", e.code, when(e.finished)),
            Status::Created => "Created".into(),
        }
    }
}

/// The header of each field in a `table` template.
const HEADERS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Ports", "PORTS"),
    ("State", "STATE"),
    ("Status", "STATUS"),
    ("Size", "SIZE"),
    ("LocalVolumes", "LOCAL VOLUMES"),
    ("Names", "NAMES"),
    ("Labels", "LABELS"),
    ("Mounts", "MOUNTS"),
    ("Networks", "NETWORKS"),
    ("Pid", "PID"),
    ("Mounted", "MOUNTED"),
];

pub fn ps(store: &Store, a: &PsArgs) -> anyhow::Result<ExitCode> {
    let filters = Filters::parse(store, &a.filter)?;
    let mut seen = Vec::new();
    // Newest first, as Docker lists them.
    let mut containers = store.snapshots().list()?;
    containers.sort_by_key(|c| std::cmp::Reverse(c.created));
    for c in containers {
        let s = Seen {
            // A listing shows every container: one whose config cannot be read shows its image's defaults.
            config: ContainerConfig::load(&ContainerDir::of(store, &c.id), &c.image.to_string())
                .unwrap_or_else(|_| ContainerConfig::of_image(&c.image.to_string())),
            status: Status::of(store, &c),
            mounted: store.snapshots().is_mounted(&c),
            c,
        };
        // As Docker: running ones unless -a (and here, mounted ones), or what a filter names.
        let up = matches!(s.status, Status::Running(_) | Status::Paused(_) | Status::Restarting(_));
        let shown = a.all || up || s.mounted || !a.filter.is_empty();
        if shown && filters.matches(&s) {
            seen.push(s);
        }
    }
    if a.quiet {
        for s in &seen {
            outln!("{}", if a.no_trunc { s.c.id.as_str() } else { s.c.short_id() });
        }
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<serde_json::Value> = seen.iter().map(|s| row(store, s, !a.no_trunc, a.size)).collect();
    let size = if a.size { "\t{{.Size}}" } else { "" };
    let columns = format!("{{{{.ID}}}}\t{{{{.Image}}}}\t{{{{.Command}}}}\t{{{{.RunningFor}}}}\t{{{{.Status}}}}\t{{{{.Ports}}}}\t{{{{.Names}}}}{size}");
    outln!("{}", template::listing(a.format.as_deref(), &columns, HEADERS, &rows)?);
    Ok(ExitCode::SUCCESS)
}

/// The fields a `--format` template can use, as Docker names them.
fn row(store: &Store, s: &Seen, trunc: bool, size: bool) -> serde_json::Value {
    let mut command = command_line(store, s);
    if trunc && command.chars().count() > 20 {
        command = format!("{}…", command.chars().take(19).collect::<String>());
    }
    let labels = &s.config.labels;
    let labels_text = labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
    // Docker names a mount by its volume, else by its host path.
    let mounts: Vec<String> = s
        .config
        .mounts
        .iter()
        .filter_map(|m| match &m.source {
            Source::Volume { name, .. } => name.clone(),
            Source::Host { path, .. } => Some(path.display().to_string()),
            Source::Tmpfs { .. } => None,
        })
        .collect();
    serde_json::json!({
        "ID": if trunc { s.c.short_id().to_string() } else { s.c.id.clone() },
        "Image": image_name(store, s),
        "Command": format!("\"{command}\""),
        "CreatedAt": format::go_time(s.c.created),
        "RunningFor": format::ago_secs(s.c.created),
        "Ports": s.status.running().map(|r| r.ports.iter().map(|p| p.column()).collect::<Vec<_>>().join(", ")).unwrap_or_default(),
        "State": s.status.name(),
        "Status": s.status(),
        "Size": if size { size_column(store, s) } else { "0B".to_string() },
        "LocalVolumes": s.config.mounts.iter().filter(|m| matches!(m.source, Source::Volume { .. })).count().to_string(),
        "Names": s.c.name,
        "Labels": labels_text,
        // Docker's `.Label "KEY"` (see template's module doc).
        "Label()": labels,
        "Mounts": mounts.join(","),
        "Networks": s.config.network.name(),
        "Pid": s.status.running().map_or(0, |r| r.pid),
        "Mounted": s.mounted,
    })
}

/// Docker's `-s` column: the writable layer's size, and with the image's
/// (`12.3kB (virtual 4.27MB)`).
fn size_column(store: &Store, s: &Seen) -> String {
    let rw = store.snapshots().upper_size(&s.c);
    match store.images().get(&s.c.image) {
        Ok(Some(img)) => format!("{} (virtual {})", format::size(rw), format::size(rw + img.size)),
        _ => format::size(rw),
    }
}

/// The image as the container was created from it: its name then, else its ID.
fn image_name(store: &Store, s: &Seen) -> String {
    // A container `mount` made has no options kept: its image is known by digest only.
    let by_name = !s.config.image.is_empty() && !s.config.image.starts_with("sha256:");
    let named = by_name && store.images().resolve(&s.config.image).is_ok_and(|i| i.manifest == s.c.image);
    if named {
        return s.config.image.clone();
    }
    super::images::shown_name_of(store, &s.c.image)
}

/// What it runs: its entrypoint and command (the image's, or those it was given).
fn command_line(store: &Store, s: &Seen) -> String {
    let config = store
        .images()
        .get(&s.c.image)
        .ok()
        .flatten()
        .and_then(|i| store.images().config(&i).ok())
        .and_then(|c| c.config)
        .unwrap_or_default();
    crate::run::image_process::argv(&config, &s.config.overrides(s.c.short_id())).join(" ")
}

/// `--filter`s: the same key given twice matches either value, different keys all.
struct Filters {
    by_key: BTreeMap<String, Vec<String>>,
    /// `ancestor=` images, as manifest digests.
    ancestors: Vec<layers_store::Digest>,
}

impl Filters {
    fn parse(store: &Store, filters: &[String]) -> anyhow::Result<Filters> {
        let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut ancestors = Vec::new();
        for f in filters {
            let Some((k, v)) = f.split_once('=') else { bail!("--filter {f}: want KEY=VALUE") };
            match k {
                "status" => {
                    const STATES: [&str; 7] =
                        ["created", "restarting", "running", "removing", "paused", "exited", "dead"];
                    if !STATES.contains(&v) {
                        bail!("--filter {f}: invalid status (one of {})", STATES.join(", "));
                    }
                }
                "ancestor" => {
                    ancestors.push(store.images().resolve(v).with_context(|| format!("--filter {f}"))?.manifest);
                }
                "exited" => {
                    v.parse::<u8>().with_context(|| format!("--filter {f}: an exit code"))?;
                }
                "name" | "id" | "label" => {}
                _ => bail!("--filter {f}: invalid filter {k:?} (status, name, id, ancestor, label, exited)"),
            }
            by_key.entry(k.to_string()).or_default().push(v.to_string());
        }
        Ok(Filters { by_key, ancestors })
    }

    fn matches(&self, s: &Seen) -> bool {
        let labels = &s.config.labels;
        self.by_key.iter().all(|(k, values)| {
            values.iter().any(|v| match k.as_str() {
                "status" => s.status.name() == v,
                "name" => s.c.name.contains(v.as_str()),
                "id" => s.c.id.starts_with(v.as_str()),
                "ancestor" => self.ancestors.contains(&s.c.image),
                "label" => label_matches(labels, v),
                "exited" => s.status.exited().is_some_and(|e| e.code.to_string() == *v),
                _ => false,
            })
        })
    }
}
