//! Choosing one image from a multi-platform index.

use anyhow::bail;
use layers_store::images::oci::host_architecture;
use serde_json::Value;

/// `os/architecture[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The machine we run on.
    pub fn host() -> Platform {
        Platform { os: "linux".into(), architecture: host_architecture().into(), variant: None }
    }

    /// Parses `--platform os/arch[/variant]`.
    pub fn parse(s: &str) -> anyhow::Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => {
                Ok(Platform { os: os.to_string(), architecture: arch.to_string(), variant: None })
            }
            [os, arch, v] if !os.is_empty() && !arch.is_empty() && !v.is_empty() => {
                Ok(Platform { os: os.to_string(), architecture: arch.to_string(), variant: Some(v.to_string()) })
            }
            _ => bail!("invalid platform {s:?}: want os/arch[/variant], e.g. linux/amd64 or linux/arm/v7"),
        }
    }

    /// Whether an index entry's `platform` object is this platform; a wanted variant
    /// must match, an unspecified one accepts any.
    pub fn matches(&self, platform: &Value) -> bool {
        platform["os"] == self.os.as_str()
            && platform["architecture"] == self.architecture.as_str()
            && self.variant.as_deref().is_none_or(|v| platform["variant"] == v)
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.variant {
            Some(v) => write!(f, "{}/{}/{v}", self.os, self.architecture),
            None => write!(f, "{}/{}", self.os, self.architecture),
        }
    }
}

/// The platform an image config names, as an index entry's `platform` object.
pub fn of_config(config: &layers_store::images::oci::ImageConfig) -> Value {
    serde_json::json!({"os": config.os, "architecture": config.architecture, "variant": config.variant})
}

/// `os/arch[/variant]` of an index entry, for messages.
pub fn describe(platform: &Value) -> String {
    let mut s =
        format!("{}/{}", platform["os"].as_str().unwrap_or("?"), platform["architecture"].as_str().unwrap_or("?"));
    if let Some(v) = platform["variant"].as_str() {
        s.push('/');
        s.push_str(v);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches() {
        let p = Platform::parse("linux/arm/v7").unwrap();
        assert!(p.matches(&serde_json::json!({"os": "linux", "architecture": "arm", "variant": "v7"})));
        assert!(!p.matches(&serde_json::json!({"os": "linux", "architecture": "arm", "variant": "v6"})));
        let any = Platform::parse("linux/arm64").unwrap();
        assert!(any.matches(&serde_json::json!({"os": "linux", "architecture": "arm64", "variant": "v8"})));
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux//v7").is_err());
    }
}
