//! Cache keys. A step's key is a SHA-256 over a fixed preamble, the step's kind and
//! a list of named fields, each written as `name:LEN:value\n` (so no two field lists
//! encode alike). The fields are explicit and documented where each kind of step
//! builds its key; none is machine-local (no paths, inodes, mtimes, host names or
//! store IDs), so two machines building the same commit compute the same keys.
//!
//! - a base image: `from-image` with `manifest` (its manifest digest);
//!   `scratch` with `architecture`; a stage's base is the key of that stage's last step;
//! - every step has `parent` (the key of the step before it, or of the base);
//! - config steps: `config` with `text` (the instruction after expansion);
//! - RUN: `run` with `argv` (JSON), `network`, `env` (the build args in scope), and
//!   per mount `mount` (its options in a fixed order, and for a bind mount of the
//!   context the content digest of what it shows);
//! - COPY/ADD: `copy` with `text`, `chown`, `chmod`, `parents`, `link`, `exclude`,
//!   and `content` (the digest of the selected files: paths, types, modes, sizes,
//!   link targets, and each regular file's content by its BLAKE3 hash), or for
//!   `--from` a stage's key or an image's manifest.

use layers_store::content::digest::{Digest, Hasher};

/// The preamble; a change in what keys cover changes it, so old entries never match.
const PREAMBLE: &str = "layers-build-key-v3";

/// Builds one key.
pub struct Key(Hasher);

impl Key {
    /// A key of `kind` on `parent` (none for a base).
    pub fn new(kind: &str, parent: Option<&Digest>) -> Key {
        let mut k = Key(Hasher::new());
        k.0.update(PREAMBLE.as_bytes());
        k.0.update(b"\n");
        k = k.field("kind", kind);
        match parent {
            Some(p) => k.field("parent", &p.to_string()),
            None => k,
        }
    }

    /// Adds a named field.
    pub fn field(mut self, name: &str, value: &str) -> Key {
        self.0.update(format!("{name}:{}:", value.len()).as_bytes());
        self.0.update(value.as_bytes());
        self.0.update(b"\n");
        self
    }

    /// The key.
    pub fn finish(self) -> Digest {
        self.0.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_cannot_run_into_each_other() {
        let a = Key::new("config", None).field("text", "ab").field("x", "c").finish();
        let b = Key::new("config", None).field("text", "a").field("bx", "c").finish();
        assert_ne!(a, b);
        let p = Key::new("scratch", None).finish();
        assert_ne!(Key::new("config", Some(&p)).finish(), Key::new("config", None).finish());
    }
}
