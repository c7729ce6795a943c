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
