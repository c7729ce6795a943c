//! Talking to OCI registries: which protocol a host gets, what manifests we accept,
//! and the translation from our references to the client's.

use layers_store::Reference;
use oci_client::client::{ClientConfig, ClientProtocol};

/// Largest manifest or config accepted; real ones are a few KiB.
pub const MAX_JSON: u64 = 4 << 20;

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

/// Loopback registries speak plain http by default, as with Docker.
pub fn is_loopback(registry: &str) -> bool {
    let host = match registry.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) && !h.ends_with(':') => h,
        _ => registry,
    };
    host == "localhost" || host.starts_with("127.") || host == "[::1]"
}

/// A client for one endpoint (plain http or https).
pub fn client(plain_http: bool, tls_verify: bool) -> oci_client::Client {
    // ring rather than aws-lc: same TLS, half the build time. Already installed is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let protocol = if plain_http { ClientProtocol::Http } else { ClientProtocol::Https };
    oci_client::Client::new(ClientConfig {
        protocol,
        accept_invalid_certificates: !tls_verify,
        max_concurrent_download: 4,
        ..Default::default()
    })
}

/// The client's spelling of a reference fetched from `host` (the registry or a
/// mirror of it); digest wins over tag.
pub fn oci_reference(host: &str, r: &Reference) -> oci_client::Reference {
    let (host, repo) = (host.to_string(), r.repository.clone());
    match (&r.digest, &r.tag) {
        (Some(d), _) => oci_client::Reference::with_digest(host, repo, d.to_string()),
        (None, Some(t)) => oci_client::Reference::with_tag(host, repo, t.clone()),
        (None, None) => oci_client::Reference::with_tag(host, repo, "latest".into()),
    }
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
