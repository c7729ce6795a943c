//! What a Docker user types every day, done the way Docker does it: images pulled
//! when `run` needs them, and the verbs around containers, images and the store.

mod common;

use common::*;

#[test]
fn run_and_create_pull_a_missing_image_unless_told_never() {
    if !need_root("run_and_create_pull_a_missing_image_unless_told_never") {
        return;
    }
    let reg = Registry::start();
    reg.push(&fixtures().join("oci"), "layered", "fixture/layered:v1", &[]);
    let image = format!("{}/fixture/layered:v1", reg.addr);
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");

    let never = layers(&store, &["run", "--rm", "--pull", "never", &image, "true"]);
    assert_eq!(never.status.code(), Some(125));
    assert!(stderr(&never).contains("--pull never: pull it first"), "{}", stderr(&never));

    let out = layers(&store, &["run", "--rm", &image, "echo", "hi"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hi\n", "only the container's output on stdout");
    assert!(stderr(&out).contains(&format!("Unable to find image '{image}' locally")), "{}", stderr(&out));
    let pulls = || reg.requests_from_layers().iter().filter(|r| r.contains("/manifests/")).count();
    let after_first = pulls();

    // Stored now: nothing asked of the registry again, unless --pull always.
    let out = layers(&store, &["run", "--rm", &image, "true"]);
    assert!(out.status.success() && stderr(&out).is_empty(), "{}", stderr(&out));
    assert_eq!(pulls(), after_first);
    let out = layers(&store, &["run", "--rm", "--pull", "always", &image, "true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(pulls() > after_first, "--pull always asks the registry");

    // create and run -d pull too (run -d before it detaches, where the progress shows).
    let other = work.path().join("other");
    let out = layers(&other, &["create", "--name", "c", &image]);
    assert!(out.status.success(), "{}", stderr(&out));
    let third = work.path().join("third");
    let out = layers(&third, &["run", "-d", "--rm", &image, "true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("Unable to find image"), "{}", stderr(&out));
    // A name only this machine can have made is never looked for in a registry.
    let local = layers(&third, &["run", "--rm", "localhost/nosuch", "true"]);
    assert_eq!(local.status.code(), Some(125));
    assert!(stderr(&local).contains("no such image in the store"), "{}", stderr(&local));
}

#[test]
fn every_container_has_a_log_with_streams_apart_tail_since_timestamps_and_a_size_cap() {
    if !need_root("every_container_has_a_log_with_streams_apart_tail_since_timestamps_and_a_size_cap") {
        return;
    }
    let (_work, store) = store_with_fixtures();
    // Attached: the output reaches us unchanged, and the log as well.
    let script = "echo one; echo two >&2; echo three; printf partial";
    let out = layers(&store, &["run", "--name", "fg", "localhost/layered", "sh", "-c", script]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "one\nthree\npartial");
    assert_eq!(stderr(&out), "two\n");
    let logs = layers(&store, &["logs", "fg"]);
    assert_eq!((stdout(&logs).as_str(), stderr(&logs).as_str()), ("one\nthree\npartial", "two\n"));
    // The two pipes are read as they come: which of "two" and "three" is logged first
    // is up to the scheduler, but "partial" is last.
    let tail = layers(&store, &["logs", "--tail", "1", "fg"]);
    assert_eq!((stdout(&tail).as_str(), stderr(&tail).as_str()), ("partial", ""));
    let tail = layers(&store, &["logs", "--tail", "3", "fg"]);
    assert_eq!(stdout(&tail).lines().count() + stderr(&tail).lines().count(), 3);
    let stamped = layers_ok(&store, &["logs", "-t", "-n", "1", "fg"]);
    let (time, text) = stamped.split_once(' ').unwrap();
    assert!(
        time.len() == 30 && time.ends_with('Z') && time.as_bytes()[19] == b'.',
        "RFC 3339 with nanoseconds: {time}"
    );
    assert_eq!(text, "partial");
    assert_eq!(layers_ok(&store, &["logs", "--since", "1h", "-n", "1", "fg"]), "partial");
    assert_eq!(layers_ok(&store, &["logs", "--until", "1h", "fg"]), "");
    let bad = layers(&store, &["logs", "--since", "yesterday", "fg"]);
    assert_eq!(bad.status.code(), Some(125));
    assert!(stderr(&bad).contains("--since"), "{}", stderr(&bad));

    // Binary output of any size passes through byte for byte.
    let big = layers(
        &store,
        &[
            "run",
            "--rm",
            "localhost/layered",
            "sh",
            "-c",
            "head -c 3000000 /dev/urandom | tee /tmp/x | md5sum >&2; cat /tmp/x",
        ],
    );
    assert!(big.status.success());
    let sum = std::process::Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        sum.stdin.as_ref().unwrap().write_all(&big.stdout).unwrap();
    }
    let sum = sum.wait_with_output().unwrap();
    assert_eq!(big.stdout.len(), 3_000_000);
    assert_eq!(stdout(&sum).split_whitespace().next(), stderr(&big).split_whitespace().next());

    // Capped and rotated: a container that writes 2 MB keeps at most max-size x max-file.
    let out = layers(&store, &[
        "run", "--name", "chatty", "--log-opt", "max-size=64k", "--log-opt", "max-file=2",
        "localhost/layered", "sh", "-c", "i=0; while [ $i -lt 20000 ]; do echo line $i ................................................; i=$((i+1)); done",
    ]);
    assert!(out.status.success());
    let dir =
        store.join("containers").join(layers_ok(&store, &["ps", "-a", "-q", "--no-trunc", "--filter", "name=chatty"]));
    let total: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("log.json"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(total <= 2 * 64 * 1024, "log files hold {total} bytes");
    let last = layers_ok(&store, &["logs", "-n", "1", "chatty"]);
    assert!(last.starts_with("line 19999 "), "{last}");
}

#[test]
fn create_takes_runs_options_then_start_restart_rename_and_restart_policies() {
    if !need_root("create_takes_runs_options_then_start_restart_rename_and_restart_policies") {
        return;
    }
    let (_work, store) = store_with_fixtures();
    // Docker's create: options and a command, kept for start.
    let id = layers_ok(
        &store,
        &[
            "create",
            "--name",
            "c1",
            "-e",
            "GREETING=hello",
            "--label",
            "team=a",
            "-w",
            "/tmp",
            "localhost/layered",
            "sh",
            "-c",
            "echo $GREETING from $(pwd); exit 3",
        ],
    );
    assert_eq!(id.len(), 64);
    let out = layers(&store, &["start", "-a", "c1"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello from /tmp\n");
    // Started again, detached: prints the name, runs under a monitor, logs appended.
    assert_eq!(layers_ok(&store, &["start", "c1"]), "c1");
    assert_eq!(layers_ok(&store, &["wait", "c1"]), "3");
    assert_eq!(layers_ok(&store, &["logs", "c1"]), "hello from /tmp\nhello from /tmp");
    // The buildah-style `create IMAGE` still works and runs the image's command.
    layers_ok(&store, &["create", "localhost/layered"]);

    layers_ok(&store, &["rename", "c1", "c2"]);
    let taken = layers(&store, &["rename", "c2", "layered-working-container"]);
    assert_eq!(taken.status.code(), Some(125));
    assert!(stderr(&taken).contains("already in use"), "{}", stderr(&taken));
    assert!(layers(&store, &["logs", "c1"]).status.code() == Some(125));

    // restart: a running container stopped and started again.
    layers_ok(&store, &["create", "--name", "svc", "localhost/layered", "sh", "-c", "echo up; sleep 100"]);
    layers_ok(&store, &["start", "svc"]);
    assert_eq!(layers_ok(&store, &["restart", "-t", "1", "svc"]), "svc");
    let ups = (0..100).find(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        layers_ok(&store, &["logs", "svc"]) == "up\nup"
    });
    assert!(ups.is_some(), "ran twice: {}", layers_ok(&store, &["logs", "svc"]));
    layers_ok(&store, &["rm", "-f", "svc"]);

    // on-failure:2 restarts a failing container twice, then leaves it exited.
    let id = layers_ok(
        &store,
        &["run", "-d", "--restart", "on-failure:2", "localhost/layered", "sh", "-c", "echo run; exit 1"],
    );
    let done = (0..200).find(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        layers_ok(&store, &["logs", &id]) == "run\nrun\nrun" && layers_ok(&store, &["wait", &id]) == "1"
    });
    assert!(done.is_some(), "three runs: {}", layers_ok(&store, &["logs", &id]));
    // always: restarted until stop, which ends it for good.
    let id = layers_ok(
        &store,
        &["run", "-d", "--restart", "always", "localhost/layered", "sh", "-c", "echo run; sleep 0.2"],
    );
    let again = (0..200).find(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        layers_ok(&store, &["logs", &id]).lines().count() >= 3
    });
    assert!(again.is_some(), "restarted: {}", layers_ok(&store, &["logs", &id]));
    layers_ok(&store, &["stop", "-t", "1", &id]);
    let runs = layers_ok(&store, &["logs", &id]).lines().count();
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert_eq!(layers_ok(&store, &["logs", &id]).lines().count(), runs, "not started again after stop");
    let conflict = layers(&store, &["run", "--rm", "--restart", "always", "localhost/layered", "true"]);
    assert_eq!(conflict.status.code(), Some(125));
    assert!(stderr(&conflict).contains("--restart always and --rm conflict"), "{}", stderr(&conflict));
}

#[test]
fn ps_filters_formats_and_sizes_columns_to_their_content() {
    if !need_root("ps_filters_formats_and_sizes_columns_to_their_content") {
        return;
    }
    let (_work, store) = store_with_fixtures();
    layers_ok(&store, &["tag", "localhost/layered", "localhost/a-rather-long-image-name-for-columns:v1"]);
    layers_ok(&store, &["create", "--name", "made", "--label", "tier=web", "localhost/two-layers"]);
    let up = layers_ok(
        &store,
        &[
            "run",
            "-d",
            "--name",
            "up",
            "--label",
            "tier=db",
            "--label",
            "flag",
            "localhost/a-rather-long-image-name-for-columns:v1",
            "sleep",
            "100",
        ],
    );
    let out = layers(&store, &["run", "--name", "done", "localhost/layered", "sh", "-c", "exit 2"]);
    assert_eq!(out.status.code(), Some(2));

    let table = layers_ok(&store, &["ps", "-a"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("CONTAINER ID   IMAGE "), "{table}");
    for h in ["COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"] {
        assert!(lines[0].contains(h), "{h}: {table}");
    }
    // Every column starts where its header does: nothing runs into the next one.
    let names_at = lines[0].find("NAMES").unwrap();
    for l in &lines[1..] {
        let name = &l[names_at..];
        assert!(["made", "up", "done"].contains(&name), "{l:?} in\n{table}");
    }
    assert!(table.contains("localhost/a-rather-long-image-name-for-columns:v1"), "{table}");
    assert!(table.contains("\"sleep 100\""), "{table}");
    assert!(table.contains("Exited (2) "), "{table}");

    let ps = |args: &[&str]| {
        let mut full = vec!["ps", "-a", "--format", "{{.Names}}"];
        full.extend_from_slice(args);
        let mut v: Vec<String> = layers_ok(&store, &full).lines().map(str::to_string).collect();
        v.sort();
        v
    };
    assert_eq!(ps(&["--filter", "status=running"]), ["up"]);
    assert_eq!(ps(&["--filter", "status=exited"]), ["done"]);
    assert_eq!(ps(&["--filter", "status=created"]), ["made"]);
    assert_eq!(ps(&["--filter", "status=created", "--filter", "status=exited"]), ["done", "made"]);
    assert_eq!(ps(&["--filter", "label=tier"]), ["made", "up"]);
    assert_eq!(ps(&["--filter", "label=tier=db"]), ["up"]);
    assert_eq!(ps(&["--filter", "label=flag", "--filter", "status=exited"]), Vec::<String>::new());
    assert_eq!(ps(&["--filter", "name=on"]), ["done"]);
    assert_eq!(ps(&["--filter", "ancestor=localhost/two-layers"]), ["made"]);
    assert_eq!(ps(&["--filter", "exited=2"]), ["done"]);
    let bad = layers(&store, &["ps", "--filter", "colour=red"]);
    assert_eq!(bad.status.code(), Some(125));
    assert!(stderr(&bad).contains("invalid filter \"colour\""), "{}", stderr(&bad));

    // Without -a: the running one. -q and --no-trunc.
    assert_eq!(layers_ok(&store, &["ps", "-q"]), up[..12]);
    assert_eq!(layers_ok(&store, &["ps", "-q", "--no-trunc"]), up);
    let json = layers_ok(&store, &["ps", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["Names"], "up");
    assert_eq!(v["State"], "running");
    assert!(v["Status"].as_str().unwrap().starts_with("Up "), "{v}");
    assert_eq!(v["Labels"], "flag=,tier=db");
    let t = layers_ok(&store, &["ps", "--format", "table {{.Names}}\\t{{.State}}"]);
    assert_eq!(t, "NAMES     STATE\nup        running");
    // Docker's `.Label KEY` method: "" for a label the container lacks.
    let templ = layers_ok(&store, &["ps", "--format", "{{.Label \"tier\"}}|{{.Label \"none\"}}|{{.Labels}}"]);
    assert_eq!(templ, "db||flag=,tier=db");
    assert!(!json.contains("Label()"), "{json}");
    layers_ok(&store, &["rm", "-f", "up"]);
}

#[test]
fn images_filter_and_format_and_inspect_speaks_dockers_shape() {
    if !need_root("images_filter_and_format_and_inspect_speaks_dockers_shape") {
        return;
    }
    let (_work, store) = store_with_fixtures();
    layers_ok(&store, &["tag", "localhost/layered", "localhost/layered:v2"]);
    // As Docker's documented example: `{{.ID}}: {{.Repository}}`, one line per name.
    let ids = layers_ok(&store, &["images", "--format", "{{.ID}}: {{.Repository}}:{{.Tag}}"]);
    let layered = stored_image(&store, "localhost/layered:latest")["Id"].as_str().unwrap()[7..19].to_string();
    assert!(ids.lines().any(|l| l == format!("{layered}: localhost/layered:v2")), "{ids}");
    let table = layers_ok(&store, &["images", "--format", "table {{.Repository}}\\t{{.Tag}}", "localhost/layered"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines[0], "REPOSITORY          TAG");
    assert_eq!(lines.len(), 3, "both tags of that repository, nothing else: {table}");
    assert_eq!(layers_ok(&store, &["images", "--format", "{{.Tag}}", "localhost/layered:v2"]), "v2");
    assert_eq!(layers_ok(&store, &["images", "--format", "{{.Tag}}", "layered:v2"]), "v2", "short name");
    let refs = layers_ok(&store, &["images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", "reference=*/two*"]);
    assert_eq!(refs, "localhost/two-layers:latest");
    let refs = layers_ok(&store, &["images", "--format", "{{.Tag}}", "--filter", "reference=layered:v*"]);
    assert_eq!(refs, "v2");
    assert_eq!(layers_ok(&store, &["images", "--filter", "dangling=true", "-q"]), "");
    let bad = layers(&store, &["images", "--filter", "size=big"]);
    assert!(stderr(&bad).contains("invalid filter \"size\""), "{}", stderr(&bad));
    let full = layers_ok(&store, &["images", "-q", "--no-trunc", "localhost/two-layers"]);
    assert!(full.starts_with("sha256:") && full.len() == 71, "{full}");
    let json = layers_ok(&store, &["images", "--format", "json", "localhost/two-layers"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!((v["Repository"].as_str(), v["Tag"].as_str()), (Some("localhost/two-layers"), Some("latest")));

    // inspect: an image, in Docker's shape, through a template too.
    let v: serde_json::Value = serde_json::from_str(&layers_ok(&store, &["inspect", "localhost/layered"])).unwrap();
    let img = &v[0];
    assert!(img["Id"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(img["Os"], "linux");
    assert!(!img["RootFS"]["Layers"].as_array().unwrap().is_empty());
    assert!(img["Config"]["Env"].is_array() || img["Config"]["Env"].is_null());
    for k in ["RepoTags", "RepoDigests", "Created", "Architecture", "Size"] {
        assert!(!img[k].is_null(), "{k} in {img}");
    }
    let os = layers_ok(
        &store,
        &["inspect", "--format", "{{.Os}}/{{.Architecture}} {{len .RootFS.Layers}}", "localhost/layered"],
    );
    assert!(os.starts_with("linux/"), "{os}");
    // A container: by name, State and HostConfig as far as they exist here.
    layers_ok(
        &store,
        &[
            "create",
            "--name",
            "box",
            "--label",
            "k=v",
            "-v",
            "/tmp:/host:ro",
            "--restart",
            "on-failure:3",
            "localhost/layered",
            "true",
        ],
    );
    let c = layers_ok(&store, &["inspect", "--format", "{{.State.Status}} {{.Name}} {{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}} {{index .Config.Labels \"k\"}} {{(index .Mounts 0).Destination}} {{json .Config.Cmd}}", "box"]);
    assert_eq!(c, "created /box on-failure:3 v /host [\"true\"]");
    let out = layers(&store, &["inspect", "--type", "image", "box"]);
    assert_eq!(out.status.code(), Some(125));
    let out = layers(&store, &["inspect", "nosuch"]);
    assert!(stderr(&out).contains("no such image or container"), "{}", stderr(&out));
    let raw: serde_json::Value =
        serde_json::from_str(&layers_ok(&store, &["inspect", "--raw", "localhost/layered"])).unwrap();
    assert_eq!(raw[0]["Manifest"]["schemaVersion"], 2);
}

/// Issue 26: `inspect -f` printed lists as Rust debug text (`[String("sleep"), …]`),
/// an absent list as `nil`, refused `{{"\n"}}`; Docker's outputs are written beside
/// each (the template engine's own table test holds it to 94 recorded Docker runs).
#[test]
fn go_templates_print_lists_maps_and_escapes_as_dockers_cli() {
    if !need_root("go_templates_print_lists_maps_and_escapes_as_dockers_cli") {
        return;
    }
    let (work, store) = store_with_fixtures();
    let vol = work.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    let bind = format!("{}:/data", vol.display());
    layers_ok(&store, &["create", "--name", "tt", "-v", &bind, "-l", "tier=web", "localhost/layered", "sleep", "300"]);
    let f = |t: &str| layers_ok(&store, &["inspect", "-f", t, "tt"]);
    assert_eq!(f("{{.Config.Cmd}}"), "[sleep 300]");
    assert_eq!(f("{{.Args}} {{.Config.Entrypoint}} {{json .Config.Entrypoint}}"), "[300] [] null");
    assert_eq!(f("{{.HostConfig.Binds}}"), format!("[{bind}]"));
    assert_eq!(
        f("{{range .Mounts}}{{.Source}}{{\"\\n\"}}{{.Destination}}{{end}}"),
        format!("{}\n/data", vol.display())
    );
    assert_eq!(
        f("{{.Config.Labels}} {{index .Config.Labels \"nope\"}}|{{.Config.StopSignal}}|{{.HostConfig.PidsLimit}}"),
        "map[tier:web] ||<nil>"
    );
    assert!(f("{{.Config.Env}}").starts_with("[PATH=/usr/local/sbin:"));
    // inspect takes its format as written, as Docker: `\n` stays two characters.
    assert_eq!(f("{{.Name}}\\n"), "/tt\\n");
    let img = layers_ok(&store, &["inspect", "-f", "{{.RepoTags}} {{.Config.Cmd}}", "localhost/layered"]);
    assert!(img.starts_with("[localhost/layered:latest") && img.ends_with("] []"), "{img}");
    // A listing replaces `\t`, as Docker's, and `split`/`join` give lists.
    let ps = layers_ok(&store, &["ps", "-a", "--format", "{{.Names}}\\t{{.Label \"tier\"}} {{split .Names \"t\"}}"]);
    assert_eq!(ps, "tt\tweb [  ]");
    let err = layers(&store, &["ps", "-a", "--format", "{{.Label}}"]);
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("wrong number of args for Label: want 1 got 0"));
}

#[test]
fn history_push_without_a_registry_and_a_platform_the_image_lacks() {
    if !need_root("history_push_without_a_registry_and_a_platform_the_image_lacks") {
        return;
    }
    let (_work, store) = store_with_fixtures();
    let h = layers_ok(&store, &["history", "localhost/two-layers"]);
    let lines: Vec<&str> = h.lines().collect();
    let header: Vec<&str> = lines[0].split("   ").map(str::trim).filter(|c| !c.is_empty()).collect();
    assert_eq!(header, ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"], "{h}");
    assert!(
        lines[1].starts_with(&stored_image(&store, "localhost/two-layers:latest")["Id"].as_str().unwrap()[7..19]),
        "{h}"
    );
    assert!(lines[2].starts_with("<missing>"), "{h}");
    assert_eq!(layers_ok(&store, &["history", "-q", "localhost/two-layers"]).len(), 12);
    let sizes = layers_ok(&store, &["history", "-H=false", "--format", "{{.Size}}", "localhost/two-layers"]);
    assert!(sizes.lines().all(|s| s.parse::<u64>().is_ok()), "{sizes}");

    let out = layers(&store, &["push", "layered"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("layers push layered REGISTRY/NAME:TAG"), "{}", stderr(&out));

    let reg = Registry::start();
    reg.push(&fixtures().join("oci"), "layered", "fixture/layered:v1", &[]);
    let image = format!("{}/fixture/layered:v1", reg.addr);
    let arch = layers_ok(&store, &["inspect", "--format", "{{.Architecture}}", "localhost/layered"]);
    let other = if arch == "arm64" { "linux/amd64" } else { "linux/arm64" };
    let fresh = tempfile::tempdir().unwrap();
    let out = layers(fresh.path(), &["pull", "--platform", other, &image]);
    assert_eq!(out.status.code(), Some(125), "{}", stdout(&out));
    assert!(
        stderr(&out).contains(&format!("no image for platform {other}: it is linux/{arch} only")),
        "{}",
        stderr(&out)
    );
    let ok = layers(fresh.path(), &["pull", "--platform", &format!("linux/{arch}"), &image]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    // Stored, but for another platform: not the image asked for.
    let never = layers(fresh.path(), &["run", "--rm", "--pull", "never", "--platform", other, &image, "true"]);
    assert_eq!(never.status.code(), Some(125));
    let want = format!("is linux/{arch}, not the platform asked for ({other})");
    assert!(stderr(&never).contains(&want), "{}", stderr(&never));
    let missing = layers(fresh.path(), &["run", "--rm", "--platform", other, &image, "true"]);
    assert_eq!(missing.status.code(), Some(125));
    assert!(stderr(&missing).contains(&format!("no image for platform {other}")), "{}", stderr(&missing));
    let same = layers(
        fresh.path(),
        &["run", "--rm", "--pull", "never", "--platform", &format!("linux/{arch}"), &image, "true"],
    );
    assert!(same.status.success(), "{}", stderr(&same));
}

#[test]
fn save_and_export_write_to_a_pipe_not_a_terminal_and_load_reads_stdin() {
    if !need_root("save_and_export_write_to_a_pipe_not_a_terminal_and_load_reads_stdin") {
        return;
    }
    let (work, store) = store_with_fixtures();
    let saved = layers(&store, &["save", "localhost/two-layers"]);
    assert!(saved.status.success(), "{}", stderr(&saved));
    assert!(saved.stdout.len() > 1_000_000, "the archive came out on stdout");
    let exported = layers(&store, &["export", "localhost/two-layers"]);
    assert!(exported.status.success() && exported.stdout.len() > 1_000_000);
    let other = work.path().join("other");
    let mut load = std::process::Command::new(env!("CARGO_BIN_EXE_layers"));
    load.arg("--root").arg(&other).arg("load");
    let loaded = feed(load, &saved.stdout);
    assert!(loaded.status.success(), "{}", stderr(&loaded));
    assert!(stdout(&loaded).contains("Loaded image: localhost/two-layers:latest"), "{}", stdout(&loaded));
    for args in [&["save", "localhost/two-layers"][..], &["export", "localhost/two-layers"][..]] {
        let out = on_a_terminal(&store, (24, 80), &[], args);
        assert!(out.contains("refusing to write a tar to a terminal"), "{args:?}: {out}");
        assert!(out.ends_with("exit=125\n"), "{out}");
    }
    let out = on_a_terminal(&other, (24, 80), &[], &["load"]);
    assert!(out.contains("standard input is a terminal"), "{out}");
}

/// Runs `cmd` with `input` on its stdin, to the end.
fn feed(mut cmd: std::process::Command, input: &[u8]) -> std::process::Output {
    use std::process::Stdio;
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// `layers ARGS` with `answer` on its stdin (typed at its prompt, or piped in).
fn answering(store: &std::path::Path, answer: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_layers"));
    cmd.arg("--root").arg(store).args(args);
    feed(cmd, answer.as_bytes())
}

#[test]
fn prune_asks_first_keeps_what_is_used_and_says_what_it_reclaimed() {
    if !need_root("prune_asks_first_keeps_what_is_used_and_says_what_it_reclaimed") {
        return;
    }
    let (_work, store) = store_with_fixtures();
    let used = detached(&store, &["--name", "busy", "localhost/layered", "sleep", "100"]);
    let out = layers(
        &store,
        &["run", "--name", "stopped", "localhost/two-layers", "sh", "-c", "head -c 300000 /dev/urandom > /junk"],
    );
    assert!(out.status.success());

    // "n" (or nothing) keeps everything.
    let no = answering(&store, "n\n", &["container", "prune"]);
    assert!(
        stderr(&no)
            .contains("WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N]"),
        "{}",
        stderr(&no)
    );
    assert_eq!(names(&store).len(), 2);
    let yes = answering(&store, "y\n", &["container", "prune"]);
    let text = stdout(&yes);
    assert!(text.starts_with("Deleted Containers:\n"), "{text}");
    assert!(text.contains("Total reclaimed space: 30"), "the upper dir's 300 kB: {text}");
    assert_eq!(names(&store), ["busy"]);

    // image prune -a: images no container uses go; the one `busy` runs on stays.
    let out = layers_ok(&store, &["image", "prune", "-a", "-f"]);
    assert!(out.contains("untagged: localhost/two-layers:latest"), "{out}");
    assert!(out.contains("Total reclaimed space: "), "{out}");
    assert!(layers(&store, &["inspect", "--type", "image", "localhost/layered"]).status.success());
    assert!(!layers(&store, &["inspect", "--type", "image", "localhost/two-layers"]).status.success());
    let df = layers_ok(&store, &["system", "df"]);
    assert!(df.starts_with("TYPE"), "{df}");
    // --format, as Docker's system df takes it: a template per summary row, json, table.
    let images = layers_ok(&store, &["df", "--format", "{{.Type}}={{.TotalCount}}"]);
    assert_eq!(images.lines().next(), Some("Images=1"), "{images}");
    let json = layers_ok(&store, &["system", "df", "--format", "json"]);
    let blobs: serde_json::Value = serde_json::from_str(json.lines().nth(1).unwrap()).unwrap();
    assert_eq!(blobs["Type"], "Blobs", "{json}");
    assert!(blobs["Size"].as_str().unwrap().ends_with('B'), "{json}");
    let table = layers_ok(&store, &["df", "--format", "table {{.Type}}\t{{.Reclaimable}}"]);
    assert!(table.starts_with("TYPE      RECLAIMABLE\nImages"), "{table}");
    let both = layers(&store, &["df", "-v", "--format", "json"]);
    assert_eq!(both.status.code(), Some(125));
    assert!(stderr(&both).contains("--format cannot be combined with --verbose"), "{}", stderr(&both));
    let out = layers_ok(&store, &["system", "prune", "-f"]);
    assert!(out.ends_with("Total reclaimed space: 0B"), "{out}");
    layers_ok(&store, &["rm", "-f", &used]);
}

#[test]
fn completions_man_pages_version_and_info() {
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    for shell in ["bash", "zsh", "fish"] {
        let out = layers(&store, &["completion", shell]);
        assert!(out.status.success() && out.stdout.len() > 1000, "{shell}");
        assert!(stdout(&out).contains("inspect"), "{shell} completes the verbs");
    }
    let script = work.path().join("layers.bash");
    std::fs::write(&script, layers(&store, &["completion", "bash"]).stdout).unwrap();
    let parsed = std::process::Command::new("bash").arg("-n").arg(&script).status().unwrap();
    assert!(parsed.success(), "bash reads the completion script");
    let man = work.path().join("man");
    layers_ok(&store, &["man", man.to_str().unwrap()]);
    for page in ["layers.1", "layers-run.1", "layers-system-prune.1", "layers-container-prune.1"] {
        let text = std::fs::read_to_string(man.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.starts_with(".ie \\n(.g .ds Aq") || text.contains(".TH"), "{page} is roff");
    }
    // Docker's version object: `.Client.Version`, `.Server.Version`.
    let v = layers_ok(&store, &["version", "--format", "{{.Client.Version}} {{.Server.StoreFormat}}"]);
    assert_eq!(v, format!("{} {}", env!("CARGO_PKG_VERSION"), layers_store::metadata::FORMAT_VERSION));
    if !need_root("completions_man_pages_version_and_info (info)") {
        return;
    }
    let info: serde_json::Value = serde_json::from_str(&layers_ok(&store, &["info", "--format", "json"])).unwrap();
    assert_eq!(info["StoreRoot"], store.to_str().unwrap());
    assert_eq!(info["Images"], 0);
    for k in ["OverlayLowerdirPlus", "Seccomp", "UserNamespaces"] {
        assert!(info[k].is_boolean(), "{k}: {info}");
    }
    assert!(["1", "2"].contains(&info["CgroupVersion"].as_str().unwrap()), "{info}");
    let text = layers_ok(&store, &["system", "info"]);
    assert!(text.contains("Driver: overlay") && text.contains("Cgroup: "), "{text}");
}

/// `layers ARGS` with HOME (and its config dirs) in `home` and `bin` first in PATH.
fn with_home(
    home: &std::path::Path,
    bin: &std::path::Path,
    store: &std::path::Path,
    args: &[&str],
    stdin: &str,
) -> std::process::Output {
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_layers"));
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
    assert_eq!(anon.status.code(), Some(125), "no credentials yet: {}", stderr(&anon));
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
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("docker-credential-absent: not found in PATH"), "{}", stderr(&out));

    // Issue 26: a helper that prints megabytes gave a 64 KiB error line; one short line now.
    let loud = bin.join("docker-credential-loud");
    std::fs::write(&loud, "#!/bin/sh\nhead -c 100000000 /dev/zero | tr '\\0' x\nexit 1\n").unwrap();
    std::process::Command::new("chmod").arg("755").arg(&loud).status().unwrap();
    std::fs::write(home.join(".docker/config.json"), r#"{"credsStore": "loud"}"#).unwrap();
    let out = with_home(&home, &bin, &work.path().join("fresh2"), &["pull", &image], "");
    assert_eq!(out.status.code(), Some(125));
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
        .arg(env!("CARGO_BIN_EXE_layers"))
        .args(["--root", work.path().join("store").to_str().unwrap(), "login", &reg.addr])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("alice"), "the user name echoes: {text}");
    assert!(!text.contains("s3cret"), "the password does not: {text}");
    assert!(home.join("config/layers/auth.json").exists());
}

/// Issue 26: filling a new volume from the image, and `cp`, wrote a 4 GiB sparse file
/// out as 4 GiB of zeros; a FIFO in the image's directory failed the run. Holes stay
/// holes and a FIFO is made anew, as Docker's copy makes one.
#[test]
fn volume_fill_and_cp_keep_holes_and_fifos() {
    use std::fs;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    if !need_root("volume_fill_and_cp_keep_holes_and_fifos") {
        return;
    }
    let (work, store) = store_with_busybox();
    let ctx = build_context(
        work.path(),
        "holes",
        "FROM busybox\nRUN mkdir -p /data && truncate -s 4G /data/sparse && echo end >> /data/sparse && mkfifo /data/pipe\n",
    );
    layers_ok(&store, &["build", "-q", "-t", "holes", ctx.to_str().unwrap()]);
    let t = std::time::Instant::now();
    let ls = layers_ok(&store, &["run", "--rm", "-v", "filled:/data", "holes", "ls", "-l", "/data"]);
    assert!(ls.contains("sparse") && ls.contains("pipe"), "{ls}");
    let filled = store.join("volumes/filled/_data");
    let m = fs::metadata(filled.join("sparse")).unwrap();
    assert_eq!(m.len(), (4u64 << 30) + 4);
    assert!(m.blocks() * 512 < 1 << 20, "the volume's copy kept its holes: {} blocks", m.blocks());
    assert!(fs::symlink_metadata(filled.join("pipe")).unwrap().file_type().is_fifo());
    assert!(t.elapsed() < std::time::Duration::from_secs(20), "{:?}", t.elapsed());
    // cp out of a container: the same.
    layers_ok(&store, &["create", "--name", "holder", "holes"]);
    let out = work.path().join("out");
    fs::create_dir(&out).unwrap();
    layers_ok(&store, &["cp", "holder:/data/sparse", out.to_str().unwrap()]);
    let m = fs::metadata(out.join("sparse")).unwrap();
    assert_eq!(m.len(), (4u64 << 30) + 4);
    assert!(m.blocks() * 512 < 1 << 20, "cp kept its holes: {} blocks", m.blocks());
    layers_ok(&store, &["rm", "holder"]);
}

#[test]
fn named_volumes_outlive_containers_are_filled_from_the_image_and_mount_flags_parse_as_dockers() {
    if !need_root("named_volumes_outlive_containers_are_filled_from_the_image_and_mount_flags_parse_as_dockers") {
        return;
    }
    let (work, store) = store_with_fixtures();
    assert_eq!(layers_ok(&store, &["volume", "create", "--label", "team=a", "data"]), "data");
    assert_eq!(layers_ok(&store, &["volume", "ls", "-q"]), "data");
    let mountpoint = layers_ok(
        &store,
        &["volume", "inspect", "--format", "{{.Mountpoint}} {{.Driver}} {{index .Labels \"team\"}}", "data"],
    );
    assert_eq!(mountpoint, format!("{} local a", store.join("volumes/data/_data").display()));
    // Written by one container, read by the next.
    layers_ok(&store, &["run", "--rm", "-v", "data:/data", "localhost/layered", "sh", "-c", "echo kept > /data/f"]);
    assert_eq!(
        layers_ok(&store, &["run", "--rm", "-v", "data:/mnt:ro,z", "localhost/layered", "cat", "/mnt/f"]),
        "kept"
    );
    let ro = layers(&store, &["run", "--rm", "-v", "data:/mnt:ro", "localhost/layered", "touch", "/mnt/g"]);
    assert_ne!(ro.status.code(), Some(0), "read-only");

    // A new volume where the image has a directory starts with that directory's content.
    let etc = layers_ok(&store, &["run", "--rm", "-v", "etc-copy:/etc", "localhost/layered", "cat", "/etc/passwd"]);
    assert!(etc.contains("root:"), "{etc}");
    assert!(store.join("volumes/etc-copy/_data/passwd").exists());
    // nocopy: left empty.
    let empty = layers_ok(&store, &["run", "--rm", "-v", "bare:/etc:nocopy", "localhost/layered", "ls", "-A", "/etc"]);
    assert_eq!(empty, "");

    // In use: refused; its container gone: removed.
    layers_ok(
        &store,
        &["create", "--name", "user", "-v", "data:/data", "--mount", "type=tmpfs,target=/t", "localhost/layered"],
    );
    // inspect and ps name the volume as a volume (Docker's shape), the --mount too.
    let m = layers_ok(
        &store,
        &[
            "inspect",
            "--format",
            "{{range .Mounts}}{{.Type}}:{{.Destination}} {{end}}{{(index .Mounts 0).Name}}",
            "user",
        ],
    );
    assert_eq!(m, "volume:/data tmpfs:/t data");
    assert_eq!(layers_ok(&store, &["ps", "-a", "--filter", "name=user", "--format", "{{.Mounts}}"]), "data");
    let busy = layers(&store, &["volume", "rm", "data"]);
    assert_eq!(busy.status.code(), Some(125));
    assert!(stderr(&busy).contains("in use by 1 container"), "{}", stderr(&busy));
    layers_ok(&store, &["rm", "user"]);
    assert_eq!(layers_ok(&store, &["volume", "rm", "data"]), "data");
    assert_eq!(layers(&store, &["volume", "rm", "data"]).status.code(), Some(125), "gone");
    assert_eq!(layers_ok(&store, &["volume", "rm", "-f", "data"]), "data", "-f: a missing one is no error");
    assert!(!store.join("volumes/data").exists());

    // -v CONTAINER: an anonymous volume, which `volume prune` takes once unused; named ones need -a.
    layers_ok(&store, &["create", "--name", "anon", "-v", "/scratch", "localhost/layered"]);
    let vols = layers_ok(&store, &["volume", "ls", "-q", "--filter", "dangling=false"]);
    assert_eq!(vols.len(), 64, "{vols}");
    layers_ok(&store, &["rm", "anon"]);
    let pruned = layers_ok(&store, &["volume", "prune", "-f"]);
    assert!(pruned.contains(&vols) && !pruned.contains("etc-copy"), "{pruned}");
    let all = layers_ok(&store, &["volume", "prune", "-a", "-f"]);
    assert!(all.contains("etc-copy") && all.contains("bare"), "{all}");

    // --mount: volume, tmpfs with a size, bind (its source must exist); unknown options named.
    let host = work.path().join("hostdir");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("h"), "from host").unwrap();
    let out = layers_ok(
        &store,
        &[
            "run",
            "--rm",
            "--mount",
            "type=volume,source=m1,target=/v",
            "--mount",
            "type=tmpfs,target=/t,tmpfs-size=1m",
            "--mount",
            &format!("type=bind,src={},dst=/h,readonly", host.display()),
            "localhost/layered",
            "sh",
            "-c",
            "touch /v/x && cat /h/h && df -k /t | tail -1",
        ],
    );
    assert!(out.starts_with("from host") && out.contains(" 1024 "), "{out}");
    for (flag, says) in [
        ("type=bind,source=/no/such/dir,target=/x", "bind source path does not exist"),
        ("type=volume,source=v,target=/x,bind-propagation=shared", "unsupported option \"bind-propagation\""),
        ("type=npipe,target=/x", "type \"npipe\" is not supported"),
    ] {
        let out = layers(&store, &["run", "--rm", "--mount", flag, "localhost/layered", "true"]);
        assert_eq!(out.status.code(), Some(125), "{flag}");
        assert!(stderr(&out).contains(says), "{flag}: {}", stderr(&out));
    }
    let rel = layers(&store, &["run", "--rm", "-v", "./data:/data", "localhost/layered", "true"]);
    assert_eq!(rel.status.code(), Some(125));
    assert!(stderr(&rel).contains("is a relative path"), "{}", stderr(&rel));
    assert_eq!(stderr(&rel).lines().count(), 1);
}

#[test]
fn cp_copies_both_ways_and_no_symlink_in_the_container_reaches_the_host() {
    if !need_root("cp_copies_both_ways_and_no_symlink_in_the_container_reaches_the_host") {
        return;
    }
    let (work, store) = store_with_fixtures();
    let out_dir = work.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    // A host file the container must never reach, and the traps an image could hold.
    let marker = format!("layers-cp-marker-{}", std::process::id());
    std::fs::write(format!("/tmp/{marker}"), "HOST").unwrap();
    let traps = "mkdir -p /data && echo inside > /data/f && ln -s / /evil && ln -s ../../../../../.. /data/up && ln -s /tmp /data/tmp";
    let out = layers(&store, &["run", "--name", "s", "localhost/layered", "sh", "-c", traps]);
    assert!(out.status.success(), "{}", stderr(&out));
    let running = detached(&store, &["--name", "r", "localhost/layered", "sh", "-c", &format!("{traps}; sleep 100")]);
    std::thread::sleep(std::time::Duration::from_millis(300));

    for c in ["s", "r"] {
        // Out: a file, a directory (into an existing dir, and as a new name).
        layers_ok(&store, &["cp", &format!("{c}:/data/f"), out_dir.to_str().unwrap()]);
        assert_eq!(std::fs::read_to_string(out_dir.join("f")).unwrap(), "inside\n");
        std::fs::remove_file(out_dir.join("f")).unwrap();
        layers_ok(&store, &["cp", &format!("{c}:/data"), out_dir.join("copy").to_str().unwrap()]);
        assert_eq!(std::fs::read_to_string(out_dir.join("copy/f")).unwrap(), "inside\n");
        assert_eq!(std::fs::read_link(out_dir.join("copy/evil")).ok(), None);
        assert!(
            std::fs::symlink_metadata(out_dir.join("copy/up")).unwrap().file_type().is_symlink(),
            "links copied as links"
        );
        std::fs::remove_dir_all(out_dir.join("copy")).unwrap();
        // Through every symlink, absolute or `..`: the container's /tmp, not the host's.
        for through in ["/evil/tmp", "/data/up/tmp", "/data/tmp"] {
            let got =
                layers(&store, &["cp", &format!("{c}:{through}/{marker}"), out_dir.join("stolen").to_str().unwrap()]);
            assert_eq!(got.status.code(), Some(125), "{c}: {through} reached the host");
            assert!(!out_dir.join("stolen").exists());
        }
        // In: through the same symlinks, the file lands in the container.
        let src = work.path().join("in.txt");
        std::fs::write(&src, "from host").unwrap();
        for (i, through) in ["/evil/tmp", "/data/up/tmp", "/data/tmp"].iter().enumerate() {
            let name = format!("{marker}-in-{c}-{i}");
            layers_ok(&store, &["cp", src.to_str().unwrap(), &format!("{c}:{through}/{name}")]);
            assert!(
                !std::path::Path::new(&format!("/tmp/{name}")).exists(),
                "{c}: written on the host through {through}"
            );
        }
    }
    let diff = layers_ok(&store, &["diff", "s"]);
    assert!(diff.contains(&format!("A /tmp/{marker}-in-s-0")), "{diff}");
    assert_eq!(layers_ok(&store, &["exec", &running, "cat", &format!("/tmp/{marker}-in-r-2")]), "from host");
    assert_eq!(std::fs::read_to_string(format!("/tmp/{marker}")).unwrap(), "HOST");
    std::fs::remove_file(format!("/tmp/{marker}")).unwrap();
    layers_ok(&store, &["rm", "-f", "r"]);
}

#[test]
fn top_lists_the_containers_processes_with_the_hosts_ps() {
    if !need_root("top_lists_the_containers_processes_with_the_hosts_ps") {
        return;
    }
    let (_work, store) = store_with_fixtures();
    let id = detached(&store, &["--init", "localhost/layered", "sleep", "77"]);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let top = layers_ok(&store, &["top", &id]);
    let lines: Vec<&str> = top.lines().collect();
    assert!(lines[0].contains("PID") && lines[0].contains("CMD"), "{top}");
    assert!(lines.iter().any(|l| l.ends_with("sleep 77")), "{top}");
    assert!(lines.len() <= 3, "only the container's processes: {top}");
    let pids = layers_ok(&store, &["top", &id, "-o", "pid,comm"]);
    assert!(pids.starts_with("  PID COMMAND") || pids.starts_with("PID"), "{pids}");
    layers_ok(&store, &["stop", "-t", "1", &id]);
    let out = layers(&store, &["top", &id]);
    assert!(stderr(&out).contains("is not running"), "{}", stderr(&out));
}

/// `layers attach CONTAINER`, its stdout piped, once the container's first line has come through.
fn attached_after_first_line(store: &std::path::Path, args: &[&str]) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut full = vec!["attach"];
    full.extend_from_slice(args);
    let mut child = spawn_layers(store, &full);
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    // The rest is drained on a thread of its own, so the pipe never fills and stalls attach.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    (child, first)
}

#[test]
fn attach_joins_a_running_container_passes_stdin_and_signals_and_ends_with_its_code() {
    if !need_root("attach_joins_a_running_container_passes_stdin_and_signals_and_ends_with_its_code") {
        return;
    }
    let (_work, store) = store_with_fixtures();

    // `run -di`: our stdin reaches it, both its streams reach us apart, its exit code is ours.
    let script = "read l; echo \"got $l\"; echo oops >&2; exit 7";
    detached(&store, &["-i", "--name", "reader", "localhost/layered", "sh", "-c", script]);
    let out = answering(&store, "hello\n", &["attach", "reader"]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert_eq!(stdout(&out), "got hello\n");
    assert_eq!(stderr(&out), "oops\n");
    let stopped = layers(&store, &["attach", "reader"]);
    assert_eq!(stopped.status.code(), Some(125));
    assert!(stderr(&stopped).contains("cannot attach to a stopped container, start it first"), "{}", stderr(&stopped));

    // --sig-proxy (the default): a SIGTERM to attach reaches the container; a --rm
    // container's code still comes back before it is removed.
    let ticking = "trap 'echo term; exit 3' TERM; while :; do echo tick; sleep 0.1; done";
    detached(&store, &["--rm", "--name", "trap", "localhost/layered", "sh", "-c", ticking]);
    let (mut child, first) = attached_after_first_line(&store, &["trap"]);
    assert_eq!(first, "tick\n");
    assert!(std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(3), "the container's code after its trap ran");
    // Removed by its monitor right after (attach, like docker's, returns once it stopped).
    let gone = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        !names(&store).contains(&"trap".to_string())
    });
    assert!(gone, "--rm removed it after");

    // --sig-proxy=false: the signal is ours alone; the container runs on.
    detached(&store, &["--name", "quiet", "localhost/layered", "sh", "-c", ticking]);
    let (mut child, _) = attached_after_first_line(&store, &["--sig-proxy=false", "quiet"]);
    assert!(std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(child.wait().unwrap().signal(), Some(15));
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(layers_ok(&store, &["ps", "--filter", "name=quiet", "--format", "{{.State}}"]), "running");
    let keys = layers(&store, &["attach", "--detach-keys", "ctrl-a,d", "quiet"]);
    assert_eq!(keys.status.code(), Some(125));
    assert!(stderr(&keys).contains("--detach-keys: quiet has no terminal (-t)"), "{}", stderr(&keys));
    layers_ok(&store, &["rm", "-f", "quiet"]);

    // -t: our terminal's size (and its changes), the detach keys, and no attaching
    // a pipe to a terminal.
    detached(&store, &["-it", "--name", "shell", "localhost/layered", "sh"]);
    let text = on_a_terminal(
        &store,
        (30, 100),
        &[
            "expect:/ # ",
            "send:stty size\\r",
            "expect:30 100",
            "resize:40,120",
            "send:stty size\\r",
            "expect:40 120",
            "send:\\x10\\x11",
            "expect:read escape sequence",
        ],
        &["attach", "shell"],
    );
    assert!(text.ends_with("exit=1\n"), "detached with Ctrl-P Ctrl-Q, as docker attach: {text}");
    assert_eq!(layers_ok(&store, &["ps", "--filter", "name=shell", "--format", "{{.State}}"]), "running");
    let text = on_a_terminal(
        &store,
        (24, 80),
        // A Ctrl-A not followed by `d` is the shell's (start of line), so `x` lands first.
        &[
            "expect:/ # ",
            "send:echo one\\x01x\\r",
            "expect:xecho: not found",
            "send:\\x01d",
            "expect:read escape sequence",
        ],
        &["attach", "--detach-keys", "ctrl-a,d", "shell"],
    );
    assert!(text.ends_with("exit=1\n"), "{text}");
    let piped = answering(&store, "exit\n", &["attach", "shell"]);
    assert_eq!(piped.status.code(), Some(125));
    assert!(stderr(&piped).contains("the input device is not a TTY"), "{}", stderr(&piped));
    // start -a on a running container attaches to it.
    let text = on_a_terminal(&store, (24, 80), &["expect:/ # ", "send:exit 4\\r"], &["start", "-ai", "shell"]);
    assert!(text.ends_with("exit=4\n"), "{text}");
}

#[test]
fn network_ls_and_inspect_list_the_two_networks_as_docker_does() {
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let table = layers_ok(&store, &["network", "ls"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines[0], "NETWORK ID     NAME      DRIVER    SCOPE", "{table}");
    assert!(lines[1].ends_with("   host      host      local") && lines[2].ends_with("   none      null      local"));
    let ids = layers_ok(&store, &["network", "ls", "-q", "--no-trunc"]);
    assert!(ids.lines().all(|l| l.len() == 64), "{ids}");
    let none = layers_ok(&store, &["network", "ls", "--filter", "driver=null", "--format", "{{.Name}} {{.Scope}}"]);
    assert_eq!(none, "none local");
    let short = &lines[2][..12];
    assert_eq!(layers_ok(&store, &["network", "inspect", "-f", "{{.Name}} {{.Driver}}", short]), "none null");
    let shown = layers_ok(&store, &["network", "inspect", "host"]);
    // Indented as Docker indents every inspect: four spaces a level.
    assert!(shown.starts_with("[\n    {\n        \""), "{shown}");
    let v: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(v[0]["Driver"], "host");
    assert!(v[0]["Id"].as_str().unwrap().starts_with(&lines[1][..12]));
    let bad = layers(&store, &["network", "inspect", "bridge"]);
    assert_eq!(bad.status.code(), Some(125));
    assert!(stderr(&bad).contains("network inspect bridge: no such network"), "{}", stderr(&bad));
    assert!(!layers(&store, &["network", "ls", "--filter", "color=red"]).status.success());
}
