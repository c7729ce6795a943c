//! `layers run` on the real kernel: namespaces, cgroup limits, capabilities, users,
//! exit codes and cleanup. The image is the busybox-based `layered` fixture.

// Tests make and inspect their fixtures by path (clippy.toml bans that in the code under test).
#![allow(clippy::disallowed_methods)]

mod common;

use std::fs;
use std::path::Path;
use std::process::Output;

use common::*;

fn run(store: &Path, args: &[&str]) -> Output {
    let mut full = vec!["run"];
    full.extend_from_slice(args);
    layers(store, &full)
}

/// Waits until `ps` shows the container running: `layers run` records that just after
/// the command starts, so the command's first output can come a moment before.
fn wait_until_up(mode: Mode, store: &Path, name: &str) {
    for _ in 0..250 {
        if mode.ok(store, &["ps", "--format", "{{.Names}} {{.State}}"]).lines().any(|l| l == format!("{name} running"))
        {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("{name} never showed as running");
}

fn setup() -> (tempfile::TempDir, std::path::PathBuf) {
    store_with_fixtures()
}

/// A container's cgroup dirs that still exist (v1 controllers and the unified hierarchy).
fn cgroups_of(short_id: &str) -> Vec<std::path::PathBuf> {
    ["memory", "pids", "cpu", "unified", ""]
        .iter()
        .filter_map(|c| fs::read_dir(Path::new("/sys/fs/cgroup").join(c).join("layers")).ok())
        .flat_map(|d| d.flatten().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(short_id)))
        .collect()
}

both_modes!(
    the_command_is_pid_1_alone_with_its_hostname_lo_and_dockers_capabilities,
    the_command_is_pid_1_alone_with_its_hostname_lo_and_dockers_capabilities_rootless,
    pid_1_alone
);

fn pid_1_alone(mode: Mode) {
    let (_work, store) = mode.store_with_fixtures();
    let run = |store: &Path, args: &[&str]| mode.run(store, &[&["run"], args].concat());
    let layers_ok = |store: &Path, args: &[&str]| mode.layers_ok(store, args);
    let script = "echo pid=$$; echo $(ls /proc | grep -E '^[0-9]+$'); hostname; ls /sys/class/net; \
                  cat /sys/class/net/lo/operstate; grep -E '^(CapEff|CapBnd|CapPrm|CapInh|CapAmb|NoNewPrivs)' /proc/self/status; \
                  ls /proc/self/fd; wc -c </proc/timer_list; (echo 1 >/proc/sys/vm/overcommit_memory) 2>&1; \
                  (kill -0 1 && echo can-signal-pid-1); ls /dev; cat /etc/hostname";
    let out = run(&store, &["--rm", "--hostname", "box", "localhost/layered", "/bin/sh", "-c", script]);
    assert!(out.status.success(), "{}", stderr(&out));
    let o = stdout(&out);
    let lines: Vec<&str> = o.lines().collect();
    assert_eq!(lines[0], "pid=1");
    // The host has hundreds of processes; inside, only the shell and its pipeline exist.
    let pids: Vec<u32> = lines[1].split_whitespace().map(|p| p.parse().unwrap()).collect();
    assert!(pids.contains(&1) && pids.len() <= 5 && pids.iter().all(|p| *p < 10), "{o}");
    assert_eq!(lines[2], "box");
    assert_eq!(lines[3], "lo", "--net none: only lo");
    assert_eq!(lines[4], "unknown", "lo is up (loopback reports unknown)");
    for (key, want) in [
        ("CapInh", "0000000000000000"),
        ("CapPrm", "00000000a80425fb"),
        ("CapEff", "00000000a80425fb"),
        ("CapBnd", "00000000a80425fb"),
        ("CapAmb", "0000000000000000"),
        ("NoNewPrivs", "1"),
    ] {
        assert!(o.lines().any(|l| l.starts_with(key) && l.ends_with(want)), "{key} {want} in {o}");
    }
    // ls of /proc/self/fd sees its own dir fd as 3; nothing else leaked from layers.
    let fd_start = lines.iter().position(|l| *l == "0").unwrap();
    assert_eq!(
        lines[fd_start..fd_start + 5],
        ["0", "1", "2", "3", "0"],
        "fds, then /proc/timer_list is masked (empty): {o}"
    );
    assert!(o.contains("Read-only file system"), "/proc/sys is read-only: {o}");
    for dev in ["null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue"] {
        assert!(o.lines().any(|l| l == dev), "/dev/{dev}: {o}");
    }
    assert_eq!(lines.last(), Some(&"box"));
    assert!(layers_ok(&store, &["ps", "-a", "-q"]).is_empty(), "--rm removed the container");
}

both_modes!(exit_statuses_follow_docker, exit_statuses_follow_docker_rootless, exit_statuses);

fn exit_statuses(mode: Mode) {
    let (_work, store) = mode.store_with_fixtures();
    let run = |store: &Path, args: &[&str]| mode.run(store, &[&["run"], args].concat());
    let layers_ok = |store: &Path, args: &[&str]| mode.layers_ok(store, args);
    let layers = |store: &Path, args: &[&str]| mode.run(store, args);
    for (args, code, says) in [
        (vec!["/bin/true"], 0, ""),
        (vec!["/bin/sh", "-c", "exit 1"], 1, ""),
        (vec!["/etc/passwd"], 126, "/etc/passwd"),
        (vec!["/no/such/thing"], 127, "\"/no/such/thing\": no such file or directory in image localhost/layered"),
        (vec!["nosuch"], 127, "\"nosuch\""),
        // PID 1 ignores signals it does not handle, even SIGKILL from inside: a child shell is killed.
        (vec!["/bin/sh", "-c", "sh -c 'kill -9 $$'; exit $?"], 137, ""),
    ] {
        let mut full = vec!["--rm", "localhost/layered"];
        full.extend(args.iter());
        let out = run(&store, &full);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
    assert!(layers_ok(&store, &["ps", "-a", "-q"]).is_empty());
    assert_eq!(fs::read_dir(store.join("containers")).unwrap().count(), 0, "no upper dir left");
    let bad = layers(&store, &["run", "--rm", "--net", "nosuch", "localhost/layered", "true"]);
    assert_eq!(bad.status.code(), Some(125));
    assert!(stderr(&bad).contains("--network nosuch: network nosuch not found"), "{}", stderr(&bad));
}

#[test]
fn a_memory_hog_is_killed_at_the_limit_and_reported() {
    if !need_root("a_memory_hog_is_killed_at_the_limit_and_reported") {
        return;
    }
    let (_work, store) = setup();
    // The seeds' hogger: double a string until the limit stops it.
    let out = run(
        &store,
        &["--rm", "-m", "20M", "localhost/layered", "/bin/sh", "-c", "x=a; while true; do x=\"$x$x\"; done"],
    );
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    assert!(stderr(&out).contains("layers: container killed: out of memory (limit 20M)"), "{}", stderr(&out));
    // Under the limit, the same store runs fine.
    let ok = run(&store, &["--rm", "-m", "20M", "localhost/layered", "/bin/sh", "-c", "x=aaaa; x=\"$x$x\"; echo ok"]);
    assert!(ok.status.success());
}

#[test]
fn a_fork_bomb_stops_at_the_pids_limit() {
    if !need_root("a_fork_bomb_stops_at_the_pids_limit") {
        return;
    }
    let (_work, store) = setup();
    let out = run(
        &store,
        &[
            "--rm",
            "--pids-limit",
            "10",
            "localhost/layered",
            "/bin/sh",
            "-c",
            "for i in $(seq 40); do sleep 3 & done; wait",
        ],
    );
    assert!(stderr(&out).contains("can't fork"), "{}", stderr(&out));
}

both_modes!(capabilities_users_env_and_workdir, capabilities_users_env_and_workdir_rootless, capabilities_users_env);

fn capabilities_users_env(mode: Mode) {
    let (work, store) = mode.store_with_fixtures();
    let run = |store: &Path, args: &[&str]| mode.run(store, &[&["run"], args].concat());
    let denied = run(&store, &["--rm", "--cap-drop", "CHOWN", "localhost/layered", "chown", "5", "/etc/passwd"]);
    assert_eq!(denied.status.code(), Some(1));
    assert!(stderr(&denied).contains("Operation not permitted"), "{}", stderr(&denied));
    assert!(run(&store, &["--rm", "localhost/layered", "chown", "5", "/etc/passwd"]).status.success());

    let out = run(
        &store,
        &[
            "--rm",
            "-u",
            "1000:1000",
            "localhost/layered",
            "/bin/sh",
            "-c",
            "id -u; id -g; grep CapEff /proc/self/status",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "1000\n1000\nCapEff:\t0000000000000000\n", "a non-root user has no capabilities");
    let named = run(&store, &["--rm", "-u", "nobody-here", "localhost/layered", "true"]);
    assert_eq!(named.status.code(), Some(125));
    assert!(stderr(&named).contains("unable to find user nobody-here"), "{}", stderr(&named));

    let env_file = work.path().join("env");
    fs::write(&env_file, "# comment\nFROM_FILE=yes\n").unwrap();
    mode.give(&env_file);
    let out = run(
        &store,
        &[
            "--rm",
            "-e",
            "A=1",
            "--env-file",
            env_file.to_str().unwrap(),
            "-w",
            "/new/dir",
            "localhost/layered",
            "/bin/sh",
            "-c",
            "echo $A $FROM_FILE $HOME; pwd",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "1 yes /root\n/new/dir\n");
}

#[test]
fn without_rm_the_container_stays_for_diff_and_commit() {
    if !need_root("without_rm_the_container_stays_for_diff_and_commit") {
        return;
    }
    let (_work, store) = setup();
    let out = run(
        &store,
        &[
            "--name",
            "kept",
            "localhost/layered",
            "/bin/sh",
            "-c",
            "echo made >/made; rm /etc/hostname.bak 2>/dev/null; rm /etc/group",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let id = layers_ok(&store, &["ps", "-a", "-q"]);
    assert_eq!(cgroups_of(&id), Vec::<std::path::PathBuf>::new(), "the cgroup goes when the container exits");
    let diff = layers_ok(&store, &["diff", "kept"]);
    assert!(diff.lines().any(|l| l == "A /made") && diff.lines().any(|l| l == "D /etc/group"), "{diff}");
    assert!(
        !diff.contains("/etc/hostname") && !diff.contains("/etc/hosts"),
        "bind-mounted files leave no trace: {diff}"
    );
    layers_ok(&store, &["commit", "kept", "kept:v1"]);
    let again = run(&store, &["--rm", "localhost/kept:v1", "cat", "/made"]);
    assert_eq!(stdout(&again), "made\n");
    layers_ok(&store, &["rm", "kept"]);
}

#[test]
fn an_image_whose_proc_is_a_symlink_is_refused() {
    if !need_root("an_image_whose_proc_is_a_symlink_is_refused") {
        return;
    }
    let (work, store) = setup();
    let tar = work.path().join("evil.tar");
    let script = "import io,sys,tarfile\nt=tarfile.open(sys.argv[1],'w')\nfor n in ['bin','etc']:\n  i=tarfile.TarInfo(n); i.type=tarfile.DIRTYPE; i.mode=0o755; t.addfile(i)\ni=tarfile.TarInfo('proc'); i.type=tarfile.SYMTYPE; i.linkname='/etc'; t.addfile(i)\nt.close()\n";
    let st = std::process::Command::new("python3").args(["-c", script]).arg(&tar).status().unwrap();
    assert!(st.success());
    layers_ok(&store, &["import", tar.to_str().unwrap(), "evil:1"]);
    let out = run(&store, &["--rm", "localhost/evil:1", "/bin/true"]);
    assert_eq!(out.status.code(), Some(125));
    let err = stderr(&out);
    assert!(err.lines().count() == 1 && err.contains("/proc in the image is a symlink"), "{err}");
    assert!(layers_ok(&store, &["ps", "-a", "-q"]).is_empty());
}

both_modes!(
    the_default_seccomp_profile_denies_with_eperm_and_can_be_turned_off,
    the_default_seccomp_profile_denies_with_eperm_and_can_be_turned_off_rootless,
    default_seccomp
);

fn default_seccomp(mode: Mode) {
    let (_work, store) = mode.store_with_fixtures();
    let run = |store: &Path, args: &[&str]| mode.run(store, &[&["run"], args].concat());
    let script = "grep '^Seccomp:' /proc/self/status; unshare -U true 2>&1; echo unshare=$?; \
                  mount -t tmpfs none /tmp 2>&1; echo mount=$?";
    let out = run(&store, &["--rm", "localhost/layered", "/bin/sh", "-c", script]);
    let o = stdout(&out);
    assert!(o.contains("Seccomp:\t2"), "{o}");
    assert!(o.contains("unshare(0x10000000): Operation not permitted") && o.contains("unshare=1"), "{o}");
    assert!(o.contains("mount=") && !o.contains("mount=0"), "{o}");
    let off = run(
        &store,
        &[
            "--rm",
            "--security-opt",
            "seccomp=unconfined",
            "localhost/layered",
            "grep",
            "^Seccomp:",
            "/proc/self/status",
        ],
    );
    assert_eq!(stdout(&off), "Seccomp:\t0\n");
    let admin = run(
        &store,
        &[
            "--rm",
            "--cap-add",
            "SYS_ADMIN",
            "localhost/layered",
            "/bin/sh",
            "-c",
            "mount -t tmpfs none /tmp && echo mounted",
        ],
    );
    assert_eq!(stdout(&admin), "mounted\n", "CAP_SYS_ADMIN opens mount, as in Docker's profile: {}", stderr(&admin));
    let typo = run(&store, &["--rm", "--security-opt", "seccomp=/no/such.json", "localhost/layered", "true"]);
    assert_eq!(typo.status.code(), Some(125));
}

/// A profile in Docker's JSON format: per-syscall errno, argument conditions,
/// capability includes, names this arch lacks; applied to `exec` too.
const PROFILE: &str = r#"{
  "defaultAction": "SCMP_ACT_ALLOW",
  "syscalls": [
    {"names": ["mkdir", "mkdirat", "arm_fadvise64_64"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
    {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 1, "value": 511, "op": "SCMP_CMP_EQ"}]},
    {"names": ["fchmodat"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 2, "value": 511, "op": "SCMP_CMP_EQ"}]},
    {"names": ["symlink", "symlinkat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "includes": {"caps": ["CAP_SYS_ADMIN"]}}
  ]
}"#;

#[test]
fn a_docker_format_seccomp_profile_is_applied_and_kept_for_exec() {
    if !need_root("a_docker_format_seccomp_profile_is_applied_and_kept_for_exec") {
        return;
    }
    let (work, store) = setup();
    let profile = work.path().join("profile.json");
    fs::write(&profile, PROFILE).unwrap();
    let opt = format!("seccomp={}", profile.display());
    let script = "mkdir /d 2>&1; touch /f; chmod 755 /f && echo chmod-755; chmod 777 /f 2>&1; \
                  ln -s /f /l && echo linked; grep '^Seccomp:' /proc/self/status";
    let out = run(&store, &["--rm", "--security-opt", &opt, "localhost/layered", "sh", "-c", script]);
    let o = stdout(&out) + &stderr(&out);
    assert!(o.contains("Permission denied"), "mkdir gets the profile's errno (EACCES): {o}");
    assert!(o.contains("chmod-755") && o.contains("Operation not permitted"), "only mode 0777 is denied: {o}");
    assert!(o.contains("linked") && o.contains("Seccomp:\t2"), "the symlink rule needs CAP_SYS_ADMIN: {o}");
    let admin = run(
        &store,
        &["--rm", "--cap-add", "SYS_ADMIN", "--security-opt", &opt, "localhost/layered", "ln", "-s", "/a", "/b"],
    );
    assert_eq!(admin.status.code(), Some(1), "with CAP_SYS_ADMIN the rule applies: {}", stderr(&admin));

    // exec into a container started with the profile runs under it too.
    let mut sleeper = spawn_layers(
        &store,
        &[
            "run",
            "--rm",
            "--name",
            "s",
            "--security-opt",
            &opt,
            "localhost/layered",
            "sh",
            "-c",
            "echo up; exec sleep 30",
        ],
    );
    let mut up = [0u8; 3];
    std::io::Read::read_exact(sleeper.stdout.as_mut().unwrap(), &mut up).unwrap();
    wait_until_up(Mode::Root, &store, "s");
    let ex = layers(&store, &["exec", "s", "mkdir", "/e"]);
    assert!(stderr(&ex).contains("Permission denied"), "{}", stderr(&ex));
    layers_ok(&store, &["rm", "-f", "s"]);
    let _ = sleeper.wait();

    // podman's own profile (Docker's format, an allowlist with ENOSYS by default), when installed.
    let podman = Path::new("/usr/share/containers/seccomp.json");
    if podman.exists() {
        let opt = format!("seccomp={}", podman.display());
        let out =
            run(&store, &["--rm", "--security-opt", &opt, "localhost/layered", "sh", "-c", "mkdir /x && ls -d /x"]);
        assert_eq!(stdout(&out), "/x\n", "{}", stderr(&out));
    } else {
        eprintln!("!!! part skipped: /usr/share/containers/seccomp.json (podman) not installed !!!");
    }
    let bad = work.path().join("bad.json");
    fs::write(&bad, "[1, 2]").unwrap();
    let opt = format!("seccomp={}", bad.display());
    let broken = run(&store, &["--rm", "--security-opt", &opt, "localhost/layered", "true"]);
    assert_eq!(broken.status.code(), Some(125));
    assert!(stderr(&broken).contains(&format!("{opt}: not a seccomp profile")), "{}", stderr(&broken));
}

both_modes!(signals_to_layers_run_reach_the_container, signals_to_layers_run_reach_the_container_rootless, signals);

fn signals(mode: Mode) {
    let (_work, store) = mode.store_with_fixtures();
    let spawn_layers = |store: &Path, args: &[&str]| mode.spawn(store, args);
    let layers_ok = |store: &Path, args: &[&str]| mode.layers_ok(store, args);
    let mut child = spawn_layers(
        &store,
        &[
            "run",
            "--rm",
            "localhost/layered",
            "/bin/sh",
            "-c",
            "trap 'echo got TERM; exit 7' TERM; echo ready; while true; do sleep 0.1; done",
        ],
    );
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 6];
    std::io::Read::read_exact(&mut out, &mut first).unwrap();
    assert_eq!(&first, b"ready\n");
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert_eq!(rest, "got TERM\n");
    assert_eq!(status.code(), Some(7), "the container's own exit status");
    assert!(layers_ok(&store, &["ps", "-a", "-q"]).is_empty());
}

both_modes!(
    volumes_and_tmpfs_mount_and_ro_means_read_only,
    volumes_and_tmpfs_mount_and_ro_means_read_only_rootless,
    volumes_and_tmpfs
);

fn volumes_and_tmpfs(mode: Mode) {
    let (work, store) = mode.store_with_fixtures();
    let run = |store: &Path, args: &[&str]| mode.run(store, &[&["run"], args].concat());
    let layers_ok = |store: &Path, args: &[&str]| mode.layers_ok(store, args);
    let host = work.path().join("vol");
    fs::create_dir(&host).unwrap();
    fs::write(host.join("h.txt"), "from host\n").unwrap();
    let file = work.path().join("one.conf");
    fs::write(&file, "conf\n").unwrap();
    mode.give(&host);
    mode.give(&file);
    let (h, f) = (host.to_str().unwrap(), file.to_str().unwrap());
    let script = "cat /data/vol/h.txt; echo from-ctr >/data/vol/new; cat /etc/one.conf; (touch /ro/x) 2>&1; \
                  (touch /root/x) 2>&1; touch /scratch/x && echo tmpfs-ok";
    let out = run(
        &store,
        &[
            "--rm",
            "-v",
            &format!("{h}:/data/vol"),
            "-v",
            &format!("{f}:/etc/one.conf:ro"),
            "-v",
            &format!("{h}:/ro:ro"),
            "--tmpfs",
            "/scratch",
            "--read-only",
            "localhost/layered",
            "/bin/sh",
            "-c",
            script,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "from host\nconf\ntouch: /ro/x: Read-only file system\ntouch: /root/x: Read-only file system\ntmpfs-ok\n"
    );
    assert_eq!(fs::read_to_string(host.join("new")).unwrap(), "from-ctr\n", "a rw volume writes through to the host");
    assert!(!host.join("x").exists());
    // Docker's `--tmpfs` is noexec unless its options say `exec` (docs: "docker run --tmpfs").
    let exec_on = |opts: &str| {
        let script = "cp /bin/busybox /t/true && /t/true && echo ran";
        let out = run(&store, &["--rm", "--tmpfs", opts, "localhost/layered", "/bin/sh", "-c", script]);
        format!("{}{}", stdout(&out), stderr(&out))
    };
    assert!(exec_on("/t").contains("Permission denied"), "{}", exec_on("/t"));
    assert!(exec_on("/t:size=8m,exec").contains("ran"), "{}", exec_on("/t:size=8m,exec"));

    // An image cannot send a mount elsewhere with a symlink on the target's path.
    let tar = work.path().join("link.tar");
    let script = "import sys,tarfile\nt=tarfile.open(sys.argv[1],'w')\ni=tarfile.TarInfo('data'); i.type=tarfile.SYMTYPE; i.linkname='/etc'; t.addfile(i)\nt.close()\n";
    assert!(std::process::Command::new("python3").args(["-c", script]).arg(&tar).status().unwrap().success());
    mode.give(&tar);
    layers_ok(&store, &["import", tar.to_str().unwrap(), "link:1"]);
    let out = run(&store, &["--rm", "-v", &format!("{h}:/data/vol"), "localhost/link:1", "/bin/true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("/data is a symlink in the image"), "{}", stderr(&out));
    // A name without `/` is a named volume (as Docker); a relative path not starting with `.` is refused.
    let bad = run(&store, &["--rm", "-v", "relative/x:/x", "localhost/layered", "true"]);
    assert_eq!(bad.status.code(), Some(125));
    assert!(stderr(&bad).contains("is a relative path"), "{}", stderr(&bad));
}

both_modes!(
    exec_joins_a_running_container_next_to_its_pid_1,
    exec_joins_a_running_container_next_to_its_pid_1_rootless,
    exec_next_to_pid_1
);

fn exec_next_to_pid_1(mode: Mode) {
    let (_work, store) = mode.store_with_fixtures();
    let spawn_layers = |store: &Path, args: &[&str]| mode.spawn(store, args);
    let layers_ok = |store: &Path, args: &[&str]| mode.layers_ok(store, args);
    let layers = |store: &Path, args: &[&str]| mode.run(store, args);
    let mut sleeper = spawn_layers(
        &store,
        &[
            "run",
            "--rm",
            "--name",
            "sleeper",
            "-e",
            "FOO=bar",
            "localhost/layered",
            "/bin/sh",
            "-c",
            "trap 'exit 0' TERM; echo up; while :; do sleep 0.1; done",
        ],
    );
    let mut out = sleeper.stdout.take().unwrap();
    let mut up = [0u8; 3];
    std::io::Read::read_exact(&mut out, &mut up).unwrap();
    wait_until_up(mode, &store, "sleeper");
    let ps = layers_ok(&store, &["ps"]);
    assert!(ps.contains("sleeper") && ps.contains(" Up "), "ps lists the running container: {ps}");
    let script = "echo pid=$$ FOO=$FOO; cat /proc/1/cmdline | tr '\\0' ' '; echo; grep -E '^(Seccomp|CapEff):' /proc/self/status";
    let ex = layers(&store, &["exec", "sleeper", "/bin/sh", "-c", script]);
    assert!(ex.status.success(), "{}", stderr(&ex));
    let o = stdout(&ex);
    assert!(o.starts_with("pid=") && !o.starts_with("pid=1 ") && o.contains("FOO=bar"), "{o}");
    assert!(o.contains("/bin/sh -c trap"), "sees the container's PID 1: {o}");
    assert!(o.contains("Seccomp:\t2") && o.contains("CapEff:\t00000000a80425fb"), "{o}");
    assert_eq!(layers(&store, &["exec", "sleeper", "sh", "-c", "exit 5"]).status.code(), Some(5));
    // dockerd: an exec whose command cannot start is 126, found or not (daemon/exec.go).
    assert_eq!(layers(&store, &["exec", "sleeper", "/no/such"]).status.code(), Some(126));
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(sleeper.id() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    assert!(sleeper.wait().unwrap().success());
    let gone = layers(&store, &["exec", "sleeper", "true"]);
    assert_eq!(gone.status.code(), Some(1));
}

#[test]
fn in_a_chroot_where_pivot_root_cannot_work_the_root_is_moved_and_chrooted() {
    if !need_root("in_a_chroot_where_pivot_root_cannot_work_the_root_is_moved_and_chrooted") {
        return;
    }
    let (work, store) = setup();
    // `layers` itself in a chroot whose root is a plain dir, not a mount point: the kernel
    // refuses pivot_root there (EINVAL), as on an initramfs.
    let chroot = work.path().join("chroot");
    let bin_dir = layers_bin().parent().unwrap().to_path_buf();
    let script = r#"set -e
        R=$1; shift
        for d in /usr /lib /lib64 /bin /sbin /etc /proc /sys /dev /tmp "$BIN_DIR" "$STORE"; do
            [ -e "$d" ] || continue
            mkdir -p "$R$d"; mount --rbind "$d" "$R$d"
        done
        exec chroot "$R" "$@""#;
    let out = std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
        .arg(&chroot)
        .env(NO_DEFAULT_NETWORK.0, NO_DEFAULT_NETWORK.1)
        .arg(layers_bin())
        .arg("--root")
        .arg(&store)
        .args(["run", "--rm", "localhost/layered", "sh", "-c", "echo pid=$$; head -1 /proc/self/mountinfo"])
        .env("BIN_DIR", &bin_dir)
        .env("STORE", &store)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let o = stdout(&out);
    assert!(o.starts_with("pid=1\n"), "{o}");
    let root_mount: Vec<&str> = o.lines().nth(1).unwrap().split(' ').collect();
    assert_eq!((root_mount[4], root_mount[7]), ("/", "overlay"), "the overlay is the container's root: {o}");
    assert!(layers_ok(&store, &["ps", "-a", "-q"]).is_empty());
}

/// `LAYERS_PHASES=FILE` (the run bench's breakdown): the parent's and the container's
/// first process's marks, in the order they happen, with times that never go back,
/// and nothing of it reaches the command (the file is close-on-exec).
#[test]
fn the_phase_file_has_each_step_of_a_run_in_order() {
    if !need_root("the_phase_file_has_each_step_of_a_run_in_order") {
        return;
    }
    let (work, store) = setup();
    let file = work.path().join("phases");
    let out = layers_cmd()
        .arg("--root")
        .arg(&store)
        .args(["run", "--rm", "--network", "none", "localhost/layered", "/bin/sh", "-c", "ls /proc/self/fd"])
        .env("LAYERS_PHASES", &file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).split_whitespace().collect::<Vec<_>>(), ["0", "1", "2", "3"], "only stdio and ls's own");
    let text = fs::read_to_string(&file).unwrap();
    let marks: Vec<(&str, f64)> = text
        .lines()
        .map(|l| {
            let (name, t) = l.rsplit_once(' ').unwrap();
            (name, t.parse().unwrap())
        })
        .collect();
    let names: Vec<&str> = marks.iter().map(|m| m.0).collect();
    let want = [
        "main",
        "arguments parsed",
        "store opened",
        "container created",
        "cgroup made",
        "seccomp compiled",
        "fork",
        "child: forked",
        "child: cgroup joined",
        "child: namespaces unshared",
        "child: overlay mounted",
        "child: pivot_root",
        "child: seccomp loaded",
        "exec'd (spawn returned)",
        "command exited, reaped",
        "removed (--rm)",
        "store closed, returning",
    ];
    let mut at = 0;
    for w in want {
        at += names[at..]
            .iter()
            .position(|n| *n == w)
            .unwrap_or_else(|| panic!("{w} missing or out of order: {names:?}"));
    }
    assert!(marks.windows(2).all(|p| p[0].1 <= p[1].1), "time went back: {text}");
}
