//! A blob download as a stream of chunks whose sizes add up to what the manifest declares.
//!
//! The stream starts where the caller's partial file ends (a `Range` request) and says where
//! it really starts: a registry that answers 200 instead of 206 starts it over at byte 0. A
//! connection cut mid-way is resumed inside the stream, from the next byte, as the retry
//! policy allows; if that resumption is answered from byte 0, the bytes already handed out
//! are skipped. A registry that announces or sends more bytes than declared is refused at
//! once. The rate limit is applied to every chunk.

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, HeaderMap};

use super::retry::{Attempts, RetryReport};
use super::{Client, RegistryError};
use haul_oci::digest::Digest;
use haul_oci::reference::Reference;

/// An open blob download. See the module's documentation.
pub struct BlobStream<'a> {
    client: &'a Client,
    reference: &'a Reference,
    digest: &'a Digest,
    size: u64,
    /// The first byte this stream hands out.
    start: u64,
    /// The next byte it hands out.
    position: u64,
    body: Option<Body>,
    /// Failed attempts so far, across every request of this download.
    attempts: Attempts<'a>,
}

/// The response being read.
struct Body {
    response: reqwest::Response,
    /// Who serves it: the registry, or a mirror (for messages).
    source: String,
    /// Bytes at its beginning that were handed out already (a resumption answered from 0).
    skip: u64,
}

impl<'a> BlobStream<'a> {
    pub(super) async fn open(
        client: &'a Client,
        reference: &'a Reference,
        digest: &'a Digest,
        size: u64,
        offset: u64,
        on_retry: &'a RetryReport,
    ) -> Result<BlobStream<'a>, RegistryError> {
        let offset = if offset < size { offset } else { 0 };
        let mut stream = BlobStream {
            client,
            reference,
            digest,
            size,
            start: offset,
            position: offset,
            body: None,
            attempts: client.attempts(on_retry),
        };
        stream.connect(true).await?;
        Ok(stream)
    }

    /// Where this stream's bytes begin in the blob: the offset asked for, or 0 when the
    /// registry could not resume (the caller then starts its copy over).
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Who served the blob (for messages).
    pub fn source(&self) -> &str {
        self.body
            .as_ref()
            .map_or(self.reference.registry(), |b| &b.source)
    }

    /// The next chunk, or `None` once all `size` bytes have come.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, RegistryError> {
        loop {
            if self.position == self.size {
                return Ok(None);
            }
            if self.body.is_none() {
                match self.connect(false).await {
                    Ok(()) => {}
                    Err(error) => {
                        self.attempts.after(error).await?;
                        continue;
                    }
                }
            }
            let body = self.body.as_mut().expect("connected");
            let registry = body.source.clone();
            let failure = match body.response.chunk().await {
                Ok(Some(mut chunk)) => {
                    if body.skip > 0 {
                        let skipped = body.skip.min(chunk.len() as u64);
                        body.skip -= skipped;
                        chunk = chunk.slice(skipped as usize..);
                        if chunk.is_empty() {
                            continue;
                        }
                    }
                    // Never past the declared size: a registry that sends more is wrong.
                    if self.position + chunk.len() as u64 > self.size {
                        return Err(RegistryError::TooLong {
                            registry,
                            expected: self.size,
                        });
                    }
                    self.client.throttle(chunk.len()).await;
                    self.position += chunk.len() as u64;
                    return Ok(Some(chunk));
                }
                Ok(None) => RegistryError::Truncated {
                    registry,
                    received: self.position,
                    expected: self.size,
                },
                Err(source) => RegistryError::Transfer { registry, source },
            };
            self.body = None;
            self.attempts.after(failure).await?;
        }
    }

    /// Requests the blob from `position` on. Only the `opening` request may move where the
    /// stream starts (the caller checks [`start`](Self::start) once, before the first chunk);
    /// a later one that is answered from byte 0 skips what was handed out already.
    async fn connect(&mut self, opening: bool) -> Result<(), RegistryError> {
        let (response, source) = match self
            .client
            .open_blob(
                self.reference,
                self.digest,
                self.position,
                &mut self.attempts,
            )
            .await
        {
            // The partial copy is longer than what the registry has: start over.
            Err(RegistryError::Status { status, .. })
                if status == StatusCode::RANGE_NOT_SATISFIABLE && opening =>
            {
                self.start = 0;
                self.position = 0;
                self.client
                    .open_blob(self.reference, self.digest, 0, &mut self.attempts)
                    .await?
            }
            other => other?,
        };
        let resumed = self.position > 0
            && response.status() == StatusCode::PARTIAL_CONTENT
            && content_range_start(response.headers()) == Some(self.position);
        let mut skip = 0;
        if self.position > 0 && !resumed {
            if opening {
                // Nothing handed out yet: the stream simply starts at 0.
                self.start = 0;
                self.position = 0;
            } else {
                skip = self.position;
            }
        }
        // A body whose announced length differs from what the manifest declares can only
        // fail verification: say so now, without downloading it.
        let from = if resumed { self.position } else { 0 };
        if let Some(announced) = response.content_length()
            && announced != self.size - from
        {
            return Err(RegistryError::LengthMismatch {
                registry: source,
                declared: self.size,
                announced: announced.saturating_add(from),
            });
        }
        self.body = Some(Body {
            response,
            source,
            skip,
        });
        Ok(())
    }
}

/// The first byte of a `Content-Range: bytes START-END/TOTAL` header.
fn content_range_start(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get(CONTENT_RANGE)?.to_str().ok()?;
    let range = value.trim().strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}
