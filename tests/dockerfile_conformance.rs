//! Dockerfiles built as BuildKit builds them, where `layers` used to differ: each
//! test builds a Dockerfile written for the case and reads the result from inside.

// Tests make and inspect their fixtures by path (clippy.toml bans that in the code under test).
#![allow(clippy::disallowed_methods)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;

fn built(store: &Path, ctx: &Path) -> String {
    let out = layers(store, &["build", "-q", "--no-cache", ctx.to_str().unwrap()]);
    assert!(out.status.success(), "build: {}", stderr(&out));
    stdout(&out).trim().to_string()
}

#[test]
fn shell_words_that_look_like_here_documents_are_commands() {
    if !need_root("shell_words_that_look_like_here_documents_are_commands") {
        return;
    }
    let (work, store) = store_with_busybox();
    let ctx = build_context(
        work.path(),
        "shift",
        "FROM busybox\nRUN echo $((1<<20)) > /shift\nRUN echo \"a<<b\" > /quoted\nENV C=trailing\\\\\nRUN echo next > /next\n",
    );
    let id = built(&store, &ctx);
    assert_eq!(run_in(&store, &id, "cat /shift /quoted /next; echo $C"), "1048576\na<<b\nnext\ntrailing\\\n");
}

#[test]
fn env_of_an_existing_variable_keeps_its_place() {
    if !need_root("env_of_an_existing_variable_keeps_its_place") {
        return;
    }
    let (work, store) = store_with_busybox();
    let ctx = build_context(work.path(), "env", "FROM busybox\nENV A=1 B=2\nENV PATH=/x:$PATH\nENV A=3\n");
    let id = built(&store, &ctx);
    let v: serde_json::Value = serde_json::from_str(&layers_ok(&store, &["inspect", "--raw", &id])).unwrap();
    let env: Vec<&str> =
        v[0]["Config"]["config"]["Env"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    assert_eq!(env, ["PATH=/x:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "A=3", "B=2"]);
}

#[test]
fn copy_into_an_existing_directory_keeps_its_mode_and_owner() {
    if !need_root("copy_into_an_existing_directory_keeps_its_mode_and_owner") {
        return;
    }
    let (work, store) = store_with_busybox();
    // A group-writable checkout, as many CI runners make them.
    let ctx = build_context(
        work.path(),
        "modes",
        "FROM busybox\nRUN mkdir -m 750 /app && chown 7:8 /app\nWORKDIR /app\nCOPY . .\nCOPY sub/ /new/\n",
    );
    fs::create_dir(ctx.join("sub")).unwrap();
    fs::write(ctx.join("sub/f"), "f\n").unwrap();
    fs::set_permissions(&ctx, fs::Permissions::from_mode(0o775)).unwrap();
    fs::set_permissions(ctx.join("sub"), fs::Permissions::from_mode(0o705)).unwrap();
    let id = built(&store, &ctx);
    // /app existed: it keeps 750 and 7:8; /new did not: it takes its source's mode;
    // a directory inside the copy takes its own source's mode.
    assert_eq!(run_in(&store, &id, "stat -c '%a %u:%g' /app /new /app/sub"), "750 7:8\n705 0:0\n705 0:0\n");
}

#[test]
fn copy_destinations_resolve_as_buildkit_resolves_them() {
    if !need_root("copy_destinations_resolve_as_buildkit_resolves_them") {
        return;
    }
    let (work, store) = store_with_busybox();
    let ctx = build_context(
        work.path(),
        "dest",
        "FROM busybox\n\
         RUN ln -s /nowhere /dangling && mkdir /real && ln -s /real /linkdir\n\
         COPY f /dangling\n\
         COPY f /linkdir/\n\
         COPY f /../up\n\
         COPY f /etc\n",
    );
    fs::write(ctx.join("f"), "f\n").unwrap();
    let id = built(&store, &ctx);
    // Through a dangling link to where it points; into a linked directory; `..` at
    // the root stays there; a file onto an existing directory goes inside it.
    let out = run_in(&store, &id, "readlink /dangling; cat /nowhere /real/f /up /etc/f");
    assert_eq!(out, "/nowhere\nf\nf\nf\nf\n");
}

#[test]
fn run_mounts_from_a_stage_build_it_and_see_its_files() {
    if !need_root("run_mounts_from_a_stage_build_it_and_see_its_files") {
        return;
    }
    let (work, store) = store_with_busybox();
    // Neither stage is named by FROM or COPY --from: the mounts alone make the build need them.
    let ctx = build_context(
        work.path(),
        "mount-from",
        "FROM busybox AS seed\n\
         RUN mkdir -p /data && echo seeded > /data/file\n\
         FROM busybox AS other\n\
         RUN echo other > /o && ln -s /o /link\n\
         FROM busybox\n\
         RUN --mount=type=cache,id=mount-from-test,target=/c,from=seed,source=/data cat /c/file > /from-cache\n\
         RUN --mount=type=bind,target=/b,from=other cat /b/o > /from-bind\n\
         RUN --mount=type=bind,target=/b,from=other,source=/link,rw cat /b > /through-link\n\
         RUN --mount=type=bind,target=/b,from=other,rw echo x > /b/new && cat /b/new > /rw\n\
         RUN --mount=type=bind,target=/img,from=busybox test -x /img/bin/busybox && echo image > /from-image\n\
         RUN --mount=type=tmpfs,target=/t,size=1MB sh -c 'dd if=/dev/zero of=/t/x bs=64k count=32 2>/dev/null; test $(wc -c < /t/x) -lt 1048577' && echo capped > /tmpfs\n",
    );
    let id = built(&store, &ctx);
    let out = run_in(&store, &id, "cat /from-cache /from-bind /through-link /rw /from-image /tmpfs");
    assert_eq!(out, "seeded\nother\nother\nx\nimage\ncapped\n");
    // The rw bind wrote to a throwaway view: the stage's image is unchanged.
    let other = layers(&store, &["build", "-q", "--target", "other", ctx.to_str().unwrap()]);
    assert!(other.status.success(), "{}", stderr(&other));
    let other_id = stdout(&other).trim().to_string();
    assert!(!run_in(&store, &other_id, "ls /").contains("new"));
}
