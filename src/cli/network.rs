//! `layers network create|ls|inspect|rm`: the networks a container can have, listed and
//! formatted as Docker lists its networks: `bridge` (the default, `layers0`), `host`,
//! `none` (a network namespace of its own with only `lo`), `pasta` and `slirp4netns`
//! (rootless), and the user-defined bridges `network create` makes, whose containers
//! reach each other by name.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use layers_store::Store;

use crate::network::defs::{self, BridgeNet};
use crate::network::settings::Settings;
use crate::template;

/// `layers network …`.
#[derive(Subcommand)]
pub enum NetworkCommand {
    /// Make a bridge network whose containers reach each other by name.
    Create(CreateArgs),
    /// List networks.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Show networks as JSON.
    Inspect(InspectArgs),
    /// Remove user-defined networks no container uses.
    #[command(alias = "remove")]
    Rm(RmArgs),
}

// Arguments of `layers network create`.
#[derive(Args)]
pub struct CreateArgs {
    /// Its subnet (`a.b.c.d/len`; default: the first free /24 of 10.78.0.0/16).
    #[arg(long)]
    subnet: Option<String>,
    /// Driver: only `bridge`.
    #[arg(short, long, default_value = "bridge")]
    driver: String,
    /// A label, `KEY=VALUE`.
    #[arg(long)]
    label: Vec<String>,
    /// Its name.
    name: String,
}

// Arguments of `layers network ls`.
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

// Arguments of `layers network inspect`.
#[derive(Args)]
pub struct InspectArgs {
    /// A Go template per network, or `json`.
    #[arg(short, long)]
    format: Option<String>,
    /// Networks (names or ID prefixes).
    #[arg(required = true)]
    names: Vec<String>,
}

// Arguments of `layers network rm`.
#[derive(Args)]
pub struct RmArgs {
    /// Networks (names or ID prefixes).
    #[arg(required = true)]
    names: Vec<String>,
}

/// The networks that are always there besides `bridge`: name and Docker's driver name.
const OTHERS: [(&str, &str); 4] =
    [("host", "host"), ("none", "null"), ("pasta", "pasta"), ("slirp4netns", "slirp4netns")];

/// One network as listed.
struct Listed {
    name: String,
    id: String,
    driver: &'static str,
    builtin: bool,
    bridge: Option<BridgeNet>,
}

fn listed(settings: &Settings) -> anyhow::Result<Vec<Listed>> {
    let mut out = Vec::new();
    for n in defs::all(settings)? {
        let builtin = n.name == "bridge";
        out.push(Listed { name: n.name.clone(), id: n.id.clone(), driver: "bridge", builtin, bridge: Some(n) });
    }
    for (name, driver) in OTHERS {
        out.push(Listed { name: name.into(), id: defs::id_of(name), driver, builtin: true, bridge: None });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn json(n: &Listed) -> serde_json::Value {
    let labels = n.bridge.as_ref().map(|b| b.labels.clone()).unwrap_or_default();
    serde_json::json!({
        "ID": n.id,
        "Name": n.name,
        "Driver": n.driver,
        "Scope": "local",
        "IPv6": false,
        "Internal": false,
        "Labels": labels,
        "CreatedAt": layers_store::images::oci::rfc3339(n.bridge.as_ref().map_or(0, |b| b.created)),
    })
}

fn find<'a>(all: &'a [Listed], name: &str) -> Option<&'a Listed> {
    all.iter().find(|n| n.name == name).or_else(|| all.iter().find(|n| name.len() >= 3 && n.id.starts_with(name)))
}

pub fn network(c: &NetworkCommand, root: &Path) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(root)?;
    match c {
        NetworkCommand::Create(a) => {
            if a.driver != "bridge" {
                bail!("network create {}: driver {}: only `bridge` is supported", a.name, a.driver);
            }
            if !rustix::process::geteuid().is_root() {
                bail!(
                    "network create {}: bridge networks need root (rootless containers use pasta or slirp4netns)",
                    a.name
                );
            }
            let subnet = a.subnet.as_deref().map(crate::network::Subnet::parse).transpose()?;
            let mut labels = BTreeMap::new();
            for l in &a.label {
                let (k, v) = l.split_once('=').unwrap_or((l, ""));
                labels.insert(k.to_string(), v.to_string());
            }
            let net = defs::create(&settings, &a.name, subnet, labels)?;
            outln!("{}", net.id);
        }
        NetworkCommand::Ls(a) => {
            let mut rows = Vec::new();
            for n in listed(&settings)? {
                let mut keep = true;
                for f in &a.filter {
                    keep &= match f.split_once('=') {
                        Some(("name", v)) => n.name.contains(v),
                        Some(("driver", v)) => n.driver == v,
                        Some(("id", v)) => n.id.starts_with(v),
                        Some(("type", "builtin")) => n.builtin,
                        Some(("type", "custom")) => !n.builtin,
                        _ => bail!("network ls --filter {f}: want name=, driver=, id= or type=builtin|custom"),
                    };
                }
                if keep {
                    let mut row = json(&n);
                    // As Docker's listing: labels as `k=v,…` text, and `.Label "KEY"`.
                    let text: Vec<String> = n
                        .bridge
                        .as_ref()
                        .map(|b| b.labels.iter().map(|(k, v)| format!("{k}={v}")).collect())
                        .unwrap_or_default();
                    row["Label()"] = row["Labels"].take();
                    row["Labels"] = text.join(",").into();
                    if !a.no_trunc {
                        row["ID"] = n.id[..12].into();
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
            let all = listed(&settings)?;
            let mut out = Vec::new();
            let code = super::each(&a.names, |name| {
                let n = find(&all, name).ok_or_else(|| anyhow::anyhow!("network inspect {name}: no such network"))?;
                let mut v = json(n);
                if let Some(b) = &n.bridge {
                    v["IPAM"] = serde_json::json!({"Driver": "default", "Config": [
                        {"Subnet": b.subnet.to_string(), "Gateway": b.subnet.gateway().to_string()}
                    ]});
                    v["Options"] = serde_json::json!({"com.docker.network.bridge.name": b.bridge});
                }
                // Docker's inspect spells these differently from its ls.
                v["Id"] = v["ID"].take();
                v["EnableIPv6"] = v["IPv6"].take();
                v["Created"] = v["CreatedAt"].take();
                if let Some(m) = v.as_object_mut() {
                    m.remove("ID");
                    m.remove("IPv6");
                    m.remove("CreatedAt");
                }
                out.push(v);
                Ok(())
            });
            outln!("{}", template::inspected(a.format.as_deref(), &out)?);
            return Ok(code);
        }
        NetworkCommand::Rm(a) => {
            let store = Store::open(root).with_context(|| format!("open store {}", root.display()))?;
            let all = listed(&settings)?;
            return Ok(super::each(&a.names, |name| {
                let n = find(&all, name).ok_or_else(|| anyhow::anyhow!("network rm {name}: no such network"))?;
                let Some(net) = n.bridge.as_ref().filter(|_| !n.builtin) else {
                    bail!("network rm {name}: {} is a pre-defined network and cannot be removed", n.name);
                };
                remove(&store, &settings, net)?;
                outln!("{name}");
                Ok(())
            }));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Removes `net` unless a container of this store is on it: its bridge in this network
/// namespace, its definition, and its rules.
fn remove(store: &Store, settings: &Settings, net: &BridgeNet) -> anyhow::Result<()> {
    for c in store.snapshots().list()? {
        let dir = crate::run::container::ContainerDir::of(store, &c.id);
        let config = crate::run::container::ContainerConfig::load(&dir, "").ok();
        if config.is_some_and(|cfg| cfg.network == crate::run::Network::Bridge(net.name.clone())) {
            bail!("network rm {}: container {} uses it (remove it first)", net.name, c.name);
        }
    }
    if let Ok(mut nl) = crate::network::netlink::Netlink::open() {
        if let Ok(Some(link)) = nl.link(&net.bridge) {
            nl.delete_link(link.index, &net.bridge)?;
        }
    }
    defs::remove(net)?;
    crate::network::bridge::apply_table(settings).or_else(|e| {
        // No nft, or no table yet: nothing of ours to rewrite.
        if crate::userns::program("nft").is_none() {
            Ok(())
        } else {
            Err(e)
        }
    })
}
