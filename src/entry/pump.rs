//! The local event source: what Lambda's SQS event source mapping does in the cloud, run by
//! `xcr pump` on a laptop or in tests.
//!
//! It long-polls the replicate queue, hands each batch to the replicate handler as an SQS
//! event, deletes the records that succeeded and leaves the ones reported in
//! `batchItemFailures` to come back when the handler's retry clock says
//! ([`crate::domain::redelivery`]; the visibility timeout if it could not set one); the queue's redrive policy
//! moves a message that keeps failing to the dead-letter queue after `maxReceiveCount`.
//! Given a job [`Driver`], it also runs the listing steps of open migration jobs, which the
//! `migrate` function runs in the cloud, so a job created locally runs to completion with
//! nothing else started, and the job sweep ([`Driver::sweep`], the scheduled reconciler in the
//! cloud): every [`PumpOptions::sweep_every`] while pumping and once more before stopping idle,
//! so that a job whose last count was lost or whose task died into the DLQ still ends. [`redrive`] moves dead letters back, as an operator does once the
//! cause is fixed.

use crate::adapters::aws::sqs::{Message, Queue};
use crate::domain::error::Result;
use crate::domain::replicate::now_ms;
use crate::entry::handler::Handler;
use crate::jobs::migrate::Driver;
use crate::ports::{DeadLetters, JobStore, Ledger, ObjectLister, ObjectSink, ObjectSource, TaskQueue};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// How often the pump looks for new jobs while none has listing left to do.
const JOB_POLL: Duration = Duration::from_secs(1);
/// How often `--until-idle` says what it still waits on.
const WAIT_NOTE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
/// How `xcr pump` polls and when it stops.
pub struct PumpOptions {
    /// Messages per batch (1 to 10).
    pub batch_size: i32,
    /// Long-poll wait per receive, seconds (0 to 20).
    pub wait_secs: i32,
    /// Visibility timeout for received messages; `None` keeps the queue's.
    pub visibility_secs: Option<i32>,
    /// Stop once the queue has had nothing visible or in flight for this long.
    pub until_idle: Option<Duration>,
    /// Stop after this many batches.
    pub max_batches: Option<u64>,
    /// The time each batch gets, like a function timeout: leases last this long.
    pub batch_timeout: Duration,
    /// Batches handled at once, like concurrent invocations of the event source mapping. With
    /// two or more, the next batch is received while the current one is copied, so the queue's
    /// receive latency is hidden instead of added to every batch.
    pub concurrent_batches: usize,
    /// How often the job sweep runs while pumping (and once before stopping idle); `None`: never.
    pub sweep_every: Option<Duration>,
}

impl Default for PumpOptions {
    fn default() -> Self {
        Self {
            batch_size: 10,
            wait_secs: 20,
            visibility_secs: None,
            until_idle: None,
            max_batches: None,
            batch_timeout: Duration::from_secs(900),
            concurrent_batches: 2,
            sweep_every: Some(Duration::from_secs(60)),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
/// What a pump run did, printed at the end.
pub struct PumpStats {
    /// Batches received.
    pub batches: u64,
    /// Messages received.
    pub messages: u64,
    /// Messages deleted (done, or acknowledged as not found).
    pub deleted: u64,
    /// Messages left on the queue to come back (failed).
    pub failed: u64,
}

/// The SQS event Lambda would deliver for these messages.
pub fn sqs_event(messages: &[Message], queue_arn: &str, region: &str) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let mut attributes = json!({ "ApproximateReceiveCount": m.receive_count.to_string() });
            if let Some(sent) = m.sent_ms {
                attributes["SentTimestamp"] = json!(sent.to_string());
            }
            json!({
                "messageId": m.id,
                "receiptHandle": m.receipt_handle,
                "body": m.body,
                "attributes": attributes,
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            })
        })
        .collect();
    json!({ "Records": records })
}

/// What one handled batch added to the totals.
struct BatchDone {
    messages: usize,
    deleted: u64,
    failed: u64,
}

/// Runs batches until the options say stop. Up to `concurrent_batches` batches are handled at
/// once; receiving the next batch overlaps the ones in flight (they are polled while the
/// receive waits), so a slow receive no longer stalls the copies.
pub async fn pump<S, K, L, Q, J, Lst, Q2, J2>(
    handler: &Handler<S, K, L, Q, J>,
    queue: &Queue,
    region: &str,
    driver: Option<&Driver<Lst, Q2, J2>>,
    opts: &PumpOptions,
) -> Result<PumpStats>
where
    S: ObjectSource,
    K: ObjectSink,
    L: Ledger,
    Q: TaskQueue,
    J: JobStore,
    Lst: ObjectLister,
    Q2: TaskQueue + DeadLetters,
    J2: JobStore,
{
    let arn = queue.arn().await?;
    let mut stats = PumpStats::default();
    let mut idle_since = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    let max_in_flight = opts.concurrent_batches.max(1);
    let mut received: u64 = 0;
    let mut next_job_look: Option<Instant> = None;
    let mut next_sweep = opts.sweep_every.map(|every| Instant::now() + every);
    let mut last_wait_note: Option<Instant> = None;
    let account = |stats: &mut PumpStats, done: Result<BatchDone>| -> Result<()> {
        let done = done?;
        stats.deleted += done.deleted;
        stats.failed += done.failed;
        tracing::info!(batch = stats.batches, messages = done.messages, failed = done.failed, "pumped a batch");
        Ok(())
    };
    loop {
        if opts.max_batches.is_some_and(|m| received >= m) {
            break;
        }
        if in_flight.len() >= max_in_flight {
            if let Some(done) = in_flight.next().await {
                account(&mut stats, done)?;
            }
            continue;
        }
        // Jobs first: their listing steps feed the queue this loop then drains. While no job
        // has listing left, look for new ones at most once per JOB_POLL, not once per batch:
        // the look is a Query of the jobs table.
        if let (Some(d), Some(at), Some(every)) = (driver, next_sweep, opts.sweep_every)
            && Instant::now() >= at
        {
            sweep(d).await;
            next_sweep = Some(Instant::now() + every);
        }
        let look = next_job_look.is_none_or(|at| Instant::now() >= at);
        let open_jobs = match driver {
            Some(d) if look => step_jobs(d).await?,
            _ => Some(0),
        };
        if look {
            // No open job: look again after JOB_POLL. A failed look: also after JOB_POLL, not
            // at once (the jobs table may be throttling). Open jobs: at the next turn.
            next_job_look = if open_jobs.is_some_and(|n| n > 0) { None } else { Some(Instant::now() + JOB_POLL) };
        }
        // A failed look may have missed open jobs: not idle on its account.
        if open_jobs != Some(0) {
            idle_since = Instant::now();
        }
        let open_jobs = open_jobs.unwrap_or(0);
        let wait = match opts.until_idle {
            Some(idle) => opts.wait_secs.min(i32::try_from(idle.as_secs()).unwrap_or(20).max(1)),
            None => opts.wait_secs,
        };
        // While batches are in flight, a long poll would only delay noticing their end.
        let wait = if open_jobs > 0 || !in_flight.is_empty() { 0 } else { wait };
        let receive = queue.receive(opts.batch_size, wait, opts.visibility_secs);
        tokio::pin!(receive);
        let messages = loop {
            tokio::select! {
                got = &mut receive => break got?,
                Some(done) = in_flight.next(), if !in_flight.is_empty() => account(&mut stats, done)?,
            }
        };
        if messages.is_empty() {
            if let Some(done) = in_flight.next().await {
                // Nothing new yet: wait for a batch in flight instead of polling again at once.
                account(&mut stats, done)?;
                idle_since = Instant::now();
                continue;
            }
            if let Some(idle) = opts.until_idle {
                let (visible, in_flight_msgs) = queue.depth().await?;
                if visible + in_flight_msgs > 0 {
                    // Failures wait out their visibility timeout: not idle yet. Say so, at most
                    // every WAIT_NOTE, so that a person watching `--until-idle` knows what the
                    // pump waits on instead of seeing it hang.
                    if last_wait_note.is_none_or(|at: Instant| at.elapsed() >= WAIT_NOTE) {
                        tracing::info!(
                            visible,
                            in_flight = in_flight_msgs,
                            "not idle: messages still on the queue (failed records come back when their retry time is up; `xcr dlq count` shows the dead letters)"
                        );
                        last_wait_note = Some(Instant::now());
                    }
                    idle_since = Instant::now();
                } else if idle_since.elapsed() >= idle {
                    // The last chance for a stuck job to end before this pump stops.
                    if let (Some(d), Some(_)) = (driver, opts.sweep_every) {
                        sweep(d).await;
                    }
                    // A job created since the last look still gets its first step (and one the
                    // sweep found undriven its next).
                    match driver {
                        Some(d) if step_jobs(d).await? != Some(0) => idle_since = Instant::now(),
                        _ => break,
                    }
                }
            }
            continue;
        }
        idle_since = Instant::now();
        received += 1;
        stats.batches += 1;
        stats.messages += messages.len() as u64;
        let arn = arn.as_str();
        in_flight.push(async move {
            let event = sqs_event(&messages, arn, region);
            let deadline = now_ms() + opts.batch_timeout.as_millis() as i64;
            let failed: HashSet<String> = match handler.handle(&event, deadline).await {
                Ok(resp) => resp["batchItemFailures"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|f| f["itemIdentifier"].as_str().map(str::to_string)).collect())
                    .unwrap_or_default(),
                Err(e) => {
                    // The whole invocation failed: like Lambda, delete nothing.
                    tracing::error!(error = %e.chain(), "batch failed as a whole");
                    messages.iter().map(|m| m.id.clone()).collect()
                }
            };
            let done: Vec<&Message> = messages.iter().filter(|m| !failed.contains(&m.id)).collect();
            let deleted = queue.delete(&done).await? as u64;
            Ok(BatchDone { messages: messages.len(), deleted, failed: failed.len() as u64 })
        });
    }
    while let Some(done) = in_flight.next().await {
        account(&mut stats, done)?;
    }
    Ok(stats)
}

/// One step of every open job ([`Driver::step_open_jobs`]): how many there were, or `None`
/// when the look itself failed with a retryable error (the jobs table throttled, a connection
/// reset). A pump is a long-running loop like the scheduled sweep: one blip of the jobs table
/// must neither stop it (a job left RUNNING with nobody to drive it) nor let it call itself
/// idle. Errors that no retry fixes (the table does not exist) still end it.
async fn step_jobs<Lst: ObjectLister, Q: TaskQueue + DeadLetters, J: JobStore>(
    driver: &Driver<Lst, Q, J>,
) -> Result<Option<usize>> {
    match driver.step_open_jobs().await {
        Ok(n) => Ok(Some(n)),
        Err(e) if e.is_retryable() => {
            tracing::warn!(error = %e.chain(), "looking for open jobs failed; looking again shortly");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Runs the job sweep. Its jobs to resume need nothing more here: the pump's own job steps
/// ([`Driver::step_open_jobs`]) take every open job whose lease is free. A failed sweep is
/// logged, not fatal: it is a safety net, and the next one tries again.
async fn sweep<Lst: ObjectLister, Q: TaskQueue + DeadLetters, J: JobStore>(driver: &Driver<Lst, Q, J>) {
    // Boxed: inline, the sweep's future would grow every pump future (and its callers' stacks).
    // The same metrics line the migrate function writes for a sweep ([`crate::metrics`]).
    match Box::pin(driver.sweep()).await {
        Ok(swept) => {
            crate::metrics::emit_migrate("migrate", swept.dead_letters_counted, None);
            tracing::info!(
                resume = swept.resume.len(),
                finished = swept.finished.len(),
                dead_letters_counted = swept.dead_letters_counted,
                "job sweep"
            )
        }
        Err(e) => {
            crate::metrics::emit_migrate("migrate", 0, Some(e.kind()));
            tracing::warn!(error = %e.chain(), "job sweep failed; the next one tries again")
        }
    }
}

/// Moves up to `max` messages from the dead-letter queue back to the queue. A message is
/// deleted from the DLQ only after SQS accepted its copy, so nothing is lost if this stops.
pub async fn redrive(dlq: &Queue, queue: &Queue, max: u64) -> Result<u64> {
    let mut moved = 0u64;
    while moved < max {
        let want = i32::try_from((max - moved).min(10)).unwrap_or(10);
        let messages = dlq.receive(want, 1, Some(60)).await?;
        if messages.is_empty() {
            break;
        }
        let bodies: Vec<&str> = messages.iter().map(|m| m.body.as_str()).collect();
        let ids = queue.send(&bodies).await?;
        let sent: Vec<&Message> = messages.iter().zip(&ids).filter(|(_, id)| id.is_some()).map(|(m, _)| m).collect();
        moved += dlq.delete(&sent).await? as u64;
        if sent.len() < messages.len() {
            tracing::warn!(
                unsent = messages.len() - sent.len(),
                "some dead letters were not accepted by the queue; they stay in the DLQ"
            );
            break;
        }
    }
    Ok(moved)
}
