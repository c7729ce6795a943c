//! One repository on one registry endpoint, over the distribution HTTP API.
//!
//! Authentication is lazy, as in containerd: a request goes out with whatever
//! authorization we already hold; a 401 names the scheme (Bearer realm, service and
//! scope, or Basic), we answer it once and send again. A registry that needs no auth
//! so costs exactly one request per manifest or blob, with no `/v2/` probe first.
//! Redirects (blob storage) are followed by reqwest, which drops `Authorization`
//! when the host changes.
//!
//! This replaces `oci-client` 0.18, which probes `/v2/` before every request to a
//! registry that needs no auth (it caches tokens only), reads a manifest whole before
//! any size check, and drops `Retry-After` from the errors it returns.

use std::io;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt, TryStreamExt};
use layers_store::Digest;
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_RANGE, RANGE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use reqwest::{RequestBuilder, Response, StatusCode};

use super::challenge::Challenge;
use crate::registry::credentials::Credentials;

/// Largest token response read.
const MAX_TOKEN: u64 = 1 << 20;

/// Why a registry request failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The connection failed, timed out or broke off midway.
    #[error("{0}")]
    Connection(String),
    /// The registry's certificate was refused: retrying cannot help.
    #[error("{0} (`--tls-verify=false` accepts a self-signed certificate)")]
    Certificate(String),
    /// The registry answered with an error status.
    #[error("{status}{detail}")]
    Status { status: StatusCode, detail: String, retry_after: Option<Duration> },
    /// We have no credentials the registry accepts.
    #[error("unauthorized: {}", if *.had_credentials { "wrong user name or password".to_string() } else { format!("log in with `layers login {}`", .host) })]
    Unauthorized { host: String, had_credentials: bool },
    /// The answer is unusable: oversized, malformed, not what was asked for.
    #[error("{0}")]
    Invalid(String),
    /// Nothing came back within the stall window: a connection that never completes,
    /// or a listener that never answers. Worth one more try, not five.
    #[error("{0}")]
    NoResponse(String),
    /// A blob to push that the registry lacks, could not mount, and the store does not
    /// hold either (a remote image's layer): fetch it first.
    #[error("blob {0} is in neither the registry nor the store")]
    NotHere(layers_store::Digest),
    /// A transient failure that went on through every attempt.
    #[error("{last} (gave up after {attempts} attempts in {secs:.1}s)")]
    GaveUp { last: Box<RequestError>, attempts: u32, secs: f64 },
}

impl RequestError {
    /// Whether trying again may help: connection trouble, 5xx, 429, 408.
    pub fn is_transient(&self) -> bool {
        match self {
            RequestError::Connection(_) | RequestError::NoResponse(_) => true,
            RequestError::Status { status, .. } => {
                status.is_server_error()
                    || *status == StatusCode::TOO_MANY_REQUESTS
                    || *status == StatusCode::REQUEST_TIMEOUT
            }
            _ => false,
        }
    }

    /// How long the registry asked us to wait (`Retry-After` in seconds).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RequestError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    fn connection(e: reqwest::Error) -> RequestError {
        if is_tls_failure(&e) {
            return RequestError::Certificate(chain(&e));
        }
        // reqwest's chain repeats the URL and its layers ("client error (Connect): tcp
        // connect error: ..."): a refused or silent connection is said in a few words.
        let at = e.url().map(|url| {
            let host = url.host_str().unwrap_or_default();
            url.port_or_known_default().map(|p| format!("{host}:{p}")).unwrap_or(host.to_string())
        });
        match (e.is_connect(), e.is_timeout(), at) {
            (true, true, Some(at)) => {
                let window = super::connect_timeout().as_secs_f64();
                RequestError::NoResponse(format!("connect to {at}: no answer within {window:.0}s"))
            }
            (true, false, Some(at)) => RequestError::Connection(format!("connect to {at}: {}", innermost(&e))),
            (false, true, Some(at)) => {
                let window = super::stall_timeout().as_secs_f64();
                RequestError::NoResponse(format!("{at}: no response within {window:.0}s"))
            }
            _ => RequestError::Connection(chain(&e)),
        }
    }
}

/// An error and its causes on one line (reqwest's own message is only the outermost).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// The deepest cause's message (the OS error under a connect failure).
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(c) = cur.source() {
        cur = c;
    }
    cur.to_string()
}

/// Whether rustls refused the connection. io errors nest, and hide their inner
/// error from `source()`: look through `get_ref()` too.
fn is_tls_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    if e.is::<rustls::Error>() {
        return true;
    }
    let inner = e.downcast_ref::<io::Error>().and_then(|io| io.get_ref());
    inner.is_some_and(|i| is_tls_failure(i)) || e.source().is_some_and(is_tls_failure)
}

/// A blob body from some offset on.
pub struct BlobBody {
    /// Whether the registry honoured the Range request (else the body starts at 0).
    pub resumed: bool,
    pub stream: BoxStream<'static, io::Result<Bytes>>,
}

/// One repository (`library/python`) on one endpoint (a registry or its mirror).
pub struct Repository {
    http: reqwest::Client,
    /// `http://127.0.0.1:5000`, `https://registry-1.docker.io`.
    base: String,
    /// `host[:port]` as configured, for messages and `layers login` hints.
    host: String,
    name: String,
    creds: Option<Credentials>,
    /// The `Authorization` value to send, once a challenge asked for one.
    authorization: Mutex<Option<HeaderValue>>,
    /// Scopes a token must also carry: pull on the repositories a push mounts blobs from.
    extra_scopes: Vec<String>,
    /// Held while a challenge is answered, so parallel requests refused at once fetch
    /// one token between them, not one each.
    answering: tokio::sync::Mutex<()>,
}

impl Repository {
    /// A repository on `host`; `creds` are that host's own, never another's.
    pub fn new(
        host: &str,
        plain_http: bool,
        tls_verify: bool,
        name: &str,
        creds: Option<Credentials>,
    ) -> Result<Repository, RequestError> {
        let tls = super::tls::client_config(tls_verify).map_err(|e| RequestError::Certificate(e.to_string()))?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("layers/", env!("CARGO_PKG_VERSION")))
            .tls_backend_preconfigured(tls)
            .connect_timeout(super::connect_timeout())
            // A stalled transfer is a dropped connection: retried, and resumed for blobs.
            .read_timeout(super::stall_timeout())
            .build()
            .map_err(RequestError::connection)?;
        let scheme = if plain_http { "http" } else { "https" };
        // Docker Hub's API lives on another host than its name.
        let api = if host == "docker.io" { "registry-1.docker.io" } else { host };
        Ok(Repository {
            http,
            base: format!("{scheme}://{api}"),
            host: host.to_string(),
            name: name.to_string(),
            creds,
            authorization: Mutex::new(None),
            extra_scopes: Vec::new(),
            answering: tokio::sync::Mutex::new(()),
        })
    }

    /// Tokens will also ask to pull from these repositories of the same registry, as a
    /// cross-repository mount needs (the registry's challenge names only this one).
    pub fn also_pulling_from(mut self, repositories: &[String]) -> Repository {
        self.extra_scopes = repositories.iter().map(|r| format!("repository:{r}:pull")).collect();
        self
    }

    /// `host[:port]/name`, for messages.
    pub fn display(&self) -> String {
        format!("{}/{}", self.host, self.name)
    }

    /// GETs a manifest by tag or digest, reading at most `limit` bytes.
    /// Returns the body and the digest the registry claims for it, if any.
    pub async fn manifest(
        &self,
        reference: &str,
        accept: &[&str],
        limit: u64,
    ) -> Result<(Vec<u8>, Option<String>), RequestError> {
        let url = format!("{}/v2/{}/manifests/{reference}", self.base, self.name);
        let accept = accept.join(", ");
        let resp = self.send(|c| c.get(&url).header(ACCEPT, &accept)).await?;
        let claimed = header(resp.headers(), "docker-content-digest");
        let body = read_limited(resp, limit).await?;
        Ok((body, claimed))
    }

    /// GETs a blob from byte `offset` on (a Range request when `offset > 0`).
    pub async fn blob(&self, digest: &Digest, offset: u64) -> Result<BlobBody, RequestError> {
        let url = format!("{}/v2/{}/blobs/{digest}", self.base, self.name);
        let resp = self
            .send(|c| {
                let r = c.get(&url);
                if offset > 0 {
                    r.header(RANGE, format!("bytes={offset}-"))
                } else {
                    r
                }
            })
            .await?;
        let resumed = resp.status() == StatusCode::PARTIAL_CONTENT;
        if resumed {
            let range = header(resp.headers(), CONTENT_RANGE.as_str()).unwrap_or_default();
            if !range.starts_with(&format!("bytes {offset}-")) {
                return Err(RequestError::Invalid(format!(
                    "blob {digest}: asked for bytes from {offset}, got range {range:?}"
                )));
            }
        }
        let mut pace = super::rate::RateGuard::new();
        let stream = resp
            .bytes_stream()
            .map_err(|e| io::Error::other(chain(&e)))
            .and_then(move |b| std::future::ready(pace.check(b.len()).map(|()| b).map_err(io::Error::other)))
            .boxed();
        Ok(BlobBody { resumed, stream })
    }

    /// Checks that the registry accepts our credentials (for `layers login`).
    pub async fn check_login(&self) -> Result<(), RequestError> {
        let url = format!("{}/v2/", self.base);
        self.send(|c| c.get(&url)).await.map(drop)
    }

    /// The URL of `path` (`blobs/…`, `manifests/…`) in this repository.
    pub(super) fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base, self.name)
    }

    /// An upload `Location`, which registries may give relative to themselves.
    pub(super) fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else {
            format!("{}/{}", self.base, location.trim_start_matches('/'))
        }
    }

    /// Sends a request with our authorization; answers one 401 challenge and sends it again.
    pub(super) async fn send(
        &self,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, RequestError> {
        let mut answered = false;
        let mut borrowed = 0;
        loop {
            let mut req = build(&self.http);
            let sent = self.current_authorization();
            if let Some(a) = &sent {
                req = req.header(AUTHORIZATION, a.clone());
            }
            let req = req.build().map_err(RequestError::connection)?;
            // Headers trickled a byte at a time would pass the read timeout, so a request
            // without a body must be answered within one window (an upload takes its time).
            let window = super::stall_timeout();
            let resp = if req.body().is_none_or(|b| b.as_bytes().is_some_and(<[u8]>::is_empty)) {
                tokio::time::timeout(window, self.http.execute(req))
                    .await
                    .map_err(|_| RequestError::NoResponse(format!("no response within {:.0}s", window.as_secs_f64())))?
            } else {
                self.http.execute(req).await
            }
            .map_err(RequestError::connection)?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && !answered {
                let values = resp.headers().get_all(WWW_AUTHENTICATE).iter().filter_map(|v| v.to_str().ok());
                let Some(challenge) = Challenge::pick(values) else {
                    return Err(self.unauthorized());
                };
                let _answering = self.answering.lock().await;
                // Another request may have answered while this one waited: try its answer
                // first (a few times: others' answers may be for other scopes).
                if self.current_authorization() != sent && borrowed < 3 {
                    borrowed += 1;
                    continue;
                }
                let answer = self.answer(&challenge).await?;
                if let Ok(mut a) = self.authorization.lock() {
                    *a = Some(answer);
                }
                answered = true;
                continue;
            }
            if status == StatusCode::UNAUTHORIZED {
                return Err(self.unauthorized());
            }
            if !status.is_success() {
                return Err(status_error(resp).await);
            }
            return Ok(resp);
        }
    }

    fn current_authorization(&self) -> Option<HeaderValue> {
        self.authorization.lock().map(|a| a.clone()).unwrap_or_default()
    }

    fn unauthorized(&self) -> RequestError {
        RequestError::Unauthorized { host: self.host.clone(), had_credentials: self.creds.is_some() }
    }

    /// The `Authorization` value that answers `challenge`.
    async fn answer(&self, challenge: &Challenge) -> Result<HeaderValue, RequestError> {
        match challenge {
            Challenge::Basic => match &self.creds {
                Some(c) => Ok(basic(c)),
                None => Err(self.unauthorized()),
            },
            Challenge::Bearer { realm, service, scope } => {
                let scope = scope.clone().unwrap_or_else(|| format!("repository:{}:pull", self.name));
                // A challenge may name several scopes (a mount's source and target), space
                // separated; token servers want each as its own parameter, as Docker sends them.
                let mut query: Vec<(&str, &str)> = Vec::new();
                for s in scope.split_whitespace().chain(self.extra_scopes.iter().map(String::as_str)) {
                    if !query.contains(&("scope", s)) {
                        query.push(("scope", s));
                    }
                }
                if let Some(s) = service {
                    query.insert(0, ("service", s.as_str()));
                }
                // The realm is where this registry sends us for tokens: its own credentials may go there.
                let mut req = self.http.get(realm).query(&query);
                if let Some(c) = &self.creds {
                    req = req.header(AUTHORIZATION, basic(c));
                }
                let resp =
                    req.send().await.map_err(|e| RequestError::Connection(format!("token {realm}: {}", chain(&e))))?;
                if resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::FORBIDDEN {
                    return Err(self.unauthorized());
                }
                if !resp.status().is_success() {
                    return Err(status_error(resp).await);
                }
                #[derive(serde::Deserialize)]
                struct Token {
                    token: Option<String>,
                    access_token: Option<String>,
                }
                let body = read_limited(resp, MAX_TOKEN).await?;
                let t: Token = serde_json::from_slice(&body)
                    .map_err(|e| RequestError::Invalid(format!("token from {realm}: {e}")))?;
                let token = t.token.or(t.access_token).filter(|t| !t.is_empty());
                let token = token
                    .ok_or_else(|| RequestError::Invalid(format!("token from {realm}: no token in the answer")))?;
                HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| RequestError::Invalid(format!("token from {realm}: not a valid header value")))
            }
        }
    }
}

fn basic(c: &Credentials) -> HeaderValue {
    let raw = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.user, c.password));
    let mut v = HeaderValue::from_str(&format!("Basic {raw}")).unwrap_or_else(|_| HeaderValue::from_static(""));
    v.set_sensitive(true);
    v
}

pub(super) fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// The error for a non-success answer: the status, the registry's own error codes
/// (`MANIFEST_UNKNOWN: manifest unknown`) and `Retry-After`.
async fn status_error(resp: Response) -> RequestError {
    let status = resp.status();
    let retry_after = header(resp.headers(), RETRY_AFTER.as_str())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = read_limited(resp, 64 << 10).await.unwrap_or_default();
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        code: Option<String>,
        message: Option<String>,
    }
    let detail = match serde_json::from_slice::<Errors>(&body) {
        Ok(e) => e
            .errors
            .iter()
            .map(|e| match (&e.code, &e.message) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (c, m) => c.clone().or(m.clone()).unwrap_or_default(),
            })
            .filter(|s| !s.is_empty())
            .map(|s| format!(" ({s})"))
            .collect::<String>(),
        Err(_) => String::new(),
    };
    RequestError::Status { status, detail, retry_after }
}

/// The whole body, refusing more than `limit` bytes before reading them all.
pub(super) async fn read_limited(resp: Response, limit: u64) -> Result<Vec<u8>, RequestError> {
    if let Some(n) = resp.content_length().filter(|n| *n > limit) {
        return Err(RequestError::Invalid(format!("{n} bytes is over the {limit} byte limit")));
    }
    let mut body = Vec::new();
    let mut pace = super::rate::RateGuard::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(RequestError::connection)?;
        pace.check(chunk.len()).map_err(RequestError::Connection)?;
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(RequestError::Invalid(format!("more than the {limit} byte limit")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
