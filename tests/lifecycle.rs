//! A container's life after `layers run` starts it: a terminal (`-t`), an init
//! (`--init`), detached containers (`-d`) with `logs`, `stop`, `kill`, `wait`, `rm -f`,
//! and what happens when `layers run` itself is killed. Real kernel, as root.

// Tests make and inspect their fixtures by path (clippy.toml bans that in the code under test).
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::*;

fn setup() -> (tempfile::TempDir, std::path::PathBuf) {
    store_with_fixtures()
}

/// `layers exec` of `ps` in a container: (stat, command) per process.
fn processes(store: &Path, name: &str) -> Vec<(String, String)> {
    let ps = layers_ok(store, &["exec", name, "ps", "-o", "pid,stat,comm"]);
    ps.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 3).then(|| (f[1].to_string(), f[2].to_string()))
        })
        .collect()
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ")
}

/// The host PID `ps` shows for a running container.
fn host_pid(store: &Path, name: &str) -> Option<u32> {
    host_pid_as(Mode::Root, store, name)
}

/// [`host_pid`], asked as `mode`'s user.
fn host_pid_as(mode: Mode, store: &Path, name: &str) -> Option<u32> {
    let ps = mode.layers_ok(store, &["ps", "--format", "{{.Names}} {{.Pid}}"]);
    let line = ps.lines().find(|l| l.starts_with(&format!("{name} ")))?;
    line.split(' ').nth(1)?.parse().ok().filter(|p| *p != 0)
}

fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(5);
    while !ok() {
        assert!(Instant::now() < end, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run_detached(store: &Path, args: &[&str]) -> Output {
    let mut full = vec!["run", "-d"];
    full.extend_from_slice(args);
    layers(store, &full)
}

both_modes!(
    a_tty_is_a_pty_of_the_containers_own_sized_and_ctrl_c_and_resizes_reach_it,
    a_tty_is_a_pty_of_the_containers_own_sized_and_ctrl_c_and_resizes_reach_it_rootless,
    a_tty
);

fn a_tty(mode: Mode) {
    let (_work, store) = mode.store_with_fixtures();
    let script = "tty; stty size; echo TERM=$TERM; read line; echo got:$line; \
                  trap 'stty size; echo winch' WINCH; trap 'echo interrupted; exit 9' INT; \
                  echo waiting; while :; do sleep 0.1; done";
    let out = mode.on_a_terminal(
        &store,
        (30, 100),
        &["expect:TERM=", "send:hello\\r", "expect:waiting", "resize:40,120", "expect:winch", "send:\\x03"],
        &["run", "--rm", "-it", "localhost/layered", "/bin/sh", "-c", script],
    );
    let lines: Vec<&str> = out.lines().map(|l| l.trim_end_matches('\r')).collect();
    assert_eq!(lines[0], "/dev/pts/0", "the pty comes from the container's own devpts: {out}");
    assert_eq!(lines[1], "30 100", "the terminal's size, from the start: {out}");
    assert_eq!(lines[2], "TERM=xterm");
    assert!(lines.contains(&"got:hello"), "typed input arrives: {out}");
    assert!(lines.contains(&"40 120"), "a resize reaches the container: {out}");
    assert!(lines.iter().any(|l| l.ends_with("interrupted")), "Ctrl-C is SIGINT in the container: {out}");
    assert_eq!(lines.last(), Some(&"exit=9"), "{out}");
    assert!(mode.layers_ok(&store, &["ps", "-a", "-q"]).is_empty(), "--rm removed the container");

    // Without -i, stdin is not passed on, and output still comes through the pty.
    let out =
        mode.on_a_terminal(&store, (24, 80), &[], &["run", "--rm", "-t", "localhost/layered", "sh", "-c", "exit 3"]);
    assert!(out.ends_with("exit=3\n"), "{out}");
}

#[test]
fn init_reaps_the_zombies_a_plain_pid_1_leaves() {
    if !need_root("init_reaps_the_zombies_a_plain_pid_1_leaves") {
        return;
    }
    let (_work, store) = setup();
    // The subshell's `sleep` is orphaned at once and reparented to PID 1, which is
    // `sleep 30` (never waits) or our init.
    let script = "(sleep 0.1 &); exec sleep 30";
    for (name, init) in [("plain", false), ("with-init", true)] {
        let mut args = vec!["--name", name];
        if init {
            args.push("--init");
        }
        args.extend(["localhost/layered", "sh", "-c", script]);
        let out = run_detached(&store, &args);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    std::thread::sleep(Duration::from_millis(600));
    let plain = processes(&store, "plain");
    assert!(plain.iter().any(|(stat, comm)| stat.starts_with('Z') && comm == "sleep"), "a zombie: {plain:?}");
    let with_init = processes(&store, "with-init");
    assert!(with_init.iter().all(|(stat, _)| !stat.starts_with('Z')), "no zombie: {with_init:?}");
    assert_eq!(with_init.first().map(|p| p.1.as_str()), Some("layers-init"), "PID 1 is the init: {with_init:?}");
    assert!(with_init.iter().any(|(_, comm)| comm == "sleep"), "{with_init:?}");

    // `sleep` as PID 1 has no TERM handler: stop falls back to SIGKILL after -t.
    let start = Instant::now();
    assert_eq!(layers_ok(&store, &["stop", "-t", "1", "plain"]).trim(), "plain");
    assert!(start.elapsed() >= Duration::from_millis(900), "waited the grace time");
    assert_eq!(layers_ok(&store, &["wait", "plain"]).trim(), "137");
    // The init forwards SIGTERM to its command, which dies of it: 128 + 15.
    assert_eq!(layers_ok(&store, &["stop", "with-init"]).trim(), "with-init");
    assert!(start.elapsed() < Duration::from_secs(5), "no grace time needed with --init");
    assert_eq!(layers_ok(&store, &["wait", "with-init"]).trim(), "143");
}

both_modes!(
    detached_containers_log_stop_wait_kill_and_rm,
    detached_containers_log_stop_wait_kill_and_rm_rootless,
    detached_lifecycle
);

fn detached_lifecycle(mode: Mode) {
    let layers = |store: &Path, args: &[&str]| mode.run(store, args);
    let layers_ok = |store: &Path, args: &[&str]| mode.layers_ok(store, args);
    let run_detached = |store: &Path, args: &[&str]| mode.run(store, &[&["run", "-d"], args].concat());
    let spawn_layers = |store: &Path, args: &[&str]| mode.spawn(store, args);
    let host_pid = |store: &Path, name: &str| host_pid_as(mode, store, name);
    let (_work, store) = mode.store_with_fixtures();
    let script = "echo out; echo err >&2; trap 'echo stopping; exit 3' TERM; while :; do sleep 0.1; done";
    let out = run_detached(&store, &["--name", "d1", "localhost/layered", "sh", "-c", script]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    assert!(id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()), "prints the full ID: {id}");
    let pid = host_pid(&store, "d1").expect("ps shows it running with its host PID");
    // stdout and stderr kept apart, as `docker logs` gives them back.
    eventually("its output in the log", || {
        let logs = layers(&store, &["logs", "d1"]);
        stdout(&logs) == "out\n" && stderr(&logs) == "err\n"
    });

    // `logs -f` follows until the container stops.
    let mut follow = spawn_layers(&store, &["logs", "-f", "d1"]);
    std::thread::sleep(Duration::from_millis(200));
    assert!(follow.try_wait().unwrap().is_none(), "logs -f keeps going while it runs");
    let running = layers(&store, &["rm", "d1"]);
    assert_eq!(running.status.code(), Some(1));
    assert!(stderr(&running).contains("is running"), "{}", stderr(&running));

    assert_eq!(layers_ok(&store, &["stop", "d1"]).trim(), "d1");
    assert!(!pid_alive(pid), "stopped");
    let followed = follow.wait_with_output().unwrap();
    assert_eq!(stdout(&followed), "out\nstopping\n");
    assert_eq!(stderr(&followed), "err\n");
    assert_eq!(layers_ok(&store, &["wait", "d1"]).trim(), "3");
    let ps = layers_ok(&store, &["ps", "-a"]);
    assert!(ps.lines().any(|l| l.ends_with("d1") && l.contains("Exited (3)")), "{ps}");
    let not_running = layers(&store, &["kill", "d1"]);
    assert_eq!(not_running.status.code(), Some(1));
    assert!(stderr(&not_running).contains("kill d1: container is not running"), "{}", stderr(&not_running));

    // kill -s: the named signal; rm -f: kills a running one and removes everything.
    let out = run_detached(
        &store,
        &[
            "--name",
            "d2",
            "localhost/layered",
            "sh",
            "-c",
            "trap 'exit 4' USR1; echo trapped; while :; do sleep 0.1; done",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // PID 1 of a PID namespace ignores a signal it has no handler for yet: signal once the trap is set.
    let trapped = (0..200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(10));
        layers_ok(&store, &["logs", "d2"]).contains("trapped")
    });
    assert!(trapped, "the container's shell never set its trap");
    layers_ok(&store, &["kill", "-s", "SIGUSR1", "d2"]);
    assert_eq!(layers_ok(&store, &["wait", "d2"]).trim(), "4");
    let out = run_detached(&store, &["--name", "d3", "localhost/layered", "sleep", "30"]);
    assert!(out.status.success());
    let d3 = host_pid(&store, "d3").unwrap();
    assert_eq!(layers_ok(&store, &["rm", "-f", "d3"]).trim(), "d3");
    assert!(!pid_alive(d3));
    let left = layers_ok(&store, &["ps", "-a"]);
    // By the NAMES column: a random container ID may contain "d3" too.
    let names: Vec<&str> = left.lines().filter_map(|l| l.split_whitespace().last()).collect();
    assert!(!names.contains(&"d3") && names.contains(&"d2"), "{left}");
    layers_ok(&store, &["rm", "d1", "d2"]);
    assert!(std::fs::read_dir(store.join("containers")).unwrap().next().is_none(), "container dirs gone");

    // Failures before the container runs are reported by `run -d` itself.
    let missing = run_detached(&store, &["--rm", "localhost/layered", "/no/such/command"]);
    assert_eq!(missing.status.code(), Some(127));
    assert!(stderr(&missing).contains("/no/such/command"), "{}", stderr(&missing));
    let bad = run_detached(&store, &["--rm", "--memory", "lots", "localhost/layered", "true"]);
    assert_eq!(bad.status.code(), Some(125));
    assert!(stderr(&bad).contains("invalid size \"lots\""), "{}", stderr(&bad));
    assert!(stdout(&bad).is_empty());
}

#[test]
fn killing_layers_run_with_sigkill_takes_the_container_with_it() {
    if !need_root("killing_layers_run_with_sigkill_takes_the_container_with_it") {
        return;
    }
    let (_work, store) = setup();
    let mut run = spawn_layers(&store, &["run", "--name", "orphan", "localhost/layered", "sleep", "60"]);
    let mut pid = None;
    eventually("the container runs", || {
        pid = host_pid(&store, "orphan");
        pid.is_some()
    });
    let pid = pid.unwrap();
    run.kill().unwrap();
    run.wait().unwrap();
    // Nothing can forward a SIGKILL; the parent-death signal ends the container instead.
    eventually("the container's PID 1 dies with layers run", || !pid_alive(pid));
    let short = layers_ok(&store, &["ps", "-a", "-q"]).trim().to_string();
    layers_ok(&store, &["rm", "orphan"]);
    let leftover: Vec<PathBuf> = ["memory", "pids", "cpu"]
        .iter()
        .map(|c| Path::new("/sys/fs/cgroup").join(c).join("layers"))
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flat_map(|d| d.flatten().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&short)))
        .collect();
    assert!(leftover.is_empty(), "rm removes the cgroup the killed run left: {leftover:?}");
}

#[test]
fn exec_takes_a_user_by_name_and_a_terminal() {
    if !need_root("exec_takes_a_user_by_name_and_a_terminal") {
        return;
    }
    let (_work, store) = setup();
    let out = run_detached(&store, &["--name", "box", "localhost/layered", "sleep", "30"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ex =
        layers(&store, &["exec", "-u", "nobody", "box", "sh", "-c", "id -u; id -g; grep CapEff /proc/self/status"]);
    assert!(ex.status.success(), "{}", stderr(&ex));
    assert_eq!(stdout(&ex), "65534\n65534\nCapEff:\t0000000000000000\n");
    let unknown = layers(&store, &["exec", "-u", "nobody-here", "box", "true"]);
    // dockerd's status for an exec whose process cannot start (issue 32).
    assert_eq!(unknown.status.code(), Some(126));
    assert!(stderr(&unknown).contains("unable to find user nobody-here"), "{}", stderr(&unknown));
    let out = on_a_terminal(
        &store,
        (20, 70),
        &["expect:# ", "send:tty; stty size; exit 6\\r"],
        &["exec", "-it", "box", "sh"],
    );
    assert!(out.contains("/dev/pts/0") && out.contains("20 70"), "{out}");
    assert!(out.ends_with("exit=6\n"), "{out}");
    layers_ok(&store, &["rm", "-f", "box"]);
}

/// A program that reads without echoing (a password prompt; ash answering its own
/// cursor-position query does the same), then one that writes without reading while
/// keys are typed. Typed across several writes, so keys written to the pty while the
/// program prints nothing must not stall the next ones (issue 26).
const QUIET_READER: &str = "stty -echo; echo ready; read p; stty echo; echo got:$p; \
                            i=0; while [ $i -lt 2000 ]; do echo line$i; i=$((i+1)); done; \
                            read q; echo also:$q";

/// The steps that drive QUIET_READER on a terminal.
const QUIET_STEPS: [&str; 8] = [
    "expect:ready",
    "send:s",
    "sleep:0.4",
    "send:ecret\\r",
    "expect:got:secret",
    "send:typed while it writes\\r",
    "expect:line1999",
    "expect:also:typed while it writes",
];

both_modes!(
    keys_typed_to_a_program_that_prints_nothing_are_never_stalled_run_exec_attach,
    keys_typed_to_a_program_that_prints_nothing_are_never_stalled_run_exec_attach_rootless,
    keys_typed
);

fn keys_typed(mode: Mode) {
    let (_work, store) = mode.store_with_fixtures();
    // run -it: before the fix `layers run` sat in read() on the pty after passing `s` on.
    let out = mode.on_a_terminal(
        &store,
        (24, 80),
        &QUIET_STEPS,
        &["run", "--rm", "-it", "localhost/layered", "sh", "-c", QUIET_READER],
    );
    assert!(!out.contains("\nsecret") && !out.starts_with("secret"), "not echoed: {out}");
    assert!(out.ends_with("exit=0\n"), "{out}");

    // exec -it into a running container.
    mode.layers_ok(&store, &["run", "-d", "--name", "box", "localhost/layered", "sleep", "60"]);
    let out = mode.on_a_terminal(&store, (24, 80), &QUIET_STEPS, &["exec", "-it", "box", "sh", "-c", QUIET_READER]);
    assert!(out.ends_with("exit=0\n"), "{out}");
    mode.layers_ok(&store, &["rm", "-f", "box"]);

    // attach, a first and a second time, to a -it container whose program asks again and again.
    let asker = "while :; do stty -echo; echo ready; read p; stty echo; echo got:$p; \
                 [ \"$p\" = last ] && exit 5; done";
    mode.layers_ok(&store, &["run", "-d", "-it", "--name", "asker", "localhost/layered", "sh", "-c", asker]);
    for _ in 0..2 {
        let steps = [
            "send:\\r",
            "expect:ready",
            "send:s",
            "sleep:0.4",
            "send:ecret\\r",
            "expect:got:secret",
            "send:\\x10\\x11",
            "expect:read escape sequence",
        ];
        let out = mode.on_a_terminal(&store, (24, 80), &steps, &["attach", "asker"]);
        assert!(out.ends_with("exit=1\n"), "detached: {out}");
    }
    let steps = ["send:\\r", "expect:ready", "send:la", "sleep:0.4", "send:st\\r", "expect:got:last"];
    let out = mode.on_a_terminal(&store, (24, 80), &steps, &["attach", "asker"]);
    assert!(out.ends_with("exit=5\n"), "{out}");
}

/// Issue 26: after the monitor of a `--restart always` container was killed with
/// SIGKILL, the container showed `Created` and was never restarted. The next command
/// notices: exited (137) with the reason in `State.Error`, and `start` starts it.
#[test]
fn a_container_whose_monitor_was_killed_shows_exited_with_the_reason() {
    if !need_root("a_container_whose_monitor_was_killed_shows_exited_with_the_reason") {
        return;
    }
    let (_work, store) = store_with_fixtures();
    let id = detached(&store, &["--name", "orphan", "--restart", "always", "localhost/layered", "sleep", "1000"]);
    let running: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.join("containers").join(&id).join("running.json")).unwrap())
            .unwrap();
    let (pid, monitor) = (running["pid"].as_u64().unwrap() as i32, running["monitor"].as_u64().unwrap() as i32);
    let kill = |p: i32| {
        rustix::process::kill_process(rustix::process::Pid::from_raw(p).unwrap(), rustix::process::Signal::KILL)
    };
    kill(monitor).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "its PID 1 went with its monitor");
    let status = layers_ok(&store, &["ps", "-a", "--filter", "name=orphan", "--format", "{{.State}} {{.Status}}"]);
    assert!(status.starts_with("exited Exited (137)"), "{status}");
    let error = layers_ok(&store, &["inspect", "-f", "{{.State.ExitCode}} {{.State.Error}}", "orphan"]);
    assert!(error.starts_with("137 its monitor was killed"), "{error}");
    layers_ok(&store, &["start", "orphan"]);
    let status = layers_ok(&store, &["ps", "--filter", "name=orphan", "--format", "{{.State}}"]);
    assert_eq!(status, "running");
    layers_ok(&store, &["rm", "-f", "orphan"]);
}

/// The monitor of container `id`: the process whose command line names it.
fn monitor_of(id: &str) -> Option<(u32, Vec<String>)> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<String> = raw.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        (args.iter().any(|a| a == "container-monitor") && args.iter().any(|a| a == id)).then_some((pid, args))
    })
}

#[test]
fn a_detached_container_is_started_by_id_and_reports_a_command_that_cannot_run_with_its_code() {
    if !need_root("a_detached_container_is_started_by_id_and_reports_a_command_that_cannot_run_with_its_code") {
        return;
    }
    let (_work, store) = setup();
    // The monitor is given the container's ID, never the command line it was made with.
    let id = layers_ok(&store, &["run", "-d", "--rm", "--name", "quiet", "localhost/layered", "sleep", "60"]);
    let (monitor, args) = monitor_of(&id).expect("its monitor runs");
    assert!(!args.iter().any(|a| a == "sleep" || a.contains("layered")), "no argv replay: {args:?}");
    // A --rm container whose monitor is killed is swept by the next command, as one
    // whose `layers run` was killed.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(monitor as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    eventually("the monitor is gone", || !pid_alive(monitor));
    let listed = layers_ok(&store, &["ps", "-a", "--format", "{{.Names}}"]);
    assert!(!listed.lines().any(|l| l == "quiet"), "{listed}");

    let out = run_detached(&store, &["localhost/layered", "no-such-command"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert!(stdout(&out).is_empty(), "no ID printed for a container that did not start");
    assert!(stderr(&out).contains("exec \"no-such-command\": no such file or directory"), "{}", stderr(&out));

    layers_ok(&store, &["create", "--name", "broken", "localhost/layered", "no-such-command"]);
    let out = layers(&store, &["start", "broken"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("start broken: exec \"no-such-command\": no such file") && err.contains("(exit 127)"),
        "{err}"
    );
}
