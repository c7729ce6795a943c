//! Config instructions (ENV, LABEL, WORKDIR, USER, EXPOSE, VOLUME, STOPSIGNAL,
//! SHELL, CMD, ENTRYPOINT, HEALTHCHECK, ONBUILD, MAINTAINER) applied to a stage's
//! runtime config. Pure: what they do is known before anything runs.

use anyhow::{bail, Context};
use layers_store::oci::RuntimeConfig;
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

/// Applies a config-only instruction to `scope.config`; returns its history text.
pub fn apply(scope: &mut Scope, i: &Instruction) -> anyhow::Result<String> {
    Ok(match i {
        Instruction::Env { pairs } => {
            let mut text = Vec::new();
            for p in pairs {
                let (k, v) = (scope.expand(&p.key)?, scope.expand(&p.value)?);
                scope.config.set_env(&format!("{k}={v}"));
                text.push(format!("{k}={v}"));
            }
            format!("ENV {}", text.join(" "))
        }
        Instruction::Label { pairs } => {
            let mut text = Vec::new();
            for p in pairs {
                let (k, v) = (scope.expand(&p.key)?, scope.expand(&p.value)?);
                scope.config.labels.get_or_insert_with(Default::default).insert(k.clone(), v.clone());
                text.push(format!("{k}={v}"));
            }
            format!("LABEL {}", text.join(" "))
        }
        Instruction::Workdir { path } => {
            let p = scope.expand(path)?;
            let base = scope.config.working_dir().to_string();
            let joined = if p.starts_with('/') { p } else { format!("{}/{p}", base.trim_end_matches('/')) };
            let cleaned = format!("/{}", clean(&joined).unwrap_or_default().display());
            scope.config.working_dir = Some(cleaned.clone());
            format!("WORKDIR {cleaned}")
        }
        Instruction::User { user } => {
            let u = scope.expand(user)?;
            // A number that is no uid fails here, at its own line, not at the next RUN.
            crate::run::check_user_ids(&u).map_err(anyhow::Error::msg)?;
            scope.config.user = Some(u.clone());
            format!("USER {u}")
        }
        Instruction::Expose { ports } => {
            let mut all = Vec::new();
            for p in ports {
                all.extend(scope.expand_words(p)?);
            }
            let exposed = scope.config.exposed_ports.get_or_insert_with(Default::default);
            for p in &all {
                let p = if p.contains('/') { p.clone() } else { format!("{p}/tcp") };
                exposed.insert(p, json!({}));
            }
            format!("EXPOSE {}", all.join(" "))
        }
        Instruction::Volume { paths } => {
            let paths: Vec<String> = paths.iter().map(|p| scope.expand(p)).collect::<anyhow::Result<_>>()?;
            let volumes = scope.config.volumes.get_or_insert_with(Default::default);
            for p in &paths {
                volumes.insert(p.clone(), json!({}));
            }
            format!("VOLUME {}", serde_json::to_string(&paths)?)
        }
        Instruction::Stopsignal { signal } => {
            let s = scope.expand(signal)?;
            crate::run::control::parse_signal(&s)?;
            scope.config.stop_signal = Some(s.clone());
            format!("STOPSIGNAL {s}")
        }
        Instruction::Shell { argv } => {
            scope.config.shell = Some(argv.clone());
            format!("SHELL {}", serde_json::to_string(argv)?)
        }
        Instruction::Cmd { command } => {
            let argv = argv(&scope.config, command);
            scope.config.cmd = Some(argv.clone());
            scope.cmd_set = true;
            format!("CMD {}", serde_json::to_string(&argv)?)
        }
        Instruction::Entrypoint { command } => {
            let argv = argv(&scope.config, command);
            scope.config.entrypoint = Some(argv.clone());
            // As Docker: an ENTRYPOINT drops a CMD inherited from the base.
            if !scope.cmd_set {
                scope.config.cmd = None;
            }
            format!("ENTRYPOINT {}", serde_json::to_string(&argv)?)
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
            scope.config.healthcheck = Some(v.clone());
            format!("HEALTHCHECK {v}")
        }
        Instruction::Onbuild { text, .. } => {
            scope.config.on_build.get_or_insert_with(Vec::new).push(text.clone());
            format!("ONBUILD {text}")
        }
        Instruction::Maintainer { name } => {
            scope.author = Some(name.clone());
            format!("MAINTAINER {name}")
        }
        Instruction::From { .. }
        | Instruction::Run { .. }
        | Instruction::Copy { .. }
        | Instruction::Add { .. }
        | Instruction::Arg { .. } => bail!("not a config instruction"),
    })
}
