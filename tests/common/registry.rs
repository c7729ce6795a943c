//! Registries for the tests: the real CNCF distribution registry on loopback, proxies
//! that inject faults or redirect blobs, and a scripted fake for answers no real
//! registry gives.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::{free_port, repo, stderr, stdout, wait_for_listener};

/// A throwaway key and self-signed certificate (`DIR/NAME-key.pem`, `DIR/NAME-cert.pem`)
/// for `cn`, also valid as IP 127.0.0.1.
fn self_signed(dir: &Path, name: &str, cn: &str) -> (PathBuf, PathBuf) {
    let (key, cert) = (dir.join(format!("{name}-key.pem")), dir.join(format!("{name}-cert.pem")));
    let st = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", &format!("/CN={cn}")])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "openssl makes a key and certificate");
    (key, cert)
}

/// A key and certificate for 127.0.0.1 signed by a CA of its own (`tls-ca.pem` in `dir`):
/// trusting that CA makes the certificate valid, as a private registry's would be.
fn ca_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (ca_key, ca) = self_signed(dir, "tls-ca", "layers test CA");
    let (key, csr, cert, ext) =
        (dir.join("tls-key.pem"), dir.join("tls.csr"), dir.join("tls-cert.pem"), dir.join("tls.ext"));
    fs::write(&ext, "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").unwrap();
    let run = |args: &[&std::ffi::OsStr]| {
        let st = Command::new("openssl").args(args).stderr(Stdio::null()).status().unwrap();
        assert!(st.success(), "openssl {args:?}");
    };
    let s = |x: &str| std::ffi::OsString::from(x);
    run(&[
        &s("req"),
        &s("-newkey"),
        &s("rsa:2048"),
        &s("-nodes"),
        &s("-subj"),
        &s("/CN=127.0.0.1"),
        &s("-keyout"),
        key.as_os_str(),
        &s("-out"),
        csr.as_os_str(),
    ]);
    run(&[
        &s("x509"),
        &s("-req"),
        &s("-days"),
        &s("1"),
        &s("-in"),
        csr.as_os_str(),
        &s("-CA"),
        ca.as_os_str(),
        &s("-CAkey"),
        ca_key.as_os_str(),
        &s("-CAcreateserial"),
        &s("-extfile"),
        ext.as_os_str(),
        &s("-out"),
        cert.as_os_str(),
    ]);
    (key, cert)
}

/// A CNCF distribution registry (`docker-registry`) on a free loopback port with
/// its own storage, stopped on drop.
pub struct Registry {
    child: Child,
    /// The token issuer of a bearer-auth registry.
    issuer: Option<Child>,
    access_log: PathBuf,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        Self::start_with(None)
    }

    /// A registry that requires HTTP basic auth (htpasswd, bcrypt) for everything.
    pub fn start_with_basic_auth(user: &str, password: &str) -> Registry {
        Self::start_with(Some((user, password)))
    }

    /// A registry with token auth (Docker Hub's flow: 401 with a Bearer challenge,
    /// then a token from the realm), backed by tests/support/token_issuer.py, which
    /// hands tokens to anyone and logs each request to `token_log()`.
    pub fn start_with_token_auth() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let (key, cert) = self_signed(dir.path(), "token", "layers-test-token");
        let port = free_port();
        let issuer = Command::new("python3")
            .arg(repo().join("tests/support/token_issuer.py"))
            .arg(port.to_string())
            .args([&key, &cert, &dir.path().join("tokens.log")])
            .spawn()
            .unwrap();
        wait_for_listener(&format!("127.0.0.1:{port}"), 500, std::time::Duration::from_millis(10));
        let auth = format!(
            "auth:\n  token:\n    realm: http://127.0.0.1:{port}/token\n    service: layers-test\n    issuer: layers-test-issuer\n    rootcertbundle: {}\n",
            cert.display()
        );
        let mut r = Self::launch(dir, "", auth);
        r.issuer = Some(issuer);
        r
    }

    /// A registry speaking https with a certificate for 127.0.0.1 that no system root
    /// signed (its own CA did: [`Registry::tls_ca`]).
    pub fn start_with_tls() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let (key, cert) = ca_signed(dir.path());
        let tls = format!("  tls:\n    certificate: {}\n    key: {}\n", cert.display(), key.display());
        Self::launch(dir, &tls, String::new())
    }

    /// The CA that signed a TLS registry's certificate.
    pub fn tls_ca(&self) -> PathBuf {
        self._dir.path().join("tls-ca-cert.pem")
    }

    /// Requests the token issuer received (bearer-auth registries only).
    pub fn token_log(&self) -> String {
        fs::read_to_string(self._dir.path().join("tokens.log")).unwrap_or_default()
    }

    fn start_with(basic: Option<(&str, &str)>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let mut auth = String::new();
        if let Some((user, password)) = basic {
            let out =
                Command::new("htpasswd").args(["-Bbn", user, password]).output().expect("htpasswd (apache2-utils)");
            assert!(out.status.success());
            let file = dir.path().join("htpasswd");
            fs::write(&file, &out.stdout).unwrap();
            auth = format!("auth:\n  htpasswd:\n    realm: test\n    path: {}\n", file.display());
        }
        Self::launch(dir, "", auth)
    }

    /// Starts the registry; `http` is more of its `http:` section, `auth` its `auth:` section.
    fn launch(dir: tempfile::TempDir, http: &str, auth: String) -> Registry {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{http}{auth}",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let access_log = dir.path().join("access.log");
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(fs::File::create(&access_log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (Debian package docker-registry) runs");
        if wait_for_listener(&addr, 500, std::time::Duration::from_millis(10)) {
            return Registry { child, issuer: None, access_log, addr, _dir: dir };
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("docker-registry did not listen on {addr}");
    }

    /// Pushes `layout:tag` as `NAME` with skopeo (an independent client), passing
    /// `extra` (`--format v2s2`, `--all`, `--dest-compress-format zstd`, ...).
    pub fn push(&self, layout: &Path, tag: &str, name: &str, extra: &[&str]) {
        self.push_from(&format!("oci:{}:{tag}", layout.display()), name, extra)
    }

    /// How many times a client (not skopeo) downloaded this blob, from the access log.
    pub fn blob_downloads(&self, digest: &str) -> usize {
        let log = fs::read_to_string(&self.access_log).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains(&format!("/blobs/{digest} ")) && l.contains("\"GET ") && l.contains("layers/"))
            .count()
    }

    /// The requests layers made (`GET /v2/.../manifests/v1`), in order, from the access log.
    pub fn requests_from_layers(&self) -> Vec<String> {
        let log = fs::read_to_string(&self.access_log).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains("\" \"layers/"))
            .filter_map(|l| l.split('"').nth(1))
            .map(|r| r.trim_end_matches(" HTTP/1.1").to_string())
            .collect()
    }

    /// Uploads a skopeo `dir:` copy verbatim with curl (monolithic blob uploads, then
    /// the manifest), for layer encodings skopeo would otherwise recompress.
    pub fn upload_dir(&self, dir: &Path, name: &str, tag: &str) {
        let manifest = fs::read(dir.join("manifest.json")).unwrap();
        let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
        let mut blobs: Vec<String> =
            m["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_string()).collect();
        blobs.push(m["config"]["digest"].as_str().unwrap().to_string());
        for d in blobs {
            let file = dir.join(d.trim_start_matches("sha256:"));
            // Distribution wants two steps: open an upload session, then PUT the bytes with the digest.
            let out = Command::new("curl")
                .args(["-fsS", "-o", "/dev/null", "-D", "-", "-X", "POST"])
                .arg(format!("http://{}/v2/{name}/blobs/uploads/", self.addr))
                .output()
                .unwrap();
            assert!(out.status.success(), "start upload {d}: {}", stderr(&out));
            let headers = stdout(&out);
            let location = headers
                .lines()
                .find_map(|l| l.strip_prefix("Location: ").or_else(|| l.strip_prefix("location: ")))
                .expect("upload Location header")
                .trim()
                .to_string();
            let location = if location.starts_with('/') { format!("http://{}{location}", self.addr) } else { location };
            let sep = if location.contains('?') { '&' } else { '?' };
            let out = Command::new("curl")
                .args(["-fsS", "-X", "PUT", "-H", "Content-Type: application/octet-stream", "--data-binary"])
                .arg(format!("@{}", file.display()))
                .arg(format!("{location}{sep}digest={d}"))
                .output()
                .unwrap();
            assert!(out.status.success(), "upload {d}: {}", stderr(&out));
        }
        let media = m["mediaType"].as_str().unwrap_or("application/vnd.oci.image.manifest.v1+json").to_string();
        let out = Command::new("curl")
            .args(["-fsS", "-X", "PUT", "-H", &format!("Content-Type: {media}"), "--data-binary"])
            .arg(format!("@{}", dir.join("manifest.json").display()))
            .arg(format!("http://{}/v2/{name}/manifests/{tag}", self.addr))
            .output()
            .unwrap();
        assert!(out.status.success(), "put manifest: {}", stderr(&out));
    }

    /// Pushes any skopeo source (`dir:PATH`, `oci:PATH:TAG`) as `NAME`.
    pub fn push_from(&self, source: &str, name: &str, extra: &[&str]) {
        let out = Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .args(extra)
            .arg(source)
            .arg(format!("docker://{}/{name}", self.addr))
            .output()
            .unwrap();
        assert!(out.status.success(), "skopeo copy: {}", stderr(&out));
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(mut issuer) = self.issuer.take() {
            let _ = issuer.kill();
            let _ = issuer.wait();
        }
    }
}

/// What a `FaultProxy` does to the traffic it relays.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Close the first `times` connections that carry more than `bytes` from the registry.
    CutAfter { bytes: u64, times: usize },
    /// Answer the first `times` connections with this HTTP status instead of relaying,
    /// with `Retry-After: SECONDS` if given.
    Status { code: u16, times: usize, retry_after: Option<u32> },
    /// Stop relaying (but keep the connection open) after `bytes` from the registry,
    /// on the first `times` connections that carry that much.
    StallAfter { bytes: u64, times: usize },
    /// Flip one byte: the `pos`-th from the registry on the first connection that long.
    FlipAt { pos: u64 },
}

/// A loopback TCP proxy in front of a registry that injects one kind of fault.
pub struct FaultProxy {
    /// `127.0.0.1:PORT` to pull through.
    pub addr: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FaultProxy {
    pub fn start(target: &str, fault: Fault) -> FaultProxy {
        use std::io::{Read, Write};
        use std::net::{Shutdown, TcpListener, TcpStream};
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Arc;

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let (target, stop2) = (target.to_string(), stop.clone());
        let hits = Arc::new(AtomicUsize::new(0));
        let flipped = Arc::new(AtomicBool::new(false));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut client) = client else { continue };
                let (target, hits, flipped) = (target.clone(), hits.clone(), flipped.clone());
                std::thread::spawn(move || {
                    if let Fault::Status { code, times, retry_after } = fault {
                        if hits.fetch_add(1, Ordering::SeqCst) < times {
                            let mut head = Vec::new();
                            let mut b = [0u8; 1];
                            while !head.ends_with(b"\r\n\r\n") && client.read(&mut b).unwrap_or(0) == 1 {
                                head.push(b[0]);
                            }
                            let wait = retry_after.map(|s| format!("Retry-After: {s}\r\n")).unwrap_or_default();
                            let _ = write!(
                                client,
                                "HTTP/1.1 {code} Injected\r\n{wait}Content-Length: 0\r\nConnection: close\r\n\r\n"
                            );
                            return;
                        }
                    }
                    let Ok(mut upstream) = TcpStream::connect(&target) else { return };
                    let (mut c2, mut u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut c2, &mut u2);
                        let _ = u2.shutdown(Shutdown::Write);
                    });
                    let mut sent: u64 = 0;
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match upstream.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        match fault {
                            Fault::CutAfter { bytes, times }
                                if sent + n as u64 > bytes && hits.fetch_add(1, Ordering::SeqCst) < times =>
                            {
                                let keep = (bytes - sent) as usize;
                                let _ = client.write_all(&buf[..keep]);
                                let _ = client.shutdown(Shutdown::Both);
                                let _ = upstream.shutdown(Shutdown::Both);
                                return;
                            }
                            Fault::StallAfter { bytes, times }
                                if sent + n as u64 > bytes && hits.fetch_add(1, Ordering::SeqCst) < times =>
                            {
                                let keep = (bytes - sent) as usize;
                                let _ = client.write_all(&buf[..keep]);
                                // Hold both ends open until the client gives up on us.
                                let mut sink = [0u8; 1];
                                while matches!(client.read(&mut sink), Ok(n) if n > 0) {}
                                let _ = upstream.shutdown(Shutdown::Both);
                                return;
                            }
                            Fault::FlipAt { pos }
                                if (sent..sent + n as u64).contains(&pos) && !flipped.swap(true, Ordering::SeqCst) =>
                            {
                                buf[(pos - sent) as usize] ^= 0xff;
                            }
                            _ => {}
                        }
                        if client.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        sent += n as u64;
                    }
                    let _ = client.shutdown(Shutdown::Both);
                });
            }
        });
        FaultProxy { addr, stop }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(&self.addr);
    }
}

/// A loopback HTTP/1.1 proxy that sees each request's head: it keeps them, and can
/// answer blob GETs with a redirect to another origin, as registries backed by
/// object storage do. Bodyless requests only (a pull's GETs); one per upstream connection.
pub struct HttpProxy {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    heads: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl HttpProxy {
    /// Relays to `target`; with `redirect_blobs_to` (`http://host:port`), blob GETs get a 307 there.
    pub fn start(target: &str, redirect_blobs_to: Option<String>) -> HttpProxy {
        use std::io::{BufRead, BufReader, Write};
        use std::net::{TcpListener, TcpStream};
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (target, stop2, heads2) = (target.to_string(), stop.clone(), heads.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut client) = client else { continue };
                let (target, heads, redirect) = (target.clone(), heads2.clone(), redirect_blobs_to.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(client.try_clone().unwrap());
                    loop {
                        let mut lines = Vec::new();
                        loop {
                            let mut line = String::new();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            if line == "\r\n" {
                                break;
                            }
                            lines.push(line.trim_end().to_string());
                        }
                        heads.lock().unwrap().push(lines.join("\n"));
                        let path = lines[0].split(' ').nth(1).unwrap_or("/").to_string();
                        if let Some(to) = redirect
                            .as_ref()
                            .filter(|_| lines[0].starts_with("GET ") && path.contains("/blobs/sha256:"))
                        {
                            let _ = write!(
                                client,
                                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {to}{path}\r\nContent-Length: 0\r\n\r\n"
                            );
                            continue;
                        }
                        let Ok(mut upstream) = TcpStream::connect(&target) else { return };
                        let mut head: Vec<&String> =
                            lines.iter().filter(|l| !l.to_ascii_lowercase().starts_with("connection:")).collect();
                        let close = "Connection: close".to_string();
                        head.push(&close);
                        let text: String = head.iter().map(|l| format!("{l}\r\n")).collect::<String>() + "\r\n";
                        if upstream.write_all(text.as_bytes()).is_err() {
                            return;
                        }
                        let _ = std::io::copy(&mut upstream, &mut client);
                        let _ = client.shutdown(std::net::Shutdown::Both);
                        return;
                    }
                });
            }
        });
        HttpProxy { addr, heads, stop }
    }

    /// The request heads seen so far (request line and headers, newline-separated).
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

impl Drop for HttpProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(&self.addr);
    }
}

/// The manifest digest a registry serves for `reference`, as skopeo (not us) reads it.
pub fn registry_digest(reference: &str) -> String {
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", &format!("docker://{reference}")])
        .output()
        .expect("skopeo (Debian package skopeo)");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("skopeo inspect");
    v["Digest"].as_str().unwrap_or_default().to_string()
}

/// A loopback HTTP server answering each request with `respond(request line, stream)`.
pub fn fake_registry(respond: impl Fn(&str, &mut std::net::TcpStream) + Send + Sync + 'static) -> String {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let respond = std::sync::Arc::new(respond);
    std::thread::spawn(move || {
        for mut client in listener.incoming().flatten() {
            let respond = respond.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(client.try_clone().unwrap());
                let (mut first, mut line) = (String::new(), String::new());
                reader.read_line(&mut first).unwrap_or(0);
                while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                    line.clear();
                }
                respond(first.trim(), &mut client);
            });
        }
    });
    addr
}

pub fn reply(s: &mut std::net::TcpStream, body: &str) {
    use std::io::Write;
    let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
}
