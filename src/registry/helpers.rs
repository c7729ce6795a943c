//! Docker's credential helpers: `docker-credential-NAME get|store|erase`, named by
//! `credHelpers` (per registry) or `credsStore` (for all) in a config file. The
//! helper reads the server URL (or a JSON record for `store`) on stdin and answers
//! `{"ServerURL", "Username", "Secret"}` on stdout; "credentials not found" is an
//! answer, not a failure.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// A user name and password for one registry host.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.user)
    }
}

/// Most a helper may write: a credential is small.
const MAX_ANSWER: u64 = 1 << 16;
/// A helper that asks a cloud API (ecr-login) may take a while; not forever.
const TIMEOUT: Duration = Duration::from_secs(60);

/// The server URL a helper is asked about: Docker Hub by its historical name.
pub fn server_url(host: &str) -> String {
    if host == "docker.io" {
        "https://index.docker.io/v1/".to_string()
    } else {
        host.to_string()
    }
}

/// Runs `docker-credential-NAME VERB` with `input` on stdin: (exit status, stdout).
fn call(helper: &str, verb: &str, input: &[u8]) -> anyhow::Result<(bool, String)> {
    let program = format!("docker-credential-{helper}");
    if helper.is_empty() || !helper.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        bail!("credential helper name {helper:?} is not a plain name");
    }
    let mut child = Command::new(&program)
        .arg(verb)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => anyhow::anyhow!("credential helper {program}: not found in PATH"),
            _ => anyhow::Error::new(e).context(format!("run credential helper {program}")),
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that does not read its input is its business; its answer tells.
        let _ = stdin.write_all(input);
    }
    let mut out = Vec::new();
    let reader = child.stdout.take().map(|o| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = o.take(MAX_ANSWER).read_to_end(&mut buf);
            buf
        })
    });
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().with_context(|| format!("wait for {program}"))? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("credential helper {program} {verb}: no answer within {}s", TIMEOUT.as_secs());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if let Some(r) = reader {
        out = r.join().unwrap_or_default();
    }
    let mut err = String::new();
    if let Some(e) = child.stderr.take() {
        let _ = e.take(MAX_ANSWER).read_to_string(&mut err);
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    if !status.success() && text.trim().is_empty() {
        return Ok((false, err));
    }
    Ok((status.success(), text))
}

/// `get`: the credentials the helper has for `host`, or `None`.
pub fn get(helper: &str, host: &str) -> anyhow::Result<Option<Credentials>> {
    let (ok, out) = call(helper, "get", server_url(host).as_bytes())?;
    if !ok {
        if out.to_ascii_lowercase().contains("credentials not found") {
            return Ok(None);
        }
        bail!("credential helper docker-credential-{helper} get {host}: {}", first_line(&out));
    }
    let v: serde_json::Value = serde_json::from_str(&out)
        .with_context(|| format!("credential helper docker-credential-{helper} get {host}: not JSON"))?;
    let user = v["Username"].as_str().unwrap_or_default().to_string();
    let secret = v["Secret"].as_str().unwrap_or_default().to_string();
    if secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials { user, password: secret }))
}

/// `store`: hands the helper `creds` for `host`.
pub fn store(helper: &str, host: &str, creds: &Credentials) -> anyhow::Result<()> {
    let record = serde_json::json!({"ServerURL": server_url(host), "Username": creds.user, "Secret": creds.password});
    let (ok, out) = call(helper, "store", record.to_string().as_bytes())?;
    if !ok {
        bail!("credential helper docker-credential-{helper} store {host}: {}", first_line(&out));
    }
    Ok(())
}

/// `erase`: the helper forgets `host`; whether it had anything.
pub fn erase(helper: &str, host: &str) -> anyhow::Result<bool> {
    let (ok, out) = call(helper, "erase", server_url(host).as_bytes())?;
    if !ok {
        if out.to_ascii_lowercase().contains("credentials not found") {
            return Ok(false);
        }
        bail!("credential helper docker-credential-{helper} erase {host}: {}", first_line(&out));
    }
    Ok(true)
}

/// What a helper said, as one short line (a helper may print megabytes).
fn first_line(s: &str) -> String {
    let line = s.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("failed");
    match line.char_indices().nth(200) {
        Some((i, _)) => format!("{}… ({} bytes in all)", &line[..i], s.len()),
        None => line.to_string(),
    }
}
