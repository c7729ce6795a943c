//! Network settings: the `[network]` table of `<root>/store.toml`, else
//! `/etc/layers/network.toml`: the default bridge's subnet, the default network of
//! `run` and `create`, and whether `layers` may turn IP forwarding on.

use std::path::Path;

use anyhow::Context;

use super::Subnet;

/// The default bridge's subnet: clear of Docker's (172.17.0.0/16 and its pools in
/// 172.16.0.0/12 and 192.168.0.0/16) and Podman's (10.88.0.0/16, then 10.89.x.0/24).
pub const DEFAULT_SUBNET: &str = "10.77.0.0/16";

/// The default bridge's name (Docker's `docker0`, Podman's `podman0`).
pub const BRIDGE: &str = "layers0";

/// The settings' file form.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NetworkToml {
    /// The default bridge's subnet.
    pub subnet: Option<String>,
    /// The network `run` and `create` give a container without `--network`.
    pub default: Option<String>,
    /// Turn `net.ipv4.ip_forward` on when it is off, instead of refusing.
    pub enable_forwarding: Option<bool>,
}

/// The settings in effect.
#[derive(Debug, Clone)]
pub struct Settings {
    pub subnet: Subnet,
    /// `--network` spelling, as given (checked where it is used).
    pub default: Option<String>,
    pub enable_forwarding: bool,
}

impl Settings {
    /// The settings for the store at `root`: its `store.toml`'s `[network]`, else
    /// `/etc/layers/network.toml`; `LAYERS_DEFAULT_NETWORK` over either's `default`.
    pub fn load(root: &Path) -> anyhow::Result<Settings> {
        let store_file = root.join("store.toml");
        let mut found = None;
        if let Some(text) = crate::bounded::read_config_file(&store_file, "store settings")? {
            let table: toml::Table = crate::bounded::parse_toml(&text)
                .with_context(|| format!("store settings {}", store_file.display()))?;
            if let Some(n) = table.get("network") {
                let n: NetworkToml = n
                    .clone()
                    .try_into()
                    .map_err(|e: toml::de::Error| anyhow::anyhow!("{}", e.message()))
                    .with_context(|| format!("store settings {}: [network]", store_file.display()))?;
                found = Some(n);
            }
        }
        let system = Path::new("/etc/layers/network.toml");
        if found.is_none() {
            if let Some(text) = crate::bounded::read_config_file(system, "network settings")? {
                found = Some(
                    crate::bounded::parse_toml(&text)
                        .with_context(|| format!("network settings {}", system.display()))?,
                );
            }
        }
        let file = found.unwrap_or_default();
        let subnet = Subnet::parse(file.subnet.as_deref().unwrap_or(DEFAULT_SUBNET)).context("network settings")?;
        let default = std::env::var("LAYERS_DEFAULT_NETWORK").ok().filter(|d| !d.is_empty()).or(file.default);
        Ok(Settings { subnet, default, enable_forwarding: file.enable_forwarding.unwrap_or(false) })
    }
}
