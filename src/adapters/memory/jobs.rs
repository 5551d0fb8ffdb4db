//! Migration jobs in memory: the same states, checkpoints, staged pages, task markers and
//! driver lease as [`crate::adapters::aws::job_store::DynamoJobStore`], every change conditional as there and
//! applied under one lock (a DynamoDB transaction is all or nothing).
//!
//! * a job is created once (a second create of its id is refused, `invalid` as DynamoDB's
//!   failed condition);
//! * PENDING -> RUNNING -> SUCCEEDED / FAILED, PENDING or RUNNING -> CANCELLED or FAILED; a
//!   change from any other state answers `false`;
//! * a page is committed only while the job is RUNNING and its checkpoint is still the one the
//!   page was listed after; a page is staged once per checkpoint (a concurrent driver's wins);
//! * a task is counted once per task id; the driver lease is held by one owner until it
//!   expires.

use super::lock;
use crate::domain::error::{Error, ErrorKind, Result};
use crate::jobs::{AuditCounters, AuditTally, Job, JobKind, JobStatus, StagedPage, TaskTally, now_rfc3339};
use crate::ports::JobStore;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// Longest error message kept, as in DynamoDB.
const MAX_ERROR: usize = 1_000;

#[derive(Debug, Clone)]
struct Record {
    job: Job,
    /// Counted whatever the kind (DynamoDB adds to the item's attributes); shown for audit jobs.
    audit: AuditCounters,
    driver: Option<(String, i64)>,
    staged: Option<StagedPage>,
}

#[derive(Debug, Default)]
struct State {
    jobs: HashMap<String, Record>,
    /// (job id, task id) of every task counted.
    counted: HashSet<(String, String)>,
}

/// Migration jobs in memory (see the module doc). A clone is another client of the same table.
#[derive(Debug, Clone, Default)]
pub struct MemoryJobStore {
    state: Arc<Mutex<State>>,
}

impl MemoryJobStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies `change` to a job that is in one of `from`; false when it is not (or missing).
    fn transition(&self, id: &str, from: &[JobStatus], change: impl FnOnce(&mut Job)) -> bool {
        let mut state = lock(&self.state);
        match state.jobs.get_mut(id) {
            Some(r) if from.contains(&r.job.status) => {
                change(&mut r.job);
                r.job.updated_at = now_rfc3339();
                true
            }
            _ => false,
        }
    }
}

fn view(r: &Record) -> Job {
    let mut job = r.job.clone();
    job.audit = (job.spec.kind == JobKind::Audit).then_some(r.audit);
    job
}

/// Whether the job is RUNNING at checkpoint `from` (the start: no checkpoint, listing not done).
fn at_checkpoint(job: &Job, from: Option<&str>) -> bool {
    job.status == JobStatus::Running
        && match from {
            Some(cp) => job.checkpoint.as_deref() == Some(cp),
            None => job.checkpoint.is_none() && !job.listing_done,
        }
}

fn advance(job: &mut Job, next: Option<&str>, listing_done: bool, listed: u64, queued: u64) {
    job.checkpoint = next.map(str::to_string);
    job.listing_done = listing_done;
    job.counters.listed += listed;
    job.counters.queued += queued;
    job.counters.pending += i64::try_from(queued).unwrap_or(i64::MAX);
    job.updated_at = now_rfc3339();
}

impl JobStore for MemoryJobStore {
    async fn create(&self, job: &Job) -> Result<()> {
        let mut state = lock(&self.state);
        if state.jobs.contains_key(&job.id) {
            return Err(Error::new(
                ErrorKind::Invalid,
                format!("create job: 400 ConditionalCheckFailed: job {} exists", job.id),
            ));
        }
        // What DynamoDB stores of a new job: spec, status, times and zero counters.
        let stored = Job {
            counters: Default::default(),
            audit: None,
            checkpoint: None,
            listing_done: false,
            finished_at: None,
            last_error: None,
            ..job.clone()
        };
        state.jobs.insert(
            job.id.clone(),
            Record { job: stored, audit: AuditCounters::default(), driver: None, staged: None },
        );
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<Job>> {
        Ok(lock(&self.state).jobs.get(id).map(view))
    }

    async fn list(&self, limit: usize) -> Result<Vec<Job>> {
        let mut jobs: Vec<Job> = lock(&self.state).jobs.values().map(view).collect();
        jobs.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.id.cmp(&a.id)));
        jobs.truncate(limit);
        Ok(jobs)
    }

    async fn start(&self, id: &str) -> Result<bool> {
        Ok(self.transition(id, &[JobStatus::Pending], |j| j.status = JobStatus::Running))
    }

    async fn cancel(&self, id: &str) -> Result<bool> {
        Ok(self.transition(id, &[JobStatus::Pending, JobStatus::Running], |j| {
            j.status = JobStatus::Cancelled;
            j.finished_at = Some(now_rfc3339());
        }))
    }

    async fn commit_page(
        &self,
        id: &str,
        old: Option<&str>,
        new: Option<&str>,
        listing_done: bool,
        listed: u64,
        queued: u64,
    ) -> Result<bool> {
        let mut state = lock(&self.state);
        match state.jobs.get_mut(id) {
            Some(r) if at_checkpoint(&r.job, old) => {
                advance(&mut r.job, new, listing_done, listed, queued);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn staged_page(&self, id: &str) -> Result<Option<StagedPage>> {
        Ok(lock(&self.state).jobs.get(id).and_then(|r| r.staged.clone()))
    }

    async fn stage_page(&self, id: &str, page: &StagedPage) -> Result<bool> {
        let mut state = lock(&self.state);
        match state.jobs.get_mut(id) {
            Some(r)
                if at_checkpoint(&r.job, page.from.as_deref())
                    && r.staged.as_ref().is_none_or(|s| s.from != page.from) =>
            {
                r.staged = Some(page.clone());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn commit_staged_page(&self, id: &str, page: &StagedPage, queued: u64) -> Result<bool> {
        let mut state = lock(&self.state);
        match state.jobs.get_mut(id) {
            Some(r)
                if at_checkpoint(&r.job, page.from.as_deref())
                    && r.staged.as_ref().is_some_and(|s| s.from == page.from) =>
            {
                advance(&mut r.job, page.next.as_deref(), page.done, page.keys.len() as u64, queued);
                r.staged = None;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn record_task(&self, id: &str, task_id: &str, tally: TaskTally) -> Result<bool> {
        let mut state = lock(&self.state);
        let marker = (id.to_string(), task_id.to_string());
        if state.counted.contains(&marker) {
            return Ok(false);
        }
        // DynamoDB's ADD would create a bare item for a missing job, which no read could parse.
        let r = state
            .jobs
            .get_mut(id)
            .ok_or_else(|| Error::new(ErrorKind::Invalid, format!("count job task: no job {id}")))?;
        let c = &mut r.job.counters;
        match tally {
            TaskTally::Replicated { bytes } => {
                c.replicated += 1;
                c.bytes += bytes;
            }
            TaskTally::Skipped => c.skipped += 1,
            TaskTally::Failed => c.failed += 1,
        }
        c.pending -= 1;
        r.job.updated_at = now_rfc3339();
        state.counted.insert(marker);
        Ok(true)
    }

    async fn record_audit_page(&self, id: &str, task_id: &str, tally: AuditTally) -> Result<bool> {
        let mut state = lock(&self.state);
        let marker = (id.to_string(), task_id.to_string());
        if state.counted.contains(&marker) {
            return Ok(false);
        }
        let r = state
            .jobs
            .get_mut(id)
            .ok_or_else(|| Error::new(ErrorKind::Invalid, format!("count audit page: no job {id}")))?;
        match tally {
            AuditTally::Audited { counts, repaired } => {
                let a = &mut r.audit;
                a.pages += 1;
                a.compared += counts.compared;
                a.matching += counts.matching;
                a.missing += counts.missing;
                a.different += counts.different;
                a.extra += counts.extra;
                a.unverifiable += counts.unverifiable;
                a.repaired += repaired;
            }
            AuditTally::Failed => r.job.counters.failed += 1,
        }
        r.job.counters.pending -= 1;
        r.job.updated_at = now_rfc3339();
        state.counted.insert(marker);
        Ok(true)
    }

    async fn try_finish(&self, id: &str) -> Result<Option<JobStatus>> {
        let mut state = lock(&self.state);
        let Some(r) = state.jobs.get_mut(id) else { return Ok(None) };
        let job = &mut r.job;
        if job.status != JobStatus::Running || !job.listing_done || job.counters.pending > 0 {
            return Ok(None);
        }
        let status = if job.counters.failed == 0 { JobStatus::Succeeded } else { JobStatus::Failed };
        let now = now_rfc3339();
        job.status = status;
        job.finished_at = Some(now.clone());
        job.updated_at = now;
        Ok(Some(status))
    }

    async fn claim_driver(&self, id: &str, owner: &str, now_ms: i64, until_ms: i64) -> Result<bool> {
        let mut state = lock(&self.state);
        let Some(r) = state.jobs.get_mut(id) else { return Ok(false) };
        let free = match &r.driver {
            None => true,
            Some((holder, until)) => *until < now_ms || holder == owner,
        };
        if free {
            r.driver = Some((owner.to_string(), until_ms));
        }
        Ok(free)
    }

    async fn release_driver(&self, id: &str, owner: &str) -> Result<()> {
        let mut state = lock(&self.state);
        if let Some(r) = state.jobs.get_mut(id)
            && r.driver.as_ref().is_some_and(|(holder, _)| holder == owner)
        {
            r.driver = None;
        }
        Ok(())
    }

    async fn fail(&self, id: &str, message: &str) -> Result<bool> {
        let message: String = message.chars().take(MAX_ERROR).collect();
        Ok(self.transition(id, &[JobStatus::Pending, JobStatus::Running], |j| {
            j.status = JobStatus::Failed;
            j.last_error = Some(message);
            j.finished_at = Some(now_rfc3339());
        }))
    }

    async fn set_error(&self, id: &str, message: &str) -> Result<()> {
        let message: String = message.chars().take(MAX_ERROR).collect();
        let mut state = lock(&self.state);
        if let Some(r) = state.jobs.get_mut(id) {
            r.job.last_error = Some(message);
            r.job.updated_at = now_rfc3339();
        }
        Ok(())
    }
}
