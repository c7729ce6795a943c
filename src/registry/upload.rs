//! Pushing to a repository, as the distribution API has it: `HEAD` a blob to learn
//! whether the registry has it, `POST` to start an upload (or to mount the blob from
//! another repository of the same registry), then one `PUT` with the whole blob or
//! `PATCH`es of chunks and a final `PUT`; the manifest last.

use std::io::{Seek, SeekFrom};
use std::path::Path;

use layers_store::Digest;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION};
use reqwest::StatusCode;
use tokio::io::AsyncReadExt;

use super::client::{header, read_limited, Repository, RequestError};

/// A request body of `len` bytes of `path` from `offset` on, streamed.
fn file_body(path: &Path, offset: u64, len: u64) -> Result<reqwest::Body, RequestError> {
    let mut f =
        std::fs::File::open(path).map_err(|e| RequestError::Invalid(format!("read {}: {e}", path.display())))?;
    f.seek(SeekFrom::Start(offset)).map_err(|e| RequestError::Invalid(format!("read {}: {e}", path.display())))?;
    let reader = tokio::fs::File::from_std(f).take(len);
    Ok(reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(reader, 128 << 10)))
}

impl Repository {
    /// Whether the registry has the blob.
    pub async fn has_blob(&self, digest: &Digest) -> Result<bool, RequestError> {
        let url = self.url(&format!("blobs/{digest}"));
        match self.send(|c| c.head(&url)).await {
            Ok(_) => Ok(true),
            Err(RequestError::Status { status: StatusCode::NOT_FOUND, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Starts an upload. With `mount` (a digest and another repository of this
    /// registry), asks for the blob to be mounted from there instead: `None` if it was.
    pub async fn start_upload(&self, mount: Option<(&Digest, &str)>) -> Result<Option<String>, RequestError> {
        let url = self.url("blobs/uploads/");
        let resp = self
            .send(|c| {
                let r = c.post(&url).header(CONTENT_LENGTH, 0);
                match mount {
                    Some((d, from)) => r.query(&[("mount", d.to_string()), ("from", from.to_string())]),
                    None => r,
                }
            })
            .await?;
        if mount.is_some() && resp.status() == StatusCode::CREATED {
            return Ok(None);
        }
        let location = header(resp.headers(), LOCATION.as_str())
            .ok_or_else(|| RequestError::Invalid(format!("{}: upload started without a Location", self.display())))?;
        Ok(Some(self.absolute(&location)))
    }

    /// Uploads the whole blob in one `PUT`.
    pub async fn put_blob(&self, location: &str, digest: &Digest, path: &Path, size: u64) -> Result<(), RequestError> {
        self.send(|c| {
            let body = file_body(path, 0, size).unwrap_or_else(|_| reqwest::Body::from(Vec::new()));
            c.put(location)
                .query(&[("digest", digest.to_string())])
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, size)
                .body(body)
        })
        .await?;
        Ok(())
    }

    /// Sends bytes `[offset, offset + len)` of the blob; returns where the next chunk goes.
    pub async fn patch_chunk(
        &self,
        location: &str,
        path: &Path,
        offset: u64,
        len: u64,
    ) -> Result<String, RequestError> {
        let resp = self
            .send(|c| {
                let body = file_body(path, offset, len).unwrap_or_else(|_| reqwest::Body::from(Vec::new()));
                c.patch(location)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_RANGE, format!("{offset}-{}", offset + len - 1))
                    .header(CONTENT_LENGTH, len)
                    .body(body)
            })
            .await?;
        let next = header(resp.headers(), LOCATION.as_str())
            .ok_or_else(|| RequestError::Invalid(format!("{}: chunk accepted without a Location", self.display())))?;
        Ok(self.absolute(&next))
    }

    /// Ends a chunked upload: the registry checks the digest.
    pub async fn finish_upload(&self, location: &str, digest: &Digest) -> Result<(), RequestError> {
        self.send(|c| c.put(location).query(&[("digest", digest.to_string())]).header(CONTENT_LENGTH, 0)).await?;
        Ok(())
    }

    /// PUTs a manifest under a tag; returns the digest the registry reports for it.
    pub async fn put_manifest(
        &self,
        tag: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Option<String>, RequestError> {
        let url = self.url(&format!("manifests/{tag}"));
        let resp = self.send(|c| c.put(&url).header(CONTENT_TYPE, media_type).body(bytes.to_vec())).await?;
        let claimed = header(resp.headers(), "docker-content-digest");
        let _ = read_limited(resp, 64 << 10).await;
        Ok(claimed)
    }
}
