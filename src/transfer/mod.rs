//! The streaming engine: S3 bytes into GCS with memory bounded by a few chunks, never by the
//! object's size, and every byte checked.
//!
//! * Objects up to [`TransferConfig::resumable_threshold`] go up in one multipart request: one
//!   round trip, and the CRC32C computed while reading is handed to GCS, which refuses the
//!   object if the bytes it received differ.
//! * Larger objects use a resumable session in chunks of [`TransferConfig::chunk_size`] (a
//!   multiple of 256 KiB, as GCS requires). The next chunk is read from S3 while the current one
//!   uploads, so the copy runs at the speed of the slower side, not the sum of both. A failed
//!   chunk resumes from the offset GCS confirms rather than starting over.
//! * Every read after the first is pinned to the version or ETag the first returned.
//! * Across processes, a session is resumed from the ledger: [`Transfer::copy_journaled`]
//!   reports an opened session and each confirmed chunk to an [`UploadJournal`], and is given
//!   the checkpoint an earlier attempt left. If it names the version just read, GCS is asked how
//!   much the session holds; the bytes up to there are read again from S3 (to carry the CRC32C
//!   forward from the checkpoint), not sent again, and the upload continues from that offset.
//!   A gone or unusable session, or another source version, starts over.
//! * Under a time budget ([`crate::domain::budget`]), a resumable upload stops before a chunk it has no
//!   time left for, at a chunk boundary GCS confirmed, and answers [`Copy::Paused`] with the
//!   offset reached; the caller records it (the journal already holds it) and a later call
//!   continues from there like any other resumption.
//! * After the upload, GCS's CRC32C must equal the one computed in flight (and the source's own
//!   checksum where S3 has one). Otherwise the new generation is deleted and the copy fails.

pub mod checksum;
pub mod metadata;
pub mod reader;

use crate::domain::budget::{Budget, Reserve, may_start_chunk};
use crate::domain::error::{Error, ErrorKind, Result};
use crate::domain::model::{Destination, ObjectRef, SourceMeta, StoredObject};
use crate::ports::{NoJournal, ObjectSink, ObjectSource, ReadPin, UploadCheckpoint, UploadJournal, UploadProgress};
use crate::retry::RetryPolicy;
use bytes::Bytes;
use checksum::{crc32c_b64, crc32c_from_b64};
use reader::ChunkReader;
use serde::Serialize;
use std::time::{Duration, Instant};

/// GCS resumable chunks must be multiples of this (except the last).
pub const GCS_CHUNK_ALIGN: u64 = 256 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// How the engine cuts and paces a copy; built once from the configuration (`XCR_CHUNK_SIZE`
/// and friends, see docs/configuration.md).
pub struct TransferConfig {
    /// Bytes per resumable chunk. Memory use is about three chunks per concurrent transfer.
    pub chunk_size: u64,
    /// Objects larger than this use a resumable session; smaller ones one request.
    pub resumable_threshold: u64,
    /// Limit for one HTTP request to GCS (one chunk, one status query).
    pub request_timeout: Duration,
    /// What a time budget keeps back before starting another chunk ([`Reserve`]).
    pub reserve: Reserve,
}

impl Default for TransferConfig {
    /// 8 MiB chunks: GCS's recommended minimum for throughput, and three of them fit well inside
    /// the smallest Lambda. The threshold equals the chunk size so that the single-request path
    /// holds no more than one chunk in memory; measured on the emulators (docs/benchmarks.md, `make bench`),
    /// a single request at this size costs one round trip instead of two or more.
    fn default() -> Self {
        Self {
            chunk_size: 8 << 20,
            resumable_threshold: 8 << 20,
            request_timeout: Duration::from_secs(120),
            reserve: Reserve::default(),
        }
    }
}

/// How the bytes went up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UploadMethod {
    /// One request carrying the whole object (at most the resumable threshold).
    Single,
    /// A resumable session, chunk by chunk; it can be resumed by a later attempt.
    Resumable,
}

/// What one copy did, for the caller's outcome, logs and the ledger.
#[derive(Debug, Clone, Serialize)]
pub struct TransferReport {
    #[serde(skip)]
    /// The source object's metadata as read with the bytes.
    pub source: SourceMeta,
    #[serde(skip)]
    /// What GCS stored: generation, size, checksums (the completion record uses them).
    pub stored: StoredObject,
    /// Single request or resumable session.
    pub method: UploadMethod,
    /// CRC32C of the bytes read from S3 (base64), equal to the stored object's.
    #[serde(skip)]
    pub crc32c: String,
    /// Bytes sent to GCS, counting re-sends after failures.
    pub bytes_sent: u64,
    /// Chunks sent (1 for a single request).
    pub chunks: u32,
    /// Chunks that had to be resumed after a failure.
    pub resumed_chunks: u32,
    /// Times the S3 stream broke and was re-opened at the byte it broke.
    pub source_reopens: u32,
    /// When this attempt continued an earlier attempt's session: the offset GCS confirmed, from
    /// which this attempt uploaded (`bytes_sent` counts only what this attempt sent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed_from: Option<u64>,
    #[serde(skip)]
    /// Wall time of the copy, for logs and metrics.
    pub elapsed: Duration,
}

/// The result of [`Transfer::copy_unless`].
#[derive(Debug)]
// One value per copy, returned and consumed at once: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum Copy<T> {
    /// Copied and verified.
    Done(TransferReport),
    /// Not copied, for the caller's reason; the source's metadata as read.
    Skipped(T, SourceMeta),
    /// Stopped at a chunk boundary because the time budget ran out; the journal was told of
    /// every confirmed chunk, so the next call continues the session from [`Paused::offset`].
    Paused(Paused),
}

/// The terms a lease holder copies under ([`Transfer::copy_journaled`]): four decisions the
/// caller makes from its ledger claim and its invocation, passed together because they are
/// one lease's state, not the copy's.
pub struct CopyTerms<'a, J> {
    /// What an earlier attempt's journal recorded: continued when it belongs to the version
    /// being read and GCS still holds the session.
    pub previous: Option<&'a UploadCheckpoint>,
    /// Learns of a resumable session and of each confirmed chunk, so a later attempt can
    /// continue it.
    pub journal: &'a J,
    /// The generation the destination must have for the write to land
    /// ([`crate::ports::UploadSpec::if_generation_match`]); a mismatch is
    /// [`ErrorKind::Conflict`], except when a retried single request finds its own earlier
    /// attempt's object (same size and CRC32C), which is then the result: one generation.
    pub fence: Option<u64>,
    /// A resumable upload that has no time left for its next chunk stops before it
    /// ([`Copy::Paused`]); a single request is never cut short.
    pub budget: &'a Budget,
    /// The migration job the copy is for, written into the object's provenance
    /// ([`metadata::PROV_JOB`]).
    pub job_id: Option<&'a str>,
}

impl CopyTerms<'static, NoJournal> {
    /// No earlier attempt, no journal, no time limit: a one-off copy that only needs its
    /// write fenced (`None`: unconditional).
    pub fn fenced(fence: Option<u64>) -> Self {
        CopyTerms { previous: None, journal: &NoJournal, fence, budget: &Budget::UNLIMITED, job_id: None }
    }
}

/// A resumable upload stopped for its time budget ([`crate::domain::budget`]).
#[derive(Debug, Clone, Serialize)]
pub struct Paused {
    /// Bytes GCS confirmed: where the continuation resumes the session.
    #[serde(rename = "continued_at")]
    pub offset: u64,
    /// CRC32C of the first `offset` bytes.
    #[serde(skip)]
    pub crc32c: u32,
    #[serde(skip)]
    /// The source object's metadata as read; a continuation reads the same version again.
    pub source: SourceMeta,
    /// Bytes sent to GCS by this call, counting re-sends after failures.
    pub bytes_sent: u64,
    /// Chunks sent by this call.
    pub chunks: u32,
    /// Chunks that had to be resumed after a failure.
    pub resumed_chunks: u32,
    /// When this call continued an earlier one: the offset it started from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed_from: Option<u64>,
    #[serde(skip)]
    /// Wall time of this call until it stopped.
    pub elapsed: Duration,
}

/// How a resumable upload ended.
// One value per copy, returned and consumed at once: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Upload {
    Finished(TransferReport),
    Paused(Paused),
}

/// Copies objects from an [`ObjectSource`] into an [`ObjectSink`].
pub struct Transfer<S, K> {
    source: S,
    sink: K,
    cfg: TransferConfig,
    retry: RetryPolicy,
}

impl<S: ObjectSource, K: ObjectSink> Transfer<S, K> {
    /// An engine over one source and one sink; cheap to share (`Arc` it across tasks).
    pub fn new(source: S, sink: K, cfg: TransferConfig, retry: RetryPolicy) -> Self {
        Self { source, sink, cfg, retry }
    }

    /// The source, for callers that also read metadata or list through it.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// The sink, for deletes and metadata reads outside a copy.
    pub fn sink(&self) -> &K {
        &self.sink
    }

    /// The retry policy (`XCR_MAX_ATTEMPTS`), for callers that retry around a copy.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// The configuration this engine runs with.
    pub fn config(&self) -> &TransferConfig {
        &self.cfg
    }

    /// Copies `obj` to `dest`. On success GCS holds a byte-exact copy whose CRC32C was checked;
    /// on failure no object that failed verification is left behind.
    pub async fn copy(&self, obj: &ObjectRef, dest: &Destination) -> Result<TransferReport> {
        match self.copy_unless(obj, dest, |_| None::<()>).await? {
            Copy::Done(report) => Ok(report),
            Copy::Skipped(..) => Err(Error::new(ErrorKind::Invalid, "copy skipped without a reason")),
            // No budget, no pause; a pause that happened anyway is only a retryable failure.
            Copy::Paused(p) => Err(Error::new(ErrorKind::Transient, format!("copy paused at byte {}", p.offset))),
        }
    }

    /// Like [`Transfer::copy`], but once the source's metadata is known (from the response to
    /// the first read, before any byte is uploaded), `skip` may decide that no copy is needed,
    /// e.g. because the ledger already records this very version. The read is then dropped.
    pub async fn copy_unless<T>(
        &self,
        obj: &ObjectRef,
        dest: &Destination,
        skip: impl FnOnce(&SourceMeta) -> Option<T>,
    ) -> Result<Copy<T>> {
        self.copy_journaled(obj, dest, skip, CopyTerms::fenced(None)).await
    }

    /// Like [`Transfer::copy_unless`], under a lease holder's [`CopyTerms`]: a resumable upload
    /// is made durable through the terms' journal, an earlier attempt's session is continued,
    /// the write is fenced, and the time budget may pause it (see the fields of [`CopyTerms`]).
    pub async fn copy_journaled<T, J: UploadJournal>(
        &self,
        obj: &ObjectRef,
        dest: &Destination,
        skip: impl FnOnce(&SourceMeta) -> Option<T>,
        terms: CopyTerms<'_, J>,
    ) -> Result<Copy<T>> {
        let CopyTerms { previous, journal, fence, budget, job_id } = terms;
        let started = Instant::now();
        let pin = ReadPin { version_id: obj.version_id.clone(), etag: None };
        let first = self.retry.run("open source", |_| self.source.read(obj, &pin, 0)).await?;
        if let Some(reason) = skip(&first.meta) {
            return Ok(Copy::Skipped(reason, first.meta));
        }
        let resume = match previous.filter(|_| first.meta.size > self.cfg.resumable_threshold) {
            Some(cp) => self.resume_point(obj, &first.meta, cp).await,
            None => None,
        };
        if let Some(resume) = resume {
            let report = match self.resume(obj, dest, first, resume, (journal, budget)).await? {
                Upload::Finished(report) => report,
                Upload::Paused(p) => return Ok(Copy::Paused(Paused { elapsed: started.elapsed(), ..p })),
            };
            self.verify(obj, &report).await?;
            return Ok(Copy::Done(TransferReport { elapsed: started.elapsed(), ..report }));
        }
        let (mut reader, meta) = ChunkReader::new(&self.source, obj, first, 0, self.retry);
        let mut spec = metadata::upload_spec(obj, &meta, dest);
        spec.if_generation_match = fence;
        if let Some(job) = job_id {
            spec.metadata.insert(metadata::PROV_JOB.into(), job.to_string());
        }

        let mut report = if meta.size <= self.cfg.resumable_threshold {
            let data = reader.next_chunk(meta.size).await?;
            let crc = crc32c_b64(reader.crc32c());
            check_source_crc(obj, &meta, &crc)?;
            // GCS verifies this and refuses the object if the bytes it received differ.
            spec.crc32c = Some(crc.clone());
            let len = data.len() as u64;
            let mut attempts = 0;
            let uploaded = self
                .retry
                .run("upload", |n| {
                    attempts = n + 1;
                    self.sink.upload_single(&spec, data.clone())
                })
                .await;
            let stored = match uploaded {
                Err(e) if e.kind() == ErrorKind::Conflict && attempts > 1 => {
                    self.own_earlier_attempt(&spec, &crc).await.ok_or(e)?
                }
                Err(e) if e.was_applied() => self.read_back(&spec.destination(), meta.size, &crc, e).await?,
                other => other?,
            };
            TransferReport {
                source: meta.clone(),
                stored,
                method: UploadMethod::Single,
                crc32c: crc,
                bytes_sent: len,
                chunks: 1,
                resumed_chunks: 0,
                source_reopens: 0,
                resumed_from: None,
                elapsed: Duration::ZERO,
            }
        } else {
            let session = self.retry.run("start resumable session", |_| self.sink.start_session(&spec)).await?;
            match self.resumable(obj, dest, &meta, session, &mut reader, (journal, budget)).await? {
                Upload::Finished(report) => report,
                Upload::Paused(p) => return Ok(Copy::Paused(Paused { elapsed: started.elapsed(), ..p })),
            }
        };
        named(&mut report.stored, dest);
        report.source_reopens = reader.reopens();
        self.verify(obj, &report).await?;
        report.elapsed = started.elapsed();
        Ok(Copy::Done(report))
    }

    /// The destination object's metadata (`None`: there is none), retried like every GCS call.
    /// Why here and not only in the adapter: the adapter speaks the protocol, the engine owns
    /// the retry policy (`XCR_MAX_ATTEMPTS`). A metadata read is idempotent, so a 5xx, a reset
    /// or an answer that breaks off is simply read again.
    pub async fn stat(&self, bucket: &str, name: &str) -> Result<Option<StoredObject>> {
        self.retry.run("read destination metadata", |_| self.sink.stat(bucket, name)).await
    }

    /// Deletes the live destination object, only if its generation is `if_generation_match`
    /// when given, retried like every GCS call. Retrying is safe because of the precondition
    /// (Google's retry strategy: a delete is retried only with one): a delete that was applied
    /// but whose answer was lost finds the object gone on the retry (success), and one that
    /// meets another generation is refused (412, [`ErrorKind::Conflict`], not retried).
    pub async fn delete_fenced(&self, bucket: &str, name: &str, if_generation_match: Option<u64>) -> Result<()> {
        self.retry.run("delete object", |_| self.sink.delete(bucket, name, None, if_generation_match)).await
    }

    /// After GCS accepted a write whose answer could not be read ([`Error::applied`]): the
    /// object GCS holds now, read back instead of uploading again. It is this copy's object when
    /// its size and CRC32C are those sent; anything else means another writer came after it,
    /// which is [`ErrorKind::Conflict`] (the caller decides again), never a second upload.
    async fn read_back(&self, dest: &Destination, size: u64, crc: &str, unreadable: Error) -> Result<StoredObject> {
        tracing::warn!(destination = %format!("gs://{}/{}", dest.bucket, dest.name), error = %unreadable.chain(), "reading the object back instead of uploading again");
        let found = self.stat(&dest.bucket, &dest.name).await.map_err(|e| e.context(unreadable.message()))?;
        match found {
            Some(mut o)
                if o.size == size
                    && o.crc32c
                        .as_deref()
                        .and_then(crc32c_from_b64)
                        .is_some_and(|c| Some(c) == crc32c_from_b64(crc)) =>
            {
                named(&mut o, dest);
                tracing::info!(generation = %o.generation, "the unreadable answer was for this copy's object");
                Ok(o)
            }
            other => Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "{}; read back, gs://{}/{} is {}",
                    unreadable.message(),
                    dest.bucket,
                    dest.name,
                    match other {
                        Some(o) => format!(
                            "generation {} of size {} crc32c {:?}, not this copy",
                            o.generation, o.size, o.crc32c
                        ),
                        None => "gone".to_string(),
                    }
                ),
            )),
        }
    }

    /// After a retried single request met its precondition: the object GCS now holds, if it is
    /// what this copy sent (an earlier attempt landed and only its answer was lost). Why not
    /// just fail: the caller would then decide again and upload a second generation of the
    /// same bytes; Google's retry guidance treats a precondition failure after a retried insert
    /// the same way.
    async fn own_earlier_attempt(&self, spec: &crate::ports::UploadSpec, crc: &str) -> Option<StoredObject> {
        let found = self.stat(&spec.bucket, &spec.name).await.ok().flatten()?;
        let fenced_out = spec.if_generation_match.is_some_and(|g| found.generation != g.to_string());
        (fenced_out && found.size == spec.size && found.crc32c.as_deref() == Some(crc)).then(|| {
            tracing::info!(generation = %found.generation, "a retried upload found its own earlier attempt's object");
            found
        })
    }

    /// Whether `cp`, left by an earlier attempt, can be continued for the version just read:
    /// same version, ETag and size, and GCS confirms at least the checkpoint's offset. Any
    /// doubt means starting over, which is always correct.
    async fn resume_point(&self, obj: &ObjectRef, meta: &SourceMeta, cp: &UploadCheckpoint) -> Option<Resume> {
        if !checkpoint_matches(cp, meta) {
            tracing::info!(object = %obj, "an unfinished upload of another source version is recorded; starting over");
            return None;
        }
        // One query, no retries: a session that is gone answers 404/410, and starting over
        // costs less than waiting through backoff for it.
        let status = self.sink.session_status(&cp.session, meta.size).await;
        let resume = match status {
            Ok(status) => plan_resume(cp, meta.size, status),
            Err(e) => {
                tracing::info!(object = %obj, error = %e.chain(), "the recorded upload session cannot be continued; starting over");
                return None;
            }
        };
        match &resume {
            Some(r) => {
                tracing::info!(object = %obj, checkpoint = cp.offset, confirmed = r.confirmed(), size = meta.size, "continuing the upload session an earlier attempt left")
            }
            None => {
                tracing::info!(object = %obj, checkpoint = cp.offset, "the recorded upload session holds fewer bytes than recorded; starting over")
            }
        }
        resume
    }

    /// Continues an earlier attempt's session: reads the source from the checkpoint (pinned to
    /// the version `first` returned) to carry the CRC32C up to the offset GCS confirmed, then
    /// uploads the rest. A session GCS already finalized is read to its end and verified.
    async fn resume(
        &self,
        obj: &ObjectRef,
        dest: &Destination,
        first: crate::ports::SourceRead,
        resume: Resume,
        (journal, budget): (&impl UploadJournal, &Budget),
    ) -> Result<Upload> {
        let meta = first.meta.clone();
        let (from, crc) = (resume.checkpoint.offset, resume.checkpoint.crc32c);
        let read = if from == 0 {
            first
        } else {
            drop(first);
            let pin = ReadPin {
                version_id: meta.version_id.clone().or_else(|| obj.version_id.clone()),
                etag: Some(meta.etag.clone()).filter(|e| !e.is_empty()),
            };
            self.retry.run("open source", |_| self.source.read(obj, &pin, from)).await?
        };
        if read.meta.size != meta.size {
            return Err(Error::new(ErrorKind::SourceChanged, format!("{obj}: size changed while resuming")));
        }
        let (reader, _) = ChunkReader::new(&self.source, obj, read, from, self.retry);
        let mut reader = reader.with_crc(crc);
        let upto = match &resume.status {
            UploadProgress::Persisted(p) => *p,
            UploadProgress::Done(_) => meta.size,
        };
        // Read, do not send, what GCS already holds: only its CRC32C is needed.
        while reader.position() < upto {
            let len = (upto - reader.position()).min(self.cfg.chunk_size);
            reader.next_chunk(len).await?;
        }
        let session = resume.checkpoint.session.clone();
        let mut report = match resume.status {
            UploadProgress::Done(stored) => {
                let crc = crc32c_b64(reader.crc32c());
                check_source_crc(obj, &meta, &crc)?;
                TransferReport {
                    source: meta.clone(),
                    stored,
                    method: UploadMethod::Resumable,
                    crc32c: crc,
                    bytes_sent: 0,
                    chunks: 0,
                    resumed_chunks: 0,
                    source_reopens: 0,
                    resumed_from: Some(upto),
                    elapsed: Duration::ZERO,
                }
            }
            UploadProgress::Persisted(p) => {
                match self.resumable(obj, dest, &meta, session, &mut reader, (journal, budget)).await? {
                    Upload::Finished(mut report) => {
                        report.resumed_from = Some(p);
                        report
                    }
                    Upload::Paused(paused) => return Ok(Upload::Paused(Paused { resumed_from: Some(p), ..paused })),
                }
            }
        };
        named(&mut report.stored, dest);
        if report.stored.bucket != dest.bucket || report.stored.name != dest.name {
            return Err(Error::new(
                ErrorKind::Integrity,
                format!(
                    "{obj}: the recorded upload session created gs://{}/{}",
                    report.stored.bucket, report.stored.name
                ),
            ));
        }
        report.source_reopens = reader.reopens();
        Ok(Upload::Finished(report))
    }

    /// Uploads from the reader's position to the end through `session`, reporting the session
    /// and each confirmed chunk to `journal`. Before each chunk but the first, `budget` decides
    /// whether there is time for it ([`may_start_chunk`], with the slowest step measured so
    /// far); if not, the upload stops there, every sent chunk confirmed and journaled.
    // Each argument is one independent input of the upload; a struct would only rename them.
    async fn resumable(
        &self,
        obj: &ObjectRef,
        dest: &Destination,
        meta: &SourceMeta,
        session: String,
        reader: &mut ChunkReader<'_, S>,
        (journal, budget): (&impl UploadJournal, &Budget),
    ) -> Result<Upload> {
        let total = meta.size;
        let mut offset = reader.position();
        let cp = UploadCheckpoint {
            session: session.clone(),
            version_id: meta.version_id.clone(),
            etag: meta.etag.clone(),
            size: total,
            chunk_size: self.cfg.chunk_size,
            offset,
            crc32c: reader.crc32c(),
        };
        // Durable before any byte goes up, so a crash from here on can be continued.
        journal.opened(&cp).await?;
        // CRC32C of the first `offset` bytes (what a pause reports).
        let mut offset_crc = cp.crc32c;
        let mut stats = ChunkStats::default();
        let mut current = reader.next_chunk(self.cfg.chunk_size).await?;
        // CRC32C of every byte before the end of `current` (the reader runs one chunk ahead).
        let mut current_crc = reader.crc32c();
        // The slowest step so far: one chunk sent while the next is read, and its journal write.
        let mut slowest: Option<Duration> = None;
        loop {
            if !may_start_chunk(budget.left(), slowest, stats.chunks > 0, &self.cfg.reserve) {
                tracing::info!(
                    object = %obj,
                    offset,
                    size = total,
                    slowest_chunk_ms = slowest.map(|d| d.as_millis() as u64),
                    "time budget spent: stopping at a chunk boundary for a continuation"
                );
                return Ok(Upload::Paused(Paused {
                    offset,
                    crc32c: offset_crc,
                    source: meta.clone(),
                    bytes_sent: stats.bytes_sent,
                    chunks: stats.chunks,
                    resumed_chunks: stats.resumed,
                    resumed_from: None,
                    elapsed: Duration::ZERO,
                }));
            }
            let step = Instant::now();
            let end = offset + current.len() as u64;
            if end == total {
                // Last chunk: everything has been read, so the object's CRC32C is known before
                // GCS finalizes it. A mismatch with the source's checksum stops here and the
                // unfinished session is simply abandoned: no object is created.
                let crc = crc32c_b64(reader.crc32c());
                check_source_crc(obj, meta, &crc)?;
                let stored = match self.send_chunk(&session, offset, current, total, Some(&crc), &mut stats).await {
                    Err(e) if e.was_applied() => Some(self.read_back(dest, total, &crc, e).await?),
                    other => other?,
                };
                let stored = stored.ok_or_else(|| {
                    Error::new(
                        ErrorKind::Transient,
                        format!("{obj}: GCS did not finalize the upload after the last chunk"),
                    )
                })?;
                return Ok(Upload::Finished(TransferReport {
                    source: meta.clone(),
                    stored,
                    method: UploadMethod::Resumable,
                    crc32c: crc,
                    bytes_sent: stats.bytes_sent,
                    chunks: stats.chunks,
                    resumed_chunks: stats.resumed,
                    source_reopens: 0,
                    resumed_from: None,
                    elapsed: Duration::ZERO,
                }));
            }
            // Upload this chunk while the next one is read: at most two chunks in memory.
            let chunk_size = self.cfg.chunk_size;
            let (next, _) = tokio::try_join!(
                reader.next_chunk(chunk_size),
                self.send_chunk(&session, offset, current, total, None, &mut stats)
            )?;
            tracing::debug!(object = %obj, confirmed = end, size = total, "chunk confirmed");
            journal.confirmed(end, current_crc).await?;
            slowest = slowest.max(Some(step.elapsed()));
            offset = end;
            offset_crc = current_crc;
            current = next;
            current_crc = reader.crc32c();
        }
    }

    /// Sends one chunk, resuming from the offset GCS confirms after a failure. Returns the
    /// stored object when this chunk finalized the upload.
    async fn send_chunk(
        &self,
        session: &str,
        start: u64,
        data: Bytes,
        total: u64,
        final_crc: Option<&str>,
        stats: &mut ChunkStats,
    ) -> Result<Option<StoredObject>> {
        let end = start + data.len() as u64;
        let mut from = start;
        let mut failures = 0u32;
        let mut resumed = false;
        stats.chunks += 1;
        loop {
            let skip = usize::try_from(from - start).unwrap_or(usize::MAX).min(data.len());
            let part = data.slice(skip..);
            stats.bytes_sent += part.len() as u64;
            let result = self.sink.upload_chunk(session, from, part, total, final_crc).await;
            let progress = match result {
                Ok(p) => p,
                // GCS finalized the object and its answer was unreadable: the caller reads the
                // object back; asking the session again or re-sending could only repeat it.
                Err(e) if e.was_applied() => return Err(e),
                // The offset a status query gave was refused (400). Why: gcp-storage-emulator
                // answers a session holding nothing with `Range: bytes=0-0` (one byte) instead of
                // no Range, then rejects the chunk sent from byte 1; the fault tests hit it when
                // a first chunk is lost before it arrives. Send the chunk again from
                // its start, an offset GCS confirmed (counted as a failed attempt); a real
                // mismatch is refused again from there and fails.
                Err(e) if e.kind() == ErrorKind::Invalid && from != start && failures + 1 < self.retry.max_attempts => {
                    tracing::warn!(offset = from, restart = start, error = %e.chain(), "resumed offset refused; sending the chunk from its start");
                    failures += 1;
                    from = start;
                    continue;
                }
                Err(e) if e.is_retryable() && failures + 1 < self.retry.max_attempts => {
                    let wait = self.retry.delay(failures);
                    failures += 1;
                    tracing::warn!(offset = from, error = %e.chain(), wait_ms = wait.as_millis() as u64, "chunk failed; asking GCS what it holds");
                    tokio::time::sleep(wait).await;
                    if !resumed {
                        resumed = true;
                        stats.resumed += 1;
                    }
                    match self.status_with_retry(session, total).await? {
                        UploadProgress::Persisted(p) => {
                            from = check_offset(p, start, end)?;
                            if from == end {
                                return Ok(None);
                            }
                            continue;
                        }
                        UploadProgress::Done(obj) => return Ok(Some(obj)),
                    }
                }
                Err(e) => return Err(e),
            };
            match progress {
                UploadProgress::Persisted(p) if p == end && end < total => return Ok(None),
                UploadProgress::Persisted(p) => {
                    // GCS may keep fewer bytes than it was sent; send the rest.
                    let next = check_offset(p, start, end)?;
                    if next <= from {
                        failures += 1;
                        if failures >= self.retry.max_attempts {
                            return Err(Error::new(
                                ErrorKind::Transient,
                                format!("GCS made no progress at offset {from}"),
                            ));
                        }
                    }
                    from = next;
                }
                UploadProgress::Done(obj) if end == total => return Ok(Some(obj)),
                UploadProgress::Done(_) => {
                    return Err(Error::new(
                        ErrorKind::Integrity,
                        format!("GCS finalized the object at {end} of {total} bytes"),
                    ));
                }
            }
        }
    }

    async fn status_with_retry(&self, session: &str, total: u64) -> Result<UploadProgress> {
        self.retry.run("query upload session", |_| self.sink.session_status(session, total)).await
    }

    /// GCS must report the CRC32C computed in flight. If it does not, the new generation is
    /// deleted so that no corrupt object is left looking like a successful copy.
    async fn verify(&self, obj: &ObjectRef, report: &TransferReport) -> Result<()> {
        let stored = &report.stored;
        let ok_size = stored.size == report.source.size;
        let ok_crc = match stored.crc32c.as_deref() {
            Some(c) => crc32c_from_b64(c) == crc32c_from_b64(&report.crc32c),
            None => false,
        };
        if ok_size && ok_crc {
            return Ok(());
        }
        let why = format!(
            "{obj} -> gs://{}/{}: GCS holds size {} crc32c {:?}, the source read was size {} crc32c {}",
            stored.bucket, stored.name, stored.size, stored.crc32c, report.source.size, report.crc32c
        );
        tracing::error!(object = %obj, generation = %stored.generation, "{why}; deleting the bad generation");
        if let Err(e) = self
            .retry
            .run("delete bad generation", |_| {
                self.sink.delete(&stored.bucket, &stored.name, Some(&stored.generation), None)
            })
            .await
        {
            tracing::error!(error = %e.chain(), "could not delete the generation that failed verification");
        }
        Err(Error::new(ErrorKind::Integrity, why))
    }
}

/// Fills what a partial GCS answer left out with what the request named.
fn named(stored: &mut StoredObject, dest: &Destination) {
    if stored.bucket.is_empty() {
        stored.bucket.clone_from(&dest.bucket);
    }
    if stored.name.is_empty() {
        stored.name.clone_from(&dest.name);
    }
}

/// How an earlier attempt's session continues: from its checkpoint, with what GCS reported.
#[derive(Debug)]
struct Resume {
    checkpoint: UploadCheckpoint,
    status: UploadProgress,
}

impl Resume {
    fn confirmed(&self) -> u64 {
        match &self.status {
            UploadProgress::Persisted(p) => *p,
            UploadProgress::Done(o) => o.size,
        }
    }
}

/// Whether a recorded upload carries the bytes of the version just read.
fn checkpoint_matches(cp: &UploadCheckpoint, meta: &SourceMeta) -> bool {
    !cp.session.is_empty()
        && !cp.etag.is_empty()
        && cp.etag == meta.etag
        && cp.version_id == meta.version_id
        && cp.size == meta.size
        && cp.offset < cp.size
}

/// Decides from GCS's answer about a recorded session whether to continue it. GCS must hold at
/// least the checkpoint's bytes (it only confirms, never forgets: fewer means something is off)
/// and, unless finalized, fewer than the whole object.
fn plan_resume(cp: &UploadCheckpoint, size: u64, status: UploadProgress) -> Option<Resume> {
    let ok = match &status {
        UploadProgress::Persisted(p) => (cp.offset..size).contains(p) && p.is_multiple_of(GCS_CHUNK_ALIGN),
        UploadProgress::Done(o) => o.size == size,
    };
    ok.then(|| Resume { checkpoint: cp.clone(), status })
}

#[derive(Default)]
struct ChunkStats {
    bytes_sent: u64,
    chunks: u32,
    resumed: u32,
}

fn check_offset(persisted: u64, start: u64, end: u64) -> Result<u64> {
    if (start..=end).contains(&persisted) {
        Ok(persisted)
    } else {
        // GCS lost bytes it had confirmed, or holds more than was sent: only a new session helps.
        Err(Error::new(
            ErrorKind::Transient,
            format!("GCS reports {persisted} bytes persisted, outside the chunk {start}..{end}; restarting the copy"),
        ))
    }
}

/// Compares the CRC32C computed in flight with the one S3 stores, when it stores one.
fn check_source_crc(obj: &ObjectRef, meta: &SourceMeta, computed: &str) -> Result<()> {
    match &meta.crc32c {
        Some(expected) if crc32c_from_b64(expected) != crc32c_from_b64(computed) => Err(Error::new(
            ErrorKind::Integrity,
            format!("{obj}: read bytes have CRC32C {computed}, S3 stores {expected}"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn meta() -> SourceMeta {
        SourceMeta { size: 48 * MIB, etag: "e1".into(), version_id: Some("v1".into()), ..Default::default() }
    }

    fn cp(offset: u64) -> UploadCheckpoint {
        UploadCheckpoint {
            session: "https://example/upload?upload_id=secret".into(),
            version_id: Some("v1".into()),
            etag: "e1".into(),
            size: 48 * MIB,
            chunk_size: 2 * MIB,
            offset,
            crc32c: 7,
        }
    }

    fn stored(size: u64) -> StoredObject {
        StoredObject {
            bucket: "b".into(),
            name: "n".into(),
            generation: "1".into(),
            size,
            crc32c: None,
            md5: None,
            job_id: None,
        }
    }

    #[test]
    fn only_the_same_version_continues_a_session() {
        assert!(checkpoint_matches(&cp(4 * MIB), &meta()));
        assert!(!checkpoint_matches(&cp(4 * MIB), &SourceMeta { etag: "e2".into(), ..meta() }));
        assert!(!checkpoint_matches(&cp(4 * MIB), &SourceMeta { version_id: Some("v2".into()), ..meta() }));
        assert!(!checkpoint_matches(&cp(4 * MIB), &SourceMeta { version_id: None, ..meta() }));
        assert!(!checkpoint_matches(&cp(4 * MIB), &SourceMeta { size: 47 * MIB, ..meta() }));
        assert!(!checkpoint_matches(&UploadCheckpoint { session: String::new(), ..cp(0) }, &meta()));
        // An ETag is what pins a read in an unversioned bucket: without one, no resume.
        let unversioned = SourceMeta { etag: String::new(), version_id: None, ..meta() };
        assert!(!checkpoint_matches(
            &UploadCheckpoint { etag: String::new(), version_id: None, ..cp(0) },
            &unversioned
        ));
    }

    #[test]
    fn a_session_continues_from_what_gcs_confirms_at_or_after_the_checkpoint() {
        let size = 48 * MIB;
        let r = plan_resume(&cp(4 * MIB), size, UploadProgress::Persisted(10 * MIB)).expect("resume");
        assert_eq!((r.checkpoint.offset, r.confirmed()), (4 * MIB, 10 * MIB));
        // Nothing beyond the checkpoint yet (or no progress checkpoint at all): still resumable.
        assert!(plan_resume(&cp(4 * MIB), size, UploadProgress::Persisted(4 * MIB)).is_some());
        assert!(plan_resume(&cp(0), size, UploadProgress::Persisted(0)).is_some());
        // GCS holds less than it had confirmed, all of it without finalizing, or an unaligned
        // offset: something is off, start over.
        assert!(plan_resume(&cp(4 * MIB), size, UploadProgress::Persisted(2 * MIB)).is_none());
        assert!(plan_resume(&cp(4 * MIB), size, UploadProgress::Persisted(size)).is_none());
        assert!(plan_resume(&cp(0), size, UploadProgress::Persisted(1000)).is_none());
        // Finalized: verified (by reading the rest of the source), not uploaded again.
        assert_eq!(
            plan_resume(&cp(4 * MIB), size, UploadProgress::Done(stored(size))).map(|r| r.confirmed()),
            Some(size)
        );
        assert!(plan_resume(&cp(4 * MIB), size, UploadProgress::Done(stored(size - 1))).is_none());
    }

    #[test]
    fn a_checkpoint_never_shows_its_session_uri() {
        let shown = format!("{:?}", cp(0));
        assert!(!shown.contains("secret") && shown.contains("<redacted>"), "{shown}");
    }
}
