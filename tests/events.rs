//! `layers events` (issue 32): what the store records of its containers and images,
//! printed as Docker's `docker events` prints it. The expectations come from Docker's
//! reference page for `docker events` (its event types and actions, the filters and
//! how they combine, `--since`/`--until`, the default line and `--format`) and from
//! the order in which dockerd emits a container's events (`kill` before `die`, `stop`
//! after it).

// Tests make and inspect their fixtures by path (clippy.toml bans that in the code under test).
#![allow(clippy::disallowed_methods)]

mod common;

use std::io::BufRead;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use common::*;

/// Now, as `--since` takes Unix seconds.
fn now() -> String {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

/// The recorded events since `t0` (until now), printed with `args`.
fn events(store: &Path, t0: &str, args: &[&str]) -> Vec<String> {
    let mut full = vec!["events", "--since", t0, "--until", "0s"];
    full.extend_from_slice(args);
    let out = layers(store, &full);
    assert!(out.status.success(), "{full:?}: {}", stderr(&out));
    stdout(&out).lines().map(str::to_string).collect()
}

const SHORT: &str = "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}";

#[test]
fn a_containers_life_is_recorded_in_dockers_order_and_shape() {
    if !need_root("a_containers_life_is_recorded_in_dockers_order_and_shape") {
        return;
    }
    let (_work, store) = store_with_fixtures();
    let t0 = now();
    layers_ok(&store, &["create", "--name", "ev1", "--label", "tier=web", "localhost/layered", "sh", "-c", "exit 3"]);
    assert_eq!(layers(&store, &["start", "-a", "ev1"]).status.code(), Some(3));
    layers_ok(&store, &["rename", "ev1", "ev2"]);
    layers_ok(&store, &["rm", "ev2"]);
    detached(&store, &["--name", "ev3", "localhost/layered", "sleep", "30"]);
    layers_ok(&store, &["pause", "ev3"]);
    layers_ok(&store, &["unpause", "ev3"]);
    // `sleep` as PID 1 ignores SIGTERM: stop kills it after the grace time.
    layers_ok(&store, &["stop", "-t", "1", "ev3"]);

    let got = events(&store, &t0, &["--format", SHORT]);
    let want = [
        "container create ev1",
        "container start ev1",
        "container die ev1",
        "container rename ev2",
        "container destroy ev2",
        "container create ev3",
        "container start ev3",
        "container pause ev3",
        "container unpause ev3",
        "container kill ev3",
        "container kill ev3",
        "container die ev3",
        "container stop ev3",
    ];
    assert_eq!(got, want);

    // Docker's line: time with nine digits of nanoseconds, type, action, actor ID, and
    // the attributes sorted by key.
    let lines = events(&store, &t0, &[]);
    let id = lines[0].split(' ').nth(3).unwrap().to_string();
    assert_eq!(id.len(), 64, "{}", lines[0]);
    for l in &lines {
        let (time, rest) = l.split_once(' ').unwrap();
        assert!(time.len() == 30 && time.ends_with('Z') && time.as_bytes()[19] == b'.', "{l}");
        assert!(rest.starts_with("container "), "{l}");
    }
    assert!(
        lines[2].ends_with(&format!(
            " container die {id} (execDuration=0, exitCode=3, image=localhost/layered, name=ev1, tier=web)"
        )),
        "{}",
        lines[2]
    );
    assert!(lines[3].ends_with("(image=localhost/layered, name=ev2, oldName=/ev1, tier=web)"), "{}", lines[3]);
    let ev3: Vec<&String> = lines.iter().filter(|l| l.contains("name=ev3")).collect();
    assert!(ev3[4].contains(" kill ") && ev3[4].contains("signal=15"), "{}", ev3[4]);
    assert!(ev3[5].contains(" kill ") && ev3[5].contains("signal=9"), "{}", ev3[5]);
    assert!(ev3[6].contains("exitCode=137"), "{}", ev3[6]);

    // `{{json .}}` is Docker's message, legacy fields included; times only go forward.
    let mut last = 0i64;
    for l in events(&store, &t0, &["--format", "{{json .}}"]) {
        let m: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(m["Type"], "container");
        assert_eq!(m["status"], m["Action"], "{l}");
        assert_eq!(m["id"], m["Actor"]["ID"], "{l}");
        assert_eq!(m["from"], "localhost/layered", "{l}");
        assert_eq!(m["scope"], "local");
        let nanos = m["timeNano"].as_i64().unwrap();
        assert_eq!(m["time"].as_i64().unwrap(), nanos / 1_000_000_000);
        assert!(nanos >= last, "{l}");
        last = nanos;
    }
    // `--format json` is the same document.
    let json = events(&store, &t0, &["--format", "json"]);
    assert_eq!(json, events(&store, &t0, &["--format", "{{json .}}"]));

    // Filters: values of one key are alternatives, keys all have to match.
    let only = |f: &[&str]| events(&store, &t0, &[f, &["--format", SHORT]].concat());
    assert_eq!(only(&["--filter", "event=die"]), ["container die ev1", "container die ev3"]);
    assert_eq!(
        only(&["--filter", "event=pause", "--filter", "event=unpause", "--filter", "container=ev3"]),
        ["container pause ev3", "container unpause ev3"]
    );
    assert_eq!(only(&["--filter", "label=tier=web", "--filter", "event=destroy"]), ["container destroy ev2"]);
    assert_eq!(only(&["--filter", &format!("container={}", &id[..12])]).len(), 5);
    assert_eq!(only(&["--filter", "image=localhost/layered"]).len(), want.len());
    assert!(only(&["--filter", "type=image"]).is_empty());
    // `system events` is the same verb.
    assert_eq!(
        layers_ok(&store, &["system", "events", "--since", &t0, "--until", "0s", "--format", SHORT]),
        want.join("\n")
    );

    // A filter this store cannot honour is refused by name (Docker: exit 1).
    for (f, says) in [("volume=v", "no volume events"), ("colour=red", "invalid filter 'colour'")] {
        let out = layers(&store, &["events", "--since", &t0, "--until", "0s", "--filter", f]);
        assert_eq!(out.status.code(), Some(1), "{f}");
        assert!(stderr(&out).contains(says) && stderr(&out).lines().count() == 1, "{f}: {}", stderr(&out));
    }
    let out = layers(&store, &["events", "--since", "yesterday", "--until", "0s"]);
    assert!(!out.status.success() && stderr(&out).contains("--since yesterday"), "{}", stderr(&out));
}

/// Reads a child's stdout lines on a thread, so a test can wait for one with a timeout.
fn lines_of(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(out).lines() {
            if tx.send(l.unwrap()).is_err() {
                break;
            }
        }
    });
    rx
}

#[test]
fn events_are_followed_as_they_happen_and_until_ends_the_stream() {
    if !need_root("events_are_followed_as_they_happen_and_until_ends_the_stream") {
        return;
    }
    let (_work, store) = store_with_fixtures();
    let t0 = now();
    let mut follower =
        spawn_layers(&store, &["events", "--since", &t0, "--filter", "container=evf", "--format", "{{.Action}}"]);
    let rx = lines_of(&mut follower);
    let next = || rx.recv_timeout(Duration::from_secs(10)).expect("an event within 10 s");
    layers_ok(&store, &["create", "--name", "evf", "localhost/layered", "true"]);
    assert_eq!(next(), "create");
    // The follower has shown what was there: these come while it follows.
    layers_ok(&store, &["start", "-a", "evf"]);
    assert_eq!(next(), "start");
    assert_eq!(next(), "die");
    layers_ok(&store, &["rm", "evf"]);
    assert_eq!(next(), "destroy");
    assert!(follower.try_wait().unwrap().is_none(), "with no --until it keeps following");
    follower.kill().unwrap();
    follower.wait().unwrap();

    // With neither bound, only what happens from now on is shown.
    let mut fresh = spawn_layers(&store, &["events", "--format", "{{.Action}} {{.Actor.Attributes.name}}"]);
    let rx = lines_of(&mut fresh);
    // It starts at the log's end: whatever it sees first is new (poll until it has started).
    let mut seen = None;
    for i in 0..50 {
        layers_ok(&store, &["tag", "localhost/layered", &format!("fresh:{i}")]);
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            seen = Some(l);
            break;
        }
    }
    let seen = seen.expect("a new tag event shown");
    assert!(seen.starts_with("tag fresh:"), "{seen}");
    fresh.kill().unwrap();
    fresh.wait().unwrap();

    // An --until in the future: events come as they happen, and at that time it ends.
    let until = format!("{:.3}", now().parse::<f64>().unwrap() + 2.0);
    let mut bounded = spawn_layers(&store, &["events", "--since", &t0, "--until", &until, "--format", "{{.Action}}"]);
    layers_ok(&store, &["create", "--name", "evu", "localhost/layered", "true"]);
    let started = std::time::Instant::now();
    let out = loop {
        if let Some(status) = bounded.try_wait().unwrap() {
            assert!(status.success());
            break bounded.wait_with_output().unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(10), "--until {until} did not end the stream");
        std::thread::sleep(Duration::from_millis(50));
    };
    let actions = stdout(&out);
    assert!(actions.lines().last() == Some("create"), "{actions}");
}

#[test]
fn image_events_are_recorded_for_pull_tag_push_and_removal() {
    if !need_root("image_events_are_recorded_for_pull_tag_push_and_removal") {
        return;
    }
    let layout = fixtures().join("oci");
    let reg = Registry::start();
    reg.push(&layout, "layered", "fixture/layered:v1", &[]);
    let (_work, store) = store_with_fixtures();
    let t0 = now();
    let remote = format!("{}/fixture/layered:v1", reg.addr);
    layers_ok(&store, &["pull", &remote]);
    let id = layers_ok(&store, &["inspect", "--format", "{{.Id}}", &remote]);
    layers_ok(&store, &["tag", &remote, "evimg:1"]);
    let pushed = format!("{}/fixture/again:v2", reg.addr);
    layers_ok(&store, &["push", "evimg:1", &pushed]);
    layers_ok(&store, &["rmi", "evimg:1"]);
    layers_ok(&store, &["rmi", &remote]);
    let imported = layers_ok(&store, &["import", "-q", fixtures().join("busybox-rootfs.tar.gz").to_str().unwrap()]);
    // An image eviction deletes is recorded as deleted.
    layers_ok(&store, &["gc", "--max-size", "1"]);

    let got = events(&store, &t0, &["--format", "{{.Type}} {{.Action}} {{.Actor.ID}} {{.Actor.Attributes.name}}"]);
    let want = [
        format!("image pull {remote} {remote}"),
        format!("image tag {id} evimg:1"),
        format!("image push {pushed} {pushed}"),
        // The image keeps the fixture's name: only untagged, as Docker's rmi.
        format!("image untag {id} {id}"),
        format!("image untag {id} {id}"),
        format!("image import {imported} {imported}"),
    ];
    assert_eq!(got[..want.len()], want, "{got:#?}");
    let evicted: Vec<&String> = got[want.len()..].iter().filter(|l| l.contains(" delete ")).collect();
    for image in [&id, &imported] {
        assert!(evicted.iter().any(|l| l.contains(image.as_str())), "{image} evicted: {got:#?}");
    }
    assert_eq!(
        events(&store, &t0, &["--filter", "image=evimg", "--format", "{{.Action}}"]),
        ["tag"],
        "image= matches a name without its tag"
    );
}

#[test]
fn concurrent_writers_lose_no_event_and_tear_no_line() {
    if !need_root("concurrent_writers_lose_no_event_and_tear_no_line") {
        return;
    }
    let (_work, store) = store_with_fixtures();
    let t0 = now();
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    layers_ok(&store, &["tag", "localhost/layered", &format!("w{w}:{i}")]);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let mut names = events(&store, &t0, &["--format", "{{.Actor.Attributes.name}}"]);
    names.sort();
    let mut want: Vec<String> = (0..4).flat_map(|w| (0..25).map(move |i| format!("w{w}:{i}"))).collect();
    want.sort();
    assert_eq!(names, want);
}
