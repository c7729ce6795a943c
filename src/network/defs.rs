//! Bridge networks by name: Docker's `bridge` (the default, `layers0`, its subnet from
//! the settings) and the user-defined ones `network create` makes, one JSON file each
//! in `/etc/layers/networks/` (host-wide, as Podman keeps its networks in
//! `/etc/containers/networks/`: a bridge belongs to the host, not to one store).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::{bail, Context};

use super::settings::{Settings, BRIDGE};
use super::Subnet;

/// A bridge network.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BridgeNet {
    pub name: String,
    /// 64 hex digits.
    pub id: String,
    /// The bridge's link name.
    pub bridge: String,
    #[serde(with = "subnet_text")]
    pub subnet: Subnet,
    /// Seconds since the epoch.
    pub created: i64,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Containers on it find each other by name (user-defined networks, as Docker's).
    #[serde(default)]
    pub resolves_names: bool,
}

mod subnet_text {
    use super::Subnet;

    pub fn serialize<S: serde::Serializer>(s: &Subnet, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(&s.to_string())
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Subnet, D::Error> {
        let text: String = serde::Deserialize::deserialize(de)?;
        Subnet::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Names `network create` may not take: the networks that are always there.
pub const BUILTIN: [&str; 6] = ["bridge", "host", "none", "pasta", "slirp4netns", "default"];

/// Where user-defined networks are kept (`LAYERS_NETWORK_CONFIG` over `/etc/layers/networks`).
pub fn config_dir() -> PathBuf {
    std::env::var_os("LAYERS_NETWORK_CONFIG").map_or_else(|| PathBuf::from("/etc/layers/networks"), PathBuf::from)
}

/// A network's ID: stable, derived from its name (and, user-defined, its creation).
pub fn id_of(text: &str) -> String {
    layers_store::Digest::of(format!("layers network {text}").as_bytes()).hex()
}

/// Docker's `bridge`.
pub fn default_bridge(settings: &Settings) -> BridgeNet {
    BridgeNet {
        name: "bridge".into(),
        id: id_of("bridge"),
        bridge: BRIDGE.into(),
        subnet: settings.subnet,
        created: 0,
        labels: BTreeMap::new(),
        resolves_names: false,
    }
}

/// Every user-defined network, by name.
pub fn user_defined() -> anyhow::Result<Vec<BridgeNet>> {
    let dir = config_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let text = crate::bounded::read_config_file(&path, "network")?.unwrap_or_default();
        out.push(serde_json::from_str(&text).with_context(|| format!("network {}", path.display()))?);
    }
    out.sort_by(|a: &BridgeNet, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Every bridge network: the default one first.
pub fn all(settings: &Settings) -> anyhow::Result<Vec<BridgeNet>> {
    let mut nets = vec![default_bridge(settings)];
    nets.extend(user_defined()?);
    Ok(nets)
}

/// The bridge network `name` (or ID prefix of 3 or more), if there is one.
pub fn find(settings: &Settings, name: &str) -> anyhow::Result<Option<BridgeNet>> {
    if name == "bridge" || name == "default" {
        return Ok(Some(default_bridge(settings)));
    }
    Ok(all(settings)?.into_iter().find(|n| n.name == name || (name.len() >= 3 && n.id.starts_with(name))))
}

/// Docker's rule for network names.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    !name.is_empty()
        && name.len() <= 128
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

fn overlaps(a: &Subnet, b: &Subnet) -> bool {
    let prefix = a.prefix.min(b.prefix);
    let mask = u32::MAX << (32 - prefix);
    u32::from(a.base) & mask == u32::from(b.base) & mask
}

/// Makes the network `name` with `subnet` (else the first free /24 of 10.78.0.0/16).
pub fn create(
    settings: &Settings,
    name: &str,
    subnet: Option<Subnet>,
    labels: BTreeMap<String, String>,
) -> anyhow::Result<BridgeNet> {
    if !valid_name(name) {
        bail!("network create {name}: invalid name: letters, digits and _.- only, starting with a letter or digit");
    }
    if BUILTIN.contains(&name) {
        bail!("network create {name}: {name} is a pre-defined network and cannot be created");
    }
    let dir = config_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("make {}", dir.display()))?;
    let _lock = crate::userns::lock_file(&dir.join(".lock"))?;
    let existing = all(settings)?;
    if existing.iter().any(|n| n.name == name) {
        bail!("network create {name}: network with name {name} already exists");
    }
    let subnet = match subnet {
        Some(s) => {
            if let Some(other) = existing.iter().find(|n| overlaps(&n.subnet, &s)) {
                bail!("network create {name}: subnet {s} overlaps network {} ({})", other.name, other.subnet);
            }
            s
        }
        None => (0..=255u8)
            .map(|n| Subnet { base: Ipv4Addr::new(10, 78, n, 0), prefix: 24 })
            .find(|s| !existing.iter().any(|n| overlaps(&n.subnet, s)))
            .context("network create: no free /24 left in 10.78.0.0/16; give --subnet")?,
    };
    let created = layers_store::meta::now();
    let id = id_of(&format!("{name} {created} {}", std::process::id()));
    let net = BridgeNet {
        name: name.to_string(),
        bridge: format!("lyn{}", &id[..8]),
        id,
        subnet,
        created,
        labels,
        resolves_names: true,
    };
    let tmp = dir.join(format!(".{name}.json.tmp"));
    std::fs::write(&tmp, serde_json::to_vec_pretty(&net)?).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join(format!("{name}.json"))).with_context(|| format!("write network {name}"))?;
    Ok(net)
}

/// Forgets the user-defined network `net`.
pub fn remove(net: &BridgeNet) -> anyhow::Result<()> {
    let path = config_dir().join(format!("{}.json", net.name));
    std::fs::remove_file(&path).with_context(|| format!("network rm {}: remove {}", net.name, path.display()))
}
