//! The registry configuration file (TOML): mirrors and plain-http registries.
//!
//! ```toml
//! # /etc/layers/registries.toml, or $XDG_CONFIG_HOME/layers/registries.toml,
//! # or --registries-config FILE / $LAYERS_REGISTRIES_CONFIG
//! [registries."docker.io"]
//! mirrors = ["http://127.0.0.1:5000", "mirror.example.com"]   # tried in order, then docker.io
//!
//! [registries."registry.internal:5000"]
//! insecure = true                                             # plain http
//!
//! [registries."127.0.0.1:5443"]
//! insecure = false                                            # https, though loopback
//! ```
//! A mirror written with `http://` is spoken to in plain http; loopback hosts are
//! plain http by default, as with Docker, unless `insecure = false`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::registry::is_loopback;

/// Settings for one registry.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySettings {
    /// Hosts that serve the same content, tried before the registry itself.
    #[serde(default)]
    pub mirrors: Vec<String>,
    /// Speak plain http to the registry itself (unset: only on loopback hosts).
    #[serde(default)]
    pub insecure: Option<bool>,
}

/// The whole file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistriesConfig {
    /// Per registry host (`docker.io`, `host:port`).
    #[serde(default)]
    pub registries: BTreeMap<String, RegistrySettings>,
}

/// One place to fetch from: a host and whether it speaks plain http.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]`.
    pub host: String,
    /// Plain http instead of https.
    pub plain_http: bool,
}

impl RegistriesConfig {
    /// Loads the file named by the flag/env, else the first of the default places that exists.
    pub fn load(explicit: Option<&Path>) -> anyhow::Result<RegistriesConfig> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => match default_paths().into_iter().find(|p| p.exists()) {
                Some(p) => p,
                None => return Ok(RegistriesConfig::default()),
            },
        };
        // A file named on the command line is the user's choice (it may be a pipe, as
        // an --env-file may); one found in a default place must be a regular file.
        let text = match explicit {
            Some(_) => crate::bounded::read_text_file(&path, crate::bounded::MAX_CONFIG, "registries config")?,
            None => match crate::bounded::read_config_file(&path, "registries config")? {
                Some(t) => t,
                None => return Ok(RegistriesConfig::default()),
            },
        };
        Self::parse(&text).with_context(|| format!("registries config {}", path.display()))
    }

    /// Parses the TOML text.
    pub fn parse(text: &str) -> anyhow::Result<RegistriesConfig> {
        let cfg: RegistriesConfig = crate::bounded::parse_toml(text)?;
        for (name, r) in &cfg.registries {
            for m in &r.mirrors {
                if m.starts_with("https://") || m.starts_with("http://") || !m.contains("://") {
                    continue;
                }
                bail!("registry {name}: mirror {m:?} must be host[:port] or http(s)://host[:port]");
            }
        }
        Ok(cfg)
    }

    /// Where to fetch `registry`'s content from, in order: its mirrors, then itself.
    pub fn endpoints(&self, registry: &str) -> Vec<Endpoint> {
        let settings = self.registries.get(registry).cloned().unwrap_or_default();
        let mut out: Vec<Endpoint> = settings.mirrors.iter().map(|m| endpoint(m, false)).collect();
        out.push(Endpoint {
            host: registry.to_string(),
            plain_http: settings.insecure.unwrap_or_else(|| is_loopback(registry)),
        });
        out
    }
}

fn endpoint(spec: &str, insecure: bool) -> Endpoint {
    let (host, plain) = if let Some(h) = spec.strip_prefix("http://") {
        (h, true)
    } else if let Some(h) = spec.strip_prefix("https://") {
        (h, false)
    } else {
        (spec, insecure || is_loopback(spec))
    };
    Endpoint { host: host.trim_end_matches('/').to_string(), plain_http: plain }
}

fn default_paths() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
        v.push(PathBuf::from(x).join("layers/registries.toml"));
    } else if let Some(h) = std::env::var_os("HOME") {
        v.push(PathBuf::from(h).join(".config/layers/registries.toml"));
    }
    v.push(PathBuf::from("/etc/layers/registries.toml"));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_come_first_then_the_registry() {
        let cfg = RegistriesConfig::parse(
            r#"
            [registries."docker.io"]
            mirrors = ["http://127.0.0.1:5000", "mirror.example.com", "https://m2.example.com/"]
            [registries."reg.internal:5000"]
            insecure = true
            [registries."127.0.0.1:5443"]
            insecure = false
            "#,
        )
        .unwrap();
        let hub = cfg.endpoints("docker.io");
        assert_eq!(
            hub,
            vec![
                Endpoint { host: "127.0.0.1:5000".into(), plain_http: true },
                Endpoint { host: "mirror.example.com".into(), plain_http: false },
                Endpoint { host: "m2.example.com".into(), plain_http: false },
                Endpoint { host: "docker.io".into(), plain_http: false },
            ]
        );
        assert_eq!(
            cfg.endpoints("reg.internal:5000"),
            vec![Endpoint { host: "reg.internal:5000".into(), plain_http: true }]
        );
        assert!(cfg.endpoints("localhost:5000")[0].plain_http);
        assert!(!cfg.endpoints("127.0.0.1:5443")[0].plain_http, "insecure = false: https even on loopback");
        assert!(RegistriesConfig::parse("[registries.\"x\"]\nmirrorz = []").is_err(), "typos are errors");
        assert!(RegistriesConfig::parse("[registries.\"x\"]\nmirrors = [\"ftp://a\"]").is_err());
    }
}
