//! Registry credentials: where they are kept and how they are found.
//!
//! Looked up per registry *host* (a mirror's own host for a mirror), never
//! borrowed from another host, in: `$REGISTRY_AUTH_FILE`, then layers' own file
//! (`$XDG_CONFIG_HOME/layers/auth.json`, written by `layers login`, mode 0600), then
//! `~/.docker/config.json`. With `$DOCKER_CONFIG` set, `$DOCKER_CONFIG/config.json`
//! takes the place of both, for `login` and `logout` too, as Docker's CLI has it: a
//! CI job that points it at a directory of its own reads and leaves nothing else.
//! All use Docker's format:
//! `{"auths": {"HOST": {"auth": base64("user:password")}}}`, and a file may hand a
//! host to a credential helper (`credHelpers`, `credsStore`: helpers.rs).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use base64::Engine as _;
use serde_json::{json, Value};

pub use super::helpers::Credentials;

/// Docker writes Hub entries under several spellings; they all mean `docker.io`.
pub fn normalize_host(key: &str) -> String {
    let k = key.trim_start_matches("https://").trim_start_matches("http://");
    let k = k.split('/').next().unwrap_or(k);
    match k {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io".to_string(),
        other => other.to_string(),
    }
}

/// `$DOCKER_CONFIG/config.json`, when that is set.
fn docker_config() -> Option<PathBuf> {
    std::env::var_os("DOCKER_CONFIG").filter(|x| !x.is_empty()).map(|d| PathBuf::from(d).join("config.json"))
}

/// Where `layers login` writes.
pub fn own_file() -> PathBuf {
    if let Some(f) = docker_config() {
        return f;
    }
    match std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
        Some(x) => PathBuf::from(x).join("layers/auth.json"),
        None => {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".config/layers/auth.json")
        }
    }
}

fn search_path() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(f) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|x| !x.is_empty()) {
        v.push(PathBuf::from(f));
    }
    v.push(own_file());
    if docker_config().is_some() {
        return v;
    }
    if let Some(h) = std::env::var_os("HOME") {
        v.push(PathBuf::from(h).join(".docker/config.json"));
    }
    v
}

fn read_file(path: &Path) -> anyhow::Result<Option<Value>> {
    match fs::File::open(path) {
        Ok(f) => {
            let what = format!("credentials file {}", path.display());
            let b = crate::bounded::read_capped(f, crate::bounded::MAX_CONFIG, &what)?;
            Ok(Some(serde_json::from_slice(&b).with_context(|| format!("parse {what}"))?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("read credentials file {}", path.display())),
    }
}

fn decode(path: &Path, host: &str, entry: &Value) -> anyhow::Result<Option<Credentials>> {
    let Some(auth) = entry["auth"].as_str().filter(|a| !a.is_empty()) else { return Ok(None) };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(auth)
        .with_context(|| format!("credentials file {}: entry {host}: auth is not base64", path.display()))?;
    let text = String::from_utf8(raw)
        .with_context(|| format!("credentials file {}: entry {host}: not UTF-8", path.display()))?;
    let Some((user, password)) = text.split_once(':') else {
        bail!("credentials file {}: entry {host}: auth is not user:password", path.display())
    };
    Ok(Some(Credentials { user: user.to_string(), password: password.to_string() }))
}

/// The credential helper a config file names for `host`: its `credHelpers` entry,
/// else its `credsStore`.
fn helper_in(doc: &Value, host: &str) -> Option<String> {
    let per_host = doc["credHelpers"]
        .as_object()
        .and_then(|h| h.iter().find(|(k, _)| normalize_host(k) == host).and_then(|(_, v)| v.as_str()));
    per_host.or_else(|| doc["credsStore"].as_str()).filter(|h| !h.is_empty()).map(str::to_string)
}

/// The first file in the search path that names a credential helper for `host`.
fn helper_for(host: &str) -> anyhow::Result<Option<(String, PathBuf)>> {
    for path in search_path() {
        if let Some(h) = read_file(&path)?.and_then(|doc| helper_in(&doc, host)) {
            return Ok(Some((h, path)));
        }
    }
    Ok(None)
}

/// The credentials for exactly this host, from the first file that has them (through
/// the credential helper it names for the host, else its `auths`).
pub fn lookup(host: &str) -> anyhow::Result<Option<Credentials>> {
    let want = normalize_host(host);
    for path in search_path() {
        let Some(doc) = read_file(&path)? else { continue };
        if let Some(helper) = helper_in(&doc, &want) {
            let found = super::helpers::get(&helper, &want)
                .with_context(|| format!("credentials for {want} (named in {})", path.display()))?;
            if found.is_some() {
                return Ok(found);
            }
        }
        let Some(auths) = doc["auths"].as_object() else { continue };
        for (key, entry) in auths {
            if normalize_host(key) == want {
                if let Some(c) = decode(&path, key, entry)? {
                    return Ok(Some(c));
                }
            }
        }
    }
    Ok(None)
}

/// Saves credentials for `host`: with the credential helper a config file names for
/// it, else in layers' own file (0600, replaced atomically). Says where.
pub fn save(host: &str, creds: &Credentials) -> anyhow::Result<String> {
    let host = normalize_host(host);
    if let Some((helper, file)) = helper_for(&host)? {
        super::helpers::store(&helper, &host, creds)?;
        return Ok(format!("credential helper docker-credential-{helper} (named in {})", file.display()));
    }
    save_in_own_file(&host, creds).map(|p| p.display().to_string())
}

fn save_in_own_file(host: &str, creds: &Credentials) -> anyhow::Result<PathBuf> {
    let path = own_file();
    let mut doc = read_file(&path)?.unwrap_or_else(|| json!({"auths": {}}));
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", creds.user, creds.password));
    doc["auths"][normalize_host(host)] = json!({ "auth": encoded });
    write_private(&path, &doc)?;
    Ok(path)
}

/// Forgets `host`'s credentials, in its credential helper and in layers' own file;
/// whether there were any.
pub fn remove(host: &str) -> anyhow::Result<bool> {
    let host = normalize_host(host);
    let erased = match helper_for(&host)? {
        Some((helper, _)) => super::helpers::erase(&helper, &host)?,
        None => false,
    };
    Ok(remove_from_own_file(&host)? || erased)
}

fn remove_from_own_file(host: &str) -> anyhow::Result<bool> {
    let path = own_file();
    let Some(mut doc) = read_file(&path)? else { return Ok(false) };
    let removed = doc["auths"].as_object_mut().and_then(|a| a.remove(&normalize_host(host))).is_some();
    if removed {
        write_private(&path, &doc)?;
    }
    Ok(removed)
}

fn write_private(path: &Path, doc: &Value) -> anyhow::Result<()> {
    let dir = path.parent().context("credentials path has no parent")?;
    fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let tmp = dir.join(format!(".auth.json.{}", std::process::id()));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("write {}", tmp.display()))?;
    f.write_all(serde_json::to_string_pretty(doc)?.as_bytes())?;
    f.sync_all()?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
    fs::rename(&tmp, path).with_context(|| format!("write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_spellings_are_one_host() {
        assert_eq!(normalize_host("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalize_host("registry-1.docker.io"), "docker.io");
        assert_eq!(normalize_host("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(normalize_host("http://127.0.0.1:5000/"), "127.0.0.1:5000");
        assert_ne!(normalize_host("127.0.0.1:5001"), normalize_host("127.0.0.1:5000"));
    }
}
