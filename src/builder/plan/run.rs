//! Planning a RUN: its argv, environment, network and mounts as typed values, and
//! its key.

use std::path::PathBuf;

use anyhow::{bail, Context};
use layers_store::content::digest::Digest;

use super::key::Key;
use super::{shell_of, Inputs, Scope};
use crate::builder::context;
use crate::builder::frontend::instruction::{Command, Instruction};
use crate::builder::frontend::path::clean;
use crate::run::Network;
use layers_store::cache_mounts::Sharing;
use layers_store::fsroot;
use layers_store::meta::ImageRow;

/// Where a mount's content comes from, when not the build context (`from=`).
#[derive(Debug, Clone)]
pub enum MountFrom {
    /// An earlier stage of the plan, by index (its key in the step's key).
    Stage(usize, Digest),
    /// An image, stored (pulled when the plan was made).
    Image(ImageRow),
}

/// The owner and mode of a new cache mount's root (BuildKit's `uid`, `gid`, `mode`:
/// 0, 0 and 0755 unless given).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountOwner {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

/// A `RUN --mount`.
#[derive(Debug, Clone)]
pub enum RunMount {
    /// A store directory kept across builds, by `id`; with `seed`, a new (empty) one is
    /// first filled with that path of a stage or image (`from=`, `source=`).
    Cache {
        id: String,
        target: String,
        readonly: bool,
        seed: Option<(MountFrom, PathBuf)>,
        sharing: Sharing,
        /// `uid=`, `gid=`, `mode=`: the owner and mode a new cache's root gets.
        owner: Option<MountOwner>,
    },
    /// A fresh tmpfs, `size` bytes at most when given.
    Tmpfs { target: String, size: Option<u64> },
    /// A path of the build context (or, with `from`, of a stage's or image's root):
    /// read-only, or with `rw` a throwaway copy-on-write view.
    Bind { source: PathBuf, target: String, rw: bool, from: Option<MountFrom> },
    /// A `--secret` shown as a read-only file at `target` (default
    /// `/run/secrets/ID`; none when only `env` is given) and/or as the variable `env`.
    Secret { id: String, target: Option<String>, env: Option<String>, required: bool, owner: MountOwner },
    /// An `--ssh` agent socket bind-mounted at `target`, `SSH_AUTH_SOCK` pointing at it.
    Ssh { id: String, target: String, required: bool },
}

impl MountFrom {
    fn key_text(&self) -> String {
        match self {
            MountFrom::Stage(_, key) => format!("stage:{key}"),
            MountFrom::Image(row) => format!("image:{}", row.manifest),
        }
    }
}

impl RunMount {
    /// Where it is mounted in the container (a secret given only as a variable: nowhere).
    pub fn target(&self) -> Option<&str> {
        match self {
            RunMount::Cache { target, .. } | RunMount::Tmpfs { target, .. } | RunMount::Bind { target, .. } => {
                Some(target)
            }
            RunMount::Secret { target, .. } => target.as_deref(),
            RunMount::Ssh { target, .. } => Some(target),
        }
    }

    /// Its options in a fixed order, for the key.
    fn key_text(&self) -> String {
        match self {
            // Not `sharing`: how steps share the dir changes nothing a step makes.
            RunMount::Cache { id, target, readonly, seed, owner, .. } => {
                let seed = seed.as_ref().map(|(f, p)| format!(",from={},source={}", f.key_text(), p.display()));
                // Only when given: keys of steps without them stay what they were.
                let owner = owner.map(|o| format!(",owner={}:{}:{:o}", o.uid, o.gid, o.mode));
                format!(
                    "type=cache,id={id},target={target},ro={readonly}{}{}",
                    seed.unwrap_or_default(),
                    owner.unwrap_or_default()
                )
            }
            RunMount::Tmpfs { target, size } => {
                format!("type=tmpfs,target={target},size={}", size.map(|s| s.to_string()).unwrap_or_default())
            }
            RunMount::Bind { source, target, rw, from } => {
                let from = from.as_ref().map(|f| format!(",from={}", f.key_text()));
                format!("type=bind,source={},target={target},rw={rw}{}", source.display(), from.unwrap_or_default())
            }
            // Never the secret's bytes (BuildKit's rule: a changed secret reuses the step).
            RunMount::Secret { id, target, env, required, owner } => format!(
                "type=secret,id={id},target={},env={},required={required},owner={}:{}:{:o}",
                target.as_deref().unwrap_or_default(),
                env.as_deref().unwrap_or_default(),
                owner.uid,
                owner.gid,
                owner.mode
            ),
            // Never the socket's path: the same step on another machine's agent hits.
            RunMount::Ssh { id, target, required } => format!("type=ssh,id={id},target={target},required={required}"),
        }
    }
}

/// A planned RUN.
#[derive(Debug, Clone)]
pub struct RunStep {
    pub argv: Vec<String>,
    /// Build args in scope that ENV does not set, as `KEY=VALUE`.
    pub env: Vec<String>,
    pub network: Network,
    pub mounts: Vec<RunMount>,
}

/// The command as written, for the step line and history.
pub fn command_text(c: &Command) -> String {
    match c {
        Command::Shell(s) => s.clone(),
        Command::Exec(a) => serde_json::to_string(a).unwrap_or_default(),
    }
}

/// The `from=` of a `--mount` option string, if any (to know which stages a build needs).
pub fn mount_from(m: &str) -> Option<&str> {
    m.split(',').find_map(|kv| kv.split_once('=').filter(|(k, _)| k.trim() == "from").map(|(_, v)| v.trim()))
}

/// Parses one `--mount=…` (expanded): every option is understood or refused. `from`
/// finds what `from=` names: an earlier stage, else an image.
fn mount(m: &str, from: &dyn Fn(&str) -> anyhow::Result<MountFrom>) -> anyhow::Result<RunMount> {
    let mut kind = "bind";
    let (mut target, mut source, mut id, mut size, mut from_name, mut sharing) = (None, None, None, None, None, None);
    let (mut uid, mut gid, mut mode) = (None, None, None);
    let (mut rw, mut readonly, mut required, mut env) = (false, false, None, None);
    for kv in m.split(',') {
        let (k, v) = kv.split_once('=').map_or((kv.trim(), None), |(k, v)| (k.trim(), Some(v.trim())));
        let flag = || -> anyhow::Result<bool> {
            match v {
                None | Some("true") => Ok(true),
                Some("false") => Ok(false),
                Some(o) => bail!("--mount={m}: {k}={o}: want true or false"),
            }
        };
        match k {
            "type" => kind = v.unwrap_or_default(),
            "target" | "dst" | "destination" => target = v,
            "source" | "src" => source = v,
            "id" => id = v,
            "size" => size = v,
            "from" => from_name = v,
            "rw" | "readwrite" => rw = flag()?,
            "ro" | "readonly" => readonly = flag()?,
            "sharing" => sharing = v,
            "uid" => uid = v,
            "gid" => gid = v,
            "mode" => mode = v,
            "required" => required = Some(flag()?),
            "env" => env = v,
            _ => bail!("--mount={m}: option {k:?} is not supported"),
        }
    }
    let only = |allowed: &[&str], given: &[(&str, bool)]| -> anyhow::Result<()> {
        match given.iter().find(|(n, set)| *set && !allowed.contains(n)) {
            Some((n, _)) => bail!("--mount={m}: {n} does not apply to type={kind}"),
            None => Ok(()),
        }
    };
    let given = [
        ("source", source.is_some()),
        ("id", id.is_some()),
        ("size", size.is_some()),
        ("rw", rw),
        ("readonly", readonly),
        ("from", from_name.is_some()),
        ("sharing", sharing.is_some()),
        ("uid", uid.is_some()),
        ("gid", gid.is_some()),
        ("mode", mode.is_some()),
        ("required", required.is_some()),
        ("env", env.is_some()),
    ];
    // Secrets and agents need no target= (each has a default); both are read-only anyway.
    if kind == "ssh" {
        // BuildKit proxies the agent to give its socket another owner or mode; here the
        // socket is bind-mounted as it is, so those are refused rather than ignored.
        if let Some((n, _)) = given.iter().find(|(n, set)| *set && ["uid", "gid", "mode"].contains(n)) {
            bail!("--mount={m}: {n} is not supported for type=ssh (the agent's socket is mounted as it is)");
        }
        only(&["id", "readonly", "required"], &given)?;
        return ssh_mount(m, id, target, required);
    }
    if kind == "secret" {
        only(&["id", "readonly", "required", "env", "uid", "gid", "mode"], &given)?;
        return secret_mount(m, id, target, env, required, (uid, gid, mode));
    }
    let Some(target) = target.filter(|t| t.starts_with('/')) else { bail!("--mount={m}: needs an absolute target=") };
    let target = target.to_string();
    let from = from_name.map(|f| from(f).with_context(|| format!("--mount={m}: from={f}"))).transpose()?;
    match kind {
        "cache" => {
            only(&["id", "readonly", "source", "from", "sharing", "uid", "gid", "mode"], &given)?;
            let number = |k: &str, v: Option<&str>, radix: u32, max: u32| -> anyhow::Result<Option<u32>> {
                v.map(|v| match u32::from_str_radix(v, radix) {
                    Ok(n) if n <= max => Ok(n),
                    _ => bail!(
                        "--mount={m}: {k}={v}: want a number{}",
                        if radix == 8 { " in octal, at most 7777" } else { "" }
                    ),
                })
                .transpose()
            };
            let owner = match (
                number("uid", uid, 10, u32::MAX - 1)?,
                number("gid", gid, 10, u32::MAX - 1)?,
                number("mode", mode, 8, 0o7777)?,
            ) {
                (None, None, None) => None,
                (u, g, m) => Some(MountOwner { uid: u.unwrap_or(0), gid: g.unwrap_or(0), mode: m.unwrap_or(0o755) }),
            };
            let sharing = match sharing {
                None | Some("shared") => Sharing::Shared,
                Some("locked") => Sharing::Locked,
                Some("private") => Sharing::Private,
                Some(o) => bail!("--mount={m}: sharing={o}: use shared, locked or private"),
            };
            let id = id.unwrap_or(&target);
            if !layers_store::cache_mounts::valid_id(id) {
                bail!(
                    "--mount={m}: id= must be at most {} bytes of printable text",
                    layers_store::cache_mounts::MAX_ID
                );
            }
            if source.is_some() && from.is_none() {
                bail!("--mount={m}: source= of a cache mount needs from=");
            }
            let source = clean(source.unwrap_or("/"))
                .with_context(|| format!("--mount={m}: the source leaves the root of from="))?;
            let seed = from.map(|f| (f, source));
            Ok(RunMount::Cache { id: id.to_string(), target, readonly, seed, sharing, owner })
        }
        "tmpfs" => {
            only(&["size"], &given)?;
            let size = size
                .map(|s| crate::run::cgroup::parse_bytes(s).map_err(|e| anyhow::anyhow!("--mount={m}: size: {e}")))
                .transpose()?;
            Ok(RunMount::Tmpfs { target, size })
        }
        "bind" => {
            only(&["source", "rw", "readonly", "from"], &given)?;
            let source = clean(source.unwrap_or("."))
                .with_context(|| format!("--mount={m}: the source leaves the build context"))?;
            Ok(RunMount::Bind { source, target, rw: rw && !readonly, from })
        }
        other => bail!("--mount={m}: type {other} is not supported (bind, cache, tmpfs, secret, ssh)"),
    }
}

/// `--mount=type=ssh[,id=…][,target=…][,required]`: the agent `--ssh ID=…` names
/// (`default` unless given), at `target` (default `/run/buildkit/ssh_agent.0`).
fn ssh_mount(m: &str, id: Option<&str>, target: Option<&str>, required: Option<bool>) -> anyhow::Result<RunMount> {
    let target = target.unwrap_or("/run/buildkit/ssh_agent.0");
    if !target.starts_with('/') {
        bail!("--mount={m}: target={target}: want an absolute path");
    }
    let id = id.filter(|i| !i.is_empty()).unwrap_or("default").to_string();
    Ok(RunMount::Ssh { id, target: target.to_string(), required: required.unwrap_or(false) })
}

/// `--mount=type=secret,id=…[,target=…][,env=…][,required][,uid=…,gid=…,mode=…]`, as
/// BuildKit reads it: the id defaults to the target's last name, the target to
/// `/run/secrets/ID` unless only `env=` is given; owned by 0:0, mode 0400 unless said.
fn secret_mount(
    m: &str,
    id: Option<&str>,
    target: Option<&str>,
    env: Option<&str>,
    required: Option<bool>,
    (uid, gid, mode): (Option<&str>, Option<&str>, Option<&str>),
) -> anyhow::Result<RunMount> {
    if let Some(t) = target.filter(|t| !t.starts_with('/')) {
        bail!("--mount={m}: target={t}: want an absolute path");
    }
    let id = match id.filter(|i| !i.is_empty()) {
        Some(i) => i.to_string(),
        None => match target.and_then(|t| t.rsplit('/').next()).filter(|n| !n.is_empty()) {
            Some(name) => name.to_string(),
            None => bail!("--mount={m}: needs id= (or a target= to take it from)"),
        },
    };
    if let Some(e) = env.filter(|e| e.is_empty() || e.contains('=')) {
        bail!("--mount={m}: env={e}: want a variable name");
    }
    let target = match (target, env) {
        (Some(t), _) => Some(t.to_string()),
        (None, Some(_)) => None,
        (None, None) => Some(format!("/run/secrets/{id}")),
    };
    let number = |k: &str, v: Option<&str>, radix: u32, max: u32, default: u32| -> anyhow::Result<u32> {
        match v.map(|v| u32::from_str_radix(v, radix)) {
            None => Ok(default),
            Some(Ok(n)) if n <= max => Ok(n),
            Some(_) => bail!("--mount={m}: {k}={}: want a number", v.unwrap_or_default()),
        }
    };
    let owner = MountOwner {
        uid: number("uid", uid, 10, u32::MAX - 1, 0)?,
        gid: number("gid", gid, 10, u32::MAX - 1, 0)?,
        mode: number("mode", mode, 8, 0o7777, 0o400)?,
    };
    Ok(RunMount::Secret { id, target, env: env.map(str::to_string), required: required.unwrap_or(false), owner })
}

/// Plans a RUN on `scope`: its text, what it runs, and its key on `parent`.
pub fn plan(
    inputs: &Inputs,
    scope: &Scope,
    i: &Instruction,
    parent: &Digest,
    from_stage: &dyn Fn(&str) -> Option<(usize, Digest)>,
) -> anyhow::Result<(String, RunStep, Digest, super::ReadSet)> {
    let Instruction::Run { command, mounts, network, security, heredocs } = i else { bail!("not a RUN") };
    match security.as_deref() {
        None | Some("sandbox") => {}
        Some(other) => bail!("RUN --security={other}: not supported (only sandbox, the default)"),
    }
    let network = match network.as_deref() {
        None => inputs.network.clone(),
        // `default`: the build's own --network, as BuildKit has it.
        Some("default") => inputs.network.clone(),
        Some("host") => Network::Host,
        Some("none") => Network::None,
        Some(other) => bail!("RUN --network={other}: use default, host or none"),
    };
    let from = |name: &str| -> anyhow::Result<MountFrom> {
        Ok(match from_stage(name) {
            Some((i, key)) => MountFrom::Stage(i, key),
            None => MountFrom::Image((inputs.base)(name, None, &format!("RUN --mount from={name}: pulling {name}"))?),
        })
    };
    let mounts: Vec<RunMount> =
        mounts.iter().map(|m| mount(&scope.expand(m)?, &from)).collect::<anyhow::Result<_>>()?;
    let argv = match command {
        Command::Exec(argv) => argv.clone(),
        Command::Shell(text) => {
            let mut script = text.clone();
            for h in heredocs {
                script.push('\n');
                script.push_str(&h.content);
                script.push_str(&h.name);
            }
            // `RUN <<EOF` alone: the document is the script.
            if let [h] = heredocs.as_slice() {
                let opener = text.trim().trim_start_matches("<<").trim_start_matches('-').trim_matches(['"', '\'']);
                if opener == h.name {
                    script = h.content.clone();
                }
            }
            let mut argv = shell_of(&scope.config);
            argv.push(script);
            argv
        }
    };
    // ENV wins over an ARG of the same name, as in Docker.
    let env: Vec<String> =
        scope.args.iter().filter(|(k, _)| scope.config.env_var(k).is_none()).map(|(k, v)| format!("{k}={v}")).collect();
    let text = format!("RUN {}", command_text(command));
    let mut key = Key::new("run", Some(parent))
        .field("argv", &serde_json::to_string(&argv)?)
        .field(
            "network",
            match &network {
                Network::Host => "host",
                Network::Bridge(_) => "bridge",
                _ => "none",
            },
        )
        .field("env", &env.join("\n"));
    // What the step reads, by name: explains a later miss of it.
    let mut read: Vec<(String, String)> = scope
        .args
        .iter()
        .map(|(k, v)| (format!("build arg {k}"), layers_store::Digest::of(v.as_bytes()).to_string()))
        .collect();
    for m in &mounts {
        key = key.field("mount", &m.key_text());
        if let RunMount::Bind { source, from: None, .. } = m {
            // What the step sees through the mount is an input like a COPY's sources.
            let tree = inputs.context_tree;
            let selected = fsroot::plan(tree, std::slice::from_ref(source), "/", &fsroot::Everything)?;
            let content = context::content_digest(tree, &selected, fsroot::Attrs::default(), Some(inputs.store))?;
            key = key.field("content", &content.digest.to_string());
            read.push((format!("mount {}", m.target().unwrap_or_default()), content.digest.to_string()));
        }
    }
    Ok((text, RunStep { argv, env, network, mounts }, key.finish(), read))
}
