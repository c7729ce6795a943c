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
    /// Bind mount a host path: HOST:CONTAINER[:ro|rw].
    #[arg(short, long)]
    pub volume: Vec<String>,
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
        for v in &o.volume {
            volume(v)?;
        }
        for t in &o.tmpfs {
            tmpfs(t)?;
        }
        seccomp_choice(&o.security_opt, o.privileged)?;
        Ok(o)
    }

    /// `--label`s as a map.
    pub fn labels(&self) -> anyhow::Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for l in &self.label {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            if k.is_empty() {
                bail!("--label {l}: the key is empty");
            }
            out.insert(k.to_string(), v.to_string());
        }
        Ok(out)
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

    /// The runtime's spec for one run of a container whose short ID is `short_id`.
    pub fn spec(&self, short_id: &str, output: Output) -> anyhow::Result<RunSpec> {
        let caps = if self.privileged {
            caps::all()
        } else {
            caps::effective(&self.cap_add, &self.cap_drop).map_err(anyhow::Error::msg)?
        };
        Ok(RunSpec {
            overrides: spec::Overrides {
                entrypoint: self.entrypoint.clone(),
                cmd: self.command.clone(),
                env: self.env.clone(),
                workdir: self.workdir.clone(),
                user: self.user.clone(),
                hostname: self.hostname.clone().unwrap_or_else(|| short_id.to_string()),
            },
            network: self.net,
            binds: self.volume.iter().map(|v| volume(v)).collect::<anyhow::Result<_>>()?,
            tmpfs: self.tmpfs.iter().map(|t| tmpfs(t)).collect::<anyhow::Result<_>>()?,
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

/// Parses `-v HOST:CONTAINER[:ro|rw]`; a missing host dir is created, as Docker does.
fn volume(spec: &str) -> anyhow::Result<Bind> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (host, target, mode) = match parts.as_slice() {
        [h, t] => (*h, *t, "rw"),
        [h, t, m] => (*h, *t, *m),
        _ => bail!("-v {spec}: want HOST:CONTAINER[:ro|rw]"),
    };
    let read_only = match mode {
        "ro" => true,
        "rw" => false,
        other => bail!("-v {spec}: unknown mode {other:?} (ro or rw)"),
    };
    if !host.starts_with('/') || !target.starts_with('/') {
        bail!("-v {spec}: both paths must be absolute (named volumes are not supported)");
    }
    if !std::path::Path::new(host).exists() {
        std::fs::create_dir_all(host).with_context(|| format!("-v {spec}: create {host}"))?;
    }
    Ok(Bind { host: PathBuf::from(host), target: target.to_string(), read_only })
}

/// Parses `--tmpfs CONTAINER[:OPTIONS]` (default options: Docker's `mode=1777`).
fn tmpfs(spec: &str) -> anyhow::Result<(String, String)> {
    let (target, options) = spec.split_once(':').unwrap_or((spec, "mode=1777"));
    if !target.starts_with('/') {
        bail!("--tmpfs {spec}: the path must be absolute");
    }
    Ok((target.to_string(), options.to_string()))
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
