//! The replicate function's logic, independent of the Lambda runtime so that `xcr pump` runs
//! the very same code locally: decode the invocation, apply every task, and answer the way the
//! trigger expects.
//!
//! The rule for failures is the same for every trigger: a task-destination pair fails its
//! invocation or record when it ended `busy` or with an error of any kind except `not_found`.
//! Only two outcomes are fine without a copy: the source is gone (`not_found`: there is nothing
//! to copy, and a later event brings a newer object if one appears) and `skipped` (no rule
//! routes the object, deletes are off, the job was cancelled), and one more that is final
//! without being fine: `refused` (the task named a destination outside
//! `XCR_ALLOWED_DESTINATIONS`; logged, counted, a job's failure, never retried: no redelivery
//! changes the list, and a forged command must not occupy the queue). Why permanent errors fail too:
//! access denied, a configuration a person must fix (a wrong table name, an expired Workload
//! Identity config), an invalid request or a checksum mismatch will not fix themselves, and an
//! acknowledged event is lost for good; failed, it reaches the dead-letter queue (or the
//! on-failure destination) from which it is redriven once the cause is fixed. Every result is
//! logged and counted either way.
//! * **SQS batch:** a failed record is reported in `batchItemFailures` (and so delivered again,
//!   and moved to the dead-letter queue after `maxReceiveCount`), as is an unreadable body.
//!   Before answering, the handler sets when it comes back (`ChangeMessageVisibility`): seconds
//!   after its first failure, growing with each receive ([`crate::domain::redelivery`]), not after the
//!   queue's whole visibility timeout.
//! * A record that is only `busy` (another worker holds the key's lease) is sent back to the
//!   queue with a delay and acknowledged, so waiting never spends one of its receives: a newer
//!   version's event must not end in the DLQ because an older copy was slow. If that send
//!   fails, the record is reported as failed instead.
//! * **Continuations.** Every record runs under the invocation's time budget
//!   ([`crate::domain::budget`], from the deadline `handle` is given). A record whose copy stopped at
//!   its budget, checkpointed (`continued`), or that the budget left no time to start, is sent
//!   again at once as a new message (no delay) and acknowledged: it made progress or did
//!   nothing, and must not spend one of its `maxReceiveCount` receives. Were it reported as
//!   failed, it would come back only after its visibility timeout, and an object needing more
//!   invocations than `maxReceiveCount` would land in the dead-letter queue. A record with a
//!   real failure besides is reported as failed (its continuation resumes from the checkpoint
//!   all the same), and one whose send fails too. A continued job task is not counted in its
//!   job yet.
//! * **Direct invocation (S3 notification, EventBridge, command):** the invocation returns an
//!   error when any task failed, so Lambda's asynchronous retries and then its on-failure
//!   destination (or the caller of a synchronous invoke) see it; otherwise it returns every
//!   result and the counts. A direct invocation cannot queue its own continuation, so a
//!   `continued` task fails it too (retryable): Lambda's retry resumes the checkpointed upload,
//!   and a copy that needs more invocations than Lambda's two retries must go through SQS.

use crate::domain::budget::Budget;
use crate::domain::error::{Error, ErrorKind, Result};
use crate::domain::events::{Incoming, Task, decode_invocation};
use crate::domain::replicate::{Outcome, Replication, Replicator};
use crate::jobs::{JobStatus, TaskTally};
use crate::metrics::Metrics;
use crate::ports::{JobStore, Ledger, ObjectSink, ObjectSource, TaskQueue};
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// The replicate function's logic, independent of the Lambda runtime: decodes a payload, runs
/// its tasks through the [`Replicator`] concurrently, and answers with the failures to retry.
pub struct Handler<S, K, L, Q, J> {
    replicator: Replicator<S, K, L>,
    concurrency: usize,
    /// Where busy records are put back; `None` reports them as failures instead.
    requeue: Option<Q>,
    /// Migration jobs whose tasks are counted; `None` when no jobs table is configured.
    jobs: Option<J>,
    /// Recently read job statuses: the tasks of one batch mostly share a job.
    job_status: tokio::sync::Mutex<HashMap<String, (JobStatus, Instant)>>,
    /// One job-counter write at a time from this process: the tasks of a batch would only
    /// collide on the job item (and some emulators lose concurrent updates to one item).
    job_writes: tokio::sync::Mutex<()>,
    /// The queue's `maxReceiveCount`: a job task failing on that delivery goes to the DLQ next,
    /// so it is counted as failed now, or its job would wait for it forever.
    max_receives: Option<u32>,
    /// When a failed record comes back ([`crate::domain::redelivery`]).
    retry_clock: crate::domain::redelivery::RetryClock,
    /// Where each invocation's metrics go ([`crate::metrics`]).
    metrics: crate::metrics::Sink,
    /// Runs audit jobs' page tasks ([`crate::jobs::audit_page`]); `None`: they fail (no jobs table).
    /// Boxed: a handler lives inside its callers' futures (`xcr pump`'s, tests'), which must
    /// not grow by a worker's clients when no audit runs.
    audits: Option<Box<crate::jobs::audit_page::AuditWorker>>,
    /// Every invocation's outcome counts added up (the EMF counters: `ObjectsReplicated`,
    /// `Duplicates`, `NotFound`, `Failures`, ...), so that `xcr pump` can say at the end what
    /// became of the objects, not only how many messages it deleted.
    totals: std::sync::Mutex<BTreeMap<&'static str, u64>>,
}

/// How long a job's status is trusted before it is read again (a cancel takes effect within it).
const JOB_STATUS_TTL: Duration = Duration::from_secs(2);

/// A finished job task's count, held until its batch has run so that the batch's tasks are
/// counted in one write per job ([`Handler::count_job_tasks`]).
struct JobCount {
    job_id: String,
    /// [`crate::jobs::task_id_at`]: the identity under which the job counts the task.
    task_id: String,
    /// The object, for logs.
    object: String,
    tally: TaskTally,
}

/// Longest wait before a busy record is tried again: the lease holder usually finishes well
/// before its lease runs out.
const BUSY_RETRY_MAX_SECS: u64 = 20;

/// What became of one task-destination pair, for counting.
fn verdict(result: &Result<Replication>) -> &'static str {
    match result {
        Ok(r) => r.outcome.as_str(),
        Err(e) => match e.kind() {
            ErrorKind::NotFound => "not_found",
            k if k.is_retryable() => "failed_retryable",
            _ => "failed_permanent",
        },
    }
}

/// Whether this result fails its invocation or SQS record (see the module rule): `busy`, or an
/// error of any kind but `not_found`. Kinds are not listed one by one on purpose: a kind added
/// later fails by default, which loses nothing.
fn is_failure(result: &Result<Replication>) -> bool {
    match result {
        Ok(r) => r.outcome.needs_retry(),
        Err(e) => e.kind() != ErrorKind::NotFound,
    }
}

/// The error a direct invocation returns for its failed results: retryable when any of them
/// is (or is `busy`), else the kind of the first, so that logs and the on-failure destination
/// say what a person has to fix. `None` when nothing failed.
fn direct_failure(results: &[Result<Replication>]) -> Option<Error> {
    let failed: Vec<&Result<Replication>> = results.iter().filter(|r| is_failure(r)).collect();
    let first = failed.first()?;
    let retryable = failed.iter().any(|r| r.as_ref().map_or_else(Error::is_retryable, |_| true));
    let kind =
        if retryable { ErrorKind::Transient } else { first.as_ref().err().map_or(ErrorKind::Transient, Error::kind) };
    let why: Vec<String> = failed
        .iter()
        .map(|r| match r {
            Ok(rep) => format!(
                "s3://{}/{} -> gs://{}/{}: {}",
                rep.source.bucket,
                rep.source.key,
                rep.destination.bucket,
                rep.destination.name,
                rep.outcome.as_str()
            ),
            Err(e) => format!("{} ({})", e, e.kind()),
        })
        .collect();
    Some(Error::new(kind, format!("{} of {} task(s) failed: {}", failed.len(), results.len(), why.join("; "))))
}

impl<S: ObjectSource, K: ObjectSink, L: Ledger, Q: TaskQueue, J: JobStore> Handler<S, K, L, Q, J> {
    /// A handler running `concurrency` records at once; `requeue` takes continuations and `busy`
    /// retries (without it they fail and come back on the retry clock); `jobs` counts job tasks.
    pub fn new(replicator: Replicator<S, K, L>, concurrency: usize, requeue: Option<Q>, jobs: Option<J>) -> Self {
        Self {
            replicator,
            concurrency: concurrency.max(1),
            requeue,
            jobs,
            job_status: tokio::sync::Mutex::new(HashMap::new()),
            job_writes: tokio::sync::Mutex::new(()),
            max_receives: None,
            retry_clock: crate::domain::redelivery::RetryClock::default(),
            metrics: crate::metrics::Sink::from_env(),
            audits: None,
            totals: std::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// Lets the handler run audit jobs' page tasks found on its queue.
    pub fn with_audits(mut self, worker: crate::jobs::audit_page::AuditWorker) -> Self {
        self.audits = Some(Box::new(worker));
        self
    }

    /// Where each invocation's EMF lines go (default: [`crate::metrics::Sink::from_env`]).
    pub fn with_metrics(mut self, sink: crate::metrics::Sink) -> Self {
        self.metrics = sink;
        self
    }

    /// Tells the handler the queue's `maxReceiveCount` (see [`Self::handle`]).
    /// Sets the backoff for failed SQS records ([`crate::domain::redelivery`]).
    pub fn with_retry_clock(mut self, clock: crate::domain::redelivery::RetryClock) -> Self {
        self.retry_clock = clock;
        self
    }

    /// The queue's `maxReceiveCount`, so that a job task failing on its last delivery is counted
    /// failed at once (it goes to the DLQ next); `None` or 0: unknown.
    pub fn with_max_receives(mut self, max: Option<u32>) -> Self {
        self.max_receives = max.filter(|m| *m > 0);
        self
    }

    /// The outcome counts of every invocation this handler ran, added up (see `totals`).
    pub fn outcome_totals(&self) -> BTreeMap<&'static str, u64> {
        self.totals.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The queue's `maxReceiveCount`, when known.
    pub fn max_receives(&self) -> Option<u32> {
        self.max_receives
    }

    /// The job store job tasks are counted in, when there is one.
    pub fn jobs(&self) -> Option<&J> {
        self.jobs.as_ref()
    }

    /// The use case this handler runs.
    pub fn replicator(&self) -> &Replicator<S, K, L> {
        &self.replicator
    }

    /// `last_delivery`: a retryable failure now sends the record to the dead-letter queue.
    /// `budget`: the invocation's time budget (see the module doc).
    async fn run_tasks(
        &self,
        tasks: &[Task],
        deadline_ms: i64,
        budget: &Budget,
        last_delivery: bool,
        metered: (&std::sync::Mutex<Metrics>, Option<i64>),
    ) -> (Vec<Result<Replication>>, Vec<JobCount>) {
        let mut out = Vec::new();
        let mut counts = Vec::new();
        for task in tasks {
            let results = match (&task.job_id, &self.jobs) {
                (Some(job_id), Some(jobs)) => {
                    let (results, count) =
                        self.run_job_task(jobs, job_id, task, deadline_ms, budget, last_delivery).await;
                    counts.extend(count);
                    results
                }
                _ => self.replicator.apply_within(task, deadline_ms, budget).await,
            };
            // Latency runs from the event's time, else from when the command was queued.
            let (metrics, enqueued_ms) = metered;
            let since = task.event_time.as_deref().and_then(crate::domain::replicate::rfc3339_ms).or(enqueued_ms);
            let now = crate::domain::replicate::now_ms();
            let mut m = metrics.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            results.iter().for_each(|r| m.record(r, since, now));
            drop(m);
            out.extend(results);
        }
        (out, counts)
    }

    /// A migration job's task: a no-op once the job is cancelled; otherwise applied, and its
    /// count for the job returned, to be written with the rest of its batch
    /// ([`Self::count_job_tasks`]). A task still failing on its last delivery is counted as
    /// failed (it is on its way to the DLQ): the job then ends FAILED instead of waiting
    /// forever; a redrive still copies the object, without counting it again. A `continued`
    /// task is neither: it is counted when its continuation finishes.
    async fn run_job_task(
        &self,
        jobs: &J,
        job_id: &str,
        task: &Task,
        deadline_ms: i64,
        budget: &Budget,
        last_delivery: bool,
    ) -> (Vec<Result<Replication>>, Option<JobCount>) {
        match self.job_status(jobs, job_id).await {
            // Cancelled: its queued tasks are no-ops. A job that ended otherwise still applies a
            // task delivered late (a DLQ redrive after fixing the cause): the ledger makes a
            // duplicate harmless, and the task's marker keeps it from being counted twice.
            Ok(Some(status)) if status == JobStatus::Cancelled => {
                let skipped =
                    crate::domain::replicate::skipped_task(task, &format!("job {job_id} is {}", status.as_str()));
                return (vec![Ok(skipped)], None);
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                return (
                    vec![Ok(crate::domain::replicate::skipped_task(task, &format!("job {job_id} does not exist")))],
                    None,
                );
            }
            Err(e) => return (vec![Err(e.context(format_args!("job {job_id}")))], None),
        }
        let results = self.replicator.apply_within(task, deadline_ms, budget).await;
        let tally = match tally(&results) {
            Some(t) => t,
            None if last_delivery && !results.iter().any(|r| is_busy(r) || is_continued(r)) => {
                let why = results.iter().find_map(|r| r.as_ref().err()).map(|e| e.chain()).unwrap_or_default();
                tracing::warn!(job_id, object = %task.object, error = %why, "last delivery failed: counted as failed, on its way to the DLQ");
                let _ = jobs
                    .set_error(job_id, &format!("{} failed on its last delivery (now in the DLQ): {why}", task.object))
                    .await;
                TaskTally::Failed
            }
            None => return (results, None),
        };
        let task_id = crate::jobs::task_id_at(
            &task.object.bucket,
            &task.object.key,
            task.object.version_id.as_deref(),
            task.job_task.as_deref(),
        );
        let count = JobCount { job_id: job_id.to_string(), task_id, object: task.object.to_string(), tally };
        (results, Some(count))
    }

    /// [`Self::count_job_tasks`], boxed by a function of its own (see
    /// [`Self::audit_page_future`]): its DynamoDB transaction's future is large, and inline it
    /// would take a slot in every invocation's frame.
    #[inline(never)]
    fn count_job_tasks_future(
        &self,
        counts: Vec<(usize, JobCount)>,
    ) -> futures::future::BoxFuture<'_, Vec<(usize, Error)>> {
        Box::pin(self.count_job_tasks(counts))
    }

    /// Counts a batch's finished job tasks, one write per job ([`JobStore::record_tasks`]),
    /// and ends each job whose last task this was. Returns, per record (the index given with
    /// each count), the error that keeps its tasks uncounted: that record must be delivered
    /// again (its copy is idempotent; the tasks are counted then).
    ///
    /// Whoever finds a job complete ends it, whether this batch counted its tasks or found them
    /// counted already: the delivery that counted them may have lost its answer, or died
    /// between counting and this check, and then no later task would come to end the job.
    async fn count_job_tasks(&self, counts: Vec<(usize, JobCount)>) -> Vec<(usize, Error)> {
        let Some(jobs) = &self.jobs else { return Vec::new() };
        let mut by_job: BTreeMap<String, Vec<(usize, JobCount)>> = BTreeMap::new();
        for (record, count) in counts {
            by_job.entry(count.job_id.clone()).or_default().push((record, count));
        }
        let mut failed = Vec::new();
        // One job-counter write at a time from this process (see `job_writes`).
        let _one_writer = self.job_writes.lock().await;
        for (job_id, counts) in by_job {
            let tasks: Vec<(String, TaskTally)> = counts.iter().map(|(_, c)| (c.task_id.clone(), c.tally)).collect();
            match jobs.record_tasks(&job_id, &tasks).await {
                Ok(counted) => {
                    for ((_, c), counted) in counts.iter().zip(counted) {
                        if !counted {
                            tracing::info!(job_id, object = %c.object, "already counted in its job");
                        }
                    }
                }
                // Not counted yet: deliver the records again; the copies themselves are idempotent.
                Err(e) => {
                    let why = e.chain();
                    tracing::warn!(job_id, tasks = counts.len(), error = %why, "could not count the batch's tasks in their job");
                    for (record, c) in &counts {
                        let err = Error::new(e.kind(), format!("count {} in job {job_id}: {why}", c.object));
                        failed.push((*record, err));
                    }
                    continue;
                }
            }
            // Only the last task ends the job: one read per job and batch tells, instead of two
            // failing writes per task.
            let last = matches!(jobs.get(&job_id).await,
                Ok(Some(j)) if j.status == JobStatus::Running && j.listing_done && j.counters.pending <= 0);
            if last {
                match jobs.try_finish(&job_id).await {
                    Ok(Some(status)) => tracing::info!(job_id, status = status.as_str(), "job finished"),
                    Ok(None) => {}
                    Err(e) => tracing::warn!(job_id, error = %e.chain(), "could not check whether the job finished"),
                }
            }
        }
        failed
    }

    /// [`Self::run_audit_page`], boxed by a function of its own: built inline, even inside
    /// `Box::pin`, the (large) future would take a slot in the caller's stack frame (debug
    /// builds keep every temporary's slot), and every record's poll would carry it.
    #[inline(never)]
    fn audit_page_future(
        &self,
        page: Result<crate::jobs::audit_page::AuditPage>,
        last: bool,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<Result<Replication>>> + Send + '_>> {
        Box::pin(self.run_audit_page(page, last))
    }

    /// An audit page task ([`crate::jobs::audit_page`]): no results when it ran, its error otherwise.
    async fn run_audit_page(
        &self,
        page: Result<crate::jobs::audit_page::AuditPage>,
        last: bool,
    ) -> Vec<Result<Replication>> {
        let ran = match (page, &self.audits) {
            (Ok(task), Some(worker)) => worker.run(&task, last).await,
            (Ok(_), None) => {
                Err(Error::new(ErrorKind::Config, "an audit page task, but no jobs table (XCR_JOBS_TABLE) to count it"))
            }
            (Err(e), _) => Err(e),
        };
        match ran {
            Ok(()) => Vec::new(),
            Err(e) => vec![Err(e)],
        }
    }

    /// The job's status, from a short-lived cache. The cache stays locked while it is read:
    /// the tasks of a batch start together, and would otherwise all miss at once and read the
    /// same job item each (one read per task instead of one per batch).
    async fn job_status(&self, jobs: &J, job_id: &str) -> Result<Option<JobStatus>> {
        let mut cache = self.job_status.lock().await;
        if let Some((status, at)) = cache.get(job_id)
            && at.elapsed() < JOB_STATUS_TTL
        {
            return Ok(Some(*status));
        }
        let status = jobs.get(job_id).await?.map(|j| j.status);
        if let Some(st) = status {
            cache.insert(job_id.to_string(), (st, Instant::now()));
        }
        Ok(status)
    }

    /// Handles one invocation payload. `deadline_ms` is the invocation's deadline (epoch ms).
    pub async fn handle(&self, payload: &Value, deadline_ms: i64) -> Result<Value> {
        let incoming =
            decode_invocation(payload).inspect_err(|e| tracing::error!(error = %e.chain(), "rejected invocation"))?;
        let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
        let budget = &self.budget(deadline_ms);
        let metrics =
            std::sync::Mutex::new(Metrics::new(crate::metrics::function_name("replicate"), Metrics::REPLICATE));
        // Boxed: the batch's future is large, and inline it would grow every caller's (the
        // pump's futures, a test's stack) by as much.
        let answer = Box::pin(self.answer(payload, incoming, deadline_ms, budget, &metrics, &mut counts)).await;
        let metrics = metrics.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        {
            let mut totals = self.totals.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for (name, n) in metrics.counts() {
                *totals.entry(name).or_default() += n;
            }
        }
        self.metrics.emit(&metrics);
        answer
    }

    /// Runs an invocation's tasks and answers it (see [`Self::handle`]), counting into `metrics`.
    async fn answer(
        &self,
        payload: &Value,
        incoming: Incoming,
        deadline_ms: i64,
        budget: &Budget,
        metrics: &std::sync::Mutex<Metrics>,
        counts: &mut BTreeMap<&'static str, u64>,
    ) -> Result<Value> {
        let meter =
            |n: &'static str, by: u64| metrics.lock().unwrap_or_else(std::sync::PoisonError::into_inner).add(n, by);
        match incoming {
            Incoming::Direct(tasks) => {
                let (mut results, job_counts) =
                    self.run_tasks(&tasks, deadline_ms, budget, false, (metrics, None)).await;
                let uncounted = self.count_job_tasks_future(job_counts.into_iter().map(|c| (0, c)).collect()).await;
                for (_, e) in uncounted {
                    metrics.lock().unwrap_or_else(std::sync::PoisonError::into_inner).failure(e.kind().as_str());
                    results.push(Err(e));
                }
                for r in &results {
                    *counts.entry(verdict(r)).or_default() += 1;
                }
                tracing::info!(tasks = tasks.len(), counts = ?counts, "invocation done");
                if let Some(e) = direct_failure(&results) {
                    tracing::error!(kind = %e.kind(), error = %e, "invocation failed");
                    return Err(e);
                }
                let results: Vec<Value> = results.iter().map(result_json).collect();
                Ok(json!({ "results": results, "counts": counts }))
            }
            Incoming::Sqs(items) => {
                type RecordOutcome = (String, Vec<Result<Replication>>, Vec<JobCount>, Option<Error>);
                let mut outcomes: Vec<RecordOutcome> = futures::stream::iter(items)
                    .map(|item| async move {
                        let last = matches!((item.receive_count, self.max_receives), (Some(n), Some(max)) if n >= max);
                        // A command has no event time: its latency runs from when SQS received it.
                        let sent = sqs_record(payload, &item.message_id)
                            .and_then(|r| r["attributes"]["SentTimestamp"].as_str())
                            .and_then(|t| t.parse::<i64>().ok());
                        // An audit job's page task shares the queue, not the replicate path.
                        if let Some(page) = sqs_record(payload, &item.message_id)
                            .and_then(|r| r["body"].as_str())
                            .and_then(crate::jobs::audit_page::AuditPage::from_body)
                        {
                            // Boxed: an audit page's future (two listings, HEADs, report) is large, and inline
                            // it would grow every record's future by as much.
                            return (item.message_id, self.audit_page_future(page, last).await, Vec::new(), None);
                        }
                        match item.tasks {
                            Ok(tasks) => {
                                let (results, counts) =
                                    self.run_tasks(&tasks, deadline_ms, budget, last, (metrics, sent)).await;
                                (item.message_id, results, counts, None)
                            }
                            Err(e) => {
                                tracing::error!(message_id = %item.message_id, error = %e.chain(), "unreadable message");
                                metrics.lock().unwrap_or_else(std::sync::PoisonError::into_inner).failure("unreadable");
                                (item.message_id, Vec::new(), Vec::new(), Some(e))
                            }
                        }
                    })
                    .buffer_unordered(self.concurrency)
                    .collect()
                    .await;
                // The batch's job tasks, counted together: one write per job, not one per task.
                let job_counts: Vec<(usize, JobCount)> = outcomes
                    .iter_mut()
                    .enumerate()
                    .flat_map(|(i, o)| std::mem::take(&mut o.2).into_iter().map(move |c| (i, c)))
                    .collect();
                for (record, e) in self.count_job_tasks_future(job_counts).await {
                    metrics.lock().unwrap_or_else(std::sync::PoisonError::into_inner).failure(e.kind().as_str());
                    if let Some(o) = outcomes.get_mut(record) {
                        o.1.push(Err(e));
                    }
                }
                let mut failures = Vec::new();
                for (message_id, results, _, unreadable) in &outcomes {
                    if unreadable.is_some() {
                        *counts.entry("unreadable").or_default() += 1;
                    }
                    for r in results {
                        *counts.entry(verdict(r)).or_default() += 1;
                    }
                    // Continuations (module doc, `crate::domain::budget`): sent again at once and
                    // acknowledged. If the send fails, the record is reported as failed below.
                    if unreadable.is_none() && is_continuation(results) && self.hand_on(payload, message_id).await {
                        *counts.entry("handed_on").or_default() += 1;
                        continue;
                    }
                    let failed = unreadable.is_some() || results.iter().any(|r| is_failure(r) && !is_busy(r));
                    let busy = results.iter().filter_map(|r| r.as_ref().ok()).filter(|r| r.outcome == Outcome::Busy);
                    let wait = busy.map(|r| r.retry_after_secs.unwrap_or(1)).max();
                    let requeued = match wait {
                        Some(wait) if !failed => self.requeue(payload, message_id, wait.min(BUSY_RETRY_MAX_SECS)).await,
                        _ => false,
                    };
                    if failed || (wait.is_some() && !requeued) {
                        failures.push(json!({ "itemIdentifier": message_id }));
                        if self.back_off(payload, message_id).await {
                            *counts.entry("backed_off").or_default() += 1;
                        }
                    } else if requeued {
                        *counts.entry("requeued").or_default() += 1;
                    }
                }
                meter("Records", outcomes.len() as u64);
                meter("FailedRecords", failures.len() as u64);
                meter("HandedOn", counts.get("handed_on").copied().unwrap_or(0));
                meter("Requeued", counts.get("requeued").copied().unwrap_or(0));
                tracing::info!(records = outcomes.len(), failed_records = failures.len(), counts = ?counts, "batch done");
                Ok(json!({ "batchItemFailures": failures }))
            }
        }
    }
}

/// How a job task's results count, or `None` while it still has to be retried.
fn tally(results: &[Result<Replication>]) -> Option<TaskTally> {
    let mut bytes = 0;
    let mut replicated = false;
    let mut failed = false;
    for r in results {
        match r {
            // Not finished: counted when a later delivery or the continuation finishes it.
            Ok(rep) if rep.outcome == Outcome::Busy || rep.outcome == Outcome::Continued => return None,
            Ok(rep) if rep.outcome == Outcome::Replicated => {
                replicated = true;
                bytes += rep.bytes.unwrap_or(0);
            }
            // A twin delivery of this task copied it (SQS delivered it twice at once): still
            // this job's copy, whichever twin is counted first.
            Ok(Replication { copied_by_own_job: Some(own), .. }) => {
                replicated = true;
                bytes += own;
            }
            // Refused by XCR_ALLOWED_DESTINATIONS: final, and a failure of the job, not a skip.
            Ok(rep) if rep.outcome == Outcome::Refused => failed = true,
            Ok(_) => {}
            Err(e) if e.is_retryable() => return None,
            Err(_) => failed = true,
        }
    }
    Some(if failed {
        TaskTally::Failed
    } else if replicated {
        TaskTally::Replicated { bytes }
    } else {
        TaskTally::Skipped
    })
}

fn is_busy(r: &Result<Replication>) -> bool {
    matches!(r, Ok(rep) if rep.outcome == Outcome::Busy)
}

fn is_continued(r: &Result<Replication>) -> bool {
    matches!(r, Ok(rep) if rep.outcome == Outcome::Continued)
}

/// Whether a record's results make it a continuation: some task `continued`, and nothing
/// failed for real (`busy` waits as well in a continuation as in a delayed requeue).
fn is_continuation(results: &[Result<Replication>]) -> bool {
    results.iter().any(is_continued) && results.iter().all(|r| !is_failure(r) || is_busy(r) || is_continued(r))
}

impl<S: ObjectSource, K: ObjectSink, L: Ledger, Q: TaskQueue, J: JobStore> Handler<S, K, L, Q, J> {
    /// The time budget of an invocation ending at `deadline_ms` ([`crate::domain::budget`]).
    fn budget(&self, deadline_ms: i64) -> Budget {
        let reserve = self.replicator.transfer().config().reserve;
        Budget::for_invocation(deadline_ms, crate::domain::replicate::now_ms(), &reserve)
    }

    /// Sends a continued record's body again as a new message with no delay: its receive
    /// count starts over (it made progress, it did not fail) and it is delivered at once; the
    /// caller acknowledges the original. False when it could not (no queue, no body, SQS
    /// refused): the record is then reported as failed and comes back by the retry clock.
    async fn hand_on(&self, payload: &Value, message_id: &str) -> bool {
        let Some(queue) = &self.requeue else { return false };
        let body = sqs_record(payload, message_id).and_then(|r| r["body"].as_str());
        let Some(body) = body else { return false };
        match queue.send_delayed(body, 0).await {
            Ok(()) => {
                tracing::info!(message_id, "continued: handed on to the next invocation");
                true
            }
            Err(e) => {
                tracing::warn!(message_id, error = %e.chain(), "continued, but could not hand it on; reporting it as failed");
                false
            }
        }
    }
}

impl<S: ObjectSource, K: ObjectSink, L: Ledger, Q: TaskQueue, J: JobStore> Handler<S, K, L, Q, J> {
    /// Sets when a failed record comes back: its visibility, from the retry clock and its receive
    /// count ([`crate::domain::redelivery`]), instead of the queue's whole visibility timeout. On its
    /// last delivery it comes back at once, to be moved to the dead-letter queue. False when it
    /// could not (no queue, no receipt handle, or SQS refused): the record then comes back when
    /// the visibility timeout runs out, as before.
    async fn back_off(&self, payload: &Value, message_id: &str) -> bool {
        let Some(queue) = &self.requeue else { return false };
        let Some(record) = sqs_record(payload, message_id) else { return false };
        let Some(receipt) = record["receiptHandle"].as_str() else { return false };
        let receives = record["attributes"]["ApproximateReceiveCount"].as_str().and_then(|c| c.parse::<u32>().ok());
        let last = matches!((receives, self.max_receives), (Some(n), Some(max)) if n >= max);
        let secs = if last { 1 } else { self.retry_clock.delay_secs(receives.unwrap_or(1)) };
        match queue.retry_after(receipt, secs).await {
            Ok(()) => {
                tracing::info!(
                    message_id,
                    receives,
                    retry_in_secs = secs,
                    last_delivery = last,
                    "failed: comes back later"
                );
                true
            }
            Err(e) => {
                tracing::warn!(message_id, error = %e.chain(), "could not set when the failed record comes back; the queue's visibility timeout applies");
                false
            }
        }
    }

    /// Puts the record's body back on the queue with a delay. False when it could not.
    async fn requeue(&self, payload: &Value, message_id: &str, delay_secs: u64) -> bool {
        let Some(queue) = &self.requeue else { return false };
        let body = sqs_record(payload, message_id).and_then(|r| r["body"].as_str());
        let Some(body) = body else { return false };
        match queue.send_delayed(body, u32::try_from(delay_secs).unwrap_or(900)).await {
            Ok(()) => {
                tracing::info!(message_id, delay_secs, "busy: requeued with a delay");
                true
            }
            Err(e) => {
                tracing::warn!(message_id, error = %e.chain(), "busy: could not requeue; reporting it as failed");
                false
            }
        }
    }
}

/// The SQS record of `payload` with this message id (for its body, receipt handle and receive
/// count when it must be sent again or come back later).
fn sqs_record<'a>(payload: &'a Value, message_id: &str) -> Option<&'a Value> {
    payload["Records"].as_array()?.iter().find(|r| r["messageId"].as_str() == Some(message_id))
}

fn result_json(r: &Result<Replication>) -> Value {
    match r {
        Ok(rep) => serde_json::to_value(rep).unwrap_or(Value::Null),
        Err(e) => json!({ "outcome": "failed", "error": { "kind": e.kind(), "message": e.to_string() } }),
    }
}

#[cfg(test)]
mod tests {
    //! The failure rule of the module doc, as a table, over in-process fakes: the handler sees
    //! only outcomes and error kinds, so where a kind comes from does not matter here.
    use super::*;
    use crate::adapters::aws::job_store::DynamoJobStore;
    use crate::adapters::aws::sqs::Queue;
    use crate::domain::model::{ObjectRef, StoredObject};
    use crate::domain::replicate::{ReplicateSettings, now_ms};
    use crate::domain::routing::Router;
    use crate::ports::{Claim, ClaimRequest, DoneRecord, LedgerItem, SourceRead, UploadCheckpoint, UploadProgress};
    use crate::ports::{ReadPin, UploadSpec};
    use crate::retry::RetryPolicy;
    use crate::transfer::{Transfer, TransferConfig};
    use bytes::Bytes;

    /// A source bucket in which nothing exists: every read is `not_found`.
    struct Empty;

    impl ObjectSource for Empty {
        async fn read(&self, obj: &ObjectRef, _: &ReadPin, _: u64) -> Result<SourceRead> {
            Err(Error::new(ErrorKind::NotFound, format!("{obj}: no such key")))
        }
        async fn exists(&self, _: &ObjectRef) -> Result<bool> {
            Ok(false)
        }
    }

    /// Never reached: nothing is ever read.
    struct Unused;

    fn unused<T>() -> Result<T> {
        Err(Error::new(ErrorKind::Config, "the sink is not used in these tests"))
    }

    impl ObjectSink for Unused {
        async fn upload_single(&self, _: &UploadSpec, _: Bytes) -> Result<StoredObject> {
            unused()
        }
        async fn start_session(&self, _: &UploadSpec) -> Result<String> {
            unused()
        }
        async fn upload_chunk(&self, _: &str, _: u64, _: Bytes, _: u64, _: Option<&str>) -> Result<UploadProgress> {
            unused()
        }
        async fn session_status(&self, _: &str, _: u64) -> Result<UploadProgress> {
            unused()
        }
        async fn delete(&self, _: &str, _: &str, _: Option<&str>, _: Option<u64>) -> Result<()> {
            unused()
        }
        async fn stat(&self, _: &str, _: &str) -> Result<Option<StoredObject>> {
            unused()
        }
    }

    /// Every error kind a task can end with (besides `busy`, an outcome).
    const KINDS: [ErrorKind; 8] = [
        ErrorKind::NotFound,
        ErrorKind::SourceChanged,
        ErrorKind::AccessDenied,
        ErrorKind::Invalid,
        ErrorKind::Integrity,
        ErrorKind::Transient,
        ErrorKind::Config,
        ErrorKind::Conflict,
    ];

    /// Decides each claim by the destination's name: `busy` is leased by another worker,
    /// `fail-KIND` fails with that kind, anything else is free.
    struct ByName;

    impl Ledger for ByName {
        async fn claim(&self, req: &ClaimRequest) -> Result<Claim> {
            if req.key.ends_with("/busy") {
                let current = LedgerItem {
                    lease_owner: Some("another worker".into()),
                    lease_expires_ms: Some(now_ms() + 60_000),
                    ..Default::default()
                };
                return Ok(Claim::Rejected { current });
            }
            match KINDS.iter().find(|k| req.key.ends_with(&format!("/fail-{k}"))) {
                Some(kind) => Err(Error::new(*kind, format!("claim {}: injected {kind}", req.key))),
                None => Ok(Claim::Acquired { previous: LedgerItem::default() }),
            }
        }
        async fn complete(&self, _: &str, _: &str, _: &DoneRecord) -> Result<bool> {
            Ok(true)
        }
        async fn release(&self, _: &str, _: &str, _: Option<(&str, &str)>) -> Result<()> {
            Ok(())
        }
        async fn checkpoint(&self, _: &str, _: &str, _: Option<&UploadCheckpoint>, _: i64) -> Result<bool> {
            Ok(true)
        }
    }

    fn handler() -> Handler<Empty, Unused, ByName, Queue, DynamoJobStore> {
        let once = RetryPolicy { max_attempts: 1, ..RetryPolicy::default() };
        let rules = r#"[{"source_bucket": "src", "destinations": [{"bucket": "dest"}]}]"#;
        let router = Router::new(None, Some(rules)).unwrap_or_else(|e| panic!("{e}"));
        let transfer = Transfer::new(Empty, Unused, TransferConfig::default(), once);
        let replicator = Replicator::new(transfer, ByName, router, ReplicateSettings::default());
        Handler::new(replicator, 2, None, None)
    }

    /// An S3 notification for (bucket, key) pairs.
    fn notification(objects: &[(&str, &str)]) -> Value {
        let records: Vec<Value> = objects
            .iter()
            .map(|(bucket, key)| {
                json!({"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                       "s3": {"bucket": {"name": bucket}, "object": {"key": key}}})
            })
            .collect();
        json!({ "Records": records })
    }

    fn sqs(body: &Value) -> Value {
        json!({"Records": [{"messageId": "m-1", "receiptHandle": "r", "body": body.to_string(),
                            "eventSource": "aws:sqs", "attributes": {}}]})
    }

    /// Whether a direct invocation of `objects` succeeds, and whether SQS acknowledges them.
    async fn verdicts(objects: &[(&str, &str)]) -> (Result<Value>, bool) {
        let h = handler();
        let event = notification(objects);
        let direct = h.handle(&event, now_ms() + 60_000).await;
        let batch = h.handle(&sqs(&event), now_ms() + 60_000).await.unwrap_or_else(|e| panic!("{e}"));
        let acknowledged = batch["batchItemFailures"].as_array().is_some_and(Vec::is_empty);
        (direct, acknowledged)
    }

    #[tokio::test]
    async fn every_outcome_and_kind_fails_or_passes_as_the_rule_says() {
        let mut table: Vec<(String, (&str, String), bool)> = vec![
            ("source gone (not_found)".into(), ("src", "gone".into()), true),
            ("no route (skipped)".into(), ("unrouted", "anything".into()), true),
            ("busy".into(), ("src", "busy".into()), false),
        ];
        for kind in KINDS.iter().filter(|k| **k != ErrorKind::NotFound) {
            table.push((kind.to_string(), ("src", format!("fail-{kind}")), false));
        }
        for (row, (bucket, key), fine) in &table {
            let (direct, acknowledged) = verdicts(&[(bucket, key)]).await;
            assert_eq!(direct.is_ok(), *fine, "{row}: direct invocation answered {direct:?}");
            assert_eq!(acknowledged, *fine, "{row}: SQS record acknowledged = {acknowledged}");
            if let Err(e) = direct {
                assert!(e.to_string().contains(key.as_str()), "{row}: the error names the object: {e}");
                let retryable = *row == "busy" || e.kind().is_retryable();
                assert_eq!(e.is_retryable(), retryable, "{row}: {e}");
            }
        }
    }

    /// A result of `outcome` for one object.
    fn with_outcome(outcome: Outcome) -> Result<Replication> {
        let task = Task {
            action: crate::domain::events::Action::Copy,
            object: ObjectRef::new("src", "big.bin"),
            sequencer: None,
            event_time: None,
            job_id: None,
            job_task: None,
            destination: None,
            overwrite: None,
            event: None,
        };
        let mut r = crate::domain::replicate::skipped_task(&task, "test");
        r.outcome = outcome;
        Ok(r)
    }

    #[test]
    fn a_continued_task_is_handed_on_never_counted_and_fails_only_a_direct_invocation() {
        let continued = || with_outcome(Outcome::Continued);
        let transient = || Err(Error::new(ErrorKind::Transient, "injected"));
        let gone = || Err(Error::new(ErrorKind::NotFound, "gone"));
        // Handed on: continued alone, or beside results that need no retry, or beside `busy`.
        assert!(is_continuation(&[continued()]));
        assert!(is_continuation(&[with_outcome(Outcome::Replicated), continued()]));
        assert!(is_continuation(&[continued(), with_outcome(Outcome::Busy), gone()]));
        // A real failure beside it: reported as failed (the checkpoint still serves the retry).
        assert!(!is_continuation(&[continued(), transient()]));
        assert!(!is_continuation(&[with_outcome(Outcome::Busy)]));
        assert!(!is_continuation(&[]));
        // A job does not count it yet, whatever else the task did.
        assert!(tally(&[continued()]).is_none());
        assert!(tally(&[with_outcome(Outcome::Replicated), continued()]).is_none());
        // A direct invocation cannot hand it on: it fails, retryable, so Lambda retries it.
        let e = direct_failure(&[continued()]).unwrap_or_else(|| panic!("a continuation fails a direct invocation"));
        assert!(e.is_retryable(), "{e}");
        assert!(e.to_string().contains("continued"), "{e}");
    }

    #[tokio::test]
    async fn one_failure_fails_the_invocation_with_the_kind_a_person_has_to_fix() {
        let (direct, _) = verdicts(&[("src", "gone"), ("unrouted", "k"), ("src", "fail-config")]).await;
        let e = direct.err().unwrap_or_else(|| panic!("a config failure must fail the invocation"));
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        assert!(e.to_string().starts_with("1 of 3 task(s) failed"), "{e}");

        let (direct, _) = verdicts(&[("src", "fail-access_denied"), ("src", "fail-transient")]).await;
        let e = direct.err().unwrap_or_else(|| panic!("failures must fail the invocation"));
        assert_eq!(e.kind(), ErrorKind::Transient, "any retryable failure makes it worth retrying: {e}");

        let (direct, acknowledged) = verdicts(&[("src", "gone"), ("unrouted", "k")]).await;
        let out = direct.unwrap_or_else(|e| panic!("{e}"));
        assert!(acknowledged);
        assert_eq!(out["counts"], json!({"not_found": 1, "skipped": 1}), "{out}");
    }
}
