//! `layers network ls|inspect`: the networks a container can have here, `none` (a
//! network namespace of its own with only `lo`, the default), `host`, and `pasta` and
//! `slirp4netns` (a namespace of its own served by that program, as rootless Podman
//! gives one), listed and formatted as Docker lists its networks. There is no bridge
//! yet, so nothing to create.

use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, Subcommand};

use crate::template;

/// `layers network …`.
#[derive(Subcommand)]
pub enum NetworkCommand {
    /// List networks.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Show networks as JSON.
    Inspect(InspectArgs),
}

/// Arguments of `layers network ls`.
#[derive(Args)]
pub struct LsArgs {
    /// Only IDs.
    #[arg(short, long)]
    quiet: bool,
    /// Only networks matching: name=SUBSTRING, driver=DRIVER, id=PREFIX, type=builtin|custom.
    #[arg(short, long)]
    filter: Vec<String>,
    /// `table`, `json`, or a Go template (`{{.Name}}`).
    #[arg(long)]
    format: Option<String>,
    /// Full IDs.
    #[arg(long)]
    no_trunc: bool,
}

/// Arguments of `layers network inspect`.
#[derive(Args)]
pub struct InspectArgs {
    /// A Go template per network, or `json`.
    #[arg(short, long)]
    format: Option<String>,
    /// Networks (names or ID prefixes).
    #[arg(required = true)]
    names: Vec<String>,
}

/// The networks: name and Docker's driver name for it.
const NETWORKS: [(&str, &str); 5] =
    [("bridge", "bridge"), ("host", "host"), ("none", "null"), ("pasta", "pasta"), ("slirp4netns", "slirp4netns")];

/// A network's ID: stable, derived from its name (there is one of each per host).
fn id(name: &str) -> String {
    layers_store::Digest::of(format!("layers network {name}").as_bytes()).hex()
}

fn json(name: &str, driver: &str) -> serde_json::Value {
    serde_json::json!({
        "ID": id(name),
        "Name": name,
        "Driver": driver,
        "Scope": "local",
        "IPv6": false,
        "Internal": false,
        "Labels": {},
    })
}

fn find(name: &str) -> Option<(&'static str, &'static str)> {
    NETWORKS.into_iter().find(|(n, _)| *n == name || (name.len() >= 3 && id(n).starts_with(name)))
}

pub fn network(c: &NetworkCommand, root: &std::path::Path) -> anyhow::Result<ExitCode> {
    match c {
        NetworkCommand::Ls(a) => {
            let mut rows = Vec::new();
            for (name, driver) in NETWORKS {
                let mut keep = true;
                for f in &a.filter {
                    keep &= match f.split_once('=') {
                        Some(("name", v)) => name.contains(v),
                        Some(("driver", v)) => driver == v,
                        Some(("id", v)) => id(name).starts_with(v),
                        Some(("type", "builtin")) => true,
                        Some(("type", "custom")) => false,
                        _ => bail!("network ls --filter {f}: want name=, driver=, id= or type=builtin|custom"),
                    };
                }
                if keep {
                    let mut row = json(name, driver);
                    // As Docker's listing: labels as `k=v,…` text, and `.Label "KEY"`.
                    row["Label()"] = row["Labels"].take();
                    row["Labels"] = "".into();
                    if !a.no_trunc {
                        row["ID"] = id(name)[..12].into();
                    }
                    rows.push(row);
                }
            }
            if a.quiet {
                for r in &rows {
                    outln!("{}", r["ID"].as_str().unwrap_or_default());
                }
                return Ok(ExitCode::SUCCESS);
            }
            let headers = [("ID", "NETWORK ID"), ("Name", "NAME"), ("Driver", "DRIVER"), ("Scope", "SCOPE")];
            let columns = "{{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}";
            outln!("{}", template::listing(a.format.as_deref(), columns, &headers, &rows)?);
        }
        NetworkCommand::Inspect(a) => {
            let mut out = Vec::new();
            let code = super::each(&a.names, |n| {
                let (name, driver) = find(n).ok_or_else(|| anyhow::anyhow!("network inspect {n}: no such network"))?;
                let mut v = json(name, driver);
                if name == "bridge" {
                    let settings = crate::network::settings::Settings::load(root)?;
                    let subnet = settings.subnet;
                    v["IPAM"] = serde_json::json!({"Driver": "default", "Config": [
                        {"Subnet": subnet.to_string(), "Gateway": subnet.gateway().to_string()}
                    ]});
                    v["Options"] =
                        serde_json::json!({"com.docker.network.bridge.name": crate::network::settings::BRIDGE});
                }
                // Docker's inspect spells these differently from its ls.
                v["Id"] = v["ID"].take();
                v["EnableIPv6"] = v["IPv6"].take();
                if let Some(m) = v.as_object_mut() {
                    m.remove("ID");
                    m.remove("IPv6");
                }
                out.push(v);
                Ok(())
            });
            outln!("{}", template::inspected(a.format.as_deref(), &out)?);
            return Ok(code);
        }
    }
    Ok(ExitCode::SUCCESS)
}
