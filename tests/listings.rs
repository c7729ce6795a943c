//! The listing verbs as Docker prints them: `ps`, `images`, `inspect` and `history`,
//! their filters, columns and `--format`s (Go templates, tables, JSON).

// Tests make and inspect their fixtures by path (clippy.toml bans that in the code under test).
#![allow(clippy::disallowed_methods)]

mod common;

use common::*;

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
    assert_eq!(bad.status.code(), Some(1));
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
    // As Docker's documented example: `{{.ID}}: {{.Repository}}`, one line per name,
    // each in Docker's familiar form (`layered`, not `localhost/layered`).
    let ids = layers_ok(&store, &["images", "--format", "{{.ID}}: {{.Repository}}:{{.Tag}}"]);
    let layered = stored_image(&store, "localhost/layered:latest")["Id"].as_str().unwrap()[7..19].to_string();
    assert!(ids.lines().any(|l| l == format!("{layered}: layered:v2")), "{ids}");
    let table = layers_ok(&store, &["images", "--format", "table {{.Repository}}\\t{{.Tag}}", "localhost/layered"]);
    let lines: Vec<&str> = table.lines().collect();
    // Docker's tabwriter: each column as wide as its widest cell plus 3 (here the header, 10).
    assert_eq!(lines[0], "REPOSITORY   TAG");
    assert_eq!(lines.len(), 3, "both tags of that repository, nothing else: {table}");
    assert_eq!(layers_ok(&store, &["images", "--format", "{{.Tag}}", "localhost/layered:v2"]), "v2");
    assert_eq!(layers_ok(&store, &["images", "--format", "{{.Tag}}", "layered:v2"]), "v2", "short name");
    let refs = layers_ok(&store, &["images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", "reference=*/two*"]);
    assert_eq!(refs, "two-layers:latest");
    let refs = layers_ok(&store, &["images", "--format", "{{.Tag}}", "--filter", "reference=layered:v*"]);
    assert_eq!(refs, "v2");
    assert_eq!(layers_ok(&store, &["images", "--filter", "dangling=true", "-q"]), "");
    let bad = layers(&store, &["images", "--filter", "size=big"]);
    assert!(stderr(&bad).contains("invalid filter \"size\""), "{}", stderr(&bad));
    let full = layers_ok(&store, &["images", "-q", "--no-trunc", "localhost/two-layers"]);
    assert!(full.starts_with("sha256:") && full.len() == 71, "{full}");
    let json = layers_ok(&store, &["images", "--format", "json", "localhost/two-layers"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!((v["Repository"].as_str(), v["Tag"].as_str()), (Some("two-layers"), Some("latest")));

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
    assert_eq!(out.status.code(), Some(1));
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
    // As created (Docker's `Config.Env`): no `HOME=` placeholder, no HOSTNAME set only at start.
    let env = f("{{json .Config.Env}}");
    assert!(!env.contains("\"HOME=") && !env.contains("\"HOSTNAME="), "{env}");
    // inspect takes its format as written, as Docker: `\n` stays two characters.
    assert_eq!(f("{{.Name}}\\n"), "/tt\\n");
    let img = layers_ok(&store, &["inspect", "-f", "{{.RepoTags}} {{.Config.Cmd}}", "localhost/layered"]);
    // Docker's familiar names: `[layered:latest …]`, not `localhost/layered:latest`.
    assert!(img.starts_with("[layered:latest") && img.ends_with("] []"), "{img}");
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
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("layers push layered REGISTRY/NAME:TAG"), "{}", stderr(&out));

    let reg = Registry::start();
    reg.push(&fixtures().join("oci"), "layered", "fixture/layered:v1", &[]);
    let image = format!("{}/fixture/layered:v1", reg.addr);
    let arch = layers_ok(&store, &["inspect", "--format", "{{.Architecture}}", "localhost/layered"]);
    let other = if arch == "arm64" { "linux/amd64" } else { "linux/arm64" };
    let fresh = tempfile::tempdir().unwrap();
    let out = layers(fresh.path(), &["pull", "--platform", other, &image]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
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

/// Names as Docker prints them (issue 32). Docker's reference documentation shows
/// `docker images` rows as `busybox latest …` and `docker inspect`'s `RepoTags` as
/// `["busybox:latest"]`: its familiar form, where `docker.io/library/` (and, for
/// images made here, our `localhost/`) is left out. A `docker save uxapp:1` archive
/// (written here by skopeo) loads as the `uxapp:1` a local build makes, not a second name.
#[test]
fn names_print_in_dockers_familiar_form_and_a_docker_archive_loads_under_the_local_name() {
    if !need_root("names_print_in_dockers_familiar_form_and_a_docker_archive_loads_under_the_local_name") {
        return;
    }
    let (work, store) = store_with_fixtures();
    let reg = Registry::start();
    reg.push(&fixtures().join("oci"), "two-layers", "org/two:1", &[]);
    layers_ok(&store, &["pull", "-q", &format!("{}/org/two:1", reg.addr)]);
    layers_ok(&store, &["tag", "localhost/layered", "myorg/bb:1"]);
    layers_ok(&store, &["tag", "localhost/layered", "uxapp:1"]);
    let names = layers_ok(&store, &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    let names: Vec<&str> = names.lines().collect();
    for want in ["layered:latest", "myorg/bb:1", "uxapp:1", &format!("{}/org/two:1", reg.addr)] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }
    assert!(names.iter().all(|n| !n.starts_with("localhost/") && !n.starts_with("docker.io/")), "{names:?}");
    let tags = layers_ok(&store, &["inspect", "-f", "{{json .RepoTags}}", "myorg/bb:1"]);
    assert!(tags.contains("\"myorg/bb:1\"") && tags.contains("\"uxapp:1\""), "{tags}");
    let digests = layers_ok(&store, &["inspect", "-f", "{{json .RepoDigests}}", &format!("{}/org/two:1", reg.addr)]);
    assert!(digests.starts_with(&format!("[\"{}/org/two@sha256:", reg.addr)), "{digests}");
    // A container made by image name shows it as typed; `ps` with no name kept shows the familiar one.
    layers_ok(&store, &["create", "--name", "c1", "uxapp:1"]);
    assert_eq!(layers_ok(&store, &["ps", "-a", "--format", "{{.Image}}", "--filter", "name=c1"]), "uxapp:1");

    // `docker save uxapp:1`, as skopeo writes it, loads under the same stored name: one `uxapp:1`.
    let archive = work.path().join("uxapp.tar");
    let st = std::process::Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}:two-layers", fixtures().join("oci").display()))
        .arg(format!("docker-archive:{}:uxapp:1", archive.display()))
        .status()
        .unwrap();
    assert!(st.success());
    let loaded = layers_ok(&store, &["load", "-i", archive.to_str().unwrap()]);
    assert!(loaded.starts_with("Loaded image: uxapp:1"), "{loaded}");
    let listed = layers_ok(&store, &["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    let ux: Vec<&str> = listed.lines().filter(|l| l.starts_with("uxapp:")).collect();
    assert_eq!(ux.len(), 1, "one uxapp:1, moved to the loaded image: {listed}");
    let two = stored_image(&store, &format!("{}/org/two:1", reg.addr))["Id"].as_str().unwrap()[7..19].to_string();
    assert!(ux[0].ends_with(&two), "{listed}");
}
