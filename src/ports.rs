//! The traits the use cases talk through. Adapters (S3, GCS, and test doubles) implement them;
//! domain code never sees an SDK type.

use crate::domain::error::Result;
use crate::domain::model::{ContentHeaders, Destination, ObjectRef, SourceMeta, StoredObject};
use bytes::Bytes;
use futures::Stream;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

/// A body being read from the source: frames of whatever size the transport delivers.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// Which version of an object a read must return. A read that cannot return exactly that
/// version fails with [`crate::ErrorKind::SourceChanged`] instead of mixing two versions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadPin {
    /// The version every re-open must read; `None` before the first read of an unversioned object.
    pub version_id: Option<String>,
    /// Without quotes; the adapter adds them for `If-Match`.
    pub etag: Option<String>,
}

/// An open read: the object's metadata and its body from the requested offset.
pub struct SourceRead {
    /// The object's metadata, from the same response as the bytes.
    pub meta: SourceMeta,
    /// The bytes from the requested offset to the end.
    pub body: ByteStream,
}

/// Where objects come from (S3).
pub trait ObjectSource: Send + Sync {
    /// Opens `obj` at byte `offset`, pinned to `pin` when it names a version or ETag. One
    /// request: metadata comes from the same response as the bytes.
    fn read(&self, obj: &ObjectRef, pin: &ReadPin, offset: u64) -> impl Future<Output = Result<SourceRead>> + Send;
    /// Whether the object exists now (HEAD): used to order deletes that carry no sequencer.
    fn exists(&self, obj: &ObjectRef) -> impl Future<Output = Result<bool>> + Send;
}

/// Everything GCS needs to create an object, besides its bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadSpec {
    /// The GCS bucket.
    pub bucket: String,
    /// The object name.
    pub name: String,
    /// Bytes the object will have: the upload is checked against it.
    pub size: u64,
    /// HTTP headers carried over from the source.
    pub headers: ContentHeaders,
    /// Custom metadata: the source's user metadata plus provenance.
    pub metadata: BTreeMap<String, String>,
    /// GCS storage class; `None` keeps the bucket's default.
    pub storage_class: Option<String>,
    /// Expected CRC32C (base64, big-endian). GCS refuses to create the object on a mismatch.
    pub crc32c: Option<String>,
    /// Expected MD5 (base64). GCS refuses to create the object on a mismatch.
    pub md5: Option<String>,
    /// `ifGenerationMatch`: GCS creates the object only if its live generation is this one
    /// (`0`: only if there is none), else answers 412 ([`crate::ErrorKind::Conflict`]). Why:
    /// the ledger's lease orders writers, but a holder that outlived its lease (a stalled
    /// process, a skewed clock) can still reach GCS; with the generation the ledger recorded as
    /// a precondition, its late write is refused instead of landing over a newer copy, and a
    /// retried insert can never create a second generation. On a resumable session it is given
    /// at initiation and holds for the session.
    pub if_generation_match: Option<u64>,
}

impl UploadSpec {
    /// The bucket and name as a [`Destination`].
    pub fn destination(&self) -> Destination {
        Destination { bucket: self.bucket.clone(), name: self.name.clone(), storage_class: self.storage_class.clone() }
    }
}

/// What GCS says after a chunk or a status query of a resumable session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadProgress {
    /// The session is open and GCS holds this many bytes (the next chunk starts here).
    Persisted(u64),
    /// The object is finalized.
    Done(StoredObject),
}

/// Where objects go (GCS): the upload protocol's primitives. The transfer engine decides how to
/// use them (single request or resumable, resume offsets, pipelining).
pub trait ObjectSink: Send + Sync {
    /// Uploads a whole object in one request.
    fn upload_single(&self, spec: &UploadSpec, data: Bytes) -> impl Future<Output = Result<StoredObject>> + Send;
    /// Opens a resumable session and returns its URI. Checksums in `spec` are checked by GCS
    /// when the session is finalized.
    fn start_session(&self, spec: &UploadSpec) -> impl Future<Output = Result<String>> + Send;
    /// Sends `data` at `offset` of a `total`-byte object. `final_crc32c` goes with the last
    /// chunk so that GCS can verify the whole object.
    fn upload_chunk(
        &self,
        session: &str,
        offset: u64,
        data: Bytes,
        total: u64,
        final_crc32c: Option<&str>,
    ) -> impl Future<Output = Result<UploadProgress>> + Send;
    /// Asks GCS how much of the session it holds.
    fn session_status(&self, session: &str, total: u64) -> impl Future<Output = Result<UploadProgress>> + Send;
    /// Deletes an object: exactly `generation` when given (to withdraw a generation that failed
    /// verification), else the live object, only if its generation is `if_generation_match`
    /// when that is given (a 412 is [`crate::ErrorKind::Conflict`]). An object already gone is
    /// success.
    fn delete(
        &self,
        bucket: &str,
        name: &str,
        generation: Option<&str>,
        if_generation_match: Option<u64>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// The object's size and checksums, `None` if it does not exist. Only migration jobs'
    /// overwrite policies use it; replication never checks GCS before writing.
    fn stat(&self, bucket: &str, name: &str) -> impl Future<Output = Result<Option<StoredObject>>> + Send;
}

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The key (S3) or object name (GCS).
    pub key: String,
    /// Bytes.
    pub size: u64,
}

/// Listing the source, for migration jobs.
pub trait ObjectLister: Send + Sync {
    /// One page of keys under `prefix`, after the continuation `token`; the next token, if any.
    fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        token: Option<&str>,
        max_keys: i32,
    ) -> impl Future<Output = Result<(Vec<Listed>, Option<String>)>> + Send;
    /// One page of keys under `prefix` that sort after `start_after` (S3's `StartAfter`), and
    /// whether more follow. A position that is a key, unlike an opaque token, lets a job cut a
    /// page anywhere and resume after the last key it kept (see [`crate::jobs::StagedPage`]).
    fn list_after(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        max_keys: i32,
    ) -> impl Future<Output = Result<(Vec<Listed>, bool)>> + Send;
    /// A whole (small) object as text.
    fn fetch_text(&self, bucket: &str, key: &str, max_bytes: u64) -> impl Future<Output = Result<String>> + Send;
    /// At most `len` bytes of an object from byte `offset`, and the object's whole size: a
    /// manifest is read one window per job step, never whole. An offset at or past the end
    /// gives no bytes.
    fn fetch_range(
        &self,
        bucket: &str,
        key: &str,
        offset: u64,
        len: u64,
    ) -> impl Future<Output = Result<(Bytes, u64)>> + Send;
}

/// What the ledger remembers about the last completed action on one destination object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DoneRecord {
    /// `copy` or `delete`.
    pub action: String,
    /// Normalized S3 sequencer of the event that was applied ([`crate::domain::events::sequencer_order`]).
    pub sequencer: Option<String>,
    /// Source last-modified time, milliseconds since the epoch (for deletes: the event's time).
    pub last_modified_ms: Option<i64>,
    /// The S3 version copied, when the bucket is versioned.
    pub version_id: Option<String>,
    /// The S3 ETag copied.
    pub etag: Option<String>,
    /// The GCS generation written: the fence for the next write (`None` after a delete).
    pub generation: Option<String>,
    /// Bytes copied.
    pub size: Option<u64>,
    /// Base64 CRC32C verified on both ends.
    pub crc32c: Option<String>,
    /// The source bucket, so that a status read names where the copy came from.
    pub source_bucket: String,
    /// The source key.
    pub source_key: String,
    /// When the record was written (epoch ms): the replication lag is measured from it.
    pub done_at_ms: i64,
    /// The migration job whose task made this record, if one did. Why: a job task delivered
    /// twice at once (SQS is at-least-once) may find its twin's finished copy; knowing the copy
    /// was this job's own lets the job count the object as replicated whichever twin counts
    /// first, instead of as skipped.
    pub job_id: Option<String>,
    /// A digest of the source's content headers and user metadata as copied
    /// ([`crate::transfer::metadata::digest`]). Why: a metadata-only change (an S3 self-copy
    /// with `MetadataDirective=REPLACE`) keeps the ETag and, unversioned, the version id; only
    /// this (and the last-modified time, which has whole seconds) tells it from a duplicate.
    pub meta_digest: Option<String>,
}

/// The ledger item for one destination object, as read back from a claim.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerItem {
    /// The last completed action, if any.
    pub done: Option<DoneRecord>,
    /// The ordering mark: the highest normalized S3 sequencer whose event was decided for this
    /// destination (applied, found a duplicate, or found stale after a read under the lease).
    /// It only ever rises and no writer removes it: every event at or below it is stale. Why
    /// separate from `done.sequencer`: a copy made without a sequencer (a job, the API, the
    /// CLI) replaces the done record, and must not erase what the events already ordered.
    pub high_water: Option<String>,
    /// The source bucket whose event set the mark. Sequencers only order events of one key in
    /// one bucket: an event from another bucket routed to the same name is not ordered by it.
    pub high_water_source: Option<String>,
    /// Who holds the lease now (an attempt's owner id), if anyone does.
    pub lease_owner: Option<String>,
    /// When that lease runs out (epoch ms); past it, anyone may claim.
    pub lease_expires_ms: Option<i64>,
    /// A resumable upload an earlier attempt left unfinished (it crashed or failed), if any.
    pub upload: Option<UploadCheckpoint>,
    /// How the last attempt failed, if it did and nothing completed since
    /// ([`Ledger::note_failure`]): for `xcr status`, never for deciding anything.
    pub failure: Option<FailureNote>,
}

/// The last failure of a destination object, as [`Ledger::note_failure`] wrote it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailureNote {
    /// An [`crate::ErrorKind`] name.
    pub kind: String,
    /// The error's message as logged.
    pub message: String,
    /// When the attempt failed (epoch ms).
    pub at_ms: i64,
}

/// A resumable upload in progress, remembered in the ledger so that the next attempt on the same
/// destination (after a crash, a timeout or a failure) continues the session instead of
/// starting over.
///
/// It pins the source version the session's bytes came from: only a read of that very version
/// (same version id, ETag and size) may continue it. `offset`/`crc32c` are a point GCS had
/// confirmed when they were written; GCS may hold more by now (the session status says how
/// much), and the bytes between are read again from S3, not uploaded again, so that the CRC32C
/// of the whole object is known when the last chunk goes up.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct UploadCheckpoint {
    /// The resumable session URI. A bearer capability (anyone holding it can write the
    /// object): stored, never logged; `Debug` redacts it.
    pub session: String,
    /// The S3 version the session's bytes come from: a resume must read the same one.
    pub version_id: Option<String>,
    /// The S3 ETag of those bytes, checked again on resume.
    pub etag: String,
    /// The object's total size.
    pub size: u64,
    /// Chunk size of the attempt that wrote this (informational: GCS only needs the offsets of
    /// non-final chunks to be multiples of 256 KiB, which any configured chunk size keeps).
    pub chunk_size: u64,
    /// Bytes GCS had confirmed, a multiple of 256 KiB.
    pub offset: u64,
    /// CRC32C of the first `offset` bytes.
    pub crc32c: u32,
}

impl std::fmt::Debug for UploadCheckpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadCheckpoint")
            .field("session", &"<redacted>")
            .field("version_id", &self.version_id)
            .field("etag", &self.etag)
            .field("size", &self.size)
            .field("chunk_size", &self.chunk_size)
            .field("offset", &self.offset)
            .field("crc32c", &self.crc32c)
            .finish()
    }
}

/// Where the transfer engine reports a resumable session's progress so that it outlives the
/// process (the ledger, through the lease holder). Errors stop the copy: they mean the lease
/// is lost and another worker may own the destination now.
pub trait UploadJournal: Send + Sync {
    /// A session was opened, or an earlier one is being continued from `cp.offset`. Written
    /// before any byte of this attempt is sent.
    fn opened(&self, cp: &UploadCheckpoint) -> impl Future<Output = Result<()>> + Send;
    /// GCS confirmed the first `offset` bytes, whose CRC32C is `crc32c`. Called after every
    /// chunk; the journal decides how often to write.
    fn confirmed(&self, offset: u64, crc32c: u32) -> impl Future<Output = Result<()>> + Send;
}

/// A journal that remembers nothing: plain copies outside the ledger.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoJournal;

impl UploadJournal for NoJournal {
    async fn opened(&self, _cp: &UploadCheckpoint) -> Result<()> {
        Ok(())
    }
    async fn confirmed(&self, _offset: u64, _crc32c: u32) -> Result<()> {
        Ok(())
    }
}

/// A request to hold one destination object exclusively for a while.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    /// The destination object (`gs://bucket/name`): one ledger item per destination object.
    pub key: String,
    /// Unique per attempt, so that only this attempt can complete or release its claim.
    pub owner: String,
    /// The clock the lease is judged by (epoch ms).
    pub now_ms: i64,
    /// Until when the lease is held (epoch ms) if the claim succeeds.
    pub lease_until_ms: i64,
    /// Normalized sequencer of the task, when its event had one: the claim then fails if the
    /// ledger already applied this or a later event for the key.
    pub sequencer: Option<String>,
    /// The task's source bucket: the mark is compared only with events of the bucket that set
    /// it ([`LedgerItem::high_water_source`]).
    pub source_bucket: String,
}

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The lease is ours; `previous` is the item as it was (what was done before).
    Acquired {
        /// The item before this claim: the last record, a resumable session to continue.
        previous: LedgerItem,
    },
    /// Someone holds a live lease, or the ledger already applied this or a later event.
    Rejected {
        /// The item that refused the claim: the lease holder, the mark, the last record.
        current: LedgerItem,
    },
}

/// The idempotency and ordering store (DynamoDB). Every write is one conditional request.
pub trait Ledger: Send + Sync {
    /// Takes the lease on one destination object if no live lease is held and, with a
    /// sequencer, if the event is above the key's ordering mark; one conditional write.
    fn claim(&self, req: &ClaimRequest) -> impl Future<Output = Result<Claim>> + Send;
    /// Records `done` and drops the lease, only if `owner` still holds it and nothing newer
    /// was recorded meanwhile. `done.sequencer`, when set, also becomes the ordering mark
    /// ([`LedgerItem::high_water`]); without one the mark is left as it is. `Ok(false)` when
    /// that condition failed.
    fn complete(&self, key: &str, owner: &str, done: &DoneRecord) -> impl Future<Output = Result<bool>> + Send;
    /// Gives up the lease (after a failure or a skip) so that a redelivery need not wait for
    /// it to expire. Does nothing if `owner` no longer holds it. `raise`: the sequencer of an
    /// event decided under this lease without a write (a duplicate, a stale read) becomes the
    /// ordering mark ([`LedgerItem::high_water`]); the claim made sure it is above the mark.
    /// `raise` is (sequencer, source bucket).
    fn release(&self, key: &str, owner: &str, raise: Option<(&str, &str)>) -> impl Future<Output = Result<()>> + Send;
    /// Notes why the lease holder's attempt failed, only if `owner` still holds the lease
    /// (before it is released); [`Ledger::complete`] clears it. For operators
    /// (`GET /v1/objects/...`, `xcr status`): nothing decides by it, and a ledger that keeps no
    /// notes (the default) loses nothing but that answer.
    fn note_failure(&self, key: &str, owner: &str, note: &FailureNote) -> impl Future<Output = Result<()>> + Send {
        let _ = (key, owner, note);
        async { Ok(()) }
    }
    /// Records (`Some`) or forgets (`None`) the item's unfinished upload and sets the lease's
    /// expiry to `lease_until_ms`, only if `owner` still holds the lease. `Ok(false)` when it
    /// does not. [`Ledger::complete`] forgets the upload too.
    fn checkpoint(
        &self,
        key: &str,
        owner: &str,
        upload: Option<&UploadCheckpoint>,
        lease_until_ms: i64,
    ) -> impl Future<Output = Result<bool>> + Send;
}

/// A queue tasks can be put back on: used to retry a `busy` record later without spending one
/// of its receives (a record that is only waiting for another worker must not end up in the
/// dead-letter queue for it).
pub trait TaskQueue: Send + Sync {
    /// Sends `body` to become visible after `delay_secs` (0 to 900).
    fn send_delayed(&self, body: &str, delay_secs: u32) -> impl Future<Output = Result<()>> + Send;
    /// Sends every body (in batches); fails unless all were accepted.
    fn send_all(&self, bodies: &[String]) -> impl Future<Output = Result<()>> + Send;
    /// Makes a received message visible again in `secs` seconds (its visibility timeout, from
    /// now): a failed record's retry clock ([`crate::domain::redelivery`]).
    fn retry_after(&self, receipt_handle: &str, secs: u32) -> impl Future<Output = Result<()>> + Send;
}

/// The dead-letter queue as the job sweep reads it ([`crate::jobs::migrate::Driver::sweep`]): it
/// looks, it never takes. Dead letters wait there for a person to redrive them once the cause is
/// fixed; the sweep only needs to know which job tasks arrived, to count them failed.
pub trait DeadLetters: Send + Sync {
    /// The bodies of up to `max` dead letters, left in the queue and visible again when this
    /// returns (a redrive right after a sweep still finds them all).
    fn peek_dead_letters(&self, max: usize) -> impl Future<Output = Result<Vec<String>>> + Send;
}

/// Durable migration jobs (DynamoDB). Every state change is one conditional write.
pub trait JobStore: Send + Sync {
    /// Stores a new job; conditional on no job with its id existing.
    fn create(&self, job: &crate::jobs::Job) -> impl Future<Output = Result<()>> + Send;
    /// One job by id, as stored now; `None` when there is none.
    fn get(&self, id: &str) -> impl Future<Output = Result<Option<crate::jobs::Job>>> + Send;
    /// Jobs, newest first.
    fn list(&self, limit: usize) -> impl Future<Output = Result<Vec<crate::jobs::Job>>> + Send;
    /// PENDING -> RUNNING. False if the job was not pending.
    fn start(&self, id: &str) -> impl Future<Output = Result<bool>> + Send;
    /// PENDING or RUNNING -> CANCELLED. False if the job had already ended.
    fn cancel(&self, id: &str) -> impl Future<Output = Result<bool>> + Send;
    /// Stores one listing step: the new checkpoint together with the counters, only if the job
    /// is RUNNING and its checkpoint is still `old` (no other driver moved it).
    fn commit_page(
        &self,
        id: &str,
        old: Option<&str>,
        new: Option<&str>,
        listing_done: bool,
        listed: u64,
        queued: u64,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// The page staged for the job's current checkpoint, if a step staged one and has not
    /// committed it yet ([`crate::jobs::StagedPage`]).
    fn staged_page(&self, id: &str) -> impl Future<Output = Result<Option<crate::jobs::StagedPage>>> + Send;
    /// Stores a listed page before any of its tasks is enqueued, only if the job is RUNNING,
    /// its checkpoint is still `page.from`, and no page is staged for that checkpoint already
    /// (a concurrent driver's page wins; a page left from an older checkpoint is replaced).
    /// False when a condition failed.
    fn stage_page(&self, id: &str, page: &crate::jobs::StagedPage) -> impl Future<Output = Result<bool>> + Send;
    /// [`Self::commit_page`] for a staged page, in one transaction with the staged page's
    /// removal: the checkpoint moves to `page.next` and the counters grow by the page's tasks,
    /// only if the checkpoint is still `page.from`.
    fn commit_staged_page(
        &self,
        id: &str,
        page: &crate::jobs::StagedPage,
        queued: u64,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Counts one finished task, once per task id ([`crate::jobs::task_id`]): false if this
    /// task was already counted.
    fn record_task(
        &self,
        id: &str,
        task_id: &str,
        tally: crate::jobs::TaskTally,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// [`Self::record_task`] for several tasks of one job at once: whether each was counted by
    /// this call (false: counted before, or named twice in `tasks`). A store that can writes
    /// them in one request (the DynamoDB store: one transaction of up to 99 tasks), so a batch
    /// of tasks costs one write on the job item instead of one each: fewer requests, and fewer
    /// collisions on that one item, whose write rate bounds a job's task rate. On an error,
    /// none of the tasks may be taken as counted (they are delivered again and counted then);
    /// some may have been, and their markers keep them from being counted twice.
    fn record_tasks(
        &self,
        id: &str,
        tasks: &[(String, crate::jobs::TaskTally)],
    ) -> impl Future<Output = Result<Vec<bool>>> + Send {
        async move {
            let mut counted = Vec::with_capacity(tasks.len());
            for (task_id, tally) in tasks {
                counted.push(self.record_task(id, task_id, *tally).await?);
            }
            Ok(counted)
        }
    }
    /// RUNNING -> SUCCEEDED (no failures) or FAILED, once the listing is done and no task is
    /// pending. Returns the new status when this call ended the job.
    fn try_finish(&self, id: &str) -> impl Future<Output = Result<Option<crate::jobs::JobStatus>>> + Send;
    /// Takes the job's driver lease (one driver at a time) until `until_ms`.
    fn claim_driver(
        &self,
        id: &str,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Gives up the driver lease `owner` holds, so the next invocation need not wait it out.
    fn release_driver(&self, id: &str, owner: &str) -> impl Future<Output = Result<()>> + Send;
    /// PENDING or RUNNING -> FAILED with a reason: the job cannot go on (its manifest is gone...).
    fn fail(&self, id: &str, message: &str) -> impl Future<Output = Result<bool>> + Send;
    /// Records a problem the driver hit, for `xcr jobs show`.
    fn set_error(&self, id: &str, message: &str) -> impl Future<Output = Result<()>> + Send;
    /// Counts one finished audit page task ([`crate::jobs::audit_page`]) once per task id, as
    /// [`Self::record_task`] counts a copy: false if it was counted already. A store without
    /// audit jobs refuses.
    fn record_audit_page(
        &self,
        id: &str,
        task_id: &str,
        tally: crate::jobs::AuditTally,
    ) -> impl Future<Output = Result<bool>> + Send {
        let _ = (id, task_id, tally);
        async {
            Err(crate::domain::error::Error::new(
                crate::domain::error::ErrorKind::Config,
                "this job store does not count audit jobs",
            ))
        }
    }
}
