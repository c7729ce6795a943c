//! Talking to OCI registries: which protocol a host gets, what manifests we accept,
//! and the distribution API client.

pub mod challenge;
pub mod client;
pub mod config;
pub mod credentials;
pub mod helpers;
pub mod rate;
pub mod resume;
pub mod tls;
pub mod upload;

pub use client::{Repository, RequestError};

/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// The manifest media types a pull asks for, most specific first.
pub const ACCEPTED: &[&str] = &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

/// How long a transfer may go without a byte before it counts as dropped:
/// `$LAYERS_STALL_TIMEOUT` seconds, default 60.
pub fn stall_timeout() -> std::time::Duration {
    let secs = std::env::var("LAYERS_STALL_TIMEOUT").ok().and_then(|v| v.parse::<f64>().ok());
    std::time::Duration::from_secs_f64(secs.filter(|s| *s > 0.0 && s.is_finite()).unwrap_or(60.0))
}

/// How long a TCP (and TLS) connection may take to open: the stall window, at most 30 s.
pub fn connect_timeout() -> std::time::Duration {
    stall_timeout().min(std::time::Duration::from_secs(30))
}

/// Loopback registries speak plain http by default, as with Docker.
pub fn is_loopback(registry: &str) -> bool {
    let host = match registry.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) && !h.ends_with(':') => h,
        _ => registry,
    };
    host == "localhost" || host.starts_with("127.") || host == "[::1]"
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_hosts_are_plain_http() {
        for h in ["localhost", "localhost:5000", "127.0.0.1:5000", "127.1.2.3", "[::1]:5000"] {
            assert!(super::is_loopback(h), "{h}");
        }
        for h in ["docker.io", "quay.io:443", "10.0.0.1:5000", "localhost.example.com"] {
            assert!(!super::is_loopback(h), "{h}");
        }
    }
}
