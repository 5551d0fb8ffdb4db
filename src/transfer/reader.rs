//! Cuts a source stream into chunks of exact sizes, computing CRC32C as bytes pass, and
//! re-opens the stream where it broke when the connection fails mid-body.
//!
//! A re-open is a ranged read pinned to the version (or ETag) the first read returned, so the
//! bytes after the break come from the same object as the bytes before it, or the read fails
//! with `SourceChanged` and nothing torn is ever uploaded.

use crate::domain::error::{Error, ErrorKind, Result};
use crate::domain::model::{ObjectRef, SourceMeta};
use crate::ports::{ByteStream, ObjectSource, ReadPin, SourceRead};
use crate::retry::RetryPolicy;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

/// Cuts a source stream into exact chunks, CRC32C computed as bytes pass, and re-opens a
/// broken stream at the byte it broke, pinned to the version or ETag first read.
pub struct ChunkReader<'a, S> {
    source: &'a S,
    obj: &'a ObjectRef,
    pin: ReadPin,
    retry: RetryPolicy,
    body: ByteStream,
    /// Bytes received but not yet handed out; they end at `stream_pos`.
    leftover: Bytes,
    /// Absolute offset of the next byte the body stream yields.
    stream_pos: u64,
    /// Absolute offset of the next byte handed out.
    pos: u64,
    size: u64,
    crc: u32,
    reopens: u32,
}

impl<'a, S: ObjectSource> ChunkReader<'a, S> {
    /// Wraps a read opened at `offset`. Later re-opens are pinned to the version or ETag that
    /// read returned.
    pub fn new(
        source: &'a S,
        obj: &'a ObjectRef,
        first: SourceRead,
        offset: u64,
        retry: RetryPolicy,
    ) -> (Self, SourceMeta) {
        let pin = ReadPin {
            version_id: first.meta.version_id.clone().or_else(|| obj.version_id.clone()),
            etag: Some(first.meta.etag.clone()).filter(|e| !e.is_empty()),
        };
        let reader = Self {
            source,
            obj,
            pin,
            retry,
            body: first.body,
            leftover: Bytes::new(),
            stream_pos: offset,
            pos: offset,
            size: first.meta.size,
            crc: 0,
            reopens: 0,
        };
        (reader, first.meta)
    }

    /// Continues a CRC32C computed over the bytes before this reader's offset.
    pub fn with_crc(mut self, crc: u32) -> Self {
        self.crc = crc;
        self
    }

    /// CRC32C of every byte handed out so far (from offset 0 when seeded with `with_crc`).
    pub fn crc32c(&self) -> u32 {
        self.crc
    }

    /// Bytes handed out so far: the offset the next chunk starts at.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// How many times the stream broke and was re-opened.
    pub fn reopens(&self) -> u32 {
        self.reopens
    }

    /// Returns the next `len` bytes, or fewer at the end of the object; empty at the end.
    pub async fn next_chunk(&mut self, len: u64) -> Result<Bytes> {
        let want = len.min(self.size - self.pos);
        let want =
            usize::try_from(want).map_err(|_| Error::new(ErrorKind::Invalid, "chunk too large for this platform"))?;
        // Fast path: a frame that covers the whole chunk is handed out without a copy.
        if self.leftover.is_empty() && want > 0 {
            self.fill_leftover().await?;
        }
        let chunk = if self.leftover.len() >= want {
            self.leftover.split_to(want)
        } else {
            let mut buf = BytesMut::with_capacity(want);
            while buf.len() < want {
                if self.leftover.is_empty() {
                    self.fill_leftover().await?;
                }
                let take = (want - buf.len()).min(self.leftover.len());
                buf.extend_from_slice(&self.leftover.split_to(take));
            }
            buf.freeze()
        };
        self.crc = crc32c::crc32c_append(self.crc, &chunk);
        self.pos += chunk.len() as u64;
        Ok(chunk)
    }

    /// Receives the next frame into `leftover`, re-opening the stream on a transient failure.
    async fn fill_leftover(&mut self) -> Result<()> {
        loop {
            let failure = match self.body.next().await {
                Some(Ok(frame)) if frame.is_empty() => continue,
                Some(Ok(frame)) => {
                    let end = self.stream_pos + frame.len() as u64;
                    if end > self.size {
                        return Err(Error::new(
                            ErrorKind::Integrity,
                            format!("{}: source sent more bytes than its length {}", self.obj, self.size),
                        ));
                    }
                    self.stream_pos = end;
                    self.leftover = frame;
                    return Ok(());
                }
                Some(Err(e)) if e.is_retryable() => e,
                Some(Err(e)) => return Err(e),
                None => Error::new(
                    ErrorKind::Transient,
                    format!("{}: body ended at byte {} of {}", self.obj, self.stream_pos, self.size),
                ),
            };
            self.reopen(failure).await?;
        }
    }

    async fn reopen(&mut self, failure: Error) -> Result<()> {
        loop {
            if self.reopens + 1 >= self.retry.max_attempts {
                return Err(
                    failure.context(format_args!("reading {} gave up after {} re-opens", self.obj, self.reopens))
                );
            }
            let wait = self.retry.delay(self.reopens);
            self.reopens += 1;
            tracing::warn!(object = %self.obj, at = self.stream_pos, error = %failure.chain(), wait_ms = wait.as_millis() as u64, "source stream broke; re-opening");
            tokio::time::sleep(wait).await;
            match self.source.read(self.obj, &self.pin, self.stream_pos).await {
                Ok(read) => {
                    if read.meta.size != self.size {
                        return Err(Error::new(
                            ErrorKind::SourceChanged,
                            format!(
                                "{}: size changed from {} to {} during the copy",
                                self.obj, self.size, read.meta.size
                            ),
                        ));
                    }
                    self.body = read.body;
                    return Ok(());
                }
                Err(e) if e.is_retryable() && e.kind() != ErrorKind::SourceChanged => continue,
                Err(e) => return Err(e),
            }
        }
    }
}
