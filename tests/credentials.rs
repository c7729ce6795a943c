//! Registry credentials as Docker keeps them: credential helpers (`credHelpers`,
//! `credsStore`) spoken to in Docker's protocol, and `login` on a terminal.

// Tests make and inspect their fixtures by path (clippy.toml bans that in the code under test).
#![allow(clippy::disallowed_methods)]

mod common;

use common::*;

/// `layers ARGS` with HOME (and its config dirs) in `home` and `bin` first in PATH.
fn with_home(
    home: &std::path::Path,
    bin: &std::path::Path,
    store: &std::path::Path,
    args: &[&str],
    stdin: &str,
) -> std::process::Output {
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let mut cmd = layers_cmd();
    cmd.env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env_remove("REGISTRY_AUTH_FILE")
        .env("PATH", path)
        .arg("--root")
        .arg(store)
        .args(args);
    feed(cmd, stdin.as_bytes())
}

#[test]
fn credential_helpers_speak_dockers_protocol_for_get_store_and_erase() {
    if !need_root("credential_helpers_speak_dockers_protocol_for_get_store_and_erase") {
        return;
    }
    let reg = Registry::start_with_basic_auth("alice", "s3cret");
    reg.push(&fixtures().join("oci"), "layered", "fixture/layered:v1", &["--dest-creds", "alice:s3cret"]);
    let work = tempfile::tempdir().unwrap();
    let (home, bin, store) = (work.path().join("home"), work.path().join("bin"), work.path().join("store"));
    std::fs::create_dir_all(home.join(".docker")).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    // A helper as small as Docker's protocol allows: one file per server URL, and a
    // log of what it was asked.
    let keychain = work.path().join("keychain");
    std::fs::create_dir_all(&keychain).unwrap();
    let helper = format!(
        r#"#!/usr/bin/env python3
import json, os, sys
k, verb = {keychain:?}, sys.argv[1]
data = sys.stdin.read()
open(os.path.join(k, "log"), "a").write(verb + " " + data.replace("\n", " ") + "\n")
if verb == "store":
    rec = json.loads(data)
    json.dump(rec, open(os.path.join(k, rec["ServerURL"].replace("/", "_")), "w"))
    sys.exit(0)
path = os.path.join(k, data.strip().replace("/", "_"))
if not os.path.exists(path):
    print("credentials not found in native keychain")
    sys.exit(1)
if verb == "get":
    print(open(path).read())
else:
    os.remove(path)
"#
    );
    let script = bin.join("docker-credential-test");
    std::fs::write(&script, helper).unwrap();
    std::process::Command::new("chmod").arg("755").arg(&script).status().unwrap();
    let config = format!(r#"{{"credHelpers": {{"{}": "test"}}}}"#, reg.addr);
    std::fs::write(home.join(".docker/config.json"), config).unwrap();
    let image = format!("{}/fixture/layered:v1", reg.addr);

    let anon = with_home(&home, &bin, &store, &["pull", &image], "");
    assert_eq!(anon.status.code(), Some(1), "no credentials yet: {}", stderr(&anon));
    assert!(stderr(&anon).contains("unauthorized"), "{}", stderr(&anon));
    let login = with_home(&home, &bin, &store, &["login", "-u", "alice", "--password-stdin", &reg.addr], "s3cret\n");
    assert!(login.status.success(), "{}", stderr(&login));
    assert!(stderr(&login).contains("docker-credential-test"), "{}", stderr(&login));
    assert!(!home.join("config/layers/auth.json").exists(), "the helper keeps them, not our file");
    let kept: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(keychain.join(&reg.addr)).unwrap()).unwrap();
    assert_eq!((kept["Username"].as_str(), kept["Secret"].as_str()), (Some("alice"), Some("s3cret")));
    let pulled = with_home(&home, &bin, &store, &["pull", &image], "");
    assert!(pulled.status.success(), "{}", stderr(&pulled));
    let log = std::fs::read_to_string(keychain.join("log")).unwrap();
    assert!(log.contains(&format!("get {}", reg.addr)), "{log}");
    let out = with_home(&home, &bin, &store, &["logout", &reg.addr], "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!keychain.join(&reg.addr).exists(), "erased");

    // credsStore: one helper for every registry; a helper that is not there is named.
    std::fs::write(home.join(".docker/config.json"), r#"{"credsStore": "absent"}"#).unwrap();
    let out = with_home(&home, &bin, &work.path().join("fresh"), &["pull", &image], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("docker-credential-absent: not found in PATH"), "{}", stderr(&out));

    // Issue 26: a helper that prints megabytes gave a 64 KiB error line; one short line now.
    let loud = bin.join("docker-credential-loud");
    std::fs::write(&loud, "#!/bin/sh\nhead -c 100000000 /dev/zero | tr '\\0' x\nexit 1\n").unwrap();
    std::process::Command::new("chmod").arg("755").arg(&loud).status().unwrap();
    std::fs::write(home.join(".docker/config.json"), r#"{"credsStore": "loud"}"#).unwrap();
    let out = with_home(&home, &bin, &work.path().join("fresh2"), &["pull", &image], "");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.lines().count() == 1 && err.len() < 1000 && err.contains("docker-credential-loud get"),
        "{} bytes",
        err.len()
    );
}

#[test]
fn login_on_a_terminal_asks_for_the_password_without_echo() {
    if !need_root("login_on_a_terminal_asks_for_the_password_without_echo") {
        return;
    }
    let reg = Registry::start_with_basic_auth("alice", "s3cret");
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let out = std::process::Command::new("python3")
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .arg(repo().join("tests/support/pty_harness.py"))
        .args([
            "24",
            "80",
            "expect:Username: ",
            "send:alice\\r",
            "expect:Password: ",
            "send:s3cret\\r",
            "expect:Login Succeeded",
        ])
        .arg("--")
        .env(NO_DEFAULT_NETWORK.0, NO_DEFAULT_NETWORK.1)
        .arg(layers_bin())
        .args(["--root", work.path().join("store").to_str().unwrap(), "login", &reg.addr])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("alice"), "the user name echoes: {text}");
    assert!(!text.contains("s3cret"), "the password does not: {text}");
    assert!(home.join("config/layers/auth.json").exists());
}

/// `$DOCKER_CONFIG` is the directory holding `config.json` (docs: "docker login":
/// "The default location of the configuration file is $HOME/.docker/config.json, and
/// can be overridden with the DOCKER_CONFIG environment variable"): read in place of
/// `~/.docker`, and written by `login` (other keys kept), so a CI job that sets it
/// reads and leaves nothing anywhere else.
#[test]
fn docker_config_names_the_directory_credentials_are_read_from_and_saved_to() {
    if !need_root("docker_config_names_the_directory_credentials_are_read_from_and_saved_to") {
        return;
    }
    let reg = Registry::start_with_basic_auth("alice", "s3cret");
    reg.push(&fixtures().join("oci"), "layered", "fixture/layered:v1", &["--dest-creds", "alice:s3cret"]);
    let work = tempfile::tempdir().unwrap();
    let (home, store) = (work.path().join("home"), work.path().join("store"));
    let job = work.path().join("job-docker-config");
    std::fs::create_dir_all(home.join(".docker")).unwrap();
    std::fs::create_dir_all(&job).unwrap();
    let auth = |user_password: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(user_password)
    };
    // The home's config has good credentials; the job's has none yet.
    let home_config = format!(r#"{{"auths": {{"{}": {{"auth": "{}"}}}}}}"#, reg.addr, auth("alice:s3cret"));
    std::fs::write(home.join(".docker/config.json"), home_config).unwrap();
    std::fs::write(job.join("config.json"), r#"{"psFormat": "table {{.ID}}"}"#).unwrap();
    let image = format!("{}/fixture/layered:v1", reg.addr);
    let run = |args: &[&str], stdin: &str| {
        let mut cmd = layers_cmd();
        cmd.env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("DOCKER_CONFIG", &job)
            .env_remove("REGISTRY_AUTH_FILE")
            .arg("--root")
            .arg(&store)
            .args(args);
        feed(cmd, stdin.as_bytes())
    };
    let out = run(&["pull", &image], "");
    assert_eq!(out.status.code(), Some(1), "~/.docker is not read: {}", stderr(&out));
    assert!(stderr(&out).contains("unauthorized"), "{}", stderr(&out));

    let out = run(&["login", "-u", "alice", "--password-stdin", &reg.addr], "s3cret\n");
    assert!(out.status.success(), "{}", stderr(&out));
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(job.join("config.json")).unwrap()).unwrap();
    assert_eq!(saved["auths"][&reg.addr]["auth"], auth("alice:s3cret"));
    assert_eq!(saved["psFormat"], "table {{.ID}}", "the file's other keys are kept");
    assert!(!home.join("config/layers/auth.json").exists(), "nothing saved outside $DOCKER_CONFIG");
    let out = run(&["pull", &image], "");
    assert!(out.status.success(), "{}", stderr(&out));

    let out = run(&["logout", &reg.addr], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(job.join("config.json")).unwrap()).unwrap();
    assert!(saved["auths"].get(&reg.addr).is_none(), "{saved}");
}
