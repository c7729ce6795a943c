//! Habits a Docker user brings that used to trip `layers`: each test is named after
//! what was reproduced (races between verbs, a terminal that is not one, flags that
//! stop at the first argument, retries that flood the terminal).

mod common;

use std::path::Path;

use common::*;

fn detached(store: &Path, args: &[&str]) -> String {
    let mut full = vec!["run", "-d"];
    full.extend_from_slice(args);
    let out = layers(store, &full);
    assert!(out.status.success(), "run -d {args:?}: {}", stderr(&out));
    stdout(&out).trim().to_string()
}

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
