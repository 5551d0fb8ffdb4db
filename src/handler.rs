//! The replicate function's logic, independent of the Lambda runtime so that `xcr pump` runs
//! the very same code locally: decode the invocation, apply every task, and answer the way the
//! trigger expects.
//!
//! The rule for failures:
//! * **SQS batch:** a record is reported in `batchItemFailures` (and so delivered again, and
//!   moved to the dead-letter queue after `maxReceiveCount`) when any of its tasks failed with
//!   a retryable error or failed permanently in a way a person can fix (access denied,
//!   configuration, an unreadable body): those must reach the DLQ, not vanish. A record whose
//!   source is gone (`not_found`) or that no rule routes is acknowledged: there is nothing to
//!   copy, and retrying cannot change that. Both are logged and counted.
//! * A record that is only `busy` (another worker holds the key's lease) is sent back to the
//!   queue with a delay and acknowledged, so waiting never spends one of its receives: a newer
//!   version's event must not end in the DLQ because an older copy was slow. If that send
//!   fails, the record is reported as failed instead.
//! * **Direct invocation (S3 notification, EventBridge, command):** the invocation fails only
//!   when something retryable failed, so Lambda's asynchronous retries and its on-failure
//!   destination take over; permanent failures are logged, counted and returned.

use crate::error::{Error, ErrorKind, Result};
use crate::events::{Incoming, Task, decode_invocation};
use crate::jobs::{JobStatus, TaskTally};
use crate::ports::{JobStore, Ledger, ObjectSink, ObjectSource, TaskQueue};
use crate::replicate::{Outcome, Replication, Replicator};
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

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
}

/// How long a job's status is trusted before it is read again (a cancel takes effect within it).
const JOB_STATUS_TTL: Duration = Duration::from_secs(2);

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

/// Whether an SQS record with this result must be delivered again (see the module rule).
fn redeliver(result: &Result<Replication>) -> bool {
    match result {
        Ok(r) => r.outcome.needs_retry(),
        Err(e) => e.kind() != ErrorKind::NotFound,
    }
}

impl<S: ObjectSource, K: ObjectSink, L: Ledger, Q: TaskQueue, J: JobStore> Handler<S, K, L, Q, J> {
    pub fn new(replicator: Replicator<S, K, L>, concurrency: usize, requeue: Option<Q>, jobs: Option<J>) -> Self {
        Self {
            replicator,
            concurrency: concurrency.max(1),
            requeue,
            jobs,
            job_status: tokio::sync::Mutex::new(HashMap::new()),
            job_writes: tokio::sync::Mutex::new(()),
            max_receives: None,
        }
    }

    /// Tells the handler the queue's `maxReceiveCount` (see [`Self::handle`]).
    pub fn with_max_receives(mut self, max: Option<u32>) -> Self {
        self.max_receives = max.filter(|m| *m > 0);
        self
    }

    pub fn max_receives(&self) -> Option<u32> {
        self.max_receives
    }

    pub fn jobs(&self) -> Option<&J> {
        self.jobs.as_ref()
    }

    pub fn replicator(&self) -> &Replicator<S, K, L> {
        &self.replicator
    }

    /// `last_delivery`: a retryable failure now sends the record to the dead-letter queue.
    async fn run_tasks(&self, tasks: &[Task], deadline_ms: i64, last_delivery: bool) -> Vec<Result<Replication>> {
        let mut out = Vec::new();
        for task in tasks {
            match (&task.job_id, &self.jobs) {
                (Some(job_id), Some(jobs)) => {
                    out.extend(self.run_job_task(jobs, job_id, task, deadline_ms, last_delivery).await)
                }
                _ => out.extend(self.replicator.apply(task, deadline_ms).await),
            }
        }
        out
    }

    /// A migration job's task: a no-op once the job is cancelled; otherwise applied, then
    /// counted once in the job (a redelivered task is not counted again), and the job ended
    /// when it was the last one. A task still failing on its last delivery is counted as
    /// failed (it is on its way to the DLQ): the job then ends FAILED instead of waiting
    /// forever; a redrive still copies the object, without counting it again.
    async fn run_job_task(
        &self,
        jobs: &J,
        job_id: &str,
        task: &Task,
        deadline_ms: i64,
        last_delivery: bool,
    ) -> Vec<Result<Replication>> {
        match self.job_status(jobs, job_id).await {
            // Cancelled: its queued tasks are no-ops. A job that ended otherwise still applies a
            // task delivered late (a DLQ redrive after fixing the cause): the ledger makes a
            // duplicate harmless, and the task's marker keeps it from being counted twice.
            Ok(Some(status)) if status == JobStatus::Cancelled => {
                return vec![Ok(crate::replicate::skipped_task(task, &format!("job {job_id} is {}", status.as_str())))];
            }
            Ok(Some(_)) => {}
            Ok(None) => return vec![Ok(crate::replicate::skipped_task(task, &format!("job {job_id} does not exist")))],
            Err(e) => return vec![Err(e.context(format_args!("job {job_id}")))],
        }
        let mut results = self.replicator.apply(task, deadline_ms).await;
        let tally = match tally(&results) {
            Some(t) => t,
            None if last_delivery && !results.iter().any(is_busy) => {
                let why = results.iter().find_map(|r| r.as_ref().err()).map(|e| e.chain()).unwrap_or_default();
                tracing::warn!(job_id, object = %task.object, error = %why, "last delivery failed: counted as failed, on its way to the DLQ");
                let _ = jobs
                    .set_error(job_id, &format!("{} failed on its last delivery (now in the DLQ): {why}", task.object))
                    .await;
                TaskTally::Failed
            }
            None => return results,
        };
        let task_id = crate::jobs::task_id(&task.object.bucket, &task.object.key, task.object.version_id.as_deref());
        let _one_writer = self.job_writes.lock().await;
        let counted = match jobs.record_task(job_id, &task_id, tally).await {
            Ok(counted) => counted,
            // Not counted yet: deliver the task again; the copy itself is idempotent.
            Err(e) => {
                results.push(Err(e.context(format_args!("count the task in job {job_id}"))));
                return results;
            }
        };
        // Only the last task ends the job: one read tells, instead of two failing writes per task.
        let last =
            counted && matches!(jobs.get(job_id).await, Ok(Some(j)) if j.listing_done && j.counters.pending <= 0);
        if last {
            match jobs.try_finish(job_id).await {
                Ok(Some(status)) => tracing::info!(job_id, status = status.as_str(), "job finished"),
                Ok(None) => {}
                Err(e) => tracing::warn!(job_id, error = %e.chain(), "could not check whether the job finished"),
            }
        }
        results
    }

    /// The job's status, from a short-lived cache.
    async fn job_status(&self, jobs: &J, job_id: &str) -> Result<Option<JobStatus>> {
        if let Some((status, at)) = self.job_status.lock().await.get(job_id)
            && at.elapsed() < JOB_STATUS_TTL
        {
            return Ok(Some(*status));
        }
        let status = jobs.get(job_id).await?.map(|j| j.status);
        if let Some(st) = status {
            self.job_status.lock().await.insert(job_id.to_string(), (st, Instant::now()));
        }
        Ok(status)
    }

    /// Handles one invocation payload. `deadline_ms` is the invocation's deadline (epoch ms).
    pub async fn handle(&self, payload: &Value, deadline_ms: i64) -> Result<Value> {
        let incoming =
            decode_invocation(payload).inspect_err(|e| tracing::error!(error = %e.chain(), "rejected invocation"))?;
        let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
        match incoming {
            Incoming::Direct(tasks) => {
                let results = self.run_tasks(&tasks, deadline_ms, false).await;
                let mut retry = Vec::new();
                for r in &results {
                    *counts.entry(verdict(r)).or_default() += 1;
                    match r {
                        Ok(rep) if rep.outcome.needs_retry() => retry.push(format!("{}: busy", rep.source.key)),
                        Err(e) if e.is_retryable() => retry.push(e.to_string()),
                        _ => {}
                    }
                }
                tracing::info!(tasks = tasks.len(), counts = ?counts, "invocation done");
                if !retry.is_empty() {
                    return Err(Error::new(
                        ErrorKind::Transient,
                        format!("{} task(s) will be retried: {}", retry.len(), retry.join("; ")),
                    ));
                }
                let results: Vec<Value> = results.iter().map(result_json).collect();
                Ok(json!({ "results": results, "counts": counts }))
            }
            Incoming::Sqs(items) => {
                let outcomes: Vec<(String, Vec<Result<Replication>>, Option<Error>)> = futures::stream::iter(items)
                    .map(|item| async move {
                        let last = matches!((item.receive_count, self.max_receives), (Some(n), Some(max)) if n >= max);
                        match item.tasks {
                            Ok(tasks) => (item.message_id, self.run_tasks(&tasks, deadline_ms, last).await, None),
                            Err(e) => {
                                tracing::error!(message_id = %item.message_id, error = %e.chain(), "unreadable message");
                                (item.message_id, Vec::new(), Some(e))
                            }
                        }
                    })
                    .buffer_unordered(self.concurrency)
                    .collect()
                    .await;
                let mut failures = Vec::new();
                for (message_id, results, unreadable) in &outcomes {
                    if unreadable.is_some() {
                        *counts.entry("unreadable").or_default() += 1;
                    }
                    for r in results {
                        *counts.entry(verdict(r)).or_default() += 1;
                    }
                    let failed = unreadable.is_some() || results.iter().any(|r| redeliver(r) && !is_busy(r));
                    let busy = results.iter().filter_map(|r| r.as_ref().ok()).filter(|r| r.outcome == Outcome::Busy);
                    let wait = busy.map(|r| r.retry_after_secs.unwrap_or(1)).max();
                    let requeued = match wait {
                        Some(wait) if !failed => self.requeue(payload, message_id, wait.min(BUSY_RETRY_MAX_SECS)).await,
                        _ => false,
                    };
                    if failed || (wait.is_some() && !requeued) {
                        failures.push(json!({ "itemIdentifier": message_id }));
                    } else if requeued {
                        *counts.entry("requeued").or_default() += 1;
                    }
                }
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
            Ok(rep) if rep.outcome == Outcome::Busy => return None,
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

impl<S: ObjectSource, K: ObjectSink, L: Ledger, Q: TaskQueue, J: JobStore> Handler<S, K, L, Q, J> {
    /// Puts the record's body back on the queue with a delay. False when it could not.
    async fn requeue(&self, payload: &Value, message_id: &str, delay_secs: u64) -> bool {
        let Some(queue) = &self.requeue else { return false };
        let body = payload["Records"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["messageId"].as_str() == Some(message_id)))
            .and_then(|r| r["body"].as_str());
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

fn result_json(r: &Result<Replication>) -> Value {
    match r {
        Ok(rep) => serde_json::to_value(rep).unwrap_or(Value::Null),
        Err(e) => json!({ "outcome": "failed", "error": { "kind": e.kind(), "message": e.to_string() } }),
    }
}
