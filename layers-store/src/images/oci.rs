//! OCI image manifests and configs: the fields the store writes and reads. Blobs
//! are kept byte for byte as received; these types are for making new images and
//! reading what we need from stored ones.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::content::digest::{DiffId, Digest};

/// OCI image manifest media type.
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image config media type.
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// Largest manifest, config, index or other JSON document read whole; real ones are a few KiB.
pub const MAX_JSON: u64 = 4 << 20;

/// A pointer to a blob: what it is, its digest and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// What the blob holds.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Where else it may be fetched from (foreign layers); we refuse to use these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An image manifest: one config and the layers, bottom first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// The manifest's own media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// Layer blobs, bottom first.
    pub layers: Vec<Descriptor>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Manifest {
    /// A new OCI manifest.
    pub fn new(config: Descriptor, layers: Vec<Descriptor>) -> Manifest {
        Manifest {
            schema_version: 2,
            media_type: Some(MEDIA_TYPE_MANIFEST.to_string()),
            config,
            layers,
            annotations: None,
        }
    }
}

/// `rootfs` of an image config.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RootFs {
    /// Always "layers".
    #[serde(rename = "type")]
    pub kind: String,
    /// One per layer, bottom first.
    pub diff_ids: Vec<DiffId>,
}

/// One step of how the image was made.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct History {
    /// When, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The command that made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// True when the step changed only the config.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// The runtime defaults of an image (`config` of an image config): OCI's fields and
/// Docker's (`Shell`, `Healthcheck`, `OnBuild`). Absent and `null` read the same;
/// fields we do not know are kept as they were.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RuntimeConfig {
    /// `UID[:GID]` or `NAME[:GROUP]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `PORT/PROTO` → `{}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    /// `KEY=VALUE`, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// The command's first words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// The default arguments (or command, without an entrypoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// Paths that get a volume → `{}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    /// Absolute working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Free-form labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// The signal `stop` sends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// The shell of shell-form instructions (Docker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    /// How to tell the container is healthy (Docker), kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<serde_json::Value>,
    /// Instructions a build on this image runs first (Docker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    /// Fields we do not interpret, kept as they were.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl RuntimeConfig {
    /// `Env`, or nothing.
    pub fn env(&self) -> &[String] {
        self.env.as_deref().unwrap_or_default()
    }

    /// The value of `key` in `Env`.
    pub fn env_var(&self, key: &str) -> Option<&str> {
        self.env().iter().find_map(|e| e.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
    }

    /// Sets each `KEY=VALUE` in `Env`, in place of an earlier `KEY` (Docker keeps its
    /// position), in time linear in `Env` and `kvs`.
    pub fn set_envs(&mut self, kvs: impl IntoIterator<Item = String>) {
        merge_env(self.env.get_or_insert_with(Vec::new), kvs);
    }

    /// `WorkingDir`, `/` when unset or empty.
    pub fn working_dir(&self) -> &str {
        self.working_dir.as_deref().filter(|w| !w.is_empty()).unwrap_or("/")
    }
}

/// Sets each `KEY=VALUE` of `kvs` in `env`, in place of an earlier `KEY` (Docker keeps
/// its position) or at the end; one pass with the keys indexed, never one scan a variable.
pub fn merge_env(env: &mut Vec<String>, kvs: impl IntoIterator<Item = String>) {
    fn key(kv: &str) -> &str {
        kv.split_once('=').map_or(kv, |(k, _)| k)
    }
    let mut at: std::collections::HashMap<String, usize> =
        env.iter().enumerate().map(|(i, e)| (key(e).to_string(), i)).collect();
    for kv in kvs {
        match at.get(key(&kv)) {
            Some(&i) => env[i] = kv,
            None => {
                at.insert(key(&kv).to_string(), env.len());
                env.push(kv);
            }
        }
    }
}

/// An image config: what `layers` reads and writes, every other field kept as it was.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageConfig {
    /// When the image was made, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// CPU architecture, GOARCH style.
    pub architecture: String,
    /// Operating system.
    pub os: String,
    /// CPU variant (arm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Runtime defaults: Env, Cmd, Entrypoint, WorkingDir, User...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<RuntimeConfig>,
    /// The layer stack.
    pub rootfs: RootFs,
    /// How it was made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    /// Fields we do not interpret (author, os.version...), kept as they were.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl ImageConfig {
    /// The config of a single-layer image imported from a rootfs tarball.
    pub fn imported(diff_id: DiffId, created: &str, created_by: &str) -> ImageConfig {
        ImageConfig {
            created: Some(created.to_string()),
            architecture: host_architecture().to_string(),
            os: "linux".to_string(),
            variant: None,
            config: Some(RuntimeConfig::default()),
            rootfs: RootFs { kind: "layers".to_string(), diff_ids: vec![diff_id] },
            history: vec![History {
                created: Some(created.to_string()),
                created_by: Some(created_by.to_string()),
                ..Default::default()
            }],
            extra: serde_json::Map::new(),
        }
    }
}

/// This machine's architecture in OCI (GOARCH) spelling.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "arm" => "arm",
        other => other,
    }
}

/// Formats seconds since the epoch as RFC 3339 UTC (`2024-01-02T03:04:05Z`).
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Parses the RFC 3339 forms images use (`2024-01-02T03:04:05[.frac](Z|±hh:mm)`) to epoch seconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, se) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        rest = &frac[n..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) => {
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (rest.get(1..3)?.parse::<i64>().ok()? * 3600 + rest.get(4..6)?.parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    // Howard Hinnant's days_from_civil.
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + se - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dates() {
        for t in [0, 951_782_400, 1_700_000_000] {
            assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
        }
        assert_eq!(parse_rfc3339("2023-11-14T23:13:20.123456789+01:00"), Some(1_700_000_000));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn formats_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
