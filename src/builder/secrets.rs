//! Build secrets (`--secret id=…,src=…|env=…`) and the files `RUN --mount=type=secret`
//! shows them in; the ssh agents `--ssh` forwards to `RUN --mount=type=ssh`. A secret is read once, bounded, and kept in memory; a step sees it
//! in a file on a tmpfs of its own (0700, under the store's 0700 tmp/), bind-mounted
//! read-only at the target and unmounted when the step ends, so its bytes are never
//! on disk, in a layer, in a cache key, in the history or in the image config.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use layers_store::Store;

/// The largest secret accepted (BuildKit's limit is 500 KiB).
pub const MAX_SECRET: u64 = 500 << 10;

/// A secret's bytes; never printed.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// Secrets by id.
pub type Secrets = BTreeMap<String, Secret>;

/// Parses `--secret` specs as buildx does: `id=ID` with `src=PATH` (`source=`) or
/// `env=VAR`, `type=file|env` optional; with neither, the variable named ID if it
/// is set, else the file ID.
pub fn parse(specs: &[String]) -> anyhow::Result<Secrets> {
    let mut out = Secrets::new();
    for spec in specs {
        let (mut id, mut src, mut env, mut kind) = (None, None, None, None);
        for kv in spec.split(',') {
            let Some((k, v)) = kv.split_once('=') else {
                bail!("--secret {spec}: want KEY=VALUE pairs (id=, src=, env=)")
            };
            match k.trim() {
                "id" => id = Some(v.trim()),
                "src" | "source" => src = Some(v.trim()),
                "env" => env = Some(v.trim()),
                "type" => kind = Some(v.trim()),
                other => bail!("--secret {spec}: option {other:?} is not supported (id, src, env, type)"),
            }
        }
        let Some(id) = id.filter(|i| !i.is_empty()) else { bail!("--secret {spec}: needs id=") };
        let from_env = match (kind, src, env) {
            (Some("file"), _, Some(_)) | (Some("env"), Some(_), _) | (None, Some(_), Some(_)) => {
                bail!("--secret {spec}: give src= or env=, not both")
            }
            (Some("file"), s, None) => Err(s.unwrap_or(id)),
            (Some("env"), None, e) => Ok(e.unwrap_or(id)),
            (Some(other), _, _) => bail!("--secret {spec}: type={other}: use file or env"),
            (None, Some(s), None) => Err(s),
            (None, None, Some(e)) => Ok(e),
            (None, None, None) if std::env::var_os(id).is_some() => Ok(id),
            (None, None, None) => Err(id),
        };
        let bytes = match from_env {
            Ok(var) => match std::env::var_os(var) {
                Some(v) => std::os::unix::ffi::OsStringExt::into_vec(v),
                None => bail!("--secret {spec}: environment variable {var} is not set"),
            },
            Err(path) => {
                let what = format!("--secret {spec}: file {path}");
                let f = std::fs::File::open(path).with_context(|| what.clone())?;
                crate::bounded::read_capped(f, MAX_SECRET, &what)?
            }
        };
        if bytes.len() as u64 > MAX_SECRET {
            bail!("--secret {spec}: larger than the limit of {MAX_SECRET} bytes");
        }
        if out.insert(id.to_string(), Secret(bytes)).is_some() {
            bail!("--secret {spec}: id {id} given twice");
        }
    }
    Ok(out)
}

/// `--ssh` agents by id: their sockets.
pub type SshAgents = BTreeMap<String, PathBuf>;

/// Parses `--ssh` specs as buildx does: `default` (`$SSH_AUTH_SOCK`), `ID` (the same
/// socket under that id) or `ID=SOCKET`. Key files (buildx's other form) are refused
/// by name: only an agent's socket is forwarded.
pub fn parse_ssh(specs: &[String]) -> anyhow::Result<SshAgents> {
    use std::os::unix::fs::FileTypeExt;
    let mut out = SshAgents::new();
    for spec in specs {
        let (id, path) = match spec.split_once('=') {
            Some((id, path)) => (id.trim(), PathBuf::from(path.trim())),
            None => match std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty()) {
                Some(sock) => (spec.trim(), PathBuf::from(sock)),
                None => bail!("--ssh {spec}: SSH_AUTH_SOCK is not set (give ID=SOCKET)"),
            },
        };
        if id.is_empty() || path.as_os_str().is_empty() || path.to_string_lossy().contains(',') {
            bail!("--ssh {spec}: want default, ID or ID=SOCKET (key files are not supported: give an agent's socket)");
        }
        let meta = std::fs::metadata(&path).with_context(|| format!("--ssh {spec}: {}", path.display()))?;
        if !meta.file_type().is_socket() {
            bail!(
                "--ssh {spec}: {} is not a socket (key files are not supported: give an agent's socket)",
                path.display()
            );
        }
        if out.insert(id.to_string(), path).is_some() {
            bail!("--ssh {spec}: id {id} given twice");
        }
    }
    Ok(out)
}

/// A secret's file on a tmpfs of its own; unmounted and removed when dropped.
pub struct SecretFile {
    dir: PathBuf,
    mounted: bool,
}

impl SecretFile {
    /// `secret` as the file `dir/secret` owned by `uid`:`gid` with `mode`, on a new
    /// tmpfs mounted on a new scratch dir of the store.
    pub fn new(store: &Store, secret: &Secret, uid: u32, gid: u32, mode: u32) -> anyhow::Result<SecretFile> {
        use rustix::mount::{mount, MountFlags};
        let dir = store.scratch_dir("secret")?;
        let mut file = SecretFile { dir, mounted: false };
        let data = std::ffi::CString::new(format!("mode=0700,size={}", MAX_SECRET + 4096))?;
        let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
        mount("tmpfs", &file.dir, "tmpfs", flags, Some(data.as_c_str()))
            .with_context(|| format!("mount a tmpfs for a secret on {}", file.dir.display()))?;
        file.mounted = true;
        let path = file.path();
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("write {}", path.display()))?;
            f.write_all(secret.bytes()).with_context(|| format!("write {}", path.display()))?;
        }
        let owner = (Some(rustix::fs::Uid::from_raw(uid)), Some(rustix::fs::Gid::from_raw(gid)));
        rustix::fs::chown(&path, owner.0, owner.1).with_context(|| format!("chown {}", path.display()))?;
        rustix::fs::chmod(&path, rustix::fs::Mode::from_raw_mode(mode))
            .with_context(|| format!("chmod {}", path.display()))?;
        Ok(file)
    }

    /// The file.
    pub fn path(&self) -> PathBuf {
        self.dir.join("secret")
    }
}

impl Drop for SecretFile {
    fn drop(&mut self) {
        if self.mounted {
            let _ = rustix::mount::unmount(&self.dir, rustix::mount::UnmountFlags::DETACH);
        }
        let _ = std::fs::remove_dir(Path::new(&self.dir));
    }
}
