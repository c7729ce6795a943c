//! Docker's command-line surface (issue 32, second pass): management-command forms,
//! unknown flags, `cp` to and from a tar stream, the build flags CI pipelines use,
//! `pause`, `ps --format json`. Each expectation names the Docker documentation or
//! behaviour it comes from.

// Tests make and inspect their fixtures by path (clippy.toml bans that in the code under test).
#![allow(clippy::disallowed_methods)]

mod common;

use common::*;

/// Docker's management commands (docs: "docker image", "docker container"): each verb
/// is the top-level one, with the same output and exit status, in help, completions
/// and man pages too.
#[test]
fn management_command_forms_are_the_top_level_verbs() {
    if !need_root("management_command_forms_are_the_top_level_verbs") {
        return;
    }
    let (work, store) = store_with_fixtures();
    let id = layers_ok(&store, &["create", "--name", "mc", "localhost/layered", "true"]);

    assert_eq!(layers_ok(&store, &["image", "ls"]), layers_ok(&store, &["images"]));
    assert_eq!(layers_ok(&store, &["image", "list", "-q"]), layers_ok(&store, &["images", "-q"]));
    assert_eq!(layers_ok(&store, &["container", "ls", "-a"]), layers_ok(&store, &["ps", "-a"]));
    assert_eq!(layers_ok(&store, &["container", "ps", "-aq"]), layers_ok(&store, &["ps", "-aq"]));
    // Global options before the management command, or between it and its verb.
    let root = format!("--root={}", store.display());
    let out = layers_cmd().args([root.as_str(), "image", "ls", "-q"]).output().unwrap();
    assert_eq!(stdout(&out).trim(), layers_ok(&store, &["images", "-q"]));
    let out = layers_cmd().args(["container", root.as_str(), "ls", "-aq"]).output().unwrap();
    assert_eq!(stdout(&out).trim(), id[..12].to_string());

    // `image inspect` is `inspect --type image`: a container's name is no image.
    let name = layers_ok(&store, &["container", "inspect", "--format", "{{.Name}}", "mc"]);
    assert_eq!(name, "/mc");
    let out = layers(&store, &["image", "inspect", "mc"]);
    assert_eq!(out.status.code(), Some(1), "Docker's `image inspect` of no image exits 1");
    assert!(stderr(&out).contains("mc"), "{}", stderr(&out));
    layers_ok(&store, &["image", "tag", "localhost/layered", "mgmt:1"]);
    assert!(layers_ok(&store, &["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]).contains("mgmt:1"));
    layers_ok(&store, &["image", "rm", "mgmt:1"]);
    assert!(!layers_ok(&store, &["images", "--format", "{{.Repository}}"]).contains("mgmt"));
    // `container run` fails before its command as `run` does (125); `container rm` of
    // nothing as `rm` (1).
    assert_eq!(layers(&store, &["container", "run", "--rm", "localhost/nosuch"]).status.code(), Some(125));
    assert_eq!(layers(&store, &["container", "rm", "nosuch"]).status.code(), Some(1));
    let out = layers(&store, &["container", "run", "--rm", "localhost/layered", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    layers_ok(&store, &["container", "rm", "mc"]);

    // Help, completions and man pages have them.
    let help = layers_ok(&store, &["image", "--help"]);
    for verb in ["ls", "rm", "inspect", "tag", "pull", "push", "history", "save", "load", "import", "prune"] {
        assert!(help.lines().any(|l| l.trim_start().starts_with(&format!("{verb} "))), "image {verb}: {help}");
    }
    let help = layers_ok(&store, &["container", "ls", "--help"]);
    assert!(help.contains("Usage: layers container ls") && help.contains("--format"), "{help}");
    let bash = layers_ok(&store, &["completion", "bash"]);
    assert!(bash.contains("layers__subcmd__container,ls)"), "bash completes container ls");
    let man = work.path().join("man");
    layers_ok(&store, &["man", man.to_str().unwrap()]);
    for page in ["layers-image-ls.1", "layers-container-exec.1", "layers-builder-build.1"] {
        assert!(man.join(page).is_file(), "{page}");
    }
}

/// Docker's CLI says `unknown flag: --x` and where the help is (cobra's message,
/// docker/cli); a flag Docker's verb has and `layers` lacks says so. Exit 125, as
/// Docker's for a usage error.
#[test]
fn an_unknown_flag_names_itself_and_says_when_docker_has_it() {
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let out = layers(&store, &["run", "--gpus", "all", "busybox"]);
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(
        stderr(&out).trim_end(),
        "layers: unknown flag: --gpus (Docker's `run --gpus`: not supported by layers); see 'layers run --help'"
    );
    let out = layers(&store, &["container", "ls", "--nosuch=1"]);
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(stderr(&out).trim_end(), "layers: unknown flag: --nosuch; see 'layers container ls --help'");
    assert!(!stderr(&out).contains("to pass"), "no clap tip");
    // Where `ps` and `images` differ: `-s` is ps's.
    let out = layers(&store, &["image", "ls", "--tree"]);
    assert!(stderr(&out).contains("Docker's `image ls --tree`"), "{}", stderr(&out));
    assert!(!store.exists(), "a usage error opens no store");
}

/// `docker cp CTR:PATH -` writes PATH as a tar on stdout, named from its last name;
/// `docker cp - CTR:DIR` extracts a tar from stdin into the directory DIR (docs:
/// "docker container cp": "Use '-' as the source to read a tar archive from stdin and
/// extract it to a directory destination in a container. Use '-' as the destination
/// to stream a tar archive of a container source to stdout."). Read and written by
/// GNU tar here.
#[test]
fn cp_streams_a_tar_to_stdout_and_extracts_one_from_stdin() {
    if !need_root("cp_streams_a_tar_to_stdout_and_extracts_one_from_stdin") {
        return;
    }
    let (work, store) = store_with_fixtures();
    let w = work.path();
    layers_ok(&store, &["create", "--name", "cpt", "localhost/layered", "true"]);

    // Out: the tar holds what `cp CTR:/etc HOSTDIR` copies, file by file.
    let out = layers(&store, &["cp", "cpt:/etc", "-"]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::write(w.join("etc.tar"), &out.stdout).unwrap();
    std::fs::create_dir(w.join("from-tar")).unwrap();
    gnu_untar(&w.join("etc.tar"), &w.join("from-tar"));
    layers_ok(&store, &["cp", "cpt:/etc", w.join("from-cp").to_str().unwrap()]);
    assert_eq!(files_with_contents(&w.join("from-tar/etc")), files_with_contents(&w.join("from-cp")));
    let listing = std::process::Command::new("tar").arg("-tvf").arg(w.join("etc.tar")).output().unwrap();
    assert!(stdout(&listing).lines().next().unwrap().ends_with(" etc/"), "{}", stdout(&listing));
    // A file is one entry under its own name.
    let out = layers(&store, &["cp", "cpt:/etc/passwd", "-"]);
    std::fs::write(w.join("passwd.tar"), &out.stdout).unwrap();
    let names = std::process::Command::new("tar").arg("-tf").arg(w.join("passwd.tar")).output().unwrap();
    assert_eq!(stdout(&names), "passwd\n");
    let missing = layers(&store, &["cp", "cpt:/nosuch", "-"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("nosuch"), "{}", stderr(&missing));

    // In: GNU tar's archive extracted into /tmp, owned by root unless -a.
    let src = w.join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/f"), "from stdin\n").unwrap();
    std::process::Command::new("chown").args(["-R", "1234:1234"]).arg(&src).status().unwrap();
    let tar = |dir: &std::path::Path| {
        let out = std::process::Command::new("tar").arg("-C").arg(dir).args(["-cf", "-", "sub"]).output().unwrap();
        assert!(out.status.success());
        out.stdout
    };
    let bytes = tar(&src);
    let cp_in = |args: &[&str], input: &[u8]| {
        let mut cmd = layers_cmd();
        cmd.arg("--root").arg(&store).args(args);
        feed(cmd, input)
    };
    let out = cp_in(&["cp", "-", "cpt:/tmp"], &bytes);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cp_in(&["cp", "-a", "-", "cpt:/opt"], &bytes);
    assert!(out.status.success(), "{}", stderr(&out));
    let seen = run_container_script(&store, "stat -c '%u %n' /tmp/sub/f /opt/sub/f; cat /tmp/sub/f");
    assert_eq!(seen, "0 /tmp/sub/f\n1234 /opt/sub/f\nfrom stdin\n");

    // The destination must be a directory; nothing is written when it is not.
    let out = cp_in(&["cp", "-", "cpt:/etc/passwd"], &bytes);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("/etc/passwd: not a directory"), "{}", stderr(&out));
    // A hostile entry (`../escape`) is refused by the layer unpacker's rules; nothing
    // lands on the host or in the container.
    let evil = [tar_bytes::header("../escape", b'0', 3, ""), tar_bytes::padded(b"out"), vec![0; 1024]].concat();
    let out = cp_in(&["cp", "-", "cpt:/tmp"], &evil);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("escape"), "{}", stderr(&out));
    assert!(!w.join("escape").exists() && !store.join("escape").exists());
    assert_eq!(run_container_script(&store, "ls /escape /tmp/escape 2>&1 | wc -l"), "2\n");
}

/// Runs `sh -c SCRIPT` in a new container made of container `cpt` committed.
fn run_container_script(store: &std::path::Path, script: &str) -> String {
    layers_ok(store, &["commit", "cpt", "localhost/cpt-state"]);
    run_in(store, "localhost/cpt-state", script)
}

/// `docker build -f -` (the Dockerfile on stdin, the context from the argument) and
/// `docker build -` (stdin a tar of the context, or else a Dockerfile and no context),
/// as the docs' "docker buildx build" describe them; `--iidfile` holds the image ID.
#[test]
fn build_reads_the_dockerfile_or_the_context_from_stdin_and_writes_the_iidfile() {
    if !need_root("build_reads_the_dockerfile_or_the_context_from_stdin_and_writes_the_iidfile") {
        return;
    }
    let (work, store) = store_with_busybox();
    let w = work.path();
    let ctx = build_context(w, "ctx", "FROM busybox\nRUN false\n");
    std::fs::write(ctx.join("greeting"), "hello from the context\n").unwrap();
    std::fs::create_dir(ctx.join("alt")).unwrap();
    std::fs::write(ctx.join("alt/Dockerfile.alt"), "FROM busybox\nCOPY greeting /alt-greeting\n").unwrap();
    let build = |args: &[&str], input: &[u8]| {
        let mut cmd = layers_cmd();
        cmd.arg("--root").arg(&store).arg("build").args(args);
        feed(cmd, input)
    };
    let iid = w.join("iid");

    // -f -: the Dockerfile from stdin, COPY from the named context (its own Dockerfile unused).
    let out = build(
        &["-f", "-", "-t", "from-stdin", "--iidfile", iid.to_str().unwrap(), ctx.to_str().unwrap()],
        b"FROM busybox\nCOPY greeting /greeting\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let id = layers_ok(&store, &["inspect", "--format", "{{.Id}}", "from-stdin"]);
    assert_eq!(std::fs::read_to_string(&iid).unwrap(), id, "the ID, no newline (Docker's iidfile)");
    assert_eq!(stdout(&out).trim(), id);
    assert_eq!(run_in(&store, "from-stdin", "cat /greeting"), "hello from the context\n");

    // build -, a Dockerfile: no context, so RUN works and COPY finds nothing.
    let out = build(&["-t", "no-context", "-"], b"FROM busybox\nRUN echo built > /built\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(run_in(&store, "no-context", "cat /built"), "built\n");
    let out = build(&["-"], b"FROM busybox\nCOPY greeting /\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("greeting"), "{}", stderr(&out));

    // build -, a gzip tar of the context (GNU tar's), with -f naming a file inside it.
    let tar = std::process::Command::new("tar").arg("-C").arg(&ctx).args(["-czf", "-", "."]).output().unwrap();
    assert!(tar.status.success());
    let out = build(&["-f", "alt/Dockerfile.alt", "-t", "tar-context", "-"], &tar.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(run_in(&store, "tar-context", "cat /alt-greeting"), "hello from the context\n");

    // Refused, naming why: both on stdin; -f with a Dockerfile (not a context) on stdin.
    let out = build(&["-f", "-", "-"], b"FROM busybox\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("stdin cannot hold both"), "{}", stderr(&out));
    let out = build(&["-f", "Dockerfile", "-"], b"FROM busybox\n");
    assert!(stderr(&out).contains("stdin holds a Dockerfile, not a context"), "{}", stderr(&out));
    // No scratch dir of these builds is left behind.
    let tmp: Vec<_> = std::fs::read_dir(store.join("tmp")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(tmp.iter().all(|n| !n.to_string_lossy().starts_with("build-stdin")), "{tmp:?}");
}

/// `docker pause`/`unpause` (docs: "docker container pause": the cgroup freezer):
/// `ps` says `Up … (Paused)`, inspect `State.Status` "paused" and `State.Paused`;
/// exec and attach are refused while paused; commit leaves it paused; stop, kill and
/// rm -f end it still.
#[test]
fn pause_freezes_a_container_until_unpause_and_stop_kill_and_rm_still_end_it() {
    if !need_root("pause_freezes_a_container_until_unpause_and_stop_kill_and_rm_still_end_it") {
        return;
    }
    let (_work, store) = store_with_fixtures();
    let ticking =
        ["--network", "none", "localhost/layered", "sh", "-c", "while true; do echo t >> /ticks; sleep 0.02; done"];
    // The file's length, read through `cp … -` and GNU tar (exec is refused while paused).
    let ticks = |id: &str| {
        let out = layers(&store, &["cp", &format!("{id}:/ticks"), "-"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let mut tar = std::process::Command::new("tar");
        tar.args(["-xOf", "-"]);
        let file = feed(tar, &out.stdout);
        file.stdout.len()
    };
    let settle = || std::thread::sleep(std::time::Duration::from_millis(300));
    let id = detached(&store, &ticking);
    settle();
    assert_eq!(layers_ok(&store, &["pause", &id]), id);
    let frozen = ticks(&id);
    settle();
    assert_eq!(ticks(&id), frozen, "no tick while paused");
    let status = layers_ok(&store, &["ps", "--format", "{{.Status}}", "--filter", "status=paused"]);
    assert!(status.starts_with("Up ") && status.ends_with(" (Paused)"), "{status}");
    let state =
        layers_ok(&store, &["inspect", "--format", "{{.State.Status}} {{.State.Paused}} {{.State.Running}}", &id]);
    assert_eq!(state, "paused true true");
    let out = layers(&store, &["exec", &id, "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("is paused, unpause it first"), "{}", stderr(&out));
    let out = layers(&store, &["pause", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already paused"), "{}", stderr(&out));
    layers_ok(&store, &["commit", &id, "localhost/paused-snapshot"]);
    assert_eq!(layers_ok(&store, &["inspect", "--format", "{{.State.Paused}}", &id]), "true", "commit keeps it paused");

    assert_eq!(layers_ok(&store, &["container", "unpause", &id]), id);
    settle();
    assert!(ticks(&id) > frozen, "ticking again");
    let out = layers(&store, &["unpause", &id]);
    assert!(stderr(&out).contains("is not paused"), "{}", stderr(&out));

    // A paused container still ends: kill (SIGKILL held by v1's freezer until thawed).
    layers_ok(&store, &["pause", &id]);
    layers_ok(&store, &["kill", &id]);
    assert_eq!(layers_ok(&store, &["wait", &id]), "137");
    let out = layers(&store, &["pause", &id]);
    assert!(stderr(&out).contains("is not running"), "{}", stderr(&out));
    // … stop, and rm -f.
    let id = detached(&store, &ticking);
    layers_ok(&store, &["pause", &id]);
    layers_ok(&store, &["stop", "-t", "1", &id]);
    assert_eq!(layers_ok(&store, &["inspect", "--format", "{{.State.Status}}", &id]), "exited");
    let id = detached(&store, &ticking);
    layers_ok(&store, &["pause", &id]);
    layers_ok(&store, &["rm", "-f", &id]);
    assert!(layers(&store, &["inspect", &id]).status.code() == Some(1));
}

/// `docker ps --format json`: one object per line with Docker's fields, `CreatedAt`
/// as Go's time.String (`2026-12-06 16:20:46 +0000 UTC`), `Size` "0B" unless `-s`,
/// then `RW (virtual RW+IMAGE)` (docker/cli's container formatter), `LocalVolumes`
/// the volumes it mounts. `images` prints `CreatedAt` the same way.
#[test]
fn ps_format_json_has_dockers_fields_and_time_and_size_forms() {
    if !need_root("ps_format_json_has_dockers_fields_and_time_and_size_forms") {
        return;
    }
    let (_work, store) = store_with_fixtures();
    let id = layers_ok(&store, &["create", "--name", "pj", "-v", "pjdata:/data", "localhost/layered", "true"]);
    let line = layers_ok(&store, &["ps", "-a", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    for k in [
        "Command",
        "CreatedAt",
        "ID",
        "Image",
        "Labels",
        "LocalVolumes",
        "Mounts",
        "Names",
        "Networks",
        "Ports",
        "RunningFor",
        "Size",
        "State",
        "Status",
    ] {
        assert!(v[k].is_string(), "{k} is a string in Docker's: {v}");
    }
    assert_eq!(v["ID"], id[..12]);
    assert_eq!(v["Names"], "pj");
    assert_eq!(v["State"], "created");
    assert_eq!(v["LocalVolumes"], "1");
    assert_eq!(v["Mounts"], "pjdata");
    assert_eq!(v["Size"], "0B", "not computed without -s");
    // The same second as inspect's RFC 3339 Created, in Go's String form.
    let created = layers_ok(&store, &["inspect", "--format", "{{.Created}}", "pj"]);
    let (date, time) = created.split_once('T').unwrap();
    assert_eq!(v["CreatedAt"], format!("{date} {} +0000 UTC", &time[..8]));

    let sized: serde_json::Value =
        serde_json::from_str(&layers_ok(&store, &["ps", "-as", "--format", "json"])).unwrap();
    let size = sized["Size"].as_str().unwrap();
    let (rw, virt) = size.split_once(" (virtual ").unwrap_or_else(|| panic!("{size}"));
    assert!(rw.ends_with('B') && virt.ends_with("B)"), "{size}");
    let table = layers_ok(&store, &["ps", "-as"]);
    assert!(table.lines().next().unwrap().ends_with("SIZE") && table.contains(size), "{table}");

    let image: serde_json::Value =
        serde_json::from_str(layers_ok(&store, &["images", "--format", "json"]).lines().next().unwrap()).unwrap();
    let at = image["CreatedAt"].as_str().unwrap();
    assert!(at.len() == 29 && at.ends_with(" +0000 UTC") && at.as_bytes()[10] == b' ', "{at}");
}

/// `docker system df` (docs: "docker system df"): rows Images, Containers, Local
/// Volumes, Build Cache; TOTAL, ACTIVE, SIZE, RECLAIMABLE with the percentage (none
/// for the build cache); `--format` over Type, TotalCount, Active, Size, Reclaimable;
/// `-v` a section for each.
#[test]
fn system_df_has_dockers_rows_columns_and_sections() {
    if !need_root("system_df_has_dockers_rows_columns_and_sections") {
        return;
    }
    let (work, store) = store_with_busybox();
    let ctx = build_context(work.path(), "ctx", "FROM busybox\nRUN echo step > /step\n");
    layers_ok(&store, &["build", "-q", "-t", "built", ctx.to_str().unwrap()]);
    // One running container with a volume, one stopped with 100 kB of changes.
    let running = detached(&store, &["--network", "none", "-v", "dfvol:/data", "localhost/layered", "sleep", "60"]);
    let out =
        layers(&store, &["run", "--name", "stopped", "localhost/layered", "sh", "-c", "head -c 100000 /dev/zero > /f"]);
    assert!(out.status.success(), "{}", stderr(&out));
    layers_ok(&store, &["volume", "create", "unused"]);

    let table = layers_ok(&store, &["system", "df"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(columns(lines[0]), ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], "{table}");
    let kinds: Vec<String> = lines[1..5].iter().map(|l| columns(l)[0].clone()).collect();
    assert_eq!(kinds, ["Images", "Containers", "Local Volumes", "Build Cache"], "{table}");
    let containers = columns(lines[2]);
    assert_eq!(containers[1..3], ["2", "1"], "two containers, one running: {table}");
    assert!(containers[4].ends_with("%)"), "a percentage: {table}");
    let volumes = columns(lines[3]);
    assert_eq!(volumes[1..3], ["2", "1"], "two volumes, one in use: {table}");
    let build_cache = columns(lines[4]);
    assert!(build_cache[1].parse::<u64>().unwrap() >= 1 && !build_cache[4].contains('%'), "{table}");

    let json = layers_ok(&store, &["system", "df", "--format", "json"]);
    let rows: Vec<serde_json::Value> = json.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 4);
    for r in &rows {
        for k in ["Type", "TotalCount", "Active", "Size", "Reclaimable"] {
            assert!(r[k].is_string(), "{k}: {r}");
        }
    }
    assert_eq!(layers_ok(&store, &["df", "--format", "{{.Type}}:{{.Active}}"]).lines().nth(1), Some("Containers:1"));

    let v = layers_ok(&store, &["system", "df", "-v"]);
    for section in
        ["Images space usage:", "Containers space usage:", "Local Volumes space usage:", "Build cache usage: "]
    {
        assert!(v.contains(section), "{section}: {v}");
    }
    assert!(v.contains("REPOSITORY") && v.contains("LAST USED") && v.contains("PINNED"), "{v}");
    assert!(v.lines().any(|l| l.starts_with("dfvol ") && columns(l)[1] == "1"), "one link: {v}");
    assert!(v.lines().any(|l| l.starts_with(&running[..12]) && l.contains("running")), "{v}");
    layers_ok(&store, &["rm", "-f", &running]);
}

/// `build --secret id=…,src=…|env=…` with `RUN --mount=type=secret` (docs: "Build
/// secrets": a file at /run/secrets/ID, mode 0400, or with `env=` a variable; not
/// required unless `required`): the step sees it; no blob, layer, metadata or other
/// file of the store holds its bytes afterwards, nor the history or config; a changed
/// secret reuses the cached step, as BuildKit's key leaves the content out.
#[test]
fn build_secrets_reach_the_step_and_nothing_the_store_keeps() {
    if !need_root("build_secrets_reach_the_step_and_nothing_the_store_keeps") {
        return;
    }
    let (work, store) = store_with_busybox();
    let w = work.path();
    // The Dockerfile names them only upper-cased: the bytes looked for below are the secrets'.
    let file_secret = "file-secret-8d1f0c2a77";
    let env_secret = "env-secret-41b9e6d053";
    std::fs::write(w.join("token"), file_secret).unwrap();
    let ctx = build_context(
        w,
        "ctx",
        "FROM busybox\n\
         RUN --mount=type=secret,id=tok test \"$(tr a-z A-Z < /run/secrets/tok)\" = FILE-SECRET-8D1F0C2A77 \
             && stat -c '%a %u' /run/secrets/tok > /seen\n\
         RUN --mount=type=secret,id=tok,target=/etc/app.token,mode=0440,uid=1000 stat -c '%a %u' /etc/app.token >> /seen\n\
         RUN --mount=type=secret,id=envtok,env=TOKEN test \"$(echo $TOKEN | tr a-z A-Z)\" = ENV-SECRET-41B9E6D053 && echo env ok >> /seen\n\
         RUN --mount=type=secret,id=absent test ! -e /run/secrets/absent && echo absent ok >> /seen\n\
         RUN ls -A /run 2>/dev/null | wc -l >> /seen\n",
    );
    let build = |args: &[&str]| {
        let mut cmd = layers_cmd();
        cmd.env("SECRET_ENV", env_secret).arg("--root").arg(&store).arg("build").args(args);
        cmd.output().unwrap()
    };
    let src = format!("id=tok,src={}", w.join("token").display());
    let out =
        build(&["--secret", &src, "--secret", "id=envtok,env=SECRET_ENV", "-t", "secretive", ctx.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(run_in(&store, "secretive", "cat /seen"), "400 0\n440 1000\nenv ok\nabsent ok\n0\n");

    // Nothing of the store holds either secret: every file under the root, read whole.
    let mut stack = vec![store.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let (p, t) = (e.path(), e.file_type().unwrap());
            if t.is_dir() {
                stack.push(p);
            } else if t.is_file() {
                let bytes = std::fs::read(&p).unwrap();
                for s in [file_secret, env_secret] {
                    assert!(!bytes.windows(s.len()).any(|x| x == s.as_bytes()), "{s} in {}", p.display());
                }
            }
        }
    }
    for args in [&["history", "--no-trunc", "secretive"][..], &["inspect", "secretive"][..]] {
        let text = layers_ok(&store, args);
        assert!(!text.contains(file_secret) && !text.contains(env_secret), "{args:?}: {text}");
    }

    // Another secret value: the steps hit the cache (the key holds no secret bytes).
    std::fs::write(w.join("token"), "another-value").unwrap();
    let again = build(&["--secret", &src, "--secret", "id=envtok,env=SECRET_ENV", ctx.to_str().unwrap()]);
    assert!(again.status.success(), "{}", stderr(&again));
    let steps = build_cache::outcomes(&again);
    assert!(steps.len() == 5 && steps.iter().all(|(_, o)| *o == "CACHED"), "{steps:?}");

    // A required secret not given fails the step, naming it; a bad spec is refused.
    let req = build_context(w, "req", "FROM busybox\nRUN --mount=type=secret,id=must,required true\n");
    let out = build(&[req.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("secret must was not given"), "{}", stderr(&out));
    let out = build(&["--secret", "src=/etc/hostname", req.to_str().unwrap()]);
    assert!(stderr(&out).contains("needs id="), "{}", stderr(&out));
    // The steps' secret tmpfs mounts are gone.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&format!("{}/tmp/secret-", store.display())), "{mounts}");
}

/// `build --ssh ID=SOCKET` with `RUN --mount=type=ssh` (docs: "docker buildx build
/// --ssh"; the mount's default target /run/buildkit/ssh_agent.0, `SSH_AUTH_SOCK` set
/// to it): the step sees the agent's very socket (same inode), for that step only;
/// an agent not given is left out unless `required`; key files are refused by name.
#[test]
fn build_ssh_forwards_an_agent_socket_to_the_step_only() {
    if !need_root("build_ssh_forwards_an_agent_socket_to_the_step_only") {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let (work, store) = store_with_busybox();
    let w = work.path();
    let sock = w.join("agent.sock");
    let _agent = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let inode = std::fs::metadata(&sock).unwrap().ino();
    let ctx = build_context(
        w,
        "ctx",
        "FROM busybox\n\
         RUN --mount=type=ssh test -S \"$SSH_AUTH_SOCK\" && echo \"$SSH_AUTH_SOCK $(stat -c %i $SSH_AUTH_SOCK)\" > /seen\n\
         RUN --mount=type=ssh,id=other,target=/agent test ! -e /agent && echo \"absent ${SSH_AUTH_SOCK:-unset}\" >> /seen\n\
         RUN ls -A /run 2>/dev/null | wc -l >> /seen\n",
    );
    let spec = format!("default={}", sock.display());
    let out = layers(&store, &["build", "--ssh", &spec, "-t", "ssh-used", ctx.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let seen = run_in(&store, "ssh-used", "cat /seen");
    assert_eq!(seen, format!("/run/buildkit/ssh_agent.0 {inode}\nabsent unset\n0\n"));

    let req = build_context(w, "req", "FROM busybox\nRUN --mount=type=ssh,required=true true\n");
    let out = layers(&store, &["build", req.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no agent was given for default"), "{}", stderr(&out));
    let key = w.join("id_ed25519");
    std::fs::write(&key, "not a socket").unwrap();
    let out = layers(&store, &["build", "--ssh", &format!("default={}", key.display()), req.to_str().unwrap()]);
    assert!(stderr(&out).contains("is not a socket (key files are not supported"), "{}", stderr(&out));
    let out = layers(&store, &["build", "--ssh", &spec, req.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let bad = build_context(w, "bad", "FROM busybox\nRUN --mount=type=ssh,uid=1000 true\n");
    let out = layers(&store, &["build", "--ssh", &spec, bad.to_str().unwrap()]);
    assert!(stderr(&out).contains("uid is not supported for type=ssh"), "{}", stderr(&out));
}

/// `build --platform`: this machine's platform builds as without it; another one only
/// where binfmt_misc has an emulator enabled for it, else refused naming what is missing.
#[test]
fn build_platform_is_this_machines_or_refused_naming_the_missing_emulator() {
    if !need_root("build_platform_is_this_machines_or_refused_naming_the_missing_emulator") {
        return;
    }
    let (work, store) = store_with_busybox();
    let ctx = build_context(work.path(), "ctx", "FROM busybox\nRUN echo ok > /ok\n");
    let arch = if cfg!(target_arch = "aarch64") { "arm64" } else { "amd64" };
    let out = layers(&store, &["build", "--platform", &format!("linux/{arch}"), "-t", "native", ctx.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    // BuildKit's automatic platform args: there when declared, a --build-arg over them.
    let args = build_context(
        work.path(),
        "args",
        "ARG BUILDPLATFORM\nFROM busybox\nARG TARGETARCH\nARG TARGETOS\nARG BUILDPLATFORM\n\
         RUN echo \"$TARGETOS/$TARGETARCH from $BUILDPLATFORM, undeclared: ${TARGETPLATFORM:-none}\" > /p\n",
    );
    layers_ok(&store, &["build", "-q", "-t", "args", args.to_str().unwrap()]);
    assert_eq!(run_in(&store, "args", "cat /p"), format!("linux/{arch} from linux/{arch}, undeclared: none\n"));
    let out = layers(&store, &["build", "--build-arg", "TARGETARCH=given", "-t", "args2", args.to_str().unwrap()]);
    assert!(out.status.success() && !stderr(&out).contains("[Warning]"), "{}", stderr(&out));
    assert!(run_in(&store, "args2", "cat /p").starts_with("linux/given from"));
    let (foreign, qemu) =
        if arch == "arm64" { ("linux/amd64", "qemu-x86_64") } else { ("linux/arm64", "qemu-aarch64") };
    let entry = std::path::Path::new("/proc/sys/fs/binfmt_misc").join(qemu);
    if std::fs::read_to_string(&entry).is_ok_and(|t| t.starts_with("enabled")) {
        eprintln!("SKIPPED (part): {} is enabled on this machine, so {foreign} is not refused", entry.display());
        return;
    }
    let out = layers(&store, &["build", "--platform", foreign, ctx.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&format!("{foreign}: not this machine's platform")), "{}", stderr(&out));
    assert!(stderr(&out).contains(qemu), "{}", stderr(&out));
}

/// `docker stats --no-stream` (docs: "docker container stats"): Docker's columns, CPU %
/// from two readings of the cgroup, memory usage / limit in binary units, PIDs;
/// `-a` adds stopped containers at zero; `--format` over Docker's fields.
#[test]
fn stats_reads_the_containers_cgroup_in_dockers_columns() {
    if !need_root("stats_reads_the_containers_cgroup_in_dockers_columns") {
        return;
    }
    let (_work, store) = store_with_fixtures();
    let busy =
        detached(&store, &["--network", "none", "-m", "64m", "localhost/layered", "sh", "-c", "while :; do :; done"]);
    layers_ok(&store, &["create", "--name", "idle", "localhost/layered", "true"]);
    let table = layers_ok(&store, &["stats", "--no-stream"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        columns(lines[0]),
        ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS"],
        "{table}"
    );
    assert_eq!(lines.len(), 2, "running ones only: {table}");
    let row = columns(lines[1]);
    assert_eq!(row[0], busy[..12]);
    let cpu: f64 = row[2].trim_end_matches('%').parse().unwrap();
    assert!(cpu > 10.0, "a busy loop uses CPU: {table}");
    assert!(row[3].ends_with(" / 64MiB"), "the -m limit: {table}");
    assert_eq!(row[5], "0B / 0B", "no network: {table}");
    assert_eq!(row[7], "1");

    let all = layers_ok(
        &store,
        &["stats", "-a", "--no-stream", "--format", "{{.Name}} {{.CPUPerc}} {{.MemUsage}} {{.PIDs}}"],
    );
    assert!(all.lines().any(|l| l == "idle 0.00% 0B / 0B 0"), "{all}");
    let json = layers_ok(&store, &["container", "stats", "--no-stream", "--format", "json", &busy[..12]]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["Container"], &busy[..12], "as given");
    for k in ["Name", "ID", "CPUPerc", "MemUsage", "MemPerc", "NetIO", "BlockIO", "PIDs"] {
        assert!(v[k].is_string(), "{k}: {v}");
    }
    let out = layers(&store, &["stats", "--no-stream", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    layers_ok(&store, &["rm", "-f", &busy]);
}

/// A table line's columns: the runs between two or more spaces.
fn columns(line: &str) -> Vec<String> {
    line.split("  ").map(str::trim).filter(|w| !w.is_empty()).map(String::from).collect()
}
