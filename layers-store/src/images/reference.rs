//! Image names, normalized as Docker does: `busybox` is
//! `docker.io/library/busybox:latest`, `host:5000/a/b@sha256:…` keeps its host.
//! Images made locally (import, commit, build, tag) under a short name go under
//! `localhost/` instead, as Podman does, so they can never be mistaken for Hub images.

use std::fmt;

use crate::content::digest::Digest;
use crate::error::{Error, ErrorKind, Result};

/// The default registry for names without a host.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// Where short names of locally made images live.
pub const LOCAL_REGISTRY: &str = "localhost";

/// A parsed, normalized image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Registry host (and port).
    pub registry: String,
    /// Repository path within the registry.
    pub repository: String,
    /// Tag; `latest` when neither tag nor digest was given.
    pub tag: Option<String>,
    /// Manifest digest; wins over the tag when both are given.
    pub digest: Option<Digest>,
}

/// How to read a name that has no registry host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShortNames {
    /// `docker.io/library/NAME` (pull, lookup).
    DockerHub,
    /// `localhost/NAME` (import, commit, build, tag).
    Local,
}

fn invalid(input: &str, rule: &str) -> Error {
    Error::new(ErrorKind::InvalidInput, "parse reference", format!("{input:?}"), rule.to_string())
}

impl Reference {
    /// Parses `[host[:port]/]path[:tag][@sha256:hex]`.
    pub fn parse(input: &str, short: ShortNames) -> Result<Reference> {
        if input.is_empty() {
            return Err(invalid(input, "empty reference"));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((r, d)) => {
                (r, Some(Digest::parse(d).map_err(|_| invalid(input, "digest must be sha256:<64 lowercase hex>"))?))
            }
            None => (input, None),
        };
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i + 1..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(t) = tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                && t.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
            if !ok {
                return Err(invalid(input, "tag must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"));
            }
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, rest)) if first.contains('.') || first.contains(':') || first == "localhost" => {
                (first.to_string(), rest.to_string())
            }
            _ => match short {
                ShortNames::DockerHub if !name.contains('/') => {
                    (DEFAULT_REGISTRY.to_string(), format!("library/{name}"))
                }
                ShortNames::DockerHub => (DEFAULT_REGISTRY.to_string(), name.to_string()),
                ShortNames::Local => (LOCAL_REGISTRY.to_string(), name.to_string()),
            },
        };
        let registry = if registry == "index.docker.io" { DEFAULT_REGISTRY.to_string() } else { registry };
        if !registry.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']')) {
            return Err(invalid(input, "registry host must be a hostname with an optional :port"));
        }
        if path.is_empty() || !path.split('/').all(valid_component) {
            return Err(invalid(
                input,
                "repository path components must be lowercase [a-z0-9]+ joined by '.', '_', '__' or '-', separated by '/'",
            ));
        }
        if registry.len() + 1 + path.len() > 255 {
            return Err(invalid(input, "repository name must not exceed 255 characters"));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference { registry, repository: path, tag, digest })
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// `registry/repository:tag`, the form tags are stored in; `None` for digest-only references.
    pub fn tagged_name(&self) -> Option<String> {
        self.tag.as_ref().map(|t| format!("{}:{t}", self.name()))
    }
}

/// A stored name (`registry/repository[:tag]`) as Docker prints it: `busybox:latest`
/// for `docker.io/library/busybox:latest`, `org/app:1` for `docker.io/org/app:1` and
/// for a local image's `localhost/org/app:1`; another registry's names in full. The
/// short form is used only where it reads back as the same name (a lookup tries
/// `localhost/` first, then Docker Hub).
pub fn familiar(stored: &str) -> String {
    let Ok(full) = Reference::parse(stored, ShortNames::DockerHub) else { return stored.to_string() };
    let local = format!("{LOCAL_REGISTRY}/");
    for (prefix, short) in [
        ("docker.io/library/", ShortNames::DockerHub),
        ("docker.io/", ShortNames::DockerHub),
        (&local, ShortNames::Local),
    ] {
        if let Some(rest) = stored.strip_prefix(prefix) {
            if Reference::parse(rest, short).is_ok_and(|r| r == full) {
                return rest.to_string();
            }
        }
    }
    stored.to_string()
}

/// The other stored spelling of a name Docker prints the same way: `localhost/P:T`
/// for `docker.io/library/P:T` or `docker.io/P:T`, and back; `None` for any other
/// registry's names (and for names whose short form would read as another registry).
pub fn other_spelling(stored: &str) -> Option<String> {
    let shown = familiar(stored);
    if shown == stored {
        return None;
    }
    let other = match stored.starts_with(&format!("{LOCAL_REGISTRY}/")) {
        true => Reference::parse(&shown, ShortNames::DockerHub).ok()?.to_string(),
        false => Reference::parse(&shown, ShortNames::Local).ok()?.to_string(),
    };
    (familiar(&other) == shown && other != stored).then_some(other)
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or any number of "-".
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.chars().all(|ch| ch == '-')) {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(s: &str) -> String {
        Reference::parse(s, ShortNames::DockerHub).unwrap().to_string()
    }

    #[test]
    fn normalizes_like_docker() {
        assert_eq!(hub("python"), "docker.io/library/python:latest");
        assert_eq!(hub("python:3.8-alpine"), "docker.io/library/python:3.8-alpine");
        assert_eq!(hub("user/app"), "docker.io/user/app:latest");
        assert_eq!(hub("127.0.0.1:5000/a/b:v1"), "127.0.0.1:5000/a/b:v1");
        assert_eq!(hub("localhost/x"), "localhost/x:latest");
        assert_eq!(hub("index.docker.io/library/busybox"), "docker.io/library/busybox:latest");
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(hub(&format!("busybox@{d}")), format!("docker.io/library/busybox@{d}"));
        assert_eq!(hub(&format!("busybox:1@{d}")), format!("docker.io/library/busybox:1@{d}"));
        assert_eq!(Reference::parse("demo", ShortNames::Local).unwrap().to_string(), "localhost/demo:latest");
    }

    #[test]
    fn familiar_names_are_dockers_and_read_back_as_the_same_name() {
        for (stored, shown) in [
            ("docker.io/library/busybox:latest", "busybox:latest"),
            ("docker.io/library/busybox", "busybox"),
            ("docker.io/myorg/bb:1", "myorg/bb:1"),
            ("docker.io/library/a/b:1", "library/a/b:1"),
            ("localhost/myorg/bb:1", "myorg/bb:1"),
            ("localhost/uxapp:1", "uxapp:1"),
            ("127.0.0.1:5000/app/greet:1", "127.0.0.1:5000/app/greet:1"),
            ("quay.io/x/y:2", "quay.io/x/y:2"),
            // A first component that reads as a host keeps the prefix.
            ("docker.io/my.org/app:1", "docker.io/my.org/app:1"),
            ("localhost/my.org/app:1", "localhost/my.org/app:1"),
        ] {
            assert_eq!(familiar(stored), shown, "{stored}");
        }
    }

    #[test]
    fn a_name_has_one_other_spelling_where_docker_prints_both_alike() {
        let other = |s: &str| other_spelling(s);
        assert_eq!(other("localhost/uxapp:1").as_deref(), Some("docker.io/library/uxapp:1"));
        assert_eq!(other("docker.io/library/uxapp:1").as_deref(), Some("localhost/uxapp:1"));
        assert_eq!(other("localhost/myorg/bb:1").as_deref(), Some("docker.io/myorg/bb:1"));
        assert_eq!(other("docker.io/myorg/bb:1").as_deref(), Some("localhost/myorg/bb:1"));
        assert_eq!(other("127.0.0.1:5000/a:1"), None);
        assert_eq!(other("localhost/my.org/app:1"), None);
    }

    #[test]
    fn rejects_bad_names() {
        for bad in ["", "UPPER", "a//b", "a:", "a:-x", "-a", "a@sha256:12", "a b", "a/", "a..b"] {
            let e = Reference::parse(bad, ShortNames::DockerHub).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad}");
        }
    }
}
