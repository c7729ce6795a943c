//! What a container is created with (`run` and `create` take the same options): the
//! flags as typed, kept in the container's dir (`options.json`) so that `start`,
//! `restart` and the restart policy run it the same way again, and `ps`/`inspect`
//! can show them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use layers_store::Store;

use crate::run::container::{Output, RunSpec};
use crate::run::log::LogOptions;
use crate::run::{caps, cgroup, spec, state, Bind, Network};

/// The file in the container's dir.
const FILE: &str = "options.json";

/// Options of a container, from `run` or `create`.
#[derive(Args, Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ContainerOptions {
    /// Remove the container (upper dir, cgroup, log) when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Container name.
    #[arg(long)]
    pub name: Option<String>,
    /// Memory limit (`100M`, `1g`).
    #[arg(short, long)]
    pub memory: Option<String>,
    /// Memory plus swap (`-1`: unlimited swap); default: no swap beyond --memory.
    #[arg(long, allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Most processes at once.
    #[arg(long)]
    pub pids_limit: Option<u64>,
    /// CPUs (`0.5`, `2`).
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Host name inside (default: the container's short ID).
    #[arg(long)]
    pub hostname: Option<String>,
    /// `none` (own namespace, only `lo`) or `host`.
    #[arg(long, alias = "network", value_parser = net_flag, default_value = "none")]
    pub net: Network,
    /// Set an environment variable (`KEY=VALUE`, or `KEY` to pass the host's).
    #[arg(short, long)]
    pub env: Vec<String>,
    /// Read environment variables from a file.
    #[arg(long)]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// User inside: UID[:GID] or NAME[:GROUP].
    #[arg(short, long)]
    pub user: Option<String>,
    /// Replace the image's entrypoint (`""` clears it).
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Add capabilities (`ALL` for every one).
    #[arg(long)]
    pub cap_add: Vec<String>,
    /// Drop capabilities (`ALL` for every one).
    #[arg(long)]
    pub cap_drop: Vec<String>,
    /// Keep every capability, no /proc masks, no no_new_privs.
    #[arg(long)]
    pub privileged: bool,
    /// A host path or a named volume: HOST:CONTAINER[:OPTS], NAME:CONTAINER[:OPTS] or
    /// CONTAINER (an anonymous volume); OPTS: ro, rw, z, Z, nocopy.
    #[arg(short, long)]
    pub volume: Vec<String>,
    /// type=bind|volume|tmpfs,source=…,target=…[,readonly][,volume-nocopy][,tmpfs-size=…][,tmpfs-mode=…]
    #[arg(long)]
    pub mount: Vec<String>,
    /// Mount a tmpfs: CONTAINER[:OPTIONS] (e.g. `/run:size=64m`).
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Mount the root filesystem read-only.
    #[arg(long)]
    pub read_only: bool,
    /// `seccomp=unconfined` turns the default seccomp profile off.
    #[arg(long)]
    pub security_opt: Vec<String>,
    /// Keep standard input open.
    #[arg(short, long)]
    pub interactive: bool,
    /// Give the container a terminal (a pty of its own; ours goes raw with -i).
    #[arg(short, long)]
    pub tty: bool,
    /// Run a small init as PID 1 that reaps zombies and forwards signals.
    #[arg(long)]
    pub init: bool,
    /// Log options: `max-size=SIZE` (default 10m), `max-file=N` (default 3).
    #[arg(long)]
    pub log_opt: Vec<String>,
    /// Set a label: KEY=VALUE (or KEY, for an empty value).
    #[arg(short, long)]
    pub label: Vec<String>,
    /// Restart a detached container when it exits: `no`, `on-failure[:N]`, `always`, `unless-stopped`.
    #[arg(long, default_value = "no", value_parser = restart_flag)]
    pub restart: Restart,
    /// Image name or ID.
    pub image: String,
    /// Command and arguments (default: the image's entrypoint and cmd).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// `--label KEY=VALUE` (or `KEY`, for an empty value) flags as a map.
pub fn parse_labels(list: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for l in list {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        if k.is_empty() {
            bail!("--label {l}: the key is empty");
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// Whether `labels` match a `label=` filter: `KEY` (present) or `KEY=VALUE`.
pub fn label_matches(labels: &BTreeMap<String, String>, filter: &str) -> bool {
    match filter.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(filter),
    }
}

/// `--restart`: whether the monitor starts a detached container again when it exits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Restart {
    #[default]
    No,
    /// When it exits non-zero, at most this many times (`None`: no limit).
    OnFailure(Option<u32>),
    /// Whatever its exit code, until `stop`.
    Always,
    /// As `always` (no daemon restarts here to tell them apart).
    UnlessStopped,
}

impl Restart {
    /// Whether a container that exited with `code`, restarted `count` times so far, goes again.
    pub fn again(self, code: u8, count: u32) -> bool {
        match self {
            Restart::No => false,
            Restart::OnFailure(max) => code != 0 && max.is_none_or(|m| count < m),
            Restart::Always | Restart::UnlessStopped => true,
        }
    }

    /// As Docker names it.
    pub fn name(self) -> String {
        match self {
            Restart::No => "no".into(),
            Restart::OnFailure(Some(n)) => format!("on-failure:{n}"),
            Restart::OnFailure(None) => "on-failure".into(),
            Restart::Always => "always".into(),
            Restart::UnlessStopped => "unless-stopped".into(),
        }
    }
}

fn restart_flag(s: &str) -> Result<Restart, String> {
    match s.split_once(':') {
        None if s == "no" => Ok(Restart::No),
        None if s == "always" => Ok(Restart::Always),
        None if s == "unless-stopped" => Ok(Restart::UnlessStopped),
        None if s == "on-failure" => Ok(Restart::OnFailure(None)),
        Some(("on-failure", n)) => n
            .parse()
            .map(|n| Restart::OnFailure(Some(n)))
            .map_err(|_| format!("--restart {s}: a count after on-failure:")),
        _ => Err(format!("--restart {s}: want no, on-failure[:N], always or unless-stopped")),
    }
}

fn net_flag(s: &str) -> Result<Network, String> {
    match s {
        "none" => Ok(Network::None),
        "host" => Ok(Network::Host),
        other => Err(format!("--net {other}: only `none` and `host` are supported")),
    }
}

impl ContainerOptions {
    /// Checks what can be checked before a container exists, and takes from the
    /// caller what must not change later: the host's values of `-e KEY`, env files.
    pub fn resolved(&self) -> anyhow::Result<ContainerOptions> {
        let mut o = self.clone();
        if o.rm && o.restart != Restart::No {
            bail!(
                "--restart {} and --rm conflict: a container removed when it exits cannot be restarted",
                o.restart.name()
            );
        }
        let mut env = Vec::new();
        for f in &o.env_file {
            let text = crate::bounded::read_text_file(f, crate::bounded::MAX_ENV_FILE, "env file")?;
            env.extend(spec::env_file(&text));
        }
        env.extend(o.env.iter().cloned());
        // `-e KEY` takes the host's value now, as Docker's client does, or is dropped.
        o.env = env
            .into_iter()
            .filter_map(|e| if e.contains('=') { Some(e) } else { std::env::var(&e).ok().map(|v| format!("{e}={v}")) })
            .collect();
        o.env_file.clear();
        // Parsed once here so that a typo fails `create`, not a later `start`.
        o.limits()?;
        LogOptions::parse(&o.log_opt)?;
        o.labels()?;
        o.prepared_mounts()?;
        for t in &o.tmpfs {
            tmpfs(t)?;
        }
        seccomp_choice(&o.security_opt, o.privileged)?;
        Ok(o)
    }

    /// `--label`s as a map.
    pub fn labels(&self) -> anyhow::Result<BTreeMap<String, String>> {
        parse_labels(&self.label)
    }

    fn limits(&self) -> anyhow::Result<cgroup::Limits> {
        let memory = self.memory.as_deref().map(cgroup::parse_bytes).transpose().map_err(anyhow::Error::msg)?;
        let memory_swap = match self.memory_swap.as_deref() {
            Some("-1") => Some(-1),
            Some(s) => Some(cgroup::parse_bytes(s).map_err(anyhow::Error::msg)? as i64),
            None => None,
        };
        if memory_swap.is_some() && memory.is_none() {
            bail!("--memory-swap needs --memory");
        }
        if self.cpus.is_some_and(|c| !(c.is_finite() && c > 0.0)) {
            bail!("--cpus must be a positive number");
        }
        Ok(cgroup::Limits { memory, memory_swap, pids: self.pids_limit, cpus: self.cpus })
    }

    /// Every `-v` and `--mount`, parsed (no host path touched: for `ps` and `inspect`).
    pub fn mounts(&self) -> anyhow::Result<Vec<Mount>> {
        let mut out = Vec::new();
        for v in &self.volume {
            out.push(volume_flag(v)?);
        }
        for m in &self.mount {
            out.push(mount_flag(m)?);
        }
        Ok(out)
    }

    /// Every `-v` and `--mount`, their host paths readied (at creation and each start).
    fn prepared_mounts(&self) -> anyhow::Result<Vec<Mount>> {
        let mounts = self.mounts()?;
        for m in &mounts {
            m.prepare()?;
        }
        Ok(mounts)
    }

    /// At creation: makes the named volumes that do not exist yet, names the anonymous
    /// ones (kept in `-v NAME:TARGET` form from then on), and records that container
    /// `c` mounts them.
    pub fn attach_volumes(&mut self, store: &Store, c: &layers_store::ContainerRow) -> anyhow::Result<()> {
        for v in self.volume.iter_mut() {
            if let Mount::Volume { name, target, read_only, nocopy } = volume_flag(v)? {
                let (row, _) = store.create_volume(name.as_deref(), &BTreeMap::new())?;
                store.attach_volume(c, &row.name)?;
                let mut opts = vec![if read_only { "ro" } else { "rw" }];
                if nocopy {
                    opts.push("nocopy");
                }
                *v = format!("{}:{target}:{}", row.name, opts.join(","));
            }
        }
        for m in &self.mount {
            if let Mount::Volume { name, .. } = mount_flag(m)? {
                let Some(name) = name else { bail!("--mount {m}: a volume mount needs source=NAME") };
                let (row, _) = store.create_volume(Some(&name), &BTreeMap::new())?;
                store.attach_volume(c, &row.name)?;
            }
        }
        Ok(())
    }

    /// What these options put over the image's process, for a container whose short ID
    /// is `short_id` (its default host name).
    pub fn overrides(&self, short_id: &str) -> spec::Overrides {
        spec::Overrides {
            entrypoint: self.entrypoint.clone(),
            cmd: self.command.clone(),
            env: self.env.clone(),
            workdir: self.workdir.clone(),
            user: self.user.clone(),
            hostname: self.hostname.clone().unwrap_or_else(|| short_id.to_string()),
        }
    }

    /// The runtime's spec for one run of a container whose short ID is `short_id`.
    pub fn spec(&self, store: &Store, short_id: &str, output: Output) -> anyhow::Result<RunSpec> {
        let mut binds = Vec::new();
        let mut tmpfs_mounts: Vec<(String, String)> =
            self.tmpfs.iter().map(|t| tmpfs(t)).collect::<anyhow::Result<_>>()?;
        for m in self.prepared_mounts()? {
            match m {
                Mount::Bind { bind, .. } => binds.push(bind),
                Mount::Volume { name: Some(name), target, read_only, .. } => {
                    binds.push(Bind { host: store.volume_path(&name), target, read_only })
                }
                Mount::Volume { name: None, target, .. } => bail!("volume at {target}: not made at creation"),
                Mount::Tmpfs { target, options } => tmpfs_mounts.push((target, options)),
            }
        }
        let caps = if self.privileged {
            caps::all()
        } else {
            caps::effective(&self.cap_add, &self.cap_drop).map_err(anyhow::Error::msg)?
        };
        Ok(RunSpec {
            overrides: self.overrides(short_id),
            network: self.net,
            binds,
            tmpfs: tmpfs_mounts,
            limits: self.limits()?,
            caps,
            seccomp: seccomp_choice(&self.security_opt, self.privileged)?,
            privileged: self.privileged,
            read_only: self.read_only,
            init: self.init,
            tty: self.tty,
            interactive: self.interactive,
            output,
        })
    }

    /// The log options (checked when the container was created).
    pub fn log_options(&self) -> anyhow::Result<LogOptions> {
        LogOptions::parse(&self.log_opt)
    }

    /// Keeps these options with container `id`.
    pub fn save(&self, store: &Store, id: &str) -> anyhow::Result<()> {
        state::write_json(store, id, FILE, self).with_context(|| format!("record the options of container {id}"))
    }

    /// The options container `id` was created with; a container made by `create IMAGE`
    /// before options were kept runs its image as it is.
    pub fn load(store: &Store, id: &str, image: &str) -> ContainerOptions {
        state::read_json(store, id, FILE)
            .unwrap_or_else(|| ContainerOptions { image: image.to_string(), ..ContainerOptions::default() })
    }
}

/// One `-v` or `--mount`.
#[derive(Debug, Clone, PartialEq)]
pub enum Mount {
    /// A host path; `spec` as given, for messages; `create`: made when missing (`-v`),
    /// else it must exist (`--mount`).
    Bind { bind: Bind, spec: String, create: bool },
    /// A named volume (`None`: an anonymous one, named at creation).
    Volume { name: Option<String>, target: String, read_only: bool, nocopy: bool },
    /// A tmpfs, with its mount options.
    Tmpfs { target: String, options: String },
}

impl Mount {
    /// Readies a host path before it is used: `-v` makes a missing one, as Docker does;
    /// `--mount` needs it to exist. Nothing to do for the others.
    fn prepare(&self) -> anyhow::Result<()> {
        let Mount::Bind { bind, spec, create } = self else { return Ok(()) };
        if bind.host.exists() {
            return Ok(());
        }
        if !create {
            bail!("{spec}: bind source path does not exist: {}", bind.host.display());
        }
        std::fs::create_dir_all(&bind.host).with_context(|| format!("{spec}: create {}", bind.host.display()))
    }
}

/// Parses `-v HOST:CONTAINER[:OPTS]`, `-v NAME:CONTAINER[:OPTS]` or `-v CONTAINER`
/// (the host path is readied by `Mount::prepare`); a relative host path is refused
/// (`./data` would be a volume name to Docker's older clients and a path to newer
/// ones: neither is guessed). `z`/`Z` are accepted: no SELinux labels to change here.
fn volume_flag(spec: &str) -> anyhow::Result<Mount> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, opts) = match parts.as_slice() {
        [t] => ("", *t, ""),
        [s, t] => (*s, *t, ""),
        [s, t, o] => (*s, *t, *o),
        _ => bail!("-v {spec}: want HOST:CONTAINER[:OPTS], NAME:CONTAINER[:OPTS] or CONTAINER"),
    };
    if !target.starts_with('/') {
        bail!("-v {spec}: the path in the container must be absolute");
    }
    mount_target(&format!("-v {spec}"), target)?;
    let (mut read_only, mut nocopy) = (false, false);
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => read_only = true,
            "rw" => read_only = false,
            "z" | "Z" => {}
            "nocopy" => nocopy = true,
            other => bail!("-v {spec}: unknown option {other:?} (ro, rw, z, Z, nocopy)"),
        }
    }
    if source.is_empty() {
        return Ok(Mount::Volume { name: None, target: target.to_string(), read_only, nocopy });
    }
    if !source.starts_with('/') {
        if source.contains('/') || source.starts_with('.') || source.starts_with('~') {
            bail!("-v {spec}: {source} is a relative path: give the host path absolute (or a volume name without /)");
        }
        if !layers_store::volumes::valid_volume_name(source) {
            bail!("-v {spec}: {source:?} is not a valid volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]+)");
        }
        return Ok(Mount::Volume { name: Some(source.to_string()), target: target.to_string(), read_only, nocopy });
    }
    if nocopy {
        bail!("-v {spec}: nocopy is for volumes, not host paths");
    }
    let bind = Bind { host: PathBuf::from(source), target: target.to_string(), read_only };
    Ok(Mount::Bind { bind, spec: format!("-v {spec}"), create: true })
}

/// Parses `--mount type=…,source=…,target=…[,readonly]…` as Docker does (a bind's
/// source must exist); an option we do not implement is refused by name.
fn mount_flag(spec: &str) -> anyhow::Result<Mount> {
    let (mut kind, mut source, mut target) = (String::from("volume"), None, None);
    let (mut read_only, mut nocopy) = (false, false);
    let mut tmpfs_opts = Vec::new();
    for field in spec.split(',') {
        let (k, v) = field.split_once('=').map_or((field, None), |(k, v)| (k, Some(v)));
        let flag = |v: Option<&str>| -> anyhow::Result<bool> {
            match v {
                None | Some("true") | Some("1") => Ok(true),
                Some("false") | Some("0") => Ok(false),
                Some(x) => bail!("--mount {spec}: {k}={x}: true or false"),
            }
        };
        match (k, v) {
            ("type", Some(t)) => kind = t.to_string(),
            ("source" | "src", Some(s)) => source = Some(s.to_string()),
            ("target" | "destination" | "dst", Some(t)) => target = Some(t.to_string()),
            ("readonly" | "ro", v) => read_only = flag(v)?,
            ("volume-nocopy", v) => nocopy = flag(v)?,
            ("tmpfs-size", Some(n)) => {
                let bytes = cgroup::parse_bytes(n).map_err(|e| anyhow::anyhow!("--mount {spec}: {e}"))?;
                tmpfs_opts.push(format!("size={bytes}"));
            }
            ("tmpfs-mode", Some(m)) => {
                u32::from_str_radix(m, 8).with_context(|| format!("--mount {spec}: tmpfs-mode {m}: octal"))?;
                tmpfs_opts.push(format!("mode={m}"));
            }
            _ => bail!("--mount {spec}: unknown or unsupported option {k:?}"),
        }
    }
    let Some(target) = target.filter(|t| t.starts_with('/')) else {
        bail!("--mount {spec}: target=PATH (absolute) is required")
    };
    mount_target(&format!("--mount {spec}"), &target)?;
    match kind.as_str() {
        "bind" => {
            let Some(src) = source.filter(|s| s.starts_with('/')) else {
                bail!("--mount {spec}: a bind needs an absolute source=PATH")
            };
            let bind = Bind { host: PathBuf::from(src), target, read_only };
            Ok(Mount::Bind { bind, spec: format!("--mount {spec}"), create: false })
        }
        "volume" => {
            if let Some(n) = source.as_deref().filter(|n| !layers_store::volumes::valid_volume_name(n)) {
                bail!("--mount {spec}: {n:?} is not a valid volume name");
            }
            Ok(Mount::Volume { name: source, target, read_only, nocopy })
        }
        "tmpfs" => {
            if source.is_some() {
                bail!("--mount {spec}: a tmpfs has no source");
            }
            if tmpfs_opts.iter().all(|o| !o.starts_with("mode=")) {
                tmpfs_opts.push("mode=1777".into());
            }
            Ok(Mount::Tmpfs { target, options: tmpfs_opts.join(",") })
        }
        other => bail!("--mount {spec}: type {other:?} is not supported (bind, volume, tmpfs)"),
    }
}

/// Parses `--tmpfs CONTAINER[:OPTIONS]` (default options: Docker's `mode=1777`).
fn tmpfs(spec: &str) -> anyhow::Result<(String, String)> {
    let (target, options) = spec.split_once(':').unwrap_or((spec, "mode=1777"));
    if !target.starts_with('/') {
        bail!("--tmpfs {spec}: the path must be absolute");
    }
    mount_target(&format!("--tmpfs {spec}"), target)?;
    Ok((target.to_string(), options.to_string()))
}

/// Refuses a mount over the container's root or its /proc, as Docker and runc refuse
/// them: over /proc it would hide what the runtime reads there (and what a process
/// must not reach), and fail later with a bare errno.
fn mount_target(flag: &str, target: &str) -> anyhow::Result<()> {
    let parts: Vec<&str> = target.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    if parts.contains(&"..") {
        bail!("{flag}: the path in the container has a '..' component");
    }
    match parts.first() {
        None => bail!("{flag}: a mount over the container's root is refused"),
        Some(&"proc") => bail!("{flag}: a mount over /proc is refused, as runc refuses it"),
        _ => Ok(()),
    }
}

/// Which seccomp profile `--security-opt` (and `--privileged`) choose.
fn seccomp_choice(security_opt: &[String], privileged: bool) -> anyhow::Result<state::Seccomp> {
    let mut choice = state::Seccomp::Default;
    for o in security_opt {
        choice = match o.split_once(['=', ':']) {
            Some(("seccomp", "unconfined")) => state::Seccomp::Unconfined,
            Some(("seccomp", file)) => state::Seccomp::File(PathBuf::from(file)),
            _ => bail!("--security-opt {o}: unknown option (supported: seccomp=unconfined, seccomp=PROFILE.json)"),
        };
    }
    Ok(if privileged { state::Seccomp::Unconfined } else { choice })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies_parse_and_decide_like_dockers() {
        assert_eq!(restart_flag("on-failure:3").unwrap(), Restart::OnFailure(Some(3)));
        assert!(restart_flag("sometimes").unwrap_err().contains("--restart sometimes"));
        assert!(Restart::OnFailure(Some(2)).again(1, 1) && !Restart::OnFailure(Some(2)).again(1, 2));
        assert!(!Restart::OnFailure(None).again(0, 0) && Restart::Always.again(0, 100));
        assert!(!Restart::No.again(1, 0));
        assert_eq!(Restart::OnFailure(Some(3)).name(), "on-failure:3");
    }
}
