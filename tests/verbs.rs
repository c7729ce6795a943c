//! The verbs around containers, images and the store, done the way Docker does
//! them: images pulled when `run` needs them, logs, create/start/restart, save and
//! export to pipes, prune, completions and version, top, attach, networks.

// Tests make and inspect their fixtures by path (clippy.toml bans that in the code under test).
#![allow(clippy::disallowed_methods)]

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
    assert_eq!(bad.status.code(), Some(1));
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
    // `create IMAGE` with no name gets Docker's shape of name, adjective_surname.
    let id = layers_ok(&store, &["create", "localhost/layered"]);
    let unnamed = layers_ok(&store, &["inspect", "-f", "{{.Name}}", &id]);
    let unnamed = unnamed.trim_start_matches('/');
    let (adjective, surname) = unnamed.split_once('_').unwrap_or_default();
    assert!(!adjective.is_empty() && !surname.is_empty(), "{unnamed}");
    assert!(unnamed.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "{unnamed}");

    layers_ok(&store, &["rename", "c1", "c2"]);
    let taken = layers(&store, &["rename", "c2", unnamed]);
    assert_eq!(taken.status.code(), Some(1));
    assert!(stderr(&taken).contains("already in use"), "{}", stderr(&taken));
    assert!(layers(&store, &["logs", "c1"]).status.code() == Some(1));

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
    let mut load = layers_cmd();
    load.arg("--root").arg(&other).arg("load");
    let loaded = feed(load, &saved.stdout);
    assert!(loaded.status.success(), "{}", stderr(&loaded));
    // Docker prints the familiar name: `Loaded image: two-layers:latest`.
    assert!(stdout(&loaded).contains("Loaded image: two-layers:latest"), "{}", stdout(&loaded));
    for args in [&["save", "localhost/two-layers"][..], &["export", "localhost/two-layers"][..]] {
        let out = on_a_terminal(&store, (24, 80), &[], args);
        assert!(out.contains("refusing to write a tar to a terminal"), "{args:?}: {out}");
        assert!(out.ends_with("exit=1\n"), "{out}");
    }
    let out = on_a_terminal(&other, (24, 80), &[], &["load"]);
    assert!(out.contains("standard input is a terminal"), "{out}");
}

/// `layers ARGS` with `answer` on its stdin (typed at its prompt, or piped in).
fn answering(store: &std::path::Path, answer: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = layers_cmd();
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
    let containers: serde_json::Value = serde_json::from_str(json.lines().nth(1).unwrap()).unwrap();
    assert_eq!(containers["Type"], "Containers", "{json}");
    assert!(containers["Size"].as_str().unwrap().ends_with('B'), "{json}");
    let table = layers_ok(&store, &["df", "--format", "table {{.Type}}\t{{.Reclaimable}}"]);
    assert!(table.starts_with("TYPE            RECLAIMABLE\nImages "), "{table}");
    let both = layers(&store, &["df", "-v", "--format", "json"]);
    assert_eq!(both.status.code(), Some(1));
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
    assert_eq!(v, format!("{} {}", env!("CARGO_PKG_VERSION"), layers_store::meta::FORMAT_VERSION));
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
    assert_eq!(stopped.status.code(), Some(1));
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
    assert_eq!(keys.status.code(), Some(1));
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
    assert_eq!(piped.status.code(), Some(1));
    assert!(stderr(&piped).contains("the input device is not a TTY"), "{}", stderr(&piped));
    // start -a on a running container attaches to it.
    let text = on_a_terminal(&store, (24, 80), &["expect:/ # ", "send:exit 4\\r"], &["start", "-ai", "shell"]);
    assert!(text.ends_with("exit=4\n"), "{text}");
}

#[test]
fn network_ls_and_inspect_list_the_networks_as_docker_does() {
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let table = layers_ok(&store, &["network", "ls"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines[0], "NETWORK ID     NAME          DRIVER        SCOPE", "{table}");
    assert!(lines[1].ends_with("   bridge        bridge        local"), "{table}");
    assert!(lines[2].ends_with("   host          host          local"), "{table}");
    assert!(lines[3].ends_with("   none          null          local"), "{table}");
    assert!(lines[4].ends_with("   pasta         pasta         local"), "{table}");
    assert!(lines[5].ends_with("   slirp4netns   slirp4netns   local"), "{table}");
    let ids = layers_ok(&store, &["network", "ls", "-q", "--no-trunc"]);
    assert!(ids.lines().all(|l| l.len() == 64), "{ids}");
    let none = layers_ok(&store, &["network", "ls", "--filter", "driver=null", "--format", "{{.Name}} {{.Scope}}"]);
    assert_eq!(none, "none local");
    let short = &lines[3][..12];
    assert_eq!(layers_ok(&store, &["network", "inspect", "-f", "{{.Name}} {{.Driver}}", short]), "none null");
    let shown = layers_ok(&store, &["network", "inspect", "host"]);
    // Indented as Docker indents every inspect: four spaces a level.
    assert!(shown.starts_with("[\n    {\n        \""), "{shown}");
    let v: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(v[0]["Driver"], "host");
    assert!(v[0]["Id"].as_str().unwrap().starts_with(&lines[2][..12]));
    let bridge = layers_ok(&store, &["network", "inspect", "-f", "{{json .IPAM.Config}}", "bridge"]);
    assert_eq!(bridge, r#"[{"Gateway":"10.77.0.1","Subnet":"10.77.0.0/16"}]"#);
    let bad = layers(&store, &["network", "inspect", "nosuch"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("network inspect nosuch: no such network"), "{}", stderr(&bad));
    assert!(!layers(&store, &["network", "ls", "--filter", "color=red"]).status.success());
}

/// `import -c` and `commit -c` apply Dockerfile instructions to the new image's config,
/// as Docker's (`docker import --change`, `docker commit --change`: CMD, ENTRYPOINT,
/// ENV, EXPOSE, LABEL, ONBUILD, USER, VOLUME, WORKDIR); others are refused by name,
/// before anything is read or written.
#[test]
fn import_and_commit_apply_changes_as_dockers() {
    if !need_root("import_and_commit_apply_changes_as_dockers") {
        return;
    }
    let (work, store) = store_with_fixtures();
    let rootfs = work.path().join("rootfs.tar");
    let exported = layers(&store, &["export", "localhost/layered"]);
    assert!(exported.status.success(), "{}", stderr(&exported));
    std::fs::write(&rootfs, &exported.stdout).unwrap();
    let tar = rootfs.to_str().unwrap();
    let id = layers_ok(
        &store,
        &["import", "-q", "-c", "CMD [\"/bin/sh\", \"-c\", \"echo $GREETING\"]", "-c", "ENV GREETING=hi", tar, "ch:1"],
    );
    assert!(id.starts_with("sha256:"), "{id}");
    assert_eq!(layers_ok(&store, &["run", "--rm", "ch:1"]), "hi");
    let before = layers_ok(&store, &["images", "-q"]);
    let bad = layers(&store, &["import", "-c", "RUN rm -rf /", tar, "ch:2"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("RUN is not a change Docker applies"), "{}", stderr(&bad));
    assert_eq!(layers_ok(&store, &["images", "-q"]), before, "nothing imported");

    layers_ok(&store, &["create", "--name", "cc", "ch:1"]);
    // A bad change is refused before the commit touches the container: a mounted one stays mounted.
    layers_ok(&store, &["mount", "cc"]);
    let bad = layers(&store, &["commit", "-c", "RUN true", "cc", "ch:3"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("RUN is not a change Docker applies"), "{}", stderr(&bad));
    assert!(layers_ok(&store, &["ps"]).contains("cc"), "cc is still mounted");
    layers_ok(&store, &["umount", "cc"]);
    layers_ok(&store, &["commit", "-c", "ENV GREETING=bye", "-c", "WORKDIR /tmp", "cc", "ch:2"]);
    assert_eq!(layers_ok(&store, &["run", "--rm", "ch:2"]), "bye");
    assert_eq!(layers_ok(&store, &["inspect", "-f", "{{.Config.WorkingDir}}", "ch:2"]), "/tmp");
}

/// The README's table has a row for every verb `layers --help` lists (issue 32: a
/// newcomer finds each one there), management commands included.
#[test]
fn every_verb_in_help_has_a_readme_row() {
    let help = layers_cmd().arg("--help").output().unwrap();
    let help = stdout(&help);
    let verbs: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|v| *v != "help")
        .collect();
    assert!(verbs.len() > 40 && verbs.contains(&"events"), "{verbs:?}");
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    // A row's first cell: `layers pause` / `unpause`, `layers image …` / `container …`.
    let rows: Vec<String> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `layers "))
        .filter_map(|l| l.split(" | ").next())
        .flat_map(|cell| cell.split('/').map(|name| name.trim().trim_matches('`').to_string()).collect::<Vec<_>>())
        .filter_map(|name| name.split_whitespace().next().map(str::to_string))
        .collect();
    let missing: Vec<&&str> = verbs.iter().filter(|v| !rows.iter().any(|r| r == *v)).collect();
    assert!(missing.is_empty(), "verbs with no README row: {missing:?}");
}
