//! `layers volume create|ls|inspect|rm|prune`: named volumes, as Docker's local driver.

use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, Subcommand};
use layers_store::volumes::VolumeRow;
use layers_store::Store;

use crate::template;

/// `layers volume …`.
#[derive(Subcommand)]
pub enum VolumeCommand {
    /// Make a volume (a random name when none is given).
    Create(CreateArgs),
    /// List volumes.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Show volumes as JSON.
    Inspect(InspectArgs),
    /// Remove volumes (not while a container mounts them).
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove anonymous volumes no container mounts (`-a`: every unused volume).
    Prune(PruneArgs),
}

// Arguments of `layers volume create`.
#[derive(Args)]
pub struct CreateArgs {
    /// A label: KEY=VALUE.
    #[arg(short, long)]
    label: Vec<String>,
    /// `local`, the only driver.
    #[arg(short, long, default_value = "local")]
    driver: String,
    /// Name.
    name: Option<String>,
}

// Arguments of `layers volume ls`.
#[derive(Args)]
pub struct LsArgs {
    /// Only names.
    #[arg(short, long)]
    quiet: bool,
    /// Only volumes matching: dangling=true|false, name=SUBSTRING, label=KEY[=VALUE].
    #[arg(short, long)]
    filter: Vec<String>,
    /// `table`, `json`, or a Go template (`{{.Name}}`).
    #[arg(long)]
    format: Option<String>,
}

// Arguments of `layers volume inspect`.
#[derive(Args)]
pub struct InspectArgs {
    /// A Go template per volume, or `json`.
    #[arg(short, long)]
    format: Option<String>,
    /// Volumes.
    #[arg(required = true)]
    names: Vec<String>,
}

// Arguments of `layers volume rm`.
#[derive(Args)]
pub struct RmArgs {
    /// A volume that does not exist is not an error (a volume in use is still refused,
    /// as by Docker: its containers go first).
    #[arg(short, long)]
    force: bool,
    /// Volumes.
    #[arg(required = true)]
    names: Vec<String>,
}

// Arguments of `layers volume prune`.
#[derive(Args)]
pub struct PruneArgs {
    /// Every unused volume, named ones too.
    #[arg(short, long)]
    all: bool,
    /// Do not ask.
    #[arg(short, long)]
    force: bool,
}

/// A volume's `volume ls` row: its inspect document with `Labels` as Docker's listing
/// prints them (`k=v,…`) and its `.Label "KEY"` method.
fn listed(mut doc: serde_json::Value) -> serde_json::Value {
    let labels = doc["Labels"].take();
    let text = labels.as_object().into_iter().flatten().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()));
    doc["Labels"] = text.collect::<Vec<_>>().join(",").into();
    doc["Label()"] = labels;
    doc
}

/// A volume as `docker volume inspect` shows it.
fn json(store: &Store, v: &VolumeRow) -> serde_json::Value {
    let mut labels = v.labels.clone();
    if v.anonymous {
        labels.insert("com.docker.volume.anonymous".into(), String::new());
    }
    serde_json::json!({
        "CreatedAt": layers_store::images::oci::rfc3339(v.created),
        "Driver": "local",
        "Labels": labels,
        "Mountpoint": store.volumes().path(&v.name),
        "Name": v.name,
        "Options": {},
        "Scope": "local",
    })
}

pub fn volume(store: &Store, c: &VolumeCommand) -> anyhow::Result<ExitCode> {
    match c {
        VolumeCommand::Create(a) => {
            if a.driver != "local" {
                bail!("volume create --driver {}: only the local driver is supported", a.driver);
            }
            let (v, _) = store.volumes().create(a.name.as_deref(), &super::options::parse_labels(&a.label)?)?;
            outln!("{}", v.name);
        }
        VolumeCommand::Ls(a) => {
            let mut rows = Vec::new();
            for v in store.volumes().list()? {
                if matches(store, &v, &a.filter)? {
                    rows.push(listed(json(store, &v)));
                }
            }
            if a.quiet {
                for r in &rows {
                    outln!("{}", r["Name"].as_str().unwrap_or_default());
                }
                return Ok(ExitCode::SUCCESS);
            }
            let headers =
                [("Driver", "DRIVER"), ("Name", "VOLUME NAME"), ("Mountpoint", "MOUNTPOINT"), ("Scope", "SCOPE")];
            outln!("{}", template::listing(a.format.as_deref(), "{{.Driver}}\t{{.Name}}", &headers, &rows)?);
        }
        VolumeCommand::Inspect(a) => {
            let mut out = Vec::new();
            let code = super::each(&a.names, |n| {
                let v = store.volumes().get(n)?.ok_or_else(|| anyhow::anyhow!("volume inspect {n}: no such volume"))?;
                out.push(json(store, &v));
                Ok(())
            });
            outln!("{}", template::inspected(a.format.as_deref(), &out)?);
            return Ok(code);
        }
        VolumeCommand::Rm(a) => {
            return Ok(super::each(&a.names, |n| {
                match store.volumes().remove(n) {
                    Err(e) if a.force && e.kind() == layers_store::ErrorKind::NotFound => {}
                    other => other?,
                }
                outln!("{n}");
                Ok(())
            }))
        }
        VolumeCommand::Prune(a) => {
            let warning = if a.all {
                "This will remove all local volumes not used by at least one container."
            } else {
                "This will remove anonymous local volumes not used by at least one container."
            };
            if !a.force && !super::ask::confirm(warning)? {
                return Ok(ExitCode::SUCCESS);
            }
            let (removed, freed) = prune_unused(store, a.all)?;
            super::ask::deleted("Deleted Volumes", &removed);
            outln!("Total reclaimed space: {}", crate::format::size(freed));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn matches(store: &Store, v: &VolumeRow, filters: &[String]) -> anyhow::Result<bool> {
    for f in filters {
        let Some((k, val)) = f.split_once('=') else { bail!("--filter {f}: want KEY=VALUE") };
        let ok = match k {
            "dangling" => {
                let want = match val {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => bail!("--filter {f}: dangling is true or false"),
                };
                store.volumes().users(&v.name)?.is_empty() == want
            }
            "name" => v.name.contains(val),
            "label" => super::options::label_matches(&v.labels, val),
            _ => bail!("--filter {f}: invalid filter {k:?} (dangling, name, label)"),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Removes volumes no container mounts (`all`: named ones too, else anonymous ones
/// only, as Docker 23+): their names and the bytes freed.
pub fn prune_unused(store: &Store, all: bool) -> anyhow::Result<(Vec<String>, u64)> {
    let mut removed = Vec::new();
    let mut freed = 0;
    for v in store.volumes().list()? {
        if (all || v.anonymous) && store.volumes().users(&v.name)?.is_empty() {
            let size = store.volumes().size(&v.name);
            store.volumes().remove(&v.name)?;
            freed += size;
            removed.push(v.name);
        }
    }
    Ok((removed, freed))
}
