//! Local inputs read with a size cap (env files, Dockerfiles, `.dockerignore`,
//! configuration files, a password on stdin): a
//! `/dev/zero` or a multi-gigabyte file fails naming the file and the limit instead
//! of taking the machine's memory.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context};

/// Largest `--env-file` accepted.
pub const MAX_ENV_FILE: u64 = 1 << 20;
/// Largest Dockerfile (and `.dockerignore`) accepted.
pub const MAX_DOCKERFILE: u64 = 4 << 20;
/// Largest configuration file accepted: registries.toml, credentials files, a seccomp profile.
pub const MAX_CONFIG: u64 = layers_store::images::oci::MAX_JSON;
/// Largest password read from stdin.
pub const MAX_PASSWORD: u64 = 64 << 10;

/// All of `input`, refusing more than `max` bytes; `what` names it in the error.
pub fn read_capped(input: impl Read, max: u64, what: &str) -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    input.take(max + 1).read_to_end(&mut buf).with_context(|| format!("read {what}"))?;
    if buf.len() as u64 > max {
        bail!("{what}: larger than the limit of {max} bytes");
    }
    Ok(buf)
}

/// A file the user named, as UTF-8 text of at most `max` bytes. It may be a pipe
/// (`--env-file <(…)`): only its size is checked, not its type.
pub fn read_text_file(path: &Path, max: u64, what: &str) -> anyhow::Result<String> {
    let what = format!("{what} {}", path.display());
    let f = std::fs::File::open(path).with_context(|| format!("read {what}"))?;
    String::from_utf8(read_capped(f, max, &what)?).with_context(|| format!("{what}: not UTF-8 text"))
}

/// A configuration file (`store.toml`, `registries.toml`): `None` if there is none.
/// Opened non-blocking and refused unless a regular file, so a FIFO in its place
/// cannot hang every command.
pub fn read_config_file(path: &Path, what: &str) -> anyhow::Result<Option<String>> {
    use std::os::unix::fs::OpenOptionsExt;
    let what = format!("{what} {}", path.display());
    let flags = (rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY).bits() as i32;
    let f = match std::fs::File::options().read(true).custom_flags(flags).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("read {what}")),
    };
    if !f.metadata().with_context(|| format!("read {what}"))?.is_file() {
        bail!("{what}: not a regular file");
    }
    let bytes = read_capped(f, MAX_CONFIG, &what)?;
    String::from_utf8(bytes).map(Some).with_context(|| format!("{what}: not UTF-8 text"))
}

/// TOML text parsed, its error on one line: the line number and the message, no
/// excerpt of the source (which `toml` spreads over several lines).
pub fn parse_toml<T: serde::de::DeserializeOwned>(text: &str) -> anyhow::Result<T> {
    toml::from_str(text).map_err(|e| {
        let message = e.message().trim().replace('\n', " ");
        match e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1) {
            Some(line) => anyhow::anyhow!("line {line}: {message}"),
            None => anyhow::anyhow!("{message}"),
        }
    })
}
