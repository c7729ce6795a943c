//! Config instructions (ENV, LABEL, WORKDIR, USER, EXPOSE, VOLUME, STOPSIGNAL,
//! SHELL, CMD, ENTRYPOINT, HEALTHCHECK, ONBUILD, MAINTAINER) applied to a stage's
//! runtime config. Pure: what they do is known before anything runs.

use anyhow::{bail, Context};
use layers_store::images::oci::RuntimeConfig;
use serde_json::json;

use super::Scope;
use crate::builder::frontend::instruction::{Command, Instruction};
use crate::builder::frontend::path::clean;

/// The shell of shell-form instructions: `SHELL`, else `/bin/sh -c`.
pub fn shell_of(config: &RuntimeConfig) -> Vec<String> {
    config.shell.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
}

/// CMD/ENTRYPOINT argv: exec form as is, shell form through the SHELL.
pub fn argv(config: &RuntimeConfig, c: &Command) -> Vec<String> {
    match c {
        Command::Exec(a) => a.clone(),
        Command::Shell(s) => {
            let mut argv = shell_of(config);
            argv.push(s.clone());
            argv
        }
    }
}

/// Most environment variables and labels a build gives an image (each): beyond this
/// an image config stops being something every reader takes (4 MiB).
pub const MAX_CONFIG_ENTRIES: usize = 10_000;

/// What a config instruction changes, with its values expanded: the plan applies it
/// to the config it is at, and the executor replays it onto the config it is at, so
/// no step keeps a whole config of its own (which made LABEL and ENV lines cost
/// memory quadratic in their number).
#[derive(Debug, Clone)]
pub enum Change {
    Env(Vec<String>),
    Labels(Vec<(String, String)>),
    WorkingDir(String),
    User(String),
    Expose(Vec<String>),
    Volumes(Vec<String>),
    StopSignal(String),
    Shell(Vec<String>),
    Cmd(Vec<String>),
    /// `clear_cmd`: the stage set no CMD, so the base's goes (as Docker).
    Entrypoint {
        argv: Vec<String>,
        clear_cmd: bool,
    },
    Healthcheck(serde_json::Value),
    OnBuild(String),
    Author(String),
}

impl Change {
    /// Applies the change to `config` (and `author`, for MAINTAINER).
    pub fn apply(&self, config: &mut RuntimeConfig, author: &mut Option<String>) -> anyhow::Result<()> {
        match self {
            Change::Env(kvs) => {
                config.set_envs(kvs.iter().cloned());
                if config.env().len() > MAX_CONFIG_ENTRIES {
                    bail!("ENV: the image would have more than {MAX_CONFIG_ENTRIES} environment variables");
                }
            }
            Change::Labels(pairs) => {
                let labels = config.labels.get_or_insert_with(Default::default);
                labels.extend(pairs.iter().cloned());
                if labels.len() > MAX_CONFIG_ENTRIES {
                    bail!("LABEL: the image would have more than {MAX_CONFIG_ENTRIES} labels");
                }
            }
            Change::WorkingDir(d) => config.working_dir = Some(d.clone()),
            Change::User(u) => config.user = Some(u.clone()),
            Change::Expose(ports) => {
                let exposed = config.exposed_ports.get_or_insert_with(Default::default);
                exposed.extend(ports.iter().map(|p| (p.clone(), json!({}))));
                if exposed.len() > MAX_CONFIG_ENTRIES {
                    bail!("EXPOSE: the image would expose more than {MAX_CONFIG_ENTRIES} ports");
                }
            }
            Change::Volumes(paths) => {
                let volumes = config.volumes.get_or_insert_with(Default::default);
                volumes.extend(paths.iter().map(|p| (p.clone(), json!({}))));
                if volumes.len() > MAX_CONFIG_ENTRIES {
                    bail!("VOLUME: the image would have more than {MAX_CONFIG_ENTRIES} volumes");
                }
            }
            Change::StopSignal(s) => config.stop_signal = Some(s.clone()),
            Change::Shell(argv) => config.shell = Some(argv.clone()),
            Change::Cmd(argv) => config.cmd = Some(argv.clone()),
            Change::Entrypoint { argv, clear_cmd } => {
                config.entrypoint = Some(argv.clone());
                if *clear_cmd {
                    config.cmd = None;
                }
            }
            Change::Healthcheck(v) => config.healthcheck = Some(v.clone()),
            Change::OnBuild(text) => {
                let triggers = config.on_build.get_or_insert_with(Vec::new);
                triggers.push(text.clone());
                if triggers.len() > MAX_CONFIG_ENTRIES {
                    bail!("ONBUILD: the image would have more than {MAX_CONFIG_ENTRIES} triggers");
                }
            }
            Change::Author(name) => *author = Some(name.clone()),
        }
        Ok(())
    }
}

/// Plans a config-only instruction: its history text and its change, applied to `scope`.
pub fn apply(scope: &mut Scope, i: &Instruction) -> anyhow::Result<(String, Change)> {
    let (text, change) = change_of(scope, i)?;
    change.apply(&mut scope.config, &mut scope.author)?;
    if let Change::Cmd(_) = change {
        scope.cmd_set = true;
    }
    Ok((text, change))
}

/// What `i` changes, expanded in `scope`, and its history text.
fn change_of(scope: &Scope, i: &Instruction) -> anyhow::Result<(String, Change)> {
    Ok(match i {
        Instruction::Env { pairs } => {
            let mut kvs = Vec::new();
            for p in pairs {
                kvs.push(format!("{}={}", scope.expand(&p.key)?, scope.expand(&p.value)?));
            }
            (format!("ENV {}", kvs.join(" ")), Change::Env(kvs))
        }
        Instruction::Label { pairs } => {
            let mut kvs = Vec::new();
            for p in pairs {
                kvs.push((scope.expand(&p.key)?, scope.expand(&p.value)?));
            }
            let text: Vec<String> = kvs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            (format!("LABEL {}", text.join(" ")), Change::Labels(kvs))
        }
        Instruction::Workdir { path } => {
            let p = scope.expand(path)?;
            let base = scope.config.working_dir().to_string();
            let joined = if p.starts_with('/') { p } else { format!("{}/{p}", base.trim_end_matches('/')) };
            let cleaned = format!("/{}", clean(&joined).unwrap_or_default().display());
            (format!("WORKDIR {cleaned}"), Change::WorkingDir(cleaned))
        }
        Instruction::User { user } => {
            let u = scope.expand(user)?;
            // A number that is no uid fails here, at its own line, not at the next RUN.
            crate::run::check_user_ids(&u).map_err(anyhow::Error::msg)?;
            (format!("USER {u}"), Change::User(u))
        }
        Instruction::Expose { ports } => {
            let mut all = Vec::new();
            for p in ports {
                all.extend(scope.expand_words(p)?);
            }
            let ports = all.iter().map(|p| if p.contains('/') { p.clone() } else { format!("{p}/tcp") }).collect();
            (format!("EXPOSE {}", all.join(" ")), Change::Expose(ports))
        }
        Instruction::Volume { paths } => {
            let paths: Vec<String> = paths.iter().map(|p| scope.expand(p)).collect::<anyhow::Result<_>>()?;
            (format!("VOLUME {}", serde_json::to_string(&paths)?), Change::Volumes(paths))
        }
        Instruction::Stopsignal { signal } => {
            let s = scope.expand(signal)?;
            crate::run::control::parse_signal(&s)?;
            (format!("STOPSIGNAL {s}"), Change::StopSignal(s))
        }
        Instruction::Shell { argv } => (format!("SHELL {}", serde_json::to_string(argv)?), Change::Shell(argv.clone())),
        Instruction::Cmd { command } => {
            let argv = argv(&scope.config, command);
            (format!("CMD {}", serde_json::to_string(&argv)?), Change::Cmd(argv))
        }
        Instruction::Entrypoint { command } => {
            let argv = argv(&scope.config, command);
            let text = format!("ENTRYPOINT {}", serde_json::to_string(&argv)?);
            (text, Change::Entrypoint { argv, clear_cmd: !scope.cmd_set })
        }
        Instruction::Healthcheck { check } => {
            let v = match check {
                None => json!({"Test": ["NONE"]}),
                Some(h) => {
                    let test = match &h.command {
                        Command::Shell(s) => json!(["CMD-SHELL", s]),
                        Command::Exec(a) => {
                            let mut t = vec!["CMD".to_string()];
                            t.extend(a.iter().cloned());
                            json!(t)
                        }
                    };
                    let mut v = json!({"Test": test});
                    for (key, d) in [
                        ("Interval", &h.interval),
                        ("Timeout", &h.timeout),
                        ("StartPeriod", &h.start_period),
                        ("StartInterval", &h.start_interval),
                    ] {
                        if let Some(d) = d {
                            v[key] = json!(crate::format::duration_ns(d)?);
                        }
                    }
                    if let Some(r) = &h.retries {
                        v["Retries"] = json!(r.parse::<u64>().with_context(|| format!("HEALTHCHECK --retries={r}"))?);
                    }
                    v
                }
            };
            (format!("HEALTHCHECK {v}"), Change::Healthcheck(v))
        }
        Instruction::Onbuild { text, .. } => (format!("ONBUILD {text}"), Change::OnBuild(text.clone())),
        Instruction::Maintainer { name } => (format!("MAINTAINER {name}"), Change::Author(name.clone())),
        Instruction::From { .. }
        | Instruction::Run { .. }
        | Instruction::Copy { .. }
        | Instruction::Add { .. }
        | Instruction::Arg { .. } => bail!("not a config instruction"),
    })
}
