//! The use case every entry point shares: apply one task (copy or delete) to each of its GCS
//! destinations, exactly once in effect and in order.
//!
//! For each destination object:
//! 1. **Claim** it in the ledger: one conditional write that takes a lease if no live lease is
//!    held and, when the event has a sequencer, if no event at or after it was applied. A
//!    rejected claim answers `already_replicated`, `stale` or `busy` from the item it returns.
//! 2. **Read** the source. Its metadata comes back before any byte is uploaded; the ledger's
//!    previous record decides whether a copy is needed (same version and ETag: duplicate; an
//!    older last-modified time than the one recorded: stale).
//! 3. **Stream** it into GCS, verified ([`crate::transfer`]).
//! 4. **Complete**: record generation, size, CRC32C, version, ETag, sequencer, conditional on
//!    still holding the lease and on nothing newer having been recorded.
//!
//! Order, in one rule: events with a sequencer are ordered by it, compared as AWS documents
//! (right-pad the shorter with zeros, then compare as strings: [`crate::events::sequencer_order`]). Without one (emulators, API calls, jobs)
//! the version id and ETag tell a duplicate, and the source's last-modified time read at copy
//! time orders versions. A delete without a sequencer is applied only if the source is gone
//! (HEAD answers 404), and is ordered by its event time. The lease lasts until the invocation's
//! deadline plus a margin, so it can only expire once its holder is dead. Entry points without
//! a deadline (`xcr replicate`) hold it for a time-to-live instead, renewed while the copy makes
//! progress ([`ReplicateSettings::lease_ttl`]).
//!
//! A large copy is checkpointed in the same ledger item: the lease holder records its resumable
//! session (and, every few seconds, a confirmed offset) through a [`LeaseJournal`], and the
//! next claim gets it back with the previous item, so a delivery after a crash continues the
//! session from the offset GCS confirms ([`crate::transfer`]). Completion removes it.

use crate::error::{Error, ErrorKind, Result};
use crate::events::{Action, Task, sequencer_order};
use crate::jobs::Overwrite;
use crate::model::{Destination, ObjectRef};
use crate::ports::{
    Claim, ClaimRequest, DoneRecord, Ledger, LedgerItem, ObjectSink, ObjectSource, UploadCheckpoint, UploadJournal,
};
use crate::routing::Router;
use crate::transfer::{Copy, Transfer, TransferReport};
use serde::Serialize;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::Instrument;

/// How a task ended for one destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Copied and verified.
    Replicated,
    /// This version was already copied: nothing was uploaded.
    AlreadyReplicated,
    /// Something newer was already applied: this older event changed nothing.
    Stale,
    /// Another worker holds a live lease on the destination: retry later.
    Busy,
    /// The destination object was deleted.
    Deleted,
    /// Nothing to do by configuration (no route, deletes not replicated, test event).
    Skipped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Replicated => "replicated",
            Self::AlreadyReplicated => "already_replicated",
            Self::Stale => "stale",
            Self::Busy => "busy",
            Self::Deleted => "deleted",
            Self::Skipped => "skipped",
        }
    }

    /// Whether the task must be delivered again (SQS partial failure, Lambda retry).
    pub fn needs_retry(self) -> bool {
        self == Self::Busy
    }
}

/// The result of one task for one destination, as the CLI prints it and the API returns it.
#[derive(Debug, Clone, Serialize)]
pub struct Replication {
    pub outcome: Outcome,
    pub source: SourceSummary,
    pub destination: DestinationSummary,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crc32c: Option<String>,
    /// Why nothing was copied, for the outcomes other than `replicated`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub transfer: Option<TransferReport>,
    pub duration_ms: u64,
    /// For `busy`: when the lease that blocked this task runs out, in seconds.
    #[serde(skip)]
    pub retry_after_secs: Option<u64>,
    /// For `already_replicated` in a migration job: the bytes an earlier delivery of a task of
    /// this same job copied (see [`DoneRecord::job_id`]), so the job counts the object as
    /// replicated, not skipped, whichever of the two deliveries is counted first.
    #[serde(skip)]
    pub copied_by_own_job: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SourceSummary {
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DestinationSummary {
    pub bucket: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<String>,
}

/// Settings of the use case itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicateSettings {
    /// Apply `ObjectRemoved` events (`XCR_REPLICATE_DELETES`); off by default.
    pub replicate_deletes: bool,
    /// Added to the deadline for the lease, to cover clock differences.
    pub lease_margin: Duration,
    /// For callers without a hard deadline (the CLI): the lease lasts this long past the claim
    /// and past every upload checkpoint (written at least every third of it while chunks are
    /// confirmed), instead of until the deadline plus the margin. A crashed run then blocks its
    /// destination only this long, while a live one keeps it. It must exceed the time one chunk
    /// takes to upload, retries included; if it runs out anyway, the next checkpoint or the
    /// completion finds the lease taken and the copy stops (retryable), never racing the new holder.
    pub lease_ttl: Option<Duration>,
}

impl Default for ReplicateSettings {
    fn default() -> Self {
        Self { replicate_deletes: false, lease_margin: Duration::from_secs(30), lease_ttl: None }
    }
}

/// How often a confirmed offset is written to the ledger at most (a renewable lease is written
/// at least every third of its time-to-live). After a crash, the bytes between the last such
/// write and what GCS confirms are read again from S3, never sent again to GCS.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);

pub struct Replicator<S, K, L> {
    transfer: Transfer<S, K>,
    ledger: L,
    router: Router,
    settings: ReplicateSettings,
}

impl<S: ObjectSource, K: ObjectSink, L: Ledger> Replicator<S, K, L> {
    pub fn new(transfer: Transfer<S, K>, ledger: L, router: Router, settings: ReplicateSettings) -> Self {
        Self { transfer, ledger, router, settings }
    }

    /// Holds leases for `ttl`, renewed by upload checkpoints, instead of until the deadline
    /// ([`ReplicateSettings::lease_ttl`]): for callers without a hard deadline.
    pub fn with_lease_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.settings.lease_ttl = ttl;
        self
    }

    pub fn transfer(&self) -> &Transfer<S, K> {
        &self.transfer
    }

    pub fn ledger(&self) -> &L {
        &self.ledger
    }

    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Where a task goes: its explicit destination, else the routing rules.
    pub fn destinations(&self, task: &Task) -> Vec<Destination> {
        match &task.destination {
            Some(d) => vec![d.clone()],
            None => self.router.route(&task.object.bucket, &task.object.key),
        }
    }

    /// Applies `task` to every destination. `deadline_ms` is when the caller's time runs out
    /// (the Lambda deadline); leases last until then plus a margin. An empty route gives one
    /// `skipped` result, not an error.
    pub async fn apply(&self, task: &Task, deadline_ms: i64) -> Vec<Result<Replication>> {
        let dests = self.destinations(task);
        if dests.is_empty() {
            tracing::info!(object = %task.object, "no route for this object; skipped");
            return vec![Ok(skipped(task, None, "no routing rule matches this object"))];
        }
        let mut out = Vec::with_capacity(dests.len());
        for dest in dests {
            let span = tracing::info_span!("task", object = %task.object, destination = %dest, action = ?task.action, job_id = task.job_id.as_deref());
            let result = self.apply_one(task, &dest, deadline_ms).instrument(span.clone()).await;
            span.in_scope(|| match &result {
                Ok(r) => tracing::info!(
                    outcome = r.outcome.as_str(),
                    bytes = r.bytes,
                    detail = r.detail.as_deref(),
                    duration_ms = r.duration_ms,
                    "task done"
                ),
                Err(e) => {
                    tracing::error!(kind = %e.kind(), retryable = e.is_retryable(), error = %e.chain(), "task failed")
                }
            });
            out.push(result.map_err(|e| e.context(format_args!("{} -> {dest}", task.object))));
        }
        out
    }

    /// Copies one object to one destination (the CLI's and the API's entry).
    pub async fn replicate(&self, obj: &ObjectRef, dest: Option<Destination>, deadline_ms: i64) -> Result<Replication> {
        let task = Task {
            action: Action::Copy,
            object: obj.clone(),
            sequencer: None,
            event_time: None,
            job_id: None,
            destination: dest,
            overwrite: None,
        };
        let mut results = self.apply(&task, deadline_ms).await;
        match results.len() {
            1 => results.remove(0),
            _ => Err(Error::new(ErrorKind::Invalid, "the object routes to several destinations; name one with --dest")),
        }
    }

    async fn apply_one(&self, task: &Task, dest: &Destination, deadline_ms: i64) -> Result<Replication> {
        validate_key(&task.object.key)?;
        if task.action == Action::Delete && !self.settings.replicate_deletes {
            return Ok(skipped(task, Some(dest), "deletes are not replicated (XCR_REPLICATE_DELETES is off)"));
        }
        let started = std::time::Instant::now();
        let key = ledger_key(dest);
        let owner = format!("{:032x}", fastrand::u128(..));
        let sequencer = task.sequencer.as_deref().map(sequencer_order);
        let now = now_ms();
        let lease_until = match self.settings.lease_ttl {
            Some(ttl) => now + ttl.as_millis() as i64,
            None => deadline_ms.max(now) + self.settings.lease_margin.as_millis() as i64,
        };
        let claim = ClaimRequest {
            key: key.clone(),
            owner: owner.clone(),
            now_ms: now,
            lease_until_ms: lease_until,
            sequencer: sequencer.clone(),
        };
        let claimed = match self.ledger.claim(&claim).await {
            Ok(c) => c,
            Err(e) => {
                // The claim may have been applied with its answer lost (a reset, a timeout after
                // DynamoDB wrote it). Why release: that lease is ours and nobody else could free
                // it; left alone, every redelivery would be `busy` until it expires. The release
                // is conditional on our owner id, so it is harmless if the claim never landed.
                if e.is_retryable() {
                    self.release(&key, &owner).await;
                }
                return Err(e);
            }
        };
        let previous = match claimed {
            Claim::Rejected { current } => {
                let (outcome, why) = rejection(&current, sequencer.as_deref(), now);
                let mut r = result(task, dest, outcome, Some(why), started);
                if outcome == Outcome::Busy {
                    let left = current.lease_expires_ms.map_or(0, |t| (t - now).max(0) / 1000);
                    r.retry_after_secs = Some(u64::try_from(left).unwrap_or(0) + 1);
                }
                return Ok(r);
            }
            Claim::Acquired { previous } => previous,
        };
        let applied = match task.action {
            Action::Copy => {
                let journal = LeaseJournal::new(&self.ledger, &key, &owner, lease_until, self.settings.lease_ttl);
                let upload = previous.upload.as_ref();
                self.copy(task, dest, &journal, sequencer, previous.done.as_ref(), upload, started).await
            }
            Action::Delete => self.delete(task, dest, &key, &owner, sequencer, previous.done.as_ref(), started).await,
        };
        match &applied {
            Ok(r) if r.outcome == Outcome::Replicated || r.outcome == Outcome::Deleted => {}
            // Skipped or failed: give the lease back so a redelivery need not wait for it.
            _ => {
                self.release(&key, &owner).await;
            }
        }
        applied
    }

    /// Gives the lease back, retrying transient failures with the one retry policy. Why retry:
    /// a lease left behind makes every later event for this key `busy` until it expires, at the
    /// invocation's deadline plus a margin (up to a quarter of an hour on Lambda); the SDK's own
    /// three attempts were seen to run out under the fault tests' 25% failure rate.
    async fn release(&self, key: &str, owner: &str) {
        let policy = self.transfer.retry_policy();
        if let Err(e) = policy.run("release lease", |_| self.ledger.release(key, owner)).await {
            tracing::warn!(error = %e.chain(), "could not release the lease; it will expire");
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn copy(
        &self,
        task: &Task,
        dest: &Destination,
        journal: &LeaseJournal<'_, L>,
        sequencer: Option<String>,
        previous: Option<&DoneRecord>,
        upload: Option<&UploadCheckpoint>,
        started: std::time::Instant,
    ) -> Result<Replication> {
        let (key, owner) = (journal.key, journal.owner);
        let ordered_by_sequencer = sequencer.is_some() && previous.is_some_and(|p| p.sequencer.is_some());
        // Migration jobs' overwrite policies may look at what GCS holds when the ledger has no
        // record (the destination was filled by something else). Event-driven copies never do.
        let existing = match task.overwrite {
            Some(Overwrite::Different | Overwrite::Never) if previous.is_none() => {
                self.transfer.sink().stat(&dest.bucket, &dest.name).await?
            }
            _ => None,
        };
        let policy = task.overwrite;
        let copied = self
            .transfer
            .copy_journaled(
                &task.object,
                dest,
                |meta| {
                    if policy == Some(Overwrite::Never)
                        && (existing.is_some() || previous.is_some_and(|p| p.action == "copy"))
                    {
                        return Some((Outcome::AlreadyReplicated, "the destination exists (overwrite: never)".into()));
                    }
                    if let Some(found) = &existing
                        && same_content(found, meta)
                    {
                        return Some((
                            Outcome::AlreadyReplicated,
                            "GCS already holds the same size and checksum".into(),
                        ));
                    }
                    match judge_read(previous, meta, ordered_by_sequencer) {
                        // `always` copies even an identical version; it never copies an older one.
                        Some((Outcome::AlreadyReplicated, _)) if policy == Some(Overwrite::Always) => None,
                        other => other,
                    }
                },
                upload,
                journal,
            )
            .await;
        let copied = match copied {
            // A session whose bytes failed verification must not be continued by the next try.
            Err(e) if e.kind() == ErrorKind::Integrity => {
                journal.forget().await;
                return Err(e);
            }
            other => other?,
        };
        let report = match copied {
            Copy::Skipped((outcome, why), meta) => {
                let mut r = result(task, dest, outcome, Some(why), started);
                r.source.version_id = meta.version_id.clone();
                r.source.etag = Some(meta.etag.clone());
                r.destination.generation = previous.and_then(|p| p.generation.clone());
                if outcome == Outcome::AlreadyReplicated
                    && let Some(p) = previous.filter(|p| p.job_id.is_some() && p.job_id == task.job_id)
                {
                    r.copied_by_own_job = Some(p.size.unwrap_or(0));
                }
                return Ok(r);
            }
            Copy::Done(report) => report,
        };
        let done = DoneRecord {
            action: "copy".into(),
            sequencer,
            last_modified_ms: report.source.last_modified.as_deref().and_then(rfc3339_ms),
            version_id: report.source.version_id.clone(),
            etag: Some(report.source.etag.clone()),
            generation: Some(report.stored.generation.clone()),
            size: Some(report.stored.size),
            crc32c: Some(report.crc32c.clone()),
            source_bucket: task.object.bucket.clone(),
            source_key: task.object.key.clone(),
            done_at_ms: now_ms(),
            job_id: task.job_id.clone(),
        };
        if !self.ledger.complete(key, owner, &done).await? {
            return Err(Error::new(
                ErrorKind::Transient,
                "copied, but the ledger lease was lost or a newer version was recorded meanwhile; retrying re-checks the order",
            ));
        }
        let mut r = result(task, dest, Outcome::Replicated, None, started);
        r.source.version_id = report.source.version_id.clone();
        r.source.etag = Some(report.source.etag.clone());
        r.source.size = Some(report.source.size);
        r.source.last_modified = report.source.last_modified.clone();
        r.destination.generation = Some(report.stored.generation.clone());
        r.bytes = Some(report.source.size);
        r.crc32c = Some(report.crc32c.clone());
        r.transfer = Some(report);
        Ok(r)
    }

    #[allow(clippy::too_many_arguments)]
    async fn delete(
        &self,
        task: &Task,
        dest: &Destination,
        key: &str,
        owner: &str,
        sequencer: Option<String>,
        previous: Option<&DoneRecord>,
        started: std::time::Instant,
    ) -> Result<Replication> {
        // Whole seconds, like S3's last-modified times it is compared with.
        let event_ms = task.event_time.as_deref().and_then(rfc3339_ms).unwrap_or_else(now_ms) / 1000 * 1000;
        if sequencer.is_none() {
            // No sequencer to order by: apply the delete only if the object is really gone, and
            // not over a write recorded as newer than the delete event.
            if self.transfer.source().exists(&task.object).await? {
                return Ok(result(task, dest, Outcome::Stale, Some("the source object exists again".into()), started));
            }
            if let Some(lm) = previous.and_then(|p| p.last_modified_ms).filter(|lm| *lm > event_ms) {
                let why = format!("a write from {lm} ms is newer than this delete ({event_ms} ms)");
                return Ok(result(task, dest, Outcome::Stale, Some(why), started));
            }
        }
        self.transfer.sink().delete(&dest.bucket, &dest.name, None).await?;
        let done = DoneRecord {
            action: "delete".into(),
            sequencer,
            last_modified_ms: Some(event_ms),
            version_id: task.object.version_id.clone(),
            source_bucket: task.object.bucket.clone(),
            source_key: task.object.key.clone(),
            done_at_ms: now_ms(),
            ..Default::default()
        };
        if !self.ledger.complete(key, owner, &done).await? {
            return Err(Error::new(ErrorKind::Transient, "deleted, but the ledger lease was lost meanwhile"));
        }
        Ok(result(task, dest, Outcome::Deleted, None, started))
    }
}

/// Records a resumable upload in the ledger item on behalf of the lease holder, so that the next
/// attempt can continue it, and renews a time-to-live lease as the copy makes progress. Every
/// write is conditional on still holding the lease: when it fails, another worker may own the
/// destination, and the copy stops rather than race it.
pub struct LeaseJournal<'a, L> {
    ledger: &'a L,
    key: &'a str,
    owner: &'a str,
    ttl: Option<Duration>,
    state: Mutex<JournalState>,
}

struct JournalState {
    /// The session being written and the last offset reported (not necessarily written).
    upload: Option<UploadCheckpoint>,
    last_write: Instant,
    lease_until_ms: i64,
}

impl<'a, L: Ledger> LeaseJournal<'a, L> {
    pub fn new(ledger: &'a L, key: &'a str, owner: &'a str, lease_until_ms: i64, ttl: Option<Duration>) -> Self {
        let state = JournalState { upload: None, last_write: Instant::now(), lease_until_ms };
        Self { ledger, key, owner, ttl, state: Mutex::new(state) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, JournalState> {
        // Nothing panics while holding it; a poisoned lock still holds consistent plain data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Time between progress writes: [`CHECKPOINT_EVERY`], or a third of a renewable lease.
    fn every(&self) -> Duration {
        self.ttl.map_or(CHECKPOINT_EVERY, |t| CHECKPOINT_EVERY.min(t / 3))
    }

    /// Writes `upload` (or forgets it) and, for a renewable lease, extends it from now.
    /// `Ok(false)`: the lease is no longer ours.
    async fn write(&self, upload: Option<&UploadCheckpoint>) -> Result<bool> {
        let until = {
            let mut st = self.state();
            if let Some(ttl) = self.ttl {
                st.lease_until_ms = st.lease_until_ms.max(now_ms() + ttl.as_millis() as i64);
            }
            st.last_write = Instant::now();
            st.lease_until_ms
        };
        self.ledger.checkpoint(self.key, self.owner, upload, until).await
    }

    fn lease_lost(&self) -> Error {
        Error::new(
            ErrorKind::Transient,
            format!("the ledger lease on {} was lost (another worker may hold it now); stopping this copy", self.key),
        )
    }

    /// Forgets the recorded upload, ours or an earlier attempt's (best effort).
    pub async fn forget(&self) {
        self.state().upload = None;
        if let Err(e) = self.write(None).await {
            tracing::warn!(error = %e.chain(), "could not forget the upload session in the ledger");
        }
    }
}

impl<L: Ledger> UploadJournal for LeaseJournal<'_, L> {
    async fn opened(&self, cp: &UploadCheckpoint) -> Result<()> {
        self.state().upload = Some(cp.clone());
        if self.write(Some(cp)).await? { Ok(()) } else { Err(self.lease_lost()) }
    }

    async fn confirmed(&self, offset: u64, crc32c: u32) -> Result<()> {
        let every = self.every();
        let due = {
            let mut st = self.state();
            let due = st.last_write.elapsed() >= every;
            let Some(up) = st.upload.as_mut() else { return Ok(()) };
            up.offset = offset;
            up.crc32c = crc32c;
            due.then(|| up.clone())
        };
        let Some(cp) = due else { return Ok(()) };
        match self.write(Some(&cp)).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(self.lease_lost()),
            // A progress write that failed costs only S3 re-reads after a crash; the copy goes
            // on (the next write, or the completion, re-checks the lease).
            Err(e) => {
                tracing::warn!(error = %e.chain(), "could not checkpoint the upload; continuing");
                Ok(())
            }
        }
    }
}

/// Why a claim was refused, from the item the ledger returned.
fn rejection(current: &LedgerItem, sequencer: Option<&str>, now: i64) -> (Outcome, String) {
    if let (Some(ours), Some(done)) = (sequencer, current.done.as_ref().and_then(|d| d.sequencer.as_deref())) {
        if done == ours {
            return (Outcome::AlreadyReplicated, "this event was already applied".into());
        }
        if done > ours {
            return (Outcome::Stale, "a later event for this key was already applied".into());
        }
    }
    let left = current.lease_expires_ms.map(|t| (t - now).max(0) / 1000).unwrap_or(0);
    (Outcome::Busy, format!("another worker holds the lease for {left} more seconds"))
}

/// Whether GCS's object has the source's size and a checksum that proves the same bytes: the
/// MD5 of a single-part ETag, or S3's full-object CRC32C.
fn same_content(found: &crate::model::StoredObject, meta: &crate::model::SourceMeta) -> bool {
    let md5 = meta.md5.as_ref().map(crate::transfer::checksum::md5_b64);
    found.size == meta.size
        && ((md5.is_some() && found.md5 == md5) || (meta.crc32c.is_some() && found.crc32c == meta.crc32c))
}

/// Decides, from the source's metadata and the previous record, whether copying is needed.
/// When both the task and the record carry sequencers, the claim has already ordered them and
/// the coarser last-modified time (whole seconds in S3) must not overrule it.
fn judge_read(
    previous: Option<&DoneRecord>,
    meta: &crate::model::SourceMeta,
    ordered_by_sequencer: bool,
) -> Option<(Outcome, String)> {
    let prev = previous?;
    if prev.action == "copy" && prev.etag.as_deref() == Some(meta.etag.as_str()) && prev.version_id == meta.version_id {
        return Some((Outcome::AlreadyReplicated, "this version was already copied".into()));
    }
    if ordered_by_sequencer {
        return None;
    }
    let lm = meta.last_modified.as_deref().and_then(rfc3339_ms)?;
    match prev.last_modified_ms {
        Some(recorded) if recorded > lm => Some((
            Outcome::Stale,
            format!("the ledger records a newer {} (last modified {recorded} ms > {lm} ms)", prev.action),
        )),
        _ => None,
    }
}

/// A `skipped` result for a task that was not applied at all.
pub fn skipped_task(task: &Task, why: &str) -> Replication {
    skipped(task, task.destination.as_ref(), why)
}

fn skipped(task: &Task, dest: Option<&Destination>, why: &str) -> Replication {
    let dest = dest.cloned().unwrap_or_else(|| Destination::new("", ""));
    result(task, &dest, Outcome::Skipped, Some(why.to_string()), std::time::Instant::now())
}

fn result(
    task: &Task,
    dest: &Destination,
    outcome: Outcome,
    detail: Option<String>,
    started: std::time::Instant,
) -> Replication {
    Replication {
        outcome,
        source: SourceSummary {
            bucket: task.object.bucket.clone(),
            key: task.object.key.clone(),
            version_id: task.object.version_id.clone(),
            etag: None,
            size: None,
            last_modified: None,
        },
        destination: DestinationSummary { bucket: dest.bucket.clone(), name: dest.name.clone(), generation: None },
        bytes: None,
        crc32c: None,
        detail,
        transfer: None,
        duration_ms: started.elapsed().as_millis() as u64,
        copied_by_own_job: None,
        retry_after_secs: None,
    }
}

/// The ledger key of a destination object.
pub fn ledger_key(dest: &Destination) -> String {
    format!("gs://{}/{}", dest.bucket, dest.name)
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Parses S3's RFC 3339 timestamps (`2026-11-23T05:05:51Z`, optional fraction) to epoch ms.
pub fn rfc3339_ms(s: &str) -> Option<i64> {
    aws_smithy_types::DateTime::from_str(s, aws_smithy_types::date_time::Format::DateTime)
        .ok()
        .map(|t| t.secs() * 1000 + i64::from(t.subsec_nanos() / 1_000_000))
}

/// S3 keys and GCS object names are both 1 to 1,024 bytes of UTF-8.
pub fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > 1024 {
        return Err(Error::new(ErrorKind::Invalid, format!("key must be 1 to 1024 bytes, got {}", key.len())));
    }
    if key.contains(['\r', '\n']) {
        return Err(Error::new(ErrorKind::Invalid, "GCS object names cannot contain carriage returns or line feeds"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(seq: Option<&str>, lm: Option<i64>, etag: &str, version: Option<&str>) -> DoneRecord {
        DoneRecord {
            action: "copy".into(),
            sequencer: seq.map(sequencer_order),
            last_modified_ms: lm,
            etag: Some(etag.into()),
            version_id: version.map(str::to_string),
            ..Default::default()
        }
    }

    /// Records the ledger writes a journal makes; `lost` makes them fail their condition.
    #[derive(Default)]
    struct Writes {
        log: Mutex<Vec<(Option<u64>, i64)>>,
        lost: std::sync::atomic::AtomicBool,
    }

    impl Ledger for Writes {
        async fn claim(&self, _: &ClaimRequest) -> Result<Claim> {
            Ok(Claim::Acquired { previous: LedgerItem::default() })
        }
        async fn complete(&self, _: &str, _: &str, _: &DoneRecord) -> Result<bool> {
            Ok(true)
        }
        async fn release(&self, _: &str, _: &str) -> Result<()> {
            Ok(())
        }
        async fn checkpoint(&self, _: &str, _: &str, up: Option<&UploadCheckpoint>, until: i64) -> Result<bool> {
            if self.lost.load(std::sync::atomic::Ordering::SeqCst) {
                return Ok(false);
            }
            self.log.lock().expect("lock").push((up.map(|u| u.offset), until));
            Ok(true)
        }
    }

    #[tokio::test]
    async fn the_journal_records_the_session_then_progress_at_most_every_interval() {
        let ledger = Writes::default();
        let claimed_until = now_ms() + 1_000;
        // A renewable lease of 60 ms: progress is written at most every 20 ms.
        let journal = LeaseJournal::new(&ledger, "gs://b/k", "me", claimed_until, Some(Duration::from_millis(60)));
        let cp = UploadCheckpoint { session: "s".into(), etag: "e".into(), size: 100 << 20, ..Default::default() };
        journal.opened(&cp).await.expect("opened");
        journal.confirmed(1 << 20, 1).await.expect("confirmed");
        journal.confirmed(2 << 20, 2).await.expect("confirmed");
        assert_eq!(ledger.log.lock().expect("lock").len(), 1, "progress written before the interval");
        tokio::time::sleep(Duration::from_millis(25)).await;
        journal.confirmed(3 << 20, 3).await.expect("confirmed");
        {
            let log = ledger.log.lock().expect("lock");
            assert_eq!(log.iter().map(|w| w.0).collect::<Vec<_>>(), vec![Some(0), Some(3 << 20)]);
            // The lease never shrinks below the claim's, and a renewal moves it forward.
            assert!(log.iter().all(|w| w.1 >= claimed_until));
        }
        // A lost lease stops the copy.
        ledger.lost.store(true, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(25)).await;
        let e = journal.confirmed(4 << 20, 4).await.expect_err("lease lost");
        assert_eq!(e.kind(), ErrorKind::Transient);
        assert!(journal.opened(&cp).await.is_err());
        // Forgetting writes no session.
        ledger.lost.store(false, std::sync::atomic::Ordering::SeqCst);
        journal.forget().await;
        assert_eq!(ledger.log.lock().expect("lock").last().map(|w| w.0), Some(None));
    }

    #[tokio::test]
    async fn a_deadline_lease_is_not_extended_by_checkpoints() {
        let ledger = Writes::default();
        let journal = LeaseJournal::new(&ledger, "gs://b/k", "me", 12_345, None);
        let cp = UploadCheckpoint { session: "s".into(), etag: "e".into(), size: 100, ..Default::default() };
        journal.opened(&cp).await.expect("opened");
        assert_eq!(ledger.log.lock().expect("lock").as_slice(), &[(Some(0), 12_345)]);
    }

    #[test]
    fn rejected_claims_explain_themselves() {
        let item = LedgerItem { done: Some(done(Some("00AA"), None, "e", None)), ..Default::default() };
        assert_eq!(rejection(&item, Some(&sequencer_order("00AA")), 0).0, Outcome::AlreadyReplicated);
        assert_eq!(rejection(&item, Some(&sequencer_order("0099")), 0).0, Outcome::Stale);
        let leased = LedgerItem { lease_owner: Some("x".into()), lease_expires_ms: Some(65_000), ..Default::default() };
        let (outcome, why) = rejection(&leased, None, 5_000);
        assert_eq!(outcome, Outcome::Busy);
        assert!(why.contains("60 more seconds"), "{why}");
    }

    #[test]
    fn reads_are_judged_against_the_previous_record() {
        let meta = |etag: &str, version: Option<&str>, lm: &str| crate::model::SourceMeta {
            etag: etag.into(),
            version_id: version.map(str::to_string),
            last_modified: Some(lm.into()),
            ..Default::default()
        };
        let t1 = rfc3339_ms("2026-11-23T05:00:00Z");
        assert_eq!(t1, Some(1_795_410_000_000));
        let prev = done(None, t1, "e1", Some("v1"));
        // Same version and ETag: duplicate.
        assert_eq!(
            judge_read(Some(&prev), &meta("e1", Some("v1"), "2026-11-23T05:00:00Z"), false).map(|j| j.0),
            Some(Outcome::AlreadyReplicated)
        );
        // Older than recorded: stale.
        assert_eq!(
            judge_read(Some(&prev), &meta("e0", Some("v0"), "2026-11-23T04:59:59Z"), false).map(|j| j.0),
            Some(Outcome::Stale)
        );
        // Newer, or the same second with another ETag: copy.
        assert_eq!(judge_read(Some(&prev), &meta("e2", Some("v2"), "2026-11-23T05:00:01Z"), false), None);
        assert_eq!(judge_read(Some(&prev), &meta("e2", Some("v2"), "2026-11-23T05:00:00Z"), false), None);
        assert_eq!(judge_read(None, &meta("e2", None, "2026-11-23T05:00:00Z"), false), None);
        // Ordered by sequencers: an older last-modified time does not make it stale.
        assert_eq!(judge_read(Some(&prev), &meta("e0", Some("v0"), "2026-11-23T04:59:59Z"), true), None);
    }
}
