//! `layers inspect`: images and containers in Docker's shape (what scripts written
//! for `docker inspect` read), through `--format` templates, or with `--raw` the
//! stored OCI manifest and config themselves.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use layers_store::images::oci::{ImageConfig, MAX_JSON};
use layers_store::meta::ImageRow;
use layers_store::{ContainerRow, ErrorKind, Store};
use serde_json::{json, Value};

use crate::run::container::config::{Flag, Restart, Seccomp, Source};
use crate::run::container::{ContainerConfig, ContainerDir};
use crate::run::{image_process, state};
use crate::template;

/// What `--type` limits the lookup to.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    Image,
    Container,
}

// Arguments of `layers inspect`.
#[derive(Args)]
pub struct InspectArgs {
    /// Only images, or only containers (default: a container by that name or ID, else an image).
    #[arg(long = "type", value_enum)]
    kind: Option<Kind>,
    /// A Go template per object (`{{.Id}}`, `{{json .Config}}`), or `json`.
    #[arg(short, long)]
    format: Option<String>,
    /// An image's stored OCI manifest and config, as they are (`Manifest`, `Config`).
    #[arg(long)]
    raw: bool,
    /// Image or container names or IDs.
    #[arg(required = true)]
    names: Vec<String>,
}

pub fn inspect(store: &Store, a: &InspectArgs) -> anyhow::Result<ExitCode> {
    let mut out = Vec::new();
    let mut failed = false;
    for name in &a.names {
        match object(store, name, a.kind, a.raw) {
            Ok(v) => out.push(v),
            Err(e) => {
                eprintln!("layers: {}", crate::one_line(&e));
                failed = true;
            }
        }
    }
    outln!("{}", template::inspected(a.format.as_deref(), &out)?);
    Ok(if failed { ExitCode::from(crate::EXIT_ERROR) } else { ExitCode::SUCCESS })
}

fn object(store: &Store, name: &str, kind: Option<Kind>, raw: bool) -> anyhow::Result<Value> {
    if kind != Some(Kind::Image) && !raw {
        match store.snapshots().resolve(name) {
            Ok(c) => return container(store, &c),
            Err(e) if e.kind() == ErrorKind::NotFound && kind.is_none() => {}
            Err(e) => return Err(e.into()),
        }
    }
    let img = store.images().resolve(name).map_err(|e| match (e.kind(), kind) {
        (ErrorKind::NotFound, None) => anyhow::anyhow!("inspect {name}: no such image or container"),
        _ => anyhow::Error::new(e),
    })?;
    if raw {
        return raw_image(store, &img);
    }
    image(store, &img)
}

/// The stored manifest and config, as `inspect` printed them before Docker's shape.
fn raw_image(store: &Store, img: &ImageRow) -> anyhow::Result<Value> {
    let manifest: Value = serde_json::from_slice(&store.content().read_blob(&img.manifest, MAX_JSON)?)
        .with_context(|| format!("parse manifest {}", img.manifest))?;
    let config: Value = serde_json::from_slice(&store.content().read_blob(&img.config, MAX_JSON)?)
        .with_context(|| format!("parse config {}", img.config))?;
    Ok(json!({
        "Id": img.config.to_string(),
        "Digest": img.manifest.to_string(),
        // The store's own view: names as stored.
        "RepoTags": img.tags,
        "Created": img.created,
        "Size": img.size,
        "Manifest": manifest,
        "Config": config,
    }))
}

/// A container's environment as Docker's `Config.Env` shows it: as created (the
/// image's, `-e`'s, the default PATH), without what is only set when it starts: the
/// `HOME=` placeholder filled from the user's passwd entry, and `HOSTNAME`.
fn created_env(
    env: &[String],
    image: &layers_store::images::oci::RuntimeConfig,
    o: &image_process::Overrides,
) -> Vec<String> {
    let given = |e: &str| {
        let key = e.split('=').next().unwrap_or(e);
        let named = |x: &String| x.split('=').next() == Some(key);
        o.env.iter().any(named) || image.env().iter().any(named)
    };
    env.iter().filter(|e| *e != "HOME=" && (!e.starts_with("HOSTNAME=") || given(e))).cloned().collect()
}

/// The runtime config with every field Docker prints, `null` where unset.
fn docker_config(c: &layers_store::images::oci::RuntimeConfig) -> Value {
    json!({
        "User": c.user.clone().unwrap_or_default(),
        "ExposedPorts": c.exposed_ports,
        "Env": c.env,
        "Cmd": c.cmd,
        "Volumes": c.volumes,
        "WorkingDir": c.working_dir.clone().unwrap_or_default(),
        "Entrypoint": c.entrypoint,
        "OnBuild": c.on_build,
        "Labels": c.labels,
        "StopSignal": c.stop_signal,
        "Shell": c.shell,
        "Healthcheck": c.healthcheck,
    })
}

fn image(store: &Store, img: &ImageRow) -> anyhow::Result<Value> {
    let config: ImageConfig = store.images().config(img)?;
    // Names in a registry: `REPO@DIGEST` for each, as a pull records them.
    let mut repo_digests: Vec<String> = img
        .tags
        .iter()
        .filter(|t| !t.starts_with("localhost/"))
        .filter_map(|t| layers_store::Reference::parse(t, layers_store::ShortNames::Local).ok())
        .map(|r| format!("{}@{}", layers_store::familiar(&r.name()), img.manifest))
        .collect();
    repo_digests.dedup();
    let runtime = config.config.clone().unwrap_or_default();
    let layers: Vec<String> = config.rootfs.diff_ids.iter().map(|d| d.to_string()).collect();
    Ok(json!({
        "Id": img.config.to_string(),
        "RepoTags": img.tags.iter().map(|t| layers_store::familiar(t)).collect::<Vec<_>>(),
        "RepoDigests": repo_digests,
        "Parent": "",
        "Comment": config.history.last().and_then(|h| h.comment.clone()).unwrap_or_default(),
        "Created": img.created,
        "Author": config.extra.get("author").cloned().unwrap_or(Value::String(String::new())),
        "Config": docker_config(&runtime),
        "Architecture": config.architecture,
        "Variant": config.variant,
        "Os": config.os,
        "Size": img.size,
        "RootFS": { "Type": "layers", "Layers": layers },
        "Descriptor": { "mediaType": img.media_type, "digest": img.manifest.to_string() },
    }))
}

fn tmpfs_mount(target: &str) -> Value {
    json!({"Type": "tmpfs", "Source": "", "Destination": target, "Mode": "", "RW": true, "Propagation": ""})
}

fn container(store: &Store, c: &ContainerRow) -> anyhow::Result<Value> {
    let o = ContainerConfig::load(&ContainerDir::of(store, &c.id), &c.image.to_string())?;
    let img = store.images().get(&c.image)?;
    let runtime =
        img.as_ref().and_then(|i| store.images().config(i).ok()).and_then(|cfg| cfg.config).unwrap_or_default();
    let overrides = o.overrides(c.short_id());
    let process = image_process::process(&runtime, &overrides, |_| None).ok();
    let status = state::Status::of(store, c);
    let (running, exited) = (status.running(), status.exited());
    let time = |t: Option<i64>| t.map_or("0001-01-01T00:00:00Z".to_string(), layers_store::images::oci::rfc3339);
    let dir = store.snapshots().dir(&c.id);
    let (max_retries, restart_name) = match o.restart {
        Restart::OnFailure(Some(n)) => (n, "on-failure".to_string()),
        r => (0, r.name()),
    };
    let log = o.log;
    let mounts: Vec<Value> = o
        .mounts
        .iter()
        .map(|m| {
            let (target, read_only) = (&m.target, m.read_only);
            match &m.source {
                Source::Host { path, .. } => json!({"Type": "bind", "Source": path, "Destination": target,
                    "Mode": if read_only { "ro" } else { "" }, "RW": !read_only, "Propagation": "rprivate"}),
                Source::Volume { name, .. } => json!({"Type": "volume", "Name": name,
                    "Source": name.as_deref().map(|n| store.volumes().path(n)), "Destination": target, "Driver": "local",
                    "Mode": if read_only { "ro" } else { "" }, "RW": !read_only, "Propagation": ""}),
                Source::Tmpfs { .. } => tmpfs_mount(target),
            }
        })
        .collect();
    let binds: Vec<&str> = o
        .mounts
        .iter()
        .filter_map(|m| if let Flag::Volume(text) = &m.flag { Some(text.as_str()) } else { None })
        .collect();
    let tmpfs: serde_json::Map<String, Value> = o
        .mounts
        .iter()
        .filter_map(|m| match &m.flag {
            Flag::Tmpfs(given) => Some((m.target.clone(), Value::String(given.clone()))),
            _ => None,
        })
        .collect();
    let security_opt: Vec<String> = match &o.seccomp {
        Seccomp::Default => vec![],
        Seccomp::Unconfined => vec!["seccomp=unconfined".into()],
        Seccomp::File(f) => vec![format!("seccomp={}", f.display())],
    };
    let network = o.network.name();
    let mount = store.snapshots().mount_spec(c).ok();
    let lower: Vec<String> =
        mount.as_ref().map(|m| m.lowers.iter().map(|l| l.display().to_string()).collect()).unwrap_or_default();
    Ok(json!({
        "Id": c.id,
        "Created": layers_store::images::oci::rfc3339(c.created),
        "Path": process.as_ref().and_then(|p| p.argv.first().cloned()).unwrap_or_default(),
        "Args": process.as_ref().map(|p| p.argv.iter().skip(1).cloned().collect::<Vec<_>>()).unwrap_or_default(),
        "State": {
            "Status": status.name(),
            "Running": running.is_some(),
            "Paused": matches!(status, state::Status::Paused(_)),
            "Restarting": matches!(status, state::Status::Restarting(_)),
            "OOMKilled": exited.is_some_and(|e| e.oom_killed),
            "Dead": false,
            "Pid": running.map_or(0, |r| r.pid),
            "ExitCode": exited.map_or(0, |e| e.code),
            "Error": exited.and_then(|e| e.error.clone()).unwrap_or_default(),
            "StartedAt": time(running.map(|r| r.started)),
            "FinishedAt": time(exited.map(|e| e.finished)),
        },
        "Image": img.as_ref().map_or(c.image.to_string(), |i| i.config.to_string()),
        "ResolvConfPath": dir.join("resolv.conf"),
        "HostnamePath": dir.join("hostname"),
        "HostsPath": dir.join("hosts"),
        "LogPath": dir.join("log.json"),
        "Name": format!("/{}", c.name),
        "RestartCount": state::restarts(store, &c.id),
        "Driver": "overlay",
        "Platform": "linux",
        "HostConfig": {
            "Binds": binds,
            "NetworkMode": network,
            "RestartPolicy": { "Name": restart_name, "MaximumRetryCount": max_retries },
            "AutoRemove": o.auto_remove,
            "Privileged": o.privileged,
            "ReadonlyRootfs": o.read_only_rootfs,
            "CapAdd": o.cap_add,
            "CapDrop": o.cap_drop,
            "SecurityOpt": security_opt,
            "Tmpfs": tmpfs,
            "Memory": o.limits.memory.unwrap_or(0),
            "NanoCpus": o.limits.cpus.map_or(0, |c| (c * 1e9) as u64),
            "PidsLimit": o.limits.pids,
            "Init": o.init,
            "LogConfig": { "Type": "json-file", "Config": { "max-size": log.max_size.to_string(), "max-file": log.max_files.to_string() } },
        },
        "GraphDriver": {
            "Name": "overlay",
            "Data": {
                "LowerDir": lower.join(":"),
                "UpperDir": dir.join("upper"),
                "WorkDir": dir.join("work"),
                "MergedDir": store.snapshots().merged_dir(c),
            },
        },
        "Mounts": mounts,
        "Config": {
            "Hostname": overrides.hostname,
            "User": o.process.user.clone().or(runtime.user.clone()).unwrap_or_default(),
            "Tty": o.tty,
            "OpenStdin": o.interactive,
            "Env": process.as_ref().map(|p| created_env(&p.env, &runtime, &overrides)),
            "Cmd": if o.process.command.is_empty() { runtime.cmd.clone() } else { Some(o.process.command.clone()) },
            "Image": o.image,
            "WorkingDir": process.as_ref().map(|p| p.cwd.clone()).unwrap_or_default(),
            "Entrypoint": match &o.process.entrypoint { Some(e) if e.is_empty() => None, Some(e) => Some(vec![e.clone()]), None => runtime.entrypoint.clone() },
            "Labels": o.labels,
            "StopSignal": runtime.stop_signal,
        },
        "NetworkSettings": network_settings(network, running),
    }))
}

/// Docker's `NetworkSettings`: the container's address on its bridge and its published
/// ports (`"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]`) while it runs.
fn network_settings(network: &str, running: Option<&state::Running>) -> Value {
    let mut ports = serde_json::Map::new();
    for p in running.map(|r| r.ports.as_slice()).unwrap_or_default() {
        let key = format!("{}/{}", p.container_port, p.proto.name());
        let ip = p.host_ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED).to_string();
        let entry = ports.entry(key).or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = entry {
            list.push(json!({"HostIp": ip, "HostPort": p.host_port.to_string()}));
        }
    }
    let address = running.and_then(|r| r.address.clone());
    let on_network = address.as_ref().map_or_else(|| json!({}), |a| json!({ "IPAddress": a }));
    json!({ "Networks": { network: on_network }, "IPAddress": address.unwrap_or_default(), "Ports": ports })
}
