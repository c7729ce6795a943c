//! Registry requests that survive a flaky network. Transient failures (connection
//! errors, 5xx, 429) are retried with exponential backoff, at most `MAX_TRIES`
//! times in a row. A blob cut off midway resumes with a Range request from the
//! last byte passed on; a registry that ignores Range sends the whole blob again
//! and the bytes already passed on are skipped. Every byte goes through the
//! consumer's hash exactly once, so the digest covers the whole blob either way.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{self, BoxStream, Stream, StreamExt};
use layers_store::Digest;

use crate::registry::{Repository, RequestError};

/// Where retry notices go: the caller's progress display (network code never prints).
pub type Notices = Arc<dyn Fn(&str) + Send + Sync>;

/// Attempts in a row before a request is given up.
pub const MAX_TRIES: u32 = 5;

/// Longest `Retry-After` we wait out; a registry asking for more gets this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// 200 ms, 400 ms, 800 ms... capped at 5 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200u64.saturating_mul(1 << attempt.min(5))).min(Duration::from_secs(5))
}

/// How long to wait before try number `attempt`: what the registry asked for, else our backoff.
fn wait_before(attempt: u32, e: &RequestError) -> Duration {
    e.retry_after().map(|d| d.min(MAX_RETRY_AFTER)).unwrap_or_else(|| backoff(attempt))
}

/// What a run of attempts has met so far: said once, when the operation ends.
struct Attempts {
    tries: u32,
    first: Option<String>,
    asked_to_wait: bool,
    silent: u32,
    started: std::time::Instant,
}

impl Attempts {
    fn new() -> Attempts {
        Attempts { tries: 0, first: None, asked_to_wait: false, silent: 0, started: std::time::Instant::now() }
    }

    /// Records a transient failure; the wait before the next attempt, or `None` when
    /// there is to be no next one.
    fn failed(&mut self, e: &RequestError, allowed: u32) -> Option<Duration> {
        self.first.get_or_insert_with(|| e.to_string());
        self.asked_to_wait |= e.retry_after().is_some();
        let silent = matches!(e, RequestError::NoResponse(_));
        self.silent += u32::from(silent);
        // A registry that did not answer twice will not the third time.
        let twice_silent = silent && self.silent >= 2;
        if !e.is_transient() || self.tries + 1 >= allowed || twice_silent {
            return None;
        }
        self.tries += 1;
        Some(wait_before(self.tries, e))
    }

    /// The one line for an operation that succeeded after failing.
    fn recovered(&self, what: &str) -> Option<String> {
        let first = self.first.as_ref()?;
        let asked = if self.asked_to_wait { ", waiting as the registry asked (Retry-After)" } else { "" };
        Some(format!("{what}: done after retrying {} times ({first}{asked})", self.tries))
    }

    /// The error of an operation that failed for good: the attempts counted in it.
    fn gave_up(&self, last: RequestError) -> RequestError {
        if self.tries == 0 {
            return last;
        }
        RequestError::GaveUp {
            last: Box::new(last),
            attempts: self.tries + 1,
            secs: self.started.elapsed().as_secs_f64(),
        }
    }
}

/// Runs `op` until it succeeds, fails for good, or has failed `tries_allowed` times.
/// Nothing is said per attempt: one line if it succeeded after failing, and a final
/// error that counts the attempts.
pub async fn retry<T, F, Fut>(what: &str, tries_allowed: u32, notices: &Notices, mut op: F) -> Result<T, RequestError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, RequestError>>,
{
    let mut attempts = Attempts::new();
    loop {
        match op().await {
            Ok(v) => {
                if let Some(line) = attempts.recovered(what) {
                    notices(&line);
                }
                return Ok(v);
            }
            Err(e) => match attempts.failed(&e, tries_allowed) {
                Some(wait) => tokio::time::sleep(wait).await,
                None => return Err(attempts.gave_up(e)),
            },
        }
    }
}

struct State {
    repo: Arc<Repository>,
    digest: Digest,
    size: u64,
    /// Bytes passed on so far.
    offset: u64,
    /// Bytes of the current response to drop (a full resend after a cut).
    skip: u64,
    /// Failed requests and cuts since bytes last arrived.
    attempts: Attempts,
    /// Wait before the next request.
    wait: Duration,
    current: Option<BoxStream<'static, Result<Bytes, io::Error>>>,
    done: bool,
    notices: Notices,
}

/// The blob `digest` of `size` bytes as a stream that resumes after dropped connections.
pub fn blob_stream(
    repo: Arc<Repository>,
    digest: Digest,
    size: u64,
    notices: Notices,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    let st = State {
        repo,
        digest,
        size,
        offset: 0,
        skip: 0,
        attempts: Attempts::new(),
        wait: Duration::ZERO,
        current: None,
        done: false,
        notices,
    };
    stream::unfold(st, |mut st| async move {
        loop {
            if st.done || st.offset >= st.size && st.current.is_none() && st.offset > 0 {
                return None;
            }
            if st.current.is_none() {
                if !st.wait.is_zero() {
                    tokio::time::sleep(std::mem::take(&mut st.wait)).await;
                }
                // We verify the digest ourselves, over the whole blob, whichever way it arrives.
                match st.repo.blob(&st.digest, st.offset).await {
                    Ok(body) => {
                        if let Some(line) = st.attempts.recovered("request") {
                            st.say(format_args!("{line}"));
                            st.attempts.first = None;
                        }
                        st.skip = if body.resumed { 0 } else { st.offset };
                        st.current = Some(body.stream);
                    }
                    Err(e) => match st.attempts.failed(&e, MAX_TRIES) {
                        Some(wait) => {
                            st.wait = wait;
                            continue;
                        }
                        None => {
                            st.done = true;
                            let e = st.attempts.gave_up(e);
                            return Some((Err(io::Error::other(format!("blob {}: {e}", st.digest))), st));
                        }
                    },
                }
            }
            let next = st.current.as_mut().map(|s| s.next());
            let item = match next {
                Some(fut) => fut.await,
                None => None,
            };
            match item {
                Some(Ok(mut b)) => {
                    if st.skip > 0 {
                        let n = st.skip.min(b.len() as u64) as usize;
                        st.skip -= n as u64;
                        b = b.slice(n..);
                        if b.is_empty() {
                            continue;
                        }
                    }
                    st.offset += b.len() as u64;
                    // More than the descriptor says is an error at once: an endless body
                    // would otherwise fill tmp/ up to the layer size limit.
                    if st.offset > st.size {
                        st.done = true;
                        let e = io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("blob {}: longer than its descriptor's {} bytes", st.digest, st.size),
                        );
                        return Some((Err(e), st));
                    }
                    st.attempts = Attempts::new();
                    return Some((Ok(b), st));
                }
                // A cut before the descriptor's size is a dropped connection too.
                Some(Err(_)) | None if st.offset < st.size && st.attempts.tries + 1 < MAX_TRIES => {
                    st.current = None;
                    st.attempts.tries += 1;
                    st.wait = backoff(st.attempts.tries);
                    st.say(format_args!(
                        "connection lost at byte {} of {}; resuming ({}/{})",
                        st.offset,
                        st.size,
                        st.attempts.tries,
                        MAX_TRIES - 1
                    ));
                }
                Some(Err(e)) => {
                    st.done = true;
                    return Some((Err(io::Error::new(e.kind(), format!("blob {}: {e}", st.digest))), st));
                }
                None => {
                    st.done = true;
                    if st.offset < st.size {
                        let e = io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("blob {}: ended at byte {} of {}", st.digest, st.offset, st.size),
                        );
                        return Some((Err(e), st));
                    }
                    return None;
                }
            }
        }
    })
}

impl State {
    fn say(&self, msg: std::fmt::Arguments<'_>) {
        // Named as the layer lines name it.
        (self.notices)(&format!("{}: {msg}", self.digest.short()));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(super::backoff(1).as_millis(), 400);
        assert!(super::backoff(2) > super::backoff(1));
        assert_eq!(super::backoff(30).as_secs(), 5);
    }
}
