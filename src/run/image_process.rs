//! What a container runs: the image config's Entrypoint, Cmd, Env, WorkingDir and
//! User, overridden by `docker run`'s flags. Pure: no I/O.

use layers_store::images::oci::{merge_env, RuntimeConfig};

/// The process to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// argv; `argv[0]` is looked up in the container's PATH.
    pub argv: Vec<String>,
    /// `KEY=VALUE`, in order, no duplicates.
    pub env: Vec<String>,
    /// Absolute working directory.
    pub cwd: String,
    /// `UID[:GID]` or `NAME[:GROUP]`, resolved inside the container.
    pub user: String,
}

/// Docker's default PATH when the image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Overrides from the command line.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--entrypoint` (an empty string clears the image's).
    pub entrypoint: Option<String>,
    /// Arguments after the image.
    pub cmd: Vec<String>,
    /// `-e KEY=VALUE` (or `-e KEY`, taking the value from `host_env`).
    pub env: Vec<String>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `-u`.
    pub user: Option<String>,
    /// `--hostname`, for `HOSTNAME`.
    pub hostname: String,
}

/// The command line: the entrypoint and command, the image's or those overriding them.
pub fn argv(config: &RuntimeConfig, o: &Overrides) -> Vec<String> {
    let entrypoint = match &o.entrypoint {
        Some(e) if e.is_empty() => Vec::new(),
        Some(e) => vec![e.clone()],
        None => config.entrypoint.clone().unwrap_or_default(),
    };
    // As docker run: new arguments replace Cmd; a new entrypoint drops the image's Cmd.
    let cmd = if !o.cmd.is_empty() {
        o.cmd.clone()
    } else if o.entrypoint.is_some() {
        Vec::new()
    } else {
        config.cmd.clone().unwrap_or_default()
    };
    entrypoint.into_iter().chain(cmd).collect()
}

/// Combines an image config (`config` object of the image config JSON) with overrides.
pub fn process(
    config: &RuntimeConfig,
    o: &Overrides,
    host_env: impl Fn(&str) -> Option<String>,
) -> Result<Process, String> {
    let argv = argv(config, o);
    if argv.is_empty() {
        return Err("no command: the image has no Entrypoint or Cmd; give one after the image name".into());
    }
    let mut env = vec![format!("PATH={DEFAULT_PATH}"), format!("HOSTNAME={}", o.hostname)];
    let overrides = o.env.iter().filter_map(|e| match e.contains('=') {
        true => Some(e.clone()),
        false => host_env(e).map(|v| format!("{e}={v}")),
    });
    merge_env(&mut env, config.env().iter().cloned().chain(overrides));
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        // Filled in from the user's passwd entry inside the container, else /root.
        env.push("HOME=".into());
    }
    let cwd = o.workdir.clone().or_else(|| config.working_dir.clone()).unwrap_or_default();
    let cwd = if cwd.is_empty() { "/".to_string() } else { cwd };
    if !cwd.starts_with('/') {
        return Err(format!("working directory {cwd:?} is not absolute"));
    }
    let user = o.user.clone().or_else(|| config.user.clone()).unwrap_or_default();
    Ok(Process { argv, env, cwd, user: if user.is_empty() { "0".into() } else { user } })
}

/// Parses an `--env-file`: `KEY=VALUE` or `KEY` lines; `#` comments and blank lines skipped.
pub fn env_file(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn typed(v: Value) -> RuntimeConfig {
        serde_json::from_value(v).unwrap_or_default()
    }

    fn run(config: Value, o: Overrides) -> Process {
        let config = typed(config);
        process(&config, &o, |k| (k == "FROM_HOST").then(|| "host".to_string())).unwrap()
    }

    #[test]
    fn image_defaults_and_docker_overrides() {
        let cfg = json!({"Entrypoint": ["/init"], "Cmd": ["serve", "-v"], "Env": ["PATH=/app/bin", "A=1"], "WorkingDir": "/app", "User": "app"});
        let p = run(cfg.clone(), Overrides { hostname: "h".into(), ..Default::default() });
        assert_eq!(p.argv, ["/init", "serve", "-v"]);
        // Docker's order: its defaults, each replaced in place (ReplaceOrAppendEnvValues).
        assert_eq!(p.env, ["PATH=/app/bin", "HOSTNAME=h", "A=1", "HOME="]);
        assert_eq!((p.cwd.as_str(), p.user.as_str()), ("/app", "app"));

        let p = run(
            cfg.clone(),
            Overrides {
                cmd: vec!["sh".into()],
                env: vec!["A=2".into(), "FROM_HOST".into(), "UNSET".into()],
                ..Default::default()
            },
        );
        assert_eq!(p.argv, ["/init", "sh"]);
        assert!(p.env.contains(&"A=2".to_string()) && p.env.contains(&"FROM_HOST=host".to_string()));
        assert!(!p.env.iter().any(|e| e.starts_with("UNSET")));

        let p = run(cfg.clone(), Overrides { entrypoint: Some("/bin/sh".into()), ..Default::default() });
        assert_eq!(p.argv, ["/bin/sh"], "a new entrypoint drops the image's Cmd");
        let p = run(
            cfg,
            Overrides {
                entrypoint: Some(String::new()),
                cmd: vec!["ls".into()],
                workdir: Some("/tmp".into()),
                user: Some("1000:1000".into()),
                ..Default::default()
            },
        );
        assert_eq!((p.argv, p.cwd.as_str(), p.user.as_str()), (vec!["ls".to_string()], "/tmp", "1000:1000"));
    }

    #[test]
    fn empty_images_need_a_command_and_get_defaults() {
        assert!(process(&typed(json!({})), &Overrides::default(), |_| None).unwrap_err().contains("no command"));
        let p = run(json!(null), Overrides { cmd: vec!["true".into()], ..Default::default() });
        assert_eq!(p.env[0], format!("PATH={DEFAULT_PATH}"));
        assert_eq!((p.cwd.as_str(), p.user.as_str()), ("/", "0"));
        assert!(process(
            &typed(json!({"WorkingDir": "rel"})),
            &Overrides { cmd: vec!["x".into()], ..Default::default() },
            |_| None
        )
        .is_err());
    }

    #[test]
    fn env_files_skip_comments() {
        assert_eq!(env_file("# c\nA=1\n\n  B\n"), ["A=1", "B"]);
    }
}
