//! What a container is created with, typed, and kept in its dir as `config.json`: each
//! `start`, `ps` and `inspect` reads it; no flag is parsed again after `create`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use layers_store::Store;

use super::dir::{ContainerDir, File};
use super::network::Network;
use super::process::{Output, RunSpec};
use crate::run::log::LogOptions;
use crate::run::{caps, cgroup, child, image_process};

/// The format of `config.json` this release writes; a newer one is refused by name.
pub const VERSION: u32 = 1;

/// A container's configuration.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ContainerConfig {
    /// [`VERSION`] when it was written.
    pub version: u32,
    /// The image as it was named at creation (the row holds its digest).
    pub image: String,
    /// What runs, over the image's defaults.
    pub process: Process,
    /// Its network.
    pub network: Network,
    /// `--dns`, `--dns-search`, `--add-host`.
    #[serde(default, skip_serializing_if = "Resolver::is_empty")]
    pub resolver: Resolver,
    /// `-p`: ports published on the host (on a bridge).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<crate::network::ports::PortMap>,
    /// `-P`: the image's exposed ports too, each to a free host port.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub publish_all: bool,
    /// Bind mounts, volumes and tmpfs mounts, in the order they are mounted.
    pub mounts: Vec<Mount>,
    /// cgroup limits.
    pub limits: cgroup::Limits,
    /// Capabilities added to and dropped from Docker's default set, by name.
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// Every capability, no /proc masks, no no_new_privs, no seccomp.
    pub privileged: bool,
    /// Its seccomp profile (unless privileged).
    pub seccomp: Seccomp,
    /// The root filesystem mounted read-only.
    pub read_only_rootfs: bool,
    /// A small init as PID 1.
    pub init: bool,
    /// A pty of its own.
    pub tty: bool,
    /// Its stdin kept open.
    pub interactive: bool,
    /// How its log grows.
    pub log: LogOptions,
    pub labels: BTreeMap<String, String>,
    /// Whether its monitor starts it again when it exits.
    pub restart: Restart,
    /// Removed when it exits (`--rm`).
    pub auto_remove: bool,
}

/// Name resolution over the host's: `--dns`, `--dns-search`, `--add-host`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Resolver {
    /// Nameservers, replacing the host's.
    #[serde(default)]
    pub nameservers: Vec<std::net::IpAddr>,
    /// Search domains, replacing the host's.
    #[serde(default)]
    pub search: Vec<String>,
    /// Extra /etc/hosts lines: name and address.
    #[serde(default)]
    pub hosts: Vec<(String, std::net::IpAddr)>,
}

impl Resolver {
    /// The flags, checked: addresses must be IP addresses, names without blanks.
    pub fn parse(dns: &[String], search: &[String], add_host: &[String]) -> anyhow::Result<Resolver> {
        let mut r = Resolver::default();
        for d in dns {
            r.nameservers.push(d.parse().map_err(|_| anyhow::anyhow!("--dns {d}: not an IP address"))?);
        }
        for s in search {
            if s.is_empty() || s.chars().any(char::is_whitespace) {
                bail!("--dns-search {s:?}: not a domain");
            }
            r.search.push(s.clone());
        }
        for h in add_host {
            // NAME:IP, the address may be IPv6 (`name:::1`) as Docker takes it.
            let (name, ip) = h.split_once(':').with_context(|| format!("--add-host {h}: want NAME:IP"))?;
            if ip == "host-gateway" {
                bail!("--add-host {h}: host-gateway is not supported; give the address");
            }
            let ip = ip.trim_start_matches('[').trim_end_matches(']');
            let addr = ip.parse().map_err(|_| anyhow::anyhow!("--add-host {h}: {ip:?} is not an IP address"))?;
            if name.is_empty() || name.chars().any(char::is_whitespace) {
                bail!("--add-host {h}: {name:?} is not a host name");
            }
            r.hosts.push((name.to_string(), addr));
        }
        Ok(r)
    }

    /// Nothing over the host's.
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty() && self.search.is_empty() && self.hosts.is_empty()
    }
}

/// What runs in a container, over its image's config.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Process {
    /// `Some("")` clears the image's entrypoint.
    pub entrypoint: Option<String>,
    /// Replaces the image's cmd when not empty.
    pub command: Vec<String>,
    /// `KEY=VALUE` over the image's.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    /// `UID[:GID]` or `NAME[:GROUP]`.
    pub user: Option<String>,
    /// Default: the container's short ID.
    pub hostname: Option<String>,
}

/// One mount into the container.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Mount {
    /// Absolute path in the container.
    pub target: String,
    pub read_only: bool,
    pub source: Source,
    /// Which flag made it (inspect shows them apart, as Docker).
    pub flag: Flag,
}

/// What is mounted.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Source {
    /// A host path; `create`: made when missing (`-v`), else it must exist (`--mount`).
    Host { path: PathBuf, create: bool },
    /// A named volume; `None` only before the container exists (an anonymous one,
    /// named at creation); `nocopy`: not filled from the image.
    Volume { name: Option<String>, nocopy: bool },
    /// A tmpfs with these mount options.
    Tmpfs { options: String },
}

/// The flag a mount came from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Flag {
    /// `-v`, as typed (an anonymous volume's with the name it got): Docker's `Binds`.
    Volume(String),
    /// `--mount`.
    Mount,
    /// `--tmpfs`, with its options as typed: Docker's `HostConfig.Tmpfs`.
    Tmpfs(String),
}

/// The seccomp profile a container runs under.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
pub enum Seccomp {
    Unconfined,
    /// Docker's default, in effect (`seccomp.rs`).
    Default,
    /// A profile in Docker's format.
    File(PathBuf),
}

/// Whether the monitor starts a detached container again when it exits.
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
    /// Docker's `--restart` forms: `no`, `on-failure[:N]`, `always`, `unless-stopped`.
    pub fn parse(s: &str) -> Result<Restart, String> {
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

impl ContainerConfig {
    /// A container that runs `image` as it is, with Docker's defaults.
    pub fn of_image(image: &str) -> ContainerConfig {
        ContainerConfig {
            version: VERSION,
            image: image.to_string(),
            process: Process::default(),
            network: Network::None,
            resolver: Resolver::default(),
            ports: Vec::new(),
            publish_all: false,
            mounts: Vec::new(),
            limits: cgroup::Limits::default(),
            cap_add: Vec::new(),
            cap_drop: Vec::new(),
            privileged: false,
            seccomp: Seccomp::Default,
            read_only_rootfs: false,
            init: false,
            tty: false,
            interactive: false,
            log: LogOptions::default(),
            labels: BTreeMap::new(),
            restart: Restart::No,
            auto_remove: false,
        }
    }

    /// Refuses what no container could start with; run at creation, so that a typo
    /// fails `create`, not a later `start`.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.auto_remove && self.restart != Restart::No {
            bail!(
                "--restart {} and --rm conflict: a container removed when it exits cannot be restarted",
                self.restart.name()
            );
        }
        if self.limits.memory_swap.is_some() && self.limits.memory.is_none() {
            bail!("--memory-swap needs --memory");
        }
        if self.limits.cpus.is_some_and(|c| !(c.is_finite() && c > 0.0)) {
            bail!("--cpus must be a positive number");
        }
        let publishable = matches!(self.network, Network::Bridge(_)) || self.network.user_mode();
        if (!self.ports.is_empty() || self.publish_all) && !publishable {
            let flag = if self.ports.is_empty() { "-P" } else { "-p" };
            bail!(
                "{flag}: publishing ports needs --network bridge, pasta or slirp4netns (this container's network is {})",
                self.network.name()
            );
        }
        if matches!(self.network, Network::Bridge(_)) && !layers_store::layer::encoding::in_initial_user_namespace() {
            bail!(
                "--network {}: bridges need root (they are made in the host's network namespace); \
                 rootless containers use --network pasta or slirp4netns",
                self.network.name()
            );
        }
        // pasta started by root becomes `nobody` before it opens the container's
        // namespace, which `nobody` may not open; kept root (`--runas 0`), a program
        // that parses the container's traffic would be root on the host.
        // slirp4netns drops its capabilities in a sandbox of its own instead.
        if matches!(self.network, Network::Pasta(_))
            && rustix::process::geteuid().is_root()
            && layers_store::layer::encoding::in_initial_user_namespace()
        {
            bail!("--network pasta is for rootless containers: as root, use --network slirp4netns");
        }
        self.capabilities()?;
        Ok(())
    }

    /// The capabilities it keeps.
    pub fn capabilities(&self) -> anyhow::Result<rustix::thread::CapabilitySet> {
        if self.privileged {
            return Ok(caps::all());
        }
        caps::effective(&self.cap_add, &self.cap_drop).map_err(anyhow::Error::msg)
    }

    /// The seccomp profile in effect.
    pub fn seccomp_in_effect(&self) -> Seccomp {
        if self.privileged {
            Seccomp::Unconfined
        } else {
            self.seccomp.clone()
        }
    }

    /// Readies host paths (at creation and each start): `-v` makes a missing one, as
    /// Docker does; `--mount` needs it to exist.
    pub fn prepare_mounts(&self) -> anyhow::Result<()> {
        for m in &self.mounts {
            let Source::Host { path, create } = &m.source else { continue };
            if path.exists() {
                continue;
            }
            if !create {
                bail!("--mount target={}: bind source path does not exist: {}", m.target, path.display());
            }
            std::fs::create_dir_all(path).with_context(|| format!("-v {}: create {}", m.target, path.display()))?;
        }
        Ok(())
    }

    /// What it puts over the image's process, for a container whose short ID is
    /// `short_id` (its default host name).
    pub fn overrides(&self, short_id: &str) -> image_process::Overrides {
        let p = &self.process;
        image_process::Overrides {
            entrypoint: p.entrypoint.clone(),
            cmd: p.command.clone(),
            env: p.env.clone(),
            workdir: p.workdir.clone(),
            user: p.user.clone(),
            hostname: p.hostname.clone().unwrap_or_else(|| short_id.to_string()),
        }
    }

    /// The runtime's spec for one run of a container whose short ID is `short_id`.
    pub fn spec(&self, store: &Store, short_id: &str, output: Output) -> anyhow::Result<RunSpec> {
        self.prepare_mounts()?;
        let mut binds = Vec::new();
        let mut tmpfs = Vec::new();
        for m in &self.mounts {
            let (target, read_only) = (m.target.clone(), m.read_only);
            match &m.source {
                Source::Host { path, .. } => binds.push(child::Bind { host: path.clone(), target, read_only }),
                Source::Volume { name: Some(name), .. } => {
                    binds.push(child::Bind { host: store.volumes().path(name), target, read_only })
                }
                Source::Volume { name: None, .. } => bail!("volume at {target}: not made at creation"),
                Source::Tmpfs { options } => tmpfs.push((target, options.clone())),
            }
        }
        Ok(RunSpec {
            overrides: self.overrides(short_id),
            network: self.network.clone(),
            ports: self.ports.clone(),
            publish_all: self.publish_all,
            resolver: self.resolver.clone(),
            binds,
            tmpfs,
            limits: self.limits,
            caps: self.capabilities()?,
            seccomp: self.seccomp_in_effect(),
            privileged: self.privileged,
            read_only: self.read_only_rootfs,
            init: self.init,
            tty: self.tty,
            interactive: self.interactive,
            output,
            report: None,
            events: None,
        })
    }

    /// Keeps it in the container's dir.
    pub fn save(&self, dir: &ContainerDir) -> anyhow::Result<()> {
        dir.write_json(File::Config, self).with_context(|| format!("write {}", dir.file(File::Config).display()))
    }

    /// The config in `dir`; a container made without one (`layers mount IMAGE`) runs
    /// `image` as it is.
    pub fn load(dir: &ContainerDir, image: &str) -> anyhow::Result<ContainerConfig> {
        let path = dir.file(File::Config);
        let Some(config) =
            dir.try_read_json::<serde_json::Value>(File::Config).with_context(|| format!("read {}", path.display()))?
        else {
            return Ok(ContainerConfig::of_image(image));
        };
        let version = config.get("version").and_then(|v| v.as_u64()).unwrap_or(0);
        if version != u64::from(VERSION) {
            bail!("{}: format version {version}, this layers reads {VERSION}: made by another release", path.display());
        }
        serde_json::from_value(config).with_context(|| format!("read {}", path.display()))
    }

    /// The memory limit as `-m` would give it, for messages.
    pub fn memory_text(&self) -> Option<String> {
        self.limits.memory.map(cgroup::format_bytes)
    }
}
