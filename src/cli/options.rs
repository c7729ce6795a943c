//! What a container is created with: `run` and `create` take the same flags, mapped
//! here to the runtime's typed [`ContainerConfig`]. The flags themselves are not kept;
//! the previous release kept them (`options.json`), and [`convert_legacy`] maps those
//! to a config the same way when a store is opened.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use layers_store::Store;

use crate::run::container::config::{self, ContainerConfig, Flag, Mount, Restart, Seccomp, Source};
use crate::run::container::dir::{ContainerDir, File};
use crate::run::log::LogOptions;
use crate::run::{cgroup, image_process, Network};

// Options of a container, from `run` or `create` (and, as the previous release wrote
// them, from an `options.json`).
#[derive(Args, Debug, Clone, Default, serde::Deserialize)]
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
    /// A nameserver for /etc/resolv.conf, instead of the host's.
    #[arg(long, value_name = "IP")]
    pub dns: Vec<String>,
    /// A search domain for /etc/resolv.conf, instead of the host's.
    #[arg(long = "dns-search", value_name = "DOMAIN")]
    pub dns_search: Vec<String>,
    /// An /etc/hosts entry, `NAME:IP`.
    #[arg(long = "add-host", value_name = "NAME:IP")]
    pub add_host: Vec<String>,
    /// `bridge` (root's default: `layers0`, outgoing NAT), `none` (own namespace, only
    /// `lo`), `host`, `pasta[:OPTIONS,…]` or `slirp4netns[:OPTIONS,…]` (Podman's options;
    /// a rootless container's default is pasta, else slirp4netns). The default can be
    /// set: `default` under [network] in store.toml, or LAYERS_DEFAULT_NETWORK.
    #[arg(long, alias = "network", value_parser = net_flag)]
    pub net: Option<Network>,
    /// Publish a port: `[IP:][HOSTPORT:]CONTAINERPORT[/tcp|udp]`, ranges too (on a bridge).
    #[arg(short = 'p', long = "publish", value_name = "SPEC")]
    pub publish: Vec<String>,
    /// Publish every port the image exposes to a free host port.
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
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

fn restart_flag(s: &str) -> Result<Restart, String> {
    Restart::parse(s)
}

fn net_flag(s: &str) -> Result<Network, String> {
    Network::parse(s)
}

impl ContainerOptions {
    /// The config these flags give a new container: env files read and `-e KEY`
    /// given the host's value now, as Docker's client does (or dropped).
    pub fn to_config(&self, store: &layers_store::Store) -> anyhow::Result<ContainerConfig> {
        let mut env = Vec::new();
        for f in &self.env_file {
            let text = crate::bounded::read_text_file(f, crate::bounded::MAX_ENV_FILE, "env file")?;
            env.extend(image_process::env_file(&text));
        }
        env.extend(self.env.iter().cloned());
        let env = env
            .into_iter()
            .filter_map(|e| if e.contains('=') { Some(e) } else { std::env::var(&e).ok().map(|v| format!("{e}={v}")) })
            .collect();
        let settings = crate::network::settings::Settings::load(store.root())?;
        let network = match &self.net {
            Some(n) => n.clone(),
            None => Network::default_for(settings.default.as_deref())?,
        };
        if let Network::Bridge(name) = &network {
            if crate::network::defs::find(&settings, name)?.is_none() {
                anyhow::bail!("--network {name}: network {name} not found");
            }
        }
        let config = self.mapped(env, network)?;
        config.check()?;
        Ok(config)
    }

    /// The flags mapped to a config with `env` as its environment.
    fn mapped(&self, env: Vec<String>, default_network: Network) -> anyhow::Result<ContainerConfig> {
        let mut mounts = Vec::new();
        for v in &self.volume {
            mounts.push(volume_flag(v)?);
        }
        for m in &self.mount {
            mounts.push(mount_flag(m)?);
        }
        for t in &self.tmpfs {
            mounts.push(tmpfs_flag(t)?);
        }
        Ok(ContainerConfig {
            version: config::VERSION,
            image: self.image.clone(),
            process: config::Process {
                entrypoint: self.entrypoint.clone(),
                command: self.command.clone(),
                env,
                workdir: self.workdir.clone(),
                user: self.user.clone(),
                hostname: self.hostname.clone(),
            },
            network: self.net.clone().unwrap_or(default_network),
            resolver: config::Resolver::parse(&self.dns, &self.dns_search, &self.add_host)?,
            ports: {
                let mut ports = Vec::new();
                for p in &self.publish {
                    ports.extend(crate::network::ports::parse(p).map_err(anyhow::Error::msg)?);
                }
                ports
            },
            publish_all: self.publish_all,
            mounts,
            limits: self.limits()?,
            cap_add: self.cap_add.clone(),
            cap_drop: self.cap_drop.clone(),
            privileged: self.privileged,
            seccomp: seccomp_choice(&self.security_opt)?,
            read_only_rootfs: self.read_only,
            init: self.init,
            tty: self.tty,
            interactive: self.interactive,
            log: LogOptions::parse(&self.log_opt)?,
            labels: parse_labels(&self.label)?,
            restart: self.restart,
            auto_remove: self.rm,
        })
    }

    fn limits(&self) -> anyhow::Result<cgroup::Limits> {
        let memory = self.memory.as_deref().map(cgroup::parse_bytes).transpose().map_err(anyhow::Error::msg)?;
        let memory_swap = match self.memory_swap.as_deref() {
            Some("-1") => Some(-1),
            Some(s) => Some(cgroup::parse_bytes(s).map_err(anyhow::Error::msg)? as i64),
            None => None,
        };
        Ok(cgroup::Limits { memory, memory_swap, pids: self.pids_limit, cpus: self.cpus })
    }
}

/// Converts every container's `options.json` (the flags as the previous release kept
/// them) to a `config.json`, once: a container whose options no longer map (a file
/// edited by hand) is named in a warning and left as it is.
pub fn convert_legacy(store: &Store) {
    let Ok(entries) = std::fs::read_dir(store.root().join("containers")) else { return };
    for e in entries.flatten() {
        let id = e.file_name().to_string_lossy().into_owned();
        let dir = ContainerDir::of(store, &id);
        if !dir.has(File::LegacyOptions) || dir.has(File::Config) {
            continue;
        }
        let converted = (|| {
            let o: ContainerOptions = dir.try_read_json(File::LegacyOptions)?.context("it went")?;
            // Its env was resolved when it was written; `none` was the default network then.
            o.mapped(o.env.clone(), Network::None)?.save(&dir)
        })();
        match converted {
            Ok(()) => dir.remove(File::LegacyOptions),
            Err(e) => eprintln!("layers: warning: container {id}: convert its options.json: {e:#}"),
        }
    }
}

/// Parses `-v HOST:CONTAINER[:OPTS]`, `-v NAME:CONTAINER[:OPTS]` or `-v CONTAINER`
/// (the host path is readied at creation and each start). A host path starting with
/// `.` is made absolute against the current directory, as Docker 23+ does; another
/// relative path is refused (no volume name has a `/`). `z`/`Z` are accepted: no
/// SELinux labels to change here.
fn volume_flag(text: &str) -> anyhow::Result<Mount> {
    let absolute;
    let text = match text.split_once(':') {
        Some((source, rest))
            if source == "." || source == ".." || source.starts_with("./") || source.starts_with("../") =>
        {
            let cwd = std::env::current_dir().context("-v: the current directory")?;
            absolute = format!("{}:{rest}", lexically_clean(&cwd.join(source)).display());
            absolute.as_str()
        }
        _ => text,
    };
    let parts: Vec<&str> = text.split(':').collect();
    let (source, target, opts) = match parts.as_slice() {
        [t] => ("", *t, ""),
        [s, t] => (*s, *t, ""),
        [s, t, o] => (*s, *t, *o),
        _ => bail!("-v {text}: want HOST:CONTAINER[:OPTS], NAME:CONTAINER[:OPTS] or CONTAINER"),
    };
    if !target.starts_with('/') {
        bail!("-v {text}: the path in the container must be absolute");
    }
    mount_target(&format!("-v {text}"), target)?;
    let (mut read_only, mut nocopy) = (false, false);
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => read_only = true,
            "rw" => read_only = false,
            "z" | "Z" => {}
            "nocopy" => nocopy = true,
            other => bail!("-v {text}: unknown option {other:?} (ro, rw, z, Z, nocopy)"),
        }
    }
    let mount = |source| Mount { target: target.to_string(), read_only, source, flag: Flag::Volume(text.to_string()) };
    if source.is_empty() {
        return Ok(mount(Source::Volume { name: None, nocopy }));
    }
    if !source.starts_with('/') {
        if source.contains('/') || source.starts_with('.') || source.starts_with('~') {
            bail!("-v {text}: {source} is a relative path: give it as ./{source} or absolute (a volume name has no /)");
        }
        if !layers_store::volumes::valid_volume_name(source) {
            bail!("-v {text}: {source:?} is not a valid volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]+)");
        }
        return Ok(mount(Source::Volume { name: Some(source.to_string()), nocopy }));
    }
    if nocopy {
        bail!("-v {text}: nocopy is for volumes, not host paths");
    }
    Ok(mount(Source::Host { path: PathBuf::from(source), create: true }))
}

/// `path` with `.` and `..` resolved by name, as Go's `filepath.Clean` (no symlink is followed).
fn lexically_clean(path: &std::path::Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// Parses `--mount type=…,source=…,target=…[,readonly]…` as Docker does (a bind's
/// source must exist); an option we do not implement is refused by name.
fn mount_flag(text: &str) -> anyhow::Result<Mount> {
    let (mut kind, mut source, mut target) = (String::from("volume"), None, None);
    let (mut read_only, mut nocopy) = (false, false);
    let mut tmpfs_opts = Vec::new();
    for field in text.split(',') {
        let (k, v) = field.split_once('=').map_or((field, None), |(k, v)| (k, Some(v)));
        let flag = |v: Option<&str>| -> anyhow::Result<bool> {
            match v {
                None | Some("true") | Some("1") => Ok(true),
                Some("false") | Some("0") => Ok(false),
                Some(x) => bail!("--mount {text}: {k}={x}: true or false"),
            }
        };
        match (k, v) {
            ("type", Some(t)) => kind = t.to_string(),
            ("source" | "src", Some(s)) => source = Some(s.to_string()),
            ("target" | "destination" | "dst", Some(t)) => target = Some(t.to_string()),
            ("readonly" | "ro", v) => read_only = flag(v)?,
            ("volume-nocopy", v) => nocopy = flag(v)?,
            ("tmpfs-size", Some(n)) => {
                let bytes = cgroup::parse_bytes(n).map_err(|e| anyhow::anyhow!("--mount {text}: {e}"))?;
                tmpfs_opts.push(format!("size={bytes}"));
            }
            ("tmpfs-mode", Some(m)) => {
                u32::from_str_radix(m, 8).with_context(|| format!("--mount {text}: tmpfs-mode {m}: octal"))?;
                tmpfs_opts.push(format!("mode={m}"));
            }
            _ => bail!("--mount {text}: unknown or unsupported option {k:?}"),
        }
    }
    let Some(target) = target.filter(|t| t.starts_with('/')) else {
        bail!("--mount {text}: target=PATH (absolute) is required")
    };
    mount_target(&format!("--mount {text}"), &target)?;
    let mount = |source| Mount { target: target.clone(), read_only, source, flag: Flag::Mount };
    match kind.as_str() {
        "bind" => {
            let Some(src) = source.filter(|s| s.starts_with('/')) else {
                bail!("--mount {text}: a bind needs an absolute source=PATH")
            };
            Ok(mount(Source::Host { path: PathBuf::from(src), create: false }))
        }
        "volume" => {
            if let Some(n) = source.as_deref().filter(|n| !layers_store::volumes::valid_volume_name(n)) {
                bail!("--mount {text}: {n:?} is not a valid volume name");
            }
            if source.is_none() {
                bail!("--mount {text}: a volume mount needs source=NAME");
            }
            Ok(mount(Source::Volume { name: source, nocopy }))
        }
        "tmpfs" => {
            if source.is_some() {
                bail!("--mount {text}: a tmpfs has no source");
            }
            if tmpfs_opts.iter().all(|o| !o.starts_with("mode=")) {
                tmpfs_opts.push("mode=1777".into());
            }
            Ok(Mount { read_only: false, ..mount(Source::Tmpfs { options: tmpfs_opts.join(",") }) })
        }
        other => bail!("--mount {text}: type {other:?} is not supported (bind, volume, tmpfs)"),
    }
}

/// Parses `--tmpfs CONTAINER[:OPTIONS]` (default options: Docker's `mode=1777`).
fn tmpfs_flag(text: &str) -> anyhow::Result<Mount> {
    let (target, given) = text.split_once(':').unwrap_or((text, ""));
    if !target.starts_with('/') {
        bail!("--tmpfs {text}: the path must be absolute");
    }
    mount_target(&format!("--tmpfs {text}"), target)?;
    // Docker's defaults for `--tmpfs`: noexec (nosuid and nodev are every tmpfs's
    // here), mode 1777; the options given come after and win.
    let options = if text.contains(':') { format!("noexec,{given}") } else { "noexec,mode=1777".to_string() };
    Ok(Mount {
        target: target.to_string(),
        read_only: false,
        source: Source::Tmpfs { options },
        flag: Flag::Tmpfs(given.to_string()),
    })
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

/// Which seccomp profile `--security-opt` chooses (`--privileged` overrides it).
fn seccomp_choice(security_opt: &[String]) -> anyhow::Result<Seccomp> {
    let mut choice = Seccomp::Default;
    for o in security_opt {
        choice = match o.split_once(['=', ':']) {
            Some(("seccomp", "unconfined")) => Seccomp::Unconfined,
            Some(("seccomp", file)) => Seccomp::File(PathBuf::from(file)),
            _ => bail!("--security-opt {o}: unknown option (supported: seccomp=unconfined, seccomp=PROFILE.json)"),
        };
    }
    Ok(choice)
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
