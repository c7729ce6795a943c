//! Habits a Docker user brings that used to trip `layers`: each test is named after
//! what was reproduced (races between verbs, a terminal that is not one, flags that
//! stop at the first argument, retries that flood the terminal).

// Tests make and inspect their fixtures by path (clippy.toml bans that in the code under test).
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::Path;

use common::*;

#[test]
fn kill_then_wait_reports_the_exit_code_every_time() {
    if !need_root("kill_then_wait_reports_the_exit_code_every_time") {
        return;
    }
    let (_work, store) = store_with_fixtures();
    // The race was between PID 1's death and its monitor's record: repeat to meet it.
    for i in 0..20 {
        let id = detached(&store, &["localhost/layered", "sleep", "100"]);
        layers_ok(&store, &["kill", &id]);
        let out = layers(&store, &["wait", &id]);
        assert!(out.status.success(), "round {i}: {}", stderr(&out));
        assert_eq!(stdout(&out).trim(), "137", "round {i}");
    }
    for i in 0..10 {
        let id = detached(&store, &["localhost/layered", "sh", "-c", "exit 3"]);
        let out = layers(&store, &["wait", &id]);
        assert!(out.status.success(), "round {i}: {}", stderr(&out));
        assert_eq!(stdout(&out).trim(), "3", "round {i}");
    }
}

#[test]
fn run_it_with_a_pipe_for_stdin_is_refused_and_rm_holds_when_layers_run_is_killed() {
    if !need_root("run_it_with_a_pipe_for_stdin_is_refused_and_rm_holds_when_layers_run_is_killed") {
        return;
    }
    let (_work, store) = store_with_fixtures();
    let mut child = layers_cmd()
        .arg("--root")
        .arg(&store)
        .args(["run", "--rm", "-it", "localhost/layered", "cat"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let _ = child.stdin.take().unwrap().write_all(b"x\n");
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("the input device is not a TTY"), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
    assert_eq!(names(&store), Vec::<String>::new(), "no container made");

    // --rm holds even when `layers run` is SIGKILLed while another `layers` keeps the
    // store open (a detached container's monitor): the next command removes it.
    let keeper = detached(&store, &["localhost/layered", "sleep", "100"]);
    let mut run = spawn_layers(&store, &["run", "--rm", "--name", "doomed", "localhost/layered", "sleep", "100"]);
    let named = (0..250).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        layers_ok(&store, &["ps"]).contains("doomed")
    });
    assert!(named, "the --rm container never ran");
    run.kill().unwrap();
    run.wait().unwrap();
    let left = names(&store);
    assert_eq!(left.len(), 1, "the --rm container was left behind: {left:?}");
    layers_ok(&store, &["rm", "-f", &keeper]);
}

/// `layers ARGS` under a bounding set without CAP_SYS_TIME (util-linux's setpriv), as
/// on a host or in an outer container that lacks it.
fn without_sys_time(store: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new("setpriv")
        .args(["--bounding-set", "-sys_time", "--inh-caps", "-all"])
        .env(NO_DEFAULT_NETWORK.0, NO_DEFAULT_NETWORK.1)
        .arg(layers_bin())
        .arg("--root")
        .arg(store)
        .args(args)
        .output()
        .expect("run setpriv (util-linux)")
}

#[test]
fn privileged_and_cap_add_all_take_what_the_caller_has_and_a_missing_cap_add_is_named() {
    if !need_root("privileged_and_cap_add_all_take_what_the_caller_has_and_a_missing_cap_add_is_named") {
        return;
    }
    let (_work, store) = store_with_fixtures();
    let ours = u64::from_str_radix(
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("CapPrm:"))
            .unwrap()
            .trim(),
        16,
    )
    .unwrap();
    let sys_time = 1u64 << 25;
    let cap_eff = "sed -n 's/^CapEff:\\t//p' /proc/self/status";
    for flags in [&["--privileged"][..], &["--cap-add", "ALL"][..]] {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["localhost/layered", "sh", "-c", cap_eff]);
        let out = without_sys_time(&store, &args);
        assert!(out.status.success(), "{flags:?}: {}", stderr(&out));
        let got = u64::from_str_radix(stdout(&out).trim(), 16).unwrap();
        assert_eq!(got, ours & !sys_time, "{flags:?}: every capability the caller has, and only those");
    }
    let out = without_sys_time(&store, &["run", "--rm", "--cap-add", "SYS_TIME", "localhost/layered", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("--cap-add SYS_TIME: CAP_SYS_TIME is not ours to give"), "{}", stderr(&out));
    // The defaults still hold where the caller has them all.
    let out = without_sys_time(&store, &["run", "--rm", "localhost/layered", "sh", "-c", cap_eff]);
    assert_eq!(stdout(&out).trim(), "00000000a80425fb", "{}", stderr(&out));
}

#[test]
fn rm_rmi_stop_and_kill_go_through_every_argument_and_fail_at_the_end() {
    if !need_root("rm_rmi_stop_and_kill_go_through_every_argument_and_fail_at_the_end") {
        return;
    }
    let (_work, store) = store_with_fixtures();
    for n in ["a", "b"] {
        layers_ok(&store, &["create", "--name", n, "localhost/layered"]);
    }
    let out = layers(&store, &["rm", "a", "nosuch", "b"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "a\nb\n", "both removed");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one line for the one failure: {err}");
    assert!(err.contains("nosuch"), "{err}");
    assert!(names(&store).is_empty());

    let x = detached(&store, &["--name", "x", "localhost/layered", "sleep", "100"]);
    let out = layers(&store, &["kill", "nosuch", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out).trim(), "x");
    assert_eq!(layers_ok(&store, &["wait", &x]).trim(), "137");

    layers_ok(&store, &["tag", "localhost/layered", "localhost/copy:1"]);
    let out = layers(&store, &["rmi", "localhost/nosuch", "localhost/copy:1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("Untagged: localhost/copy:1"), "{}", stdout(&out));
}

#[test]
fn a_registry_that_refuses_or_never_answers_fails_in_one_line_within_the_stall_window() {
    if !need_root("a_registry_that_refuses_or_never_answers_fails_in_one_line_within_the_stall_window") {
        return;
    }
    let (_work, store) = store_with_fixtures();
    // A port nobody listens on: four blobs, each retried, one line in all.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let out = layers(&store, &["push", "localhost/two-layers", &format!("{closed}/x:1")]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&format!("connect to {closed}: Connection refused")), "{err}");
    assert!(err.contains("(gave up after 5 attempts in"), "{err}");

    // A listener that accepts and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in silent.incoming() {
            held.push(c);
        }
    });
    for args in [
        vec!["pull".to_string(), format!("{addr}/x:1")],
        vec!["push".into(), "localhost/layered".into(), format!("{addr}/x:1")],
    ] {
        let started = std::time::Instant::now();
        let out = layers_cmd().env("LAYERS_STALL_TIMEOUT", "3").arg("--root").arg(&store).args(&args).output().unwrap();
        let took = started.elapsed().as_secs_f64();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains("no response within 3s (gave up after 2 attempts"), "{args:?}: {err}");
        assert!(took < 10.0, "{args:?}: a silent registry took {took:.1}s with a 3 s stall window");
    }
}

#[test]
fn usage_lines_do_not_show_options_set_from_the_environment() {
    let work = tempfile::tempdir().unwrap();
    let out = layers_cmd()
        .env("LAYERS_ROOT", work.path().join("store"))
        .env("LAYERS_MAX_LAYER_SIZE", "1000000")
        .arg("run")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    let err = stderr(&out);
    assert!(err.contains("Usage: layers run <IMAGE> [COMMAND]..."), "{err}");
    assert!(!err.contains("--root"), "{err}");
    let bad = layers_cmd()
        .env("LAYERS_ROOT", work.path().join("store"))
        .env("LAYERS_MAX_LAYER_SIZE", "lots")
        .arg("images")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(125));
    assert!(stderr(&bad).contains("$LAYERS_MAX_LAYER_SIZE=lots: not a number"), "{}", stderr(&bad));
}
