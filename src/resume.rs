//! Registry requests that survive a flaky network. Transient failures (connection
//! errors, 5xx, 429) are retried with exponential backoff, at most `MAX_TRIES`
//! times in a row. A blob cut off midway resumes with a Range request from the
//! last byte passed on; a registry that ignores Range sends the whole blob again
//! and the bytes already passed on are skipped. Every byte goes through the
//! consumer's hash exactly once, so the digest covers the whole blob either way.

use std::future::Future;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{self, BoxStream, Stream, StreamExt};
use layers_store::Digest;
use oci_client::client::BlobResponse;
use oci_client::errors::OciDistributionError;
use oci_client::Client;

/// Attempts in a row before a request is given up.
pub const MAX_TRIES: u32 = 5;

/// 200 ms, 400 ms, 800 ms... capped at 5 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200u64.saturating_mul(1 << attempt.min(5))).min(Duration::from_secs(5))
}

/// Whether trying again may help.
pub fn is_transient(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::RequestError(_) | OciDistributionError::IoError(_) => true,
        OciDistributionError::ServerError { code, .. } => *code >= 500 || *code == 429,
        _ => false,
    }
}

/// Runs `op` until it succeeds, fails for good, or has failed `tries` times.
pub async fn retry<T, F, Fut>(what: &str, tries_allowed: u32, quiet: bool, mut op: F) -> Result<T, OciDistributionError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, OciDistributionError>>,
{
    let mut tries = 0;
    loop {
        match op().await {
            Err(e) if is_transient(&e) && tries + 1 < tries_allowed => {
                tries += 1;
                if !quiet {
                    eprintln!("{what}: {e}; retrying ({tries}/{})", tries_allowed - 1);
                }
                tokio::time::sleep(backoff(tries)).await;
            }
            other => return other,
        }
    }
}

struct State {
    client: Client,
    reference: oci_client::Reference,
    digest: Digest,
    size: u64,
    /// Bytes passed on so far.
    offset: u64,
    /// Bytes of the current response to drop (a full resend after a cut).
    skip: u64,
    tries: u32,
    current: Option<BoxStream<'static, Result<Bytes, io::Error>>>,
    done: bool,
    quiet: bool,
}

/// The blob `digest` of `size` bytes as a stream that resumes after dropped connections.
pub fn blob_stream(
    client: Client,
    reference: oci_client::Reference,
    digest: Digest,
    size: u64,
    quiet: bool,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    let st = State { client, reference, digest, size, offset: 0, skip: 0, tries: 0, current: None, done: false, quiet };
    stream::unfold(st, |mut st| async move {
        loop {
            if st.done || st.offset >= st.size && st.current.is_none() && st.offset > 0 {
                return None;
            }
            if st.current.is_none() {
                if st.tries > 0 {
                    tokio::time::sleep(backoff(st.tries)).await;
                }
                // Always a ranged request (bytes=N-): we verify the digest ourselves, over the whole blob.
                let r = st
                    .client
                    .pull_blob_stream_partial(&st.reference, st.digest.to_string().as_str(), st.offset, None)
                    .await;
                match r {
                    Ok(BlobResponse::Partial(s)) => {
                        st.current = Some(s.stream);
                        st.skip = 0;
                    }
                    Ok(BlobResponse::Full(s)) => {
                        st.current = Some(s.stream);
                        st.skip = st.offset;
                    }
                    Err(e) if is_transient(&e) && st.tries + 1 < MAX_TRIES => {
                        st.tries += 1;
                        st.say(format_args!("{e}; retrying ({}/{})", st.tries, MAX_TRIES - 1));
                        continue;
                    }
                    Err(e) => {
                        st.done = true;
                        return Some((Err(io::Error::other(format!("blob {}: {e}", st.digest))), st));
                    }
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
                    st.tries = 0;
                    return Some((Ok(b), st));
                }
                // A cut before the descriptor's size is a dropped connection too.
                Some(Err(_)) | None if st.offset < st.size && st.tries + 1 < MAX_TRIES => {
                    st.current = None;
                    st.tries += 1;
                    st.say(format_args!(
                        "connection lost at byte {} of {}; resuming ({}/{})",
                        st.offset,
                        st.size,
                        st.tries,
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
        if !self.quiet {
            // Named as the layer lines name it.
            eprintln!("{}: {msg}", self.digest.short());
        }
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
