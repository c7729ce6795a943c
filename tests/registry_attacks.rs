//! Registries that attack or misbehave: trickling, endless or oversized answers,
//! manifests that name more than a mount can hold, lying digests; each refused in
//! one line, within its bound, with nothing left in the store.

// Tests make and inspect their fixtures by path (clippy.toml bans that in the code under test).
#![allow(clippy::disallowed_methods)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// A manifest with `layers` layer descriptors of `size` bytes each, and its config.
fn manifest_json(layers: usize, size: u64) -> (String, String) {
    let zero = |c: char| format!("sha256:{}", c.to_string().repeat(64));
    let config = serde_json::json!({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": vec![zero('d'); layers]}})
    .to_string();
    let layer = serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
        "digest": zero('b'), "size": size});
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": layers_store::Digest::of(config.as_bytes()).to_string(), "size": config.len()},
        "layers": vec![layer; layers]})
    .to_string();
    (manifest, config)
}

/// `layers pull` against `addr`; must fail within `secs` with `want` in its one-line error.
fn pull_refused(store: &Path, addr: &str, env: &[(&str, &str)], extra: &[&str], want: &str, secs: u64) {
    let started = std::time::Instant::now();
    let mut cmd = layers_cmd();
    cmd.arg("--root").arg(store).args(extra).args(["pull", &format!("{addr}/x/y:v1")]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    // A pull that never ends fails the test instead of hanging it.
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > std::time::Duration::from_secs(secs + 30) {
            let _ = child.kill();
            panic!("pull from {addr} still running after {}s", secs + 30);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let last = stderr(&out).trim().lines().last().unwrap_or_default().to_string();
    assert!(last.contains(want), "{}", stderr(&out));
    assert!(took < std::time::Duration::from_secs(secs), "took {took:?}: {}", stderr(&out));
    assert_eq!(layers_ok(store, &["images", "-a", "-q"]), "");
}

#[test]
fn registry_trickling_a_byte_a_second_is_given_up() {
    use std::io::Write;
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let env = [("LAYERS_STALL_TIMEOUT", "1")];
    // A body trickled a byte a second: never silent for a whole second, far below 1 KiB/s.
    let body = fake_registry(|_, s| {
        let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: 4000000\r\n\r\n");
        while s.write_all(b" ").is_ok() {
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    });
    pull_refused(&store, &body, &env, &[], "transfer too slow", 40);
    // Headers trickled the same way.
    let head = fake_registry(|_, s| {
        for b in b"HTTP/1.1 200 OK\r\nX-Slow: ".iter().chain([b'a'; 10_000].iter()) {
            if s.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    });
    // Cut by our deadline for headers or by the read timeout, whichever fires first.
    pull_refused(&store, &head, &env, &[], "fetch manifest", 40);
}

#[test]
fn endless_layer_blob_stops_being_read_once_the_decoder_fails() {
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    // A gzip stream of 64 MiB of zeros (made by GNU gzip), then bytes without end.
    let zeros = Command::new("sh").args(["-c", "head -c 67108864 /dev/zero | gzip -c"]).output().unwrap().stdout;
    let sent = std::sync::Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let (manifest, config) = manifest_json(1, 1_000_000_000_000_000);
    let addr = fake_registry(move |req, s| {
        if req.contains("/manifests/") {
            return reply(s, &manifest);
        }
        if req.contains(&layers_store::Digest::of(config.as_bytes()).hex()) {
            return reply(s, &config);
        }
        let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: 1000000000000000\r\n\r\n");
        let _ = s.write_all(&zeros);
        let junk = vec![7u8; 1 << 16];
        while s.write_all(&junk).is_ok() {
            counter.fetch_add(junk.len() as u64, Ordering::SeqCst);
        }
    });
    let extra = ["--max-layer-size", "1048576"];
    pull_refused(&store, &addr, &[], &extra, "uncompressed size exceeds the limit of 1048576 bytes", 30);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let total = sent.load(Ordering::SeqCst);
    assert!(total < 64 << 20, "{total} bytes read after the decoder failed");
}

#[test]
fn manifest_with_more_layers_than_mount_is_refused_before_any_download() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let blobs = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = blobs.clone();
    let (manifest, _) = manifest_json(500, 10);
    let addr = fake_registry(move |req, s| {
        if req.contains("/blobs/") {
            counter.fetch_add(1, Ordering::SeqCst);
        }
        reply(s, &manifest)
    });
    pull_refused(&store, &addr, &[], &[], "the image has 500 layers; overlayfs mounts at most 499", 20);
    assert_eq!(blobs.load(Ordering::SeqCst), 0, "blobs were requested");
}

#[test]
fn open_files_of_a_pull_do_not_grow_with_its_layers() {
    if !need_root("open_files_of_a_pull_do_not_grow_with_its_layers") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("deep");
    deep_layout(&layout, 450);
    let reg = Registry::start();
    reg.push(&layout, "deep", "many/layers:v1", &[]);
    let store = work.path().join("store");
    // 450 layers under 256 open files: claims and commit locks must not each hold one per layer.
    let out = Command::new("prlimit")
        .arg("--nofile=256")
        .env(NO_DEFAULT_NETWORK.0, NO_DEFAULT_NETWORK.1)
        .arg(layers_bin())
        .arg("--root")
        .arg(&store)
        .args(["pull", "-q", &format!("{}/many/layers:v1", reg.addr)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let m = PathBuf::from(layers_ok(&store, &["mount", &format!("{}/many/layers:v1", reg.addr)]));
    let _unmount = Mounted(m.clone());
    assert_eq!(fs::read_dir(m.join("l")).unwrap().count(), 450);
}

/// A stand-in registry that answers every request with `respond(stream)` after reading
/// the request head: for answers the real registry never gives.
fn fake_registry_any(respond: fn(&mut std::net::TcpStream)) -> String {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for mut client in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(client.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                    line.clear();
                }
                respond(&mut client);
            });
        }
    });
    addr
}

#[test]
fn oversized_and_misdigested_manifests_are_refused() {
    use std::io::Write;
    // Each sends 8 MiB at most; the client must stop at 4 MiB (or before, on Content-Length).
    fn declared(s: &mut std::net::TcpStream) {
        let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", 8 << 20);
        let _ = s.write_all(&vec![b' '; 8 << 20]);
    }
    fn chunked(s: &mut std::net::TcpStream) {
        let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
        for _ in 0..128 {
            if write!(s, "10000\r\n{}\r\n", " ".repeat(0x10000)).is_err() {
                return;
            }
        }
        let _ = write!(s, "0\r\n\r\n");
    }
    fn misdigested(s: &mut std::net::TcpStream) {
        let body = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#;
        let claimed = format!("sha256:{}", "0".repeat(64));
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nDocker-Content-Digest: {claimed}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
    }
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    for (respond, says) in [
        (declared as fn(&mut std::net::TcpStream), "is over the 4194304 byte limit"),
        (chunked, "more than the 4194304 byte limit"),
        (misdigested, "the registry says sha256:000"),
    ] {
        let addr = fake_registry_any(respond);
        let out = layers(&store, &["pull", &format!("{addr}/x/y:v1")]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(err.lines().count() == 1 && err.contains(says) && err.contains(&addr), "{err}");
        assert!(stdout(&layers(&store, &["images", "-q"])).trim().is_empty());
    }
}

/// Issue 26: a registry that sends a layer blob longer than its descriptor (here,
/// without end) filled tmp/ up to the layer size limit (64 GiB; on a tmpfs store,
/// memory). The pull stops at the first byte past the declared size, says so, and
/// leaves nothing staged.
#[test]
fn a_blob_longer_than_its_descriptor_stops_the_pull_at_once() {
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    if !need_root("a_blob_longer_than_its_descriptor_stops_the_pull_at_once") {
        return;
    }
    let layer = format!("sha256:{}", "ab".repeat(32));
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["sha256:{}"]}}}}"#,
        "cd".repeat(32)
    );
    let config_digest = layers_store::Digest::of(config.as_bytes()).to_string();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer}","size":1000}}]}}"#,
        config.len()
    );
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let addr = fake_registry(move |request, s| {
        let header = |s: &mut std::net::TcpStream, media: &str, body: &str| {
            let _ =
                write!(s, "HTTP/1.1 200 OK\r\nContent-Type: {media}\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        };
        if request.contains("/manifests/") {
            header(s, "application/vnd.oci.image.manifest.v1+json", &manifest);
        } else if request.contains(&config_digest) {
            header(s, "application/octet-stream", &config);
        } else if request.contains(&layer) {
            // An endless body, in chunks, until the client hangs up (bounded here at 1 GiB).
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
            );
            let chunk = vec![0x1fu8; 64 << 10];
            for _ in 0..(1 << 14) {
                if write!(s, "{:x}\r\n", chunk.len())
                    .and_then(|_| s.write_all(&chunk))
                    .and_then(|_| s.write_all(b"\r\n"))
                    .is_err()
                {
                    return;
                }
                counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
        } else {
            header(s, "application/json", "{}");
        }
    });
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let out = layers(&store, &["pull", &format!("{addr}/x/y:v1")]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.lines().last().unwrap_or_default().contains("longer than its descriptor's 1000 bytes"), "{err}");
    std::thread::sleep(std::time::Duration::from_millis(200));
    // What the server got out before the client hung up: socket buffers, not gigabytes.
    assert!(sent.load(Ordering::Relaxed) < 64 << 20, "{} bytes sent", sent.load(Ordering::Relaxed));
    assert_eq!(fs::read_dir(store.join("tmp")).unwrap().count(), 0);
    assert!(stdout(&layers(&store, &["images", "-q"])).trim().is_empty());
}
