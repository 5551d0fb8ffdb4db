//! The use case every entry point shares: apply one task (copy or delete) to each of its GCS
//! destinations, exactly once in effect and in order.
//!
//! **The contract.** With deletes replicated (`XCR_REPLICATE_DELETES`), once every event for a
//! key has been applied (in any order, duplicated, delayed, with job, API and CLI copies in
//! between) the GCS object equals what S3 serves *now* for that key (bytes, metadata,
//! provenance) and is absent exactly when S3 has no current object. With deletes off, GCS holds
//! the newest version S3 has had, never an older one. Everything below follows from it.
//!
//! For each destination object:
//! 1. **Claim** it in the ledger: one conditional write that takes a lease if no live lease is
//!    held and, when the event has a sequencer, if it is above the key's ordering mark (the
//!    highest sequencer decided so far). A rejected claim answers `already_replicated`,
//!    `stale` or `busy` from the item it returns.
//! 2. **Read** the source under the lease. With deletes replicated every task reads the
//!    *current* object (`Replicator::what_to_read`): an event's version id only says which
//!    version changed, and the lease orders the holders' reads, so the last read is the newest
//!    state. A delete is decided the same way: a HEAD of the current object; the copy is
//!    deleted only when S3 has none, and otherwise what is current is copied (deleting a
//!    noncurrent version changes nothing, removing a delete marker restores the copy, deleting
//!    the current version brings back the previous one). With deletes off, reads are pinned to
//!    the task's version, and one older than the record (by last-modified time) is `stale`.
//!    The metadata comes back before any byte is uploaded; the same version, ETag,
//!    last-modified time and metadata digest as recorded is a duplicate (a metadata-only
//!    self-copy keeps the ETag, so it is not).
//! 3. **Stream** it into GCS, verified ([`crate::transfer`]), fenced: every write and delete
//!    carries `ifGenerationMatch` with the generation the ledger recorded (`0` when none), so
//!    a holder that outlived its lease is refused by GCS instead of landing an older copy. A
//!    412 ([`ErrorKind::Conflict`]) makes the holder check its lease and decide again with the
//!    generation GCS holds (`Replicator::refence`).
//! 4. **Complete**: record generation, size, CRC32C, version, ETag, metadata digest and
//!    sequencer, conditional on still holding the lease. A duplicate or stale read under the
//!    lease raises the ordering mark too (on release); no writer ever removes it, so an
//!    unsequenced copy (jobs, API, CLI) cannot erase what events ordered.
//!
//! Sequencers are compared as AWS documents (right-pad the shorter with zeros, then compare as
//! strings: [`crate::domain::events::sequencer_order`]); they only order events of one key, which is why
//! routes that send two source buckets to one destination name are refused. The lease lasts
//! until the invocation's deadline plus a margin, so it can only expire once its holder is dead.
//! Entry points without a deadline (`xcr replicate`) hold it for a time-to-live instead, renewed
//! while the copy makes progress ([`ReplicateSettings::lease_ttl`]).
//!
//! A large copy is checkpointed in the same ledger item: the lease holder records its resumable
//! session (and, every few seconds, a confirmed offset) through a [`LeaseJournal`], and the
//! next claim gets it back with the previous item, so a delivery after a crash continues the
//! session from the offset GCS confirms ([`crate::transfer`]). Completion removes it.
//!
//! **Continuations.** [`Replicator::apply_within`] runs under the invocation's time budget
//! ([`crate::domain::budget`]). A resumable copy with no time left for its next chunk stops at a chunk
//! boundary: the journal writes the last confirmed offset at once (not only every few
//! seconds), the lease is released at once, and the result is [`Outcome::Continued`] with the
//! offset in `detail`, so that the continuation can claim the key as soon as it is delivered
//! and resume without re-sending a byte. A destination the budget leaves no time to start is
//! `continued` too, with nothing done. The caller hands the task on (the SQS handler sends it
//! again at once, [`crate::entry::handler`]); without a budget ([`Replicator::apply`]) no copy stops.

mod clock;
mod journal;
mod keys;
mod outcome;

// The use case's vocabulary is reached as `domain::replicate::X`; the files are how it is
// organised inside, not part of its paths.
pub use clock::{now_ms, rfc3339_ms};
pub use journal::{CHECKPOINT_EVERY, LeaseJournal};
pub use keys::{ledger_key, validate_key};
pub use outcome::{DestinationSummary, Outcome, Replication, SourceSummary, skipped_task};
use outcome::{not_started, result, skipped};

use crate::domain::budget::{Budget, may_start_task};
use crate::domain::error::{Error, ErrorKind, Result};
use crate::domain::events::{Action, Task, sequencer_order};
use crate::domain::model::Overwrite;
use crate::domain::model::{Destination, ObjectRef};
use crate::domain::routing::Router;
use crate::ports::{Claim, ClaimRequest, DoneRecord, FailureNote, Ledger, LedgerItem, ObjectSink, ObjectSource};
use crate::transfer::{Copy, CopyTerms, Paused, Transfer};
use std::time::Duration;
use tracing::Instrument;

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

/// The use case: applies tasks to their destinations through a source, a sink and a ledger
/// (the ports), so that every entry point gets the same claims, fencing and verification.
pub struct Replicator<S, K, L> {
    transfer: Transfer<S, K>,
    ledger: L,
    router: Router,
    settings: ReplicateSettings,
}

impl<S: ObjectSource, K: ObjectSink, L: Ledger> Replicator<S, K, L> {
    /// A replicator over one transfer engine, one ledger and the routing rules.
    pub fn new(transfer: Transfer<S, K>, ledger: L, router: Router, settings: ReplicateSettings) -> Self {
        Self { transfer, ledger, router, settings }
    }

    /// Holds leases for `ttl`, renewed by upload checkpoints, instead of until the deadline
    /// ([`ReplicateSettings::lease_ttl`]): for callers without a hard deadline.
    pub fn with_lease_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.settings.lease_ttl = ttl;
        self
    }

    /// The transfer engine, for callers that read or list through the same source and sink.
    pub fn transfer(&self) -> &Transfer<S, K> {
        &self.transfer
    }

    /// The ledger, for callers that read status through the same one.
    pub fn ledger(&self) -> &L {
        &self.ledger
    }

    /// The routing rules tasks are resolved with.
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
    /// `skipped` result, not an error. No copy stops early: see [`Self::apply_within`].
    pub async fn apply(&self, task: &Task, deadline_ms: i64) -> Vec<Result<Replication>> {
        self.apply_within(task, deadline_ms, &Budget::UNLIMITED).await
    }

    /// Like [`Self::apply`], under a time budget: a resumable copy that cannot finish within
    /// it stops at a chunk boundary, and a destination there is no time left to start is not
    /// started; both answer [`Outcome::Continued`] (see the module doc). For callers that can
    /// hand the task on at once (the SQS handler).
    pub async fn apply_within(&self, task: &Task, deadline_ms: i64, budget: &Budget) -> Vec<Result<Replication>> {
        let dests = self.destinations(task);
        if dests.is_empty() {
            tracing::info!(object = %task.object, "no route for this object; skipped");
            return vec![Ok(skipped(task, None, "no routing rule matches this object"))];
        }
        let mut out = Vec::with_capacity(dests.len());
        for dest in dests {
            let span = tracing::info_span!("task", object = %task.object, destination = %dest, action = ?task.action, job_id = task.job_id.as_deref());
            // Checked before anything else, deletes included: a command on the queue or a job
            // spec names its own destination, and only the deployment's may be written.
            if !self.router.allows(&dest) {
                let why = format!(
                    "destination {dest} is not in XCR_ALLOWED_DESTINATIONS ({})",
                    self.router.allowed_destinations().describe()
                );
                span.in_scope(|| tracing::warn!(target: crate::telemetry::TASK, outcome = "refused", detail = %why, "task refused"));
                out.push(Ok(result(task, &dest, Outcome::Refused, Some(why), std::time::Instant::now())));
                continue;
            }
            if !may_start_task(budget.left(), &self.transfer.config().reserve) {
                span.in_scope(|| tracing::info!("time budget spent: not started, handed on"));
                out.push(Ok(not_started(task, &dest)));
                continue;
            }
            let result = self.apply_one(task, &dest, deadline_ms, budget).instrument(span.clone()).await;
            span.in_scope(|| match &result {
                Ok(r) => tracing::info!(
                    target: crate::telemetry::TASK,
                    outcome = r.outcome.as_str(),
                    bytes = r.bytes,
                    detail = r.detail.as_deref(),
                    duration_ms = r.duration_ms,
                    "task done"
                ),
                Err(e) => {
                    tracing::error!(target: crate::telemetry::TASK, kind = %e.kind(), retryable = e.is_retryable(), error = %e.chain(), "task failed")
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
            job_task: None,
            destination: dest,
            overwrite: None,
            event: None,
        };
        let mut results = self.apply(&task, deadline_ms).await;
        match results.len() {
            1 => results.remove(0),
            _ => Err(Error::new(ErrorKind::Invalid, "the object routes to several destinations; name one with --dest")),
        }
    }

    async fn apply_one(
        &self,
        task: &Task,
        dest: &Destination,
        deadline_ms: i64,
        budget: &Budget,
    ) -> Result<Replication> {
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
            source_bucket: task.object.bucket.clone(),
        };
        let claimed = match self.ledger.claim(&claim).await {
            Ok(c) => c,
            Err(e) => {
                // The claim may have been applied with its answer lost (a reset, a timeout after
                // DynamoDB wrote it). Why release: that lease is ours and nobody else could free
                // it; left alone, every redelivery would be `busy` until it expires. The release
                // is conditional on our owner id, so it is harmless if the claim never landed;
                // a refused connection certainly never landed, and retrying a release against a
                // dead endpoint would only make the caller wait (a stale local.env).
                if e.is_retryable() && !e.never_sent() {
                    self.release(&key, &owner, None).await;
                }
                return Err(e);
            }
        };
        let previous = match claimed {
            Claim::Rejected { current } => {
                let (outcome, why) = rejection(&current, sequencer.as_deref(), &task.object.bucket, now);
                let mut r = result(task, dest, outcome, Some(why), started);
                if outcome == Outcome::Busy {
                    let left = current.lease_expires_ms.map_or(0, |t| (t - now).max(0) / 1000);
                    r.retry_after_secs = Some(u64::try_from(left).unwrap_or(0) + 1);
                }
                return Ok(r);
            }
            Claim::Acquired { previous } => previous,
        };
        let journal = LeaseJournal::new(&self.ledger, &key, &owner, lease_until, self.settings.lease_ttl);
        let held = Held { journal: &journal, sequencer: sequencer.clone(), previous: &previous, started, budget };
        let applied = match task.action {
            Action::Copy => {
                let (read, authoritative, require) = self.what_to_read(task);
                self.copy(task, dest, &held, &read, authoritative, require).await
            }
            Action::Delete => self.delete(task, dest, &held).await,
        };
        match &applied {
            Ok(r) if r.outcome == Outcome::Replicated || r.outcome == Outcome::Deleted => {}
            // Decided under the lease after reading the source: the event is settled, so its
            // sequencer becomes the ordering mark even though nothing was written.
            Ok(r) if r.outcome == Outcome::AlreadyReplicated || r.outcome == Outcome::Stale => {
                let mark = sequencer.as_deref().map(|s| (s, task.object.bucket.as_str()));
                self.release(&key, &owner, mark).await;
            }
            // Skipped, continued or failed: give the lease back so a redelivery need not wait for
            // it; a continuation claims it the moment it is delivered. The upload checkpoint stays.
            // A failure is noted first, while the lease is ours, for `xcr status` (best effort).
            _ => {
                if let Err(e) = &applied {
                    let note = FailureNote { kind: e.kind().as_str().into(), message: e.to_string(), at_ms: now_ms() };
                    if let Err(n) = self.ledger.note_failure(&key, &owner, &note).await {
                        tracing::warn!(error = %n.chain(), "could not note the failure in the ledger");
                    }
                }
                self.release(&key, &owner, None).await;
            }
        }
        applied
    }

    /// Which object a copy task reads, whether that read is the source's present state
    /// (authoritative: nothing the ledger recorded earlier can make it stale), and which version
    /// it must find to copy anything.
    ///
    /// With deletes replicated, GCS must equal what S3 serves *now*, so every copy reads the
    /// current object: an event's version id only names the version that changed. A command
    /// naming a version (the API, the CLI) copies it only if it is the current one, and is
    /// `stale` otherwise. With deletes off, GCS keeps the newest version S3 has had: reads are
    /// pinned to the task's version and never go back in time (a deleted current version must
    /// not bring an older one back).
    fn what_to_read<'t>(&self, task: &'t Task) -> (ObjectRef, bool, Option<&'t str>) {
        if self.settings.replicate_deletes {
            let require = task.event.is_none().then_some(task.object.version_id.as_deref()).flatten();
            return (ObjectRef::new(&task.object.bucket, &task.object.key), true, require);
        }
        (task.object.clone(), false, None)
    }

    /// Gives the lease back, retrying transient failures with the one retry policy. Why retry:
    /// a lease left behind makes every later event for this key `busy` until it expires, at the
    /// invocation's deadline plus a margin (up to a quarter of an hour on Lambda); the SDK's own
    /// three attempts were seen to run out under the fault tests' 25% failure rate.
    async fn release(&self, key: &str, owner: &str, raise: Option<(&str, &str)>) {
        let policy = self.transfer.retry_policy();
        if let Err(e) = policy.run("release lease", |_| self.ledger.release(key, owner, raise)).await {
            tracing::warn!(error = %e.chain(), "could not release the lease; it will expire");
        }
    }

    /// After GCS refused a write or delete because the destination is not the generation the
    /// ledger recorded ([`ErrorKind::Conflict`]): someone wrote it outside the ledger's order (a
    /// holder that outlived its lease, another tool). If the lease is still ours, our decision
    /// stands (it was made on a later read of the source than any earlier holder's), and the
    /// generation GCS holds now becomes the precondition of the next attempt; a lease lost
    /// stops here, never overwriting the new holder's copy.
    async fn refence(&self, dest: &Destination, held: &Held<'_, L>, conflict: &Error) -> Result<u64> {
        if !held.journal.still_held().await? {
            return Err(held.journal.lease_lost());
        }
        let found = self.transfer.stat(&dest.bucket, &dest.name).await?;
        let generation = found.as_ref().and_then(|o| o.generation.parse().ok()).unwrap_or(0);
        tracing::warn!(
            destination = %dest,
            generation,
            conflict = %conflict.message(),
            "the destination changed outside the ledger; deciding again with the generation GCS holds"
        );
        Ok(generation)
    }

    async fn copy(
        &self,
        task: &Task,
        dest: &Destination,
        held: &Held<'_, L>,
        read: &ObjectRef,
        authoritative: bool,
        require_version: Option<&str>,
    ) -> Result<Replication> {
        let (journal, started) = (held.journal, held.started);
        let previous = held.previous.done.as_ref();
        let ordered_by_sequencer = held.sequencer.is_some() && previous.is_some_and(|p| p.sequencer.is_some());
        let skip_time_order = authoritative || ordered_by_sequencer;
        // Migration jobs' overwrite policies may look at what GCS holds when the ledger has no
        // record (the destination was filled by something else). Event-driven copies never do.
        let existing = match task.overwrite {
            Some(Overwrite::Different | Overwrite::Never) if previous.is_none() => {
                self.transfer.stat(&dest.bucket, &dest.name).await?
            }
            _ => None,
        };
        let policy = task.overwrite;
        let judge = |meta: &crate::domain::model::SourceMeta| {
            if let Some(want) = require_version
                && meta.version_id.as_deref() != Some(want)
            {
                let why = format!(
                    "version {want} is not the current one; with deletes replicated GCS mirrors the current version"
                );
                return Some((Outcome::Stale, why));
            }
            if policy == Some(Overwrite::Never) && (existing.is_some() || previous.is_some_and(|p| p.action == "copy"))
            {
                return Some((Outcome::AlreadyReplicated, "the destination exists (overwrite: never)".to_string()));
            }
            if let Some(found) = &existing
                && same_content(found, meta)
            {
                return Some((Outcome::AlreadyReplicated, "GCS already holds the same size and checksum".into()));
            }
            match judge_read(previous, meta, skip_time_order) {
                // `always` copies even an identical version; it never copies an older one.
                Some((Outcome::AlreadyReplicated, _)) if policy == Some(Overwrite::Always) => None,
                other => other,
            }
        };
        let mut fence = match &existing {
            Some(found) => found.generation.parse().ok(),
            None => fence_of(previous),
        };
        let mut upload = held.previous.upload.as_ref();
        let mut round = 0;
        let copied = loop {
            round += 1;
            let terms =
                CopyTerms { previous: upload, journal, fence, budget: held.budget, job_id: task.job_id.as_deref() };
            match self.transfer.copy_journaled(read, dest, judge, terms).await {
                Err(e) if e.kind() == ErrorKind::Conflict && round < FENCE_ROUNDS => {
                    fence = Some(self.refence(dest, held, &e).await?);
                    // A session whose precondition failed cannot be finalized.
                    upload = None;
                }
                // A session whose bytes failed verification must not be continued by the next try.
                Err(e) if e.kind() == ErrorKind::Integrity => {
                    journal.forget().await;
                    return Err(e);
                }
                other => break other?,
            }
        };
        let report = match copied {
            Copy::Skipped((outcome, why), meta) => {
                let mut r = result(task, dest, outcome, Some(why), started);
                r.source.version_id = meta.version_id.clone();
                r.source.etag = Some(meta.etag.clone());
                r.destination.generation = previous.and_then(|p| p.generation.clone());
                // This job's own copy, found by a later delivery of the task: through the
                // ledger's record, or, when that record was never written (the write failed
                // after the upload landed), through the job named in the object's provenance.
                if outcome == Outcome::AlreadyReplicated && task.job_id.is_some() {
                    if let Some(p) = previous.filter(|p| p.job_id == task.job_id) {
                        r.copied_by_own_job = Some(p.size.unwrap_or(0));
                    } else if let Some(found) = existing.as_ref().filter(|o| o.job_id == task.job_id) {
                        r.copied_by_own_job = Some(found.size);
                    }
                }
                return Ok(r);
            }
            Copy::Paused(paused) => return self.continued(task, dest, held, paused).await,
            Copy::Done(report) => report,
        };
        let done = DoneRecord {
            action: "copy".into(),
            sequencer: held.sequencer.clone(),
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
            meta_digest: Some(crate::transfer::metadata::digest(&report.source)),
        };
        // The one write that makes a finished copy count, retried on top of the SDK's own
        // attempts: giving up here costs a second upload on redelivery (and a job would count
        // the object as skipped, found in place). Safe to repeat: a repeat of an applied record
        // is recognised as ours (see `DynamoLedger::complete`).
        let policy = self.transfer.retry_policy();
        if !policy.run("record the copy", |_| self.ledger.complete(journal.key, journal.owner, &done)).await? {
            return Err(Error::new(
                ErrorKind::Transient,
                "copied, but the ledger lease was lost meanwhile; retrying re-checks the order",
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

    /// A copy stopped by its time budget: the last confirmed offset is written to the ledger
    /// now (the journal writes progress only every few seconds, and what it did not write
    /// would be read again from S3 by the continuation), then the result says where it stopped.
    /// A failed write is not fatal: the continuation asks GCS how far the session got, and only
    /// re-reads from the older checkpoint. A lost lease is: another worker may own the key.
    async fn continued(
        &self,
        task: &Task,
        dest: &Destination,
        held: &Held<'_, L>,
        paused: Paused,
    ) -> Result<Replication> {
        match held.journal.flush().await {
            Ok(true) => {}
            Ok(false) => return Err(held.journal.lease_lost()),
            Err(e) => {
                tracing::warn!(error = %e.chain(), "could not record the offset reached; the continuation re-reads from the last checkpoint")
            }
        }
        let why = format!(
            "the time budget ran out at byte {} of {}: the upload session is checkpointed and a continuation resumes it",
            paused.offset, paused.source.size
        );
        let mut r = result(task, dest, Outcome::Continued, Some(why), held.started);
        r.source.version_id = paused.source.version_id.clone();
        r.source.etag = Some(paused.source.etag.clone());
        r.source.size = Some(paused.source.size);
        r.source.last_modified = paused.source.last_modified.clone();
        r.continued = Some(paused);
        Ok(r)
    }

    /// A delete event (with deletes replicated), decided by what S3 serves now, never by the
    /// event alone: a delete marker or the removal of the only version leaves no current object,
    /// and the GCS copy is deleted; the permanent deletion of a noncurrent version, of the
    /// current one (the previous becomes current) or of a delete marker (the object is back)
    /// leaves one, and that is copied instead (usually a duplicate: nothing is uploaded).
    async fn delete(&self, task: &Task, dest: &Destination, held: &Held<'_, L>) -> Result<Replication> {
        let current = ObjectRef::new(&task.object.bucket, &task.object.key);
        if self.transfer.source().exists(&current).await? {
            let mut r = self.copy(task, dest, held, &current, true, None).await?;
            let why = "S3 still serves a current object for this key, so the copy follows it";
            r.detail = Some(match r.detail.take() {
                Some(d) => format!("{why}: {d}"),
                None => why.to_string(),
            });
            return Ok(r);
        }
        let previous = held.previous.done.as_ref();
        let mut fence = fence_of(previous);
        let mut round = 0;
        loop {
            round += 1;
            match self.transfer.delete_fenced(&dest.bucket, &dest.name, fence).await {
                Err(e) if e.kind() == ErrorKind::Conflict && round < FENCE_ROUNDS => {
                    fence = Some(self.refence(dest, held, &e).await?);
                    if fence == Some(0) {
                        break;
                    }
                }
                other => break other?,
            }
        }
        let done = DoneRecord {
            action: "delete".into(),
            sequencer: held.sequencer.clone(),
            // When S3 was seen without the object: a copy pinned to an older version (a command
            // naming one) is then stale.
            last_modified_ms: Some(now_ms()),
            version_id: task.object.version_id.clone(),
            source_bucket: task.object.bucket.clone(),
            source_key: task.object.key.clone(),
            done_at_ms: now_ms(),
            ..Default::default()
        };
        let policy = self.transfer.retry_policy();
        let journal = held.journal;
        if !policy.run("record the delete", |_| self.ledger.complete(journal.key, journal.owner, &done)).await? {
            return Err(Error::new(ErrorKind::Transient, "deleted, but the ledger lease was lost meanwhile"));
        }
        Ok(result(task, dest, Outcome::Deleted, task.event.clone(), held.started))
    }
}

/// How many times a write or delete is decided again after GCS refused its precondition, before
/// the task fails (retryable): more means writers outside the ledger keep racing it.
const FENCE_ROUNDS: u32 = 3;

/// What a lease holder knows while it applies one task.
struct Held<'a, L> {
    journal: &'a LeaseJournal<'a, L>,
    /// The task's normalized sequencer.
    sequencer: Option<String>,
    /// The ledger item as the claim found it.
    previous: &'a LedgerItem,
    started: std::time::Instant,
    /// The time the copy may take before it stops for a continuation.
    budget: &'a Budget,
}

/// The generation GCS must hold for a write or delete to land: the one the ledger recorded for
/// its last copy, or none (`0`) after a delete or when nothing was recorded. `None` (no
/// precondition) only for a recorded generation that is not a number, which GCS never sends.
fn fence_of(previous: Option<&DoneRecord>) -> Option<u64> {
    match previous {
        Some(p) if p.action == "copy" => p.generation.as_deref().and_then(|g| g.parse().ok()),
        _ => Some(0),
    }
}

/// Why a claim was refused, from the item the ledger returned.
fn rejection(current: &LedgerItem, sequencer: Option<&str>, source_bucket: &str, now: i64) -> (Outcome, String) {
    let same_source = current.high_water_source.as_deref().is_none_or(|s| s == source_bucket);
    if let (Some(ours), Some(mark), true) = (sequencer, current.high_water.as_deref(), same_source) {
        if mark == ours {
            return (Outcome::AlreadyReplicated, "this event was already applied".into());
        }
        if mark > ours {
            return (Outcome::Stale, "a later event for this key was already applied".into());
        }
    }
    let left = current.lease_expires_ms.map(|t| (t - now).max(0) / 1000).unwrap_or(0);
    // The lease's end is a bound (its holder's deadline), not the expected wait: holders
    // release when they finish, and a busy record is tried again within seconds.
    (
        Outcome::Busy,
        format!("another worker is copying this object now (its lease lapses in at most {left} seconds if it dies)"),
    )
}

/// Whether GCS's object has the source's size and a checksum that proves the same bytes: the
/// MD5 of a single-part ETag, or S3's full-object CRC32C.
fn same_content(found: &crate::domain::model::StoredObject, meta: &crate::domain::model::SourceMeta) -> bool {
    let md5 = meta.md5.as_ref().map(crate::transfer::checksum::md5_b64);
    found.size == meta.size
        && ((md5.is_some() && found.md5 == md5) || (meta.crc32c.is_some() && found.crc32c == meta.crc32c))
}

/// Decides, from the source's metadata and the previous record, whether copying is needed.
///
/// A duplicate is the same version, ETag, last-modified time and metadata digest: a self-copy
/// that only replaces metadata keeps the ETag (and, unversioned, the version id), so the other
/// two tell it apart. A record without a time or digest (older records) does not count against
/// a duplicate.
///
/// `skip_time_order`: the read cannot be stale, so last-modified times are not compared. Either
/// the read is the source's present state (nothing recorded earlier is newer than *now*, and a
/// deleted current version makes an older one current again), or both the task and the record
/// carry sequencers, which the claim has already ordered and the coarser last-modified time
/// (whole seconds in S3) must not overrule.
fn judge_read(
    previous: Option<&DoneRecord>,
    meta: &crate::domain::model::SourceMeta,
    skip_time_order: bool,
) -> Option<(Outcome, String)> {
    let prev = previous?;
    let lm = meta.last_modified.as_deref().and_then(rfc3339_ms);
    let same_time = match (prev.last_modified_ms, lm) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    };
    let same_meta = prev.meta_digest.as_ref().is_none_or(|d| *d == crate::transfer::metadata::digest(meta));
    if prev.action == "copy"
        && prev.etag.as_deref() == Some(meta.etag.as_str())
        && prev.version_id == meta.version_id
        && same_time
        && same_meta
    {
        return Some((Outcome::AlreadyReplicated, "this version was already copied".into()));
    }
    if skip_time_order {
        return None;
    }
    let lm = lm?;
    match prev.last_modified_ms {
        Some(recorded) if recorded > lm => Some((
            Outcome::Stale,
            format!("the ledger records a newer {} (last modified {recorded} ms > {lm} ms)", prev.action),
        )),
        _ => None,
    }
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

    #[test]
    fn rejected_claims_explain_themselves() {
        // The ordering mark decides, whatever the last record was (a job's copy has none).
        let item = LedgerItem {
            done: Some(done(None, None, "e", None)),
            high_water: Some(sequencer_order("00AA")),
            high_water_source: Some("src".into()),
            ..Default::default()
        };
        assert_eq!(rejection(&item, Some(&sequencer_order("00AA")), "src", 0).0, Outcome::AlreadyReplicated);
        assert_eq!(rejection(&item, Some(&sequencer_order("0099")), "src", 0).0, Outcome::Stale);
        // Another bucket's sequencers order nothing here: its event is never called stale by them.
        assert_eq!(rejection(&item, Some(&sequencer_order("0099")), "other", 0).0, Outcome::Busy);
        let leased = LedgerItem { lease_owner: Some("x".into()), lease_expires_ms: Some(65_000), ..Default::default() };
        let (outcome, why) = rejection(&leased, None, "src", 5_000);
        assert_eq!(outcome, Outcome::Busy);
        assert!(why.contains("at most 60 seconds"), "{why}");
    }

    #[test]
    fn reads_are_judged_against_the_previous_record() {
        let meta = |etag: &str, version: Option<&str>, lm: &str| crate::domain::model::SourceMeta {
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
        // Ordered by sequencers, or read as the present state: an older last-modified time
        // does not make it stale (deleting the current version brings an older one back).
        assert_eq!(judge_read(Some(&prev), &meta("e0", Some("v0"), "2026-11-23T04:59:59Z"), true), None);
    }

    #[test]
    fn a_metadata_only_update_is_not_a_duplicate() {
        let read = |lm: &str, content_type: &str| crate::domain::model::SourceMeta {
            etag: "e1".into(),
            version_id: None,
            last_modified: Some(lm.into()),
            headers: crate::domain::model::ContentHeaders {
                content_type: Some(content_type.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let first = read("2026-11-23T05:00:00Z", "text/plain");
        let mut prev = done(None, rfc3339_ms("2026-11-23T05:00:00Z"), "e1", None);
        prev.meta_digest = Some(crate::transfer::metadata::digest(&first));
        assert_eq!(judge_read(Some(&prev), &first, false).map(|j| j.0), Some(Outcome::AlreadyReplicated));
        // A self-copy with MetadataDirective=REPLACE: same ETag, no version id, a later time.
        assert_eq!(judge_read(Some(&prev), &read("2026-11-23T05:00:07Z", "text/csv"), false), None);
        // ... or within the same second: the digest tells.
        assert_eq!(judge_read(Some(&prev), &read("2026-11-23T05:00:00Z", "text/csv"), false), None);
        // A record written before digests existed still recognises a duplicate.
        prev.meta_digest = None;
        assert_eq!(judge_read(Some(&prev), &first, false).map(|j| j.0), Some(Outcome::AlreadyReplicated));
    }

    #[test]
    fn the_fence_is_the_recorded_generation_or_none_at_all() {
        let mut copy = done(None, None, "e", None);
        copy.generation = Some("1700000000123456".into());
        assert_eq!(fence_of(Some(&copy)), Some(1_700_000_000_123_456));
        let deleted = DoneRecord { action: "delete".into(), ..Default::default() };
        assert_eq!(fence_of(Some(&deleted)), Some(0), "after a delete GCS must hold no object");
        assert_eq!(fence_of(None), Some(0), "nothing recorded: GCS must hold no object");
    }
}
