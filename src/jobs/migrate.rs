//! The migration job driver: lists a bucket (or reads a manifest) in bounded steps and turns
//! every object into a replicate command on the replicate queue.
//!
//! One step: read the job; list one page after the stored checkpoint and stage it (write the
//! page down, [`crate::jobs::StagedPage`]); enqueue the page's commands (tagged with the job
//! id); then store the new checkpoint together with the counters, and drop the staged page, in
//! one conditional write that only succeeds if the checkpoint is still the one this step
//! started from. A crash anywhere in a step therefore repeats at most that page, and repeats it
//! from what was staged, never from a new listing of a bucket that may have changed since: its
//! commands may be enqueued twice, but the replicate side counts each object once per job
//! ([`crate::ports::JobStore::record_task`]), so counters stay exact and nothing is lost.
//! Steps repeat until the invocation's deadline is near; the caller continues the job in a new
//! invocation (the function re-invokes itself; locally `xcr pump` drives open jobs). A driver
//! that finds the job's lease held by another driver stops ([`Step::Held`]) instead of
//! re-invoking itself: the holder goes on.
//!
//! A manifest is read one window per step ([`MANIFEST_WINDOW`], a ranged GET from the byte
//! offset the checkpoint records, `@OFFSET`), never whole: memory stays bounded by the window
//! for a manifest of any length, and a step costs one small read however far into the manifest
//! the job is (reading it whole at every step was quadratic). Each task of a
//! manifest page carries its position (`task`: the page's offset and its index in the page), so
//! that a key listed twice, in two pages, is two tasks, each counted once, and the job's
//! `pending` reaches zero. A checkpoint written by an older version (a plain entry index) is
//! still read the old way.
//!
//! **Every job ends: the sweep.** The chain of drivers and the tasks' own counting end a job in
//! the normal course, but each can die at a point where nothing else would carry on: a driver
//! invocation whose retries ran out, a count whose answer was lost, a task killed (timeout,
//! out of memory) on its last delivery, which then moves to the dead-letter queue uncounted.
//! [`Driver::sweep`] repairs all three from durable state alone, and is idempotent, so running
//! it often or twice at once is harmless: it counts as failed the job tasks found in the
//! dead-letter queue (through the same per-task marker as every count, so a task counted before,
//! or counted later by a redrive, is counted once), ends RUNNING jobs whose listing is done and
//! whose tasks are all counted, and names the open jobs whose listing is not done and whose
//! driver lease has lapsed, for the caller to continue. The migrate function runs it on a
//! schedule (`{"sweep": true}`); `xcr pump` runs it every so often and before it stops idle.

use crate::domain::error::{Error, ErrorKind, Result};
use crate::domain::names::S3Url;
use crate::domain::replicate::now_ms;
use crate::jobs::{AFTER_KEY, AuditTally, Job, JobKind, JobStatus, StagedPage, parse_manifest};
use crate::ports::{DeadLetters, JobStore, ObjectLister, TaskQueue};
use serde::Serialize;
use serde_json::json;
use std::collections::{HashMap, HashSet};

/// Dead letters one sweep reads at most: a sweep stays a few seconds long even when the
/// dead-letter queue holds a whole outage's worth of messages.
pub const SWEEP_MAX_DEAD_LETTERS: usize = 1000;

/// How long the sweep holds a job's driver lease to learn that nobody else does; it releases
/// it at once.
const SWEEP_PROBE_MS: i64 = 30_000;

/// Largest manifest read whole: only for jobs checkpointed by an older version (an entry index).
const MAX_MANIFEST_BYTES: u64 = 256 * 1024 * 1024;

/// Bytes of a manifest read per step, and the bound on the driver's memory for a manifest of
/// any length. A page takes the whole lines that fit, at most a page size of them: 1,000 lines
/// of ordinary keys (about 100 bytes each) fit, a page of the longest ones (a 1,024-byte key
/// percent-encoded is about 3 KiB) is shorter. Only a single line longer than this (no valid
/// line is) stops the job.
pub const MANIFEST_WINDOW: u64 = 128 << 10;

/// One object of a page: bucket, key, version, and for manifests the task's position.
type PageItem = (String, String, Option<String>, Option<String>);

/// How many bytes of `window` hold at most `max_lines` non-blank lines, whole: up to and
/// including the last newline taken, or to the end when `eof` (the last line needs none).
/// `None` when not even one line fits (a line longer than the window).
pub fn whole_lines(window: &[u8], eof: bool, max_lines: usize) -> Option<usize> {
    let mut pos = 0;
    let mut lines = 0;
    while lines < max_lines && pos < window.len() {
        let end = match window[pos..].iter().position(|b| *b == b'\n') {
            Some(i) => pos + i + 1,
            None if eof => window.len(),
            None => break,
        };
        if window[pos..end].iter().any(|b| !b.is_ascii_whitespace()) {
            lines += 1;
        }
        pos = end;
    }
    (pos > 0 || window.is_empty()).then_some(pos)
}

/// An audit job's page task ([`crate::jobs::audit_page`]): the keys after the job's checkpoint (the
/// previous page's last key) through this page's last key, or to the end of the prefix when the
/// listing is done. Its number is the count of pages queued before it, which the page commit
/// stores with the checkpoint: a page listed again after a crash gets the same number.
fn audit_page_task(job: &Job, next: Option<&str>, done: bool) -> String {
    // Both positions are listing checkpoints (`after:KEY`, see [`StagedPage`]); the task wants
    // the keys themselves.
    let key = |cp: Option<&str>| cp.map(|c| c.strip_prefix(AFTER_KEY).unwrap_or(c).to_string());
    crate::jobs::audit_page::AuditPage {
        job_id: job.id.clone(),
        page: job.counters.queued,
        after: key(job.checkpoint.as_deref()),
        through: if done { None } else { key(next) },
    }
    .body()
}

/// What a step left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A page was listed and queued; more remain.
    Progress,
    /// The listing is complete; the job ends when its last task finishes.
    ListingDone,
    /// The job has ended (now or before) or does not accept work.
    Ended(JobStatus),
    /// Another driver holds the job's lease: this one did nothing and must not continue the
    /// job. The holder continues it, or, if the holder died, the sweep
    /// ([`Driver::sweep`]) once its lease has lapsed. Re-invoking at once would spin, one
    /// invocation after another, for as long as the holder's lease (up to a whole invocation).
    Held,
}

/// What one sweep found and did ([`Driver::sweep`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Swept {
    /// Open jobs with listing left whose driver lease had lapsed (or was never taken): nobody
    /// drives them. The caller continues each (the function invokes a driver, `xcr pump` steps
    /// it).
    pub resume: Vec<String>,
    /// Jobs this sweep ended, with the status they ended in.
    pub finished: Vec<(String, JobStatus)>,
    /// Job tasks found in the dead-letter queue that no delivery had counted, now counted failed.
    pub dead_letters_counted: u64,
}

/// Drives jobs in bounded steps: list a page (or a manifest window), enqueue its tasks,
/// checkpoint; and the sweep that ends every job. Any number of drivers may run; a job's
/// driver lease lets one step it at a time.
pub struct Driver<Lst, Q, J> {
    lister: Lst,
    queue: Q,
    jobs: J,
    /// The replicate queue's dead-letter queue, read by the sweep; `None`: the sweep skips it.
    dead_letters: Option<Q>,
    /// Objects listed per step (at most 1,000, the S3 page size).
    pub page_size: usize,
}

impl<Lst: ObjectLister, Q: TaskQueue, J: JobStore> Driver<Lst, Q, J> {
    /// A driver listing with `lister`, enqueueing on `queue` and recording in `jobs`; the sweep
    /// reads no dead-letter queue until [`Driver::with_dead_letters`].
    pub fn new(lister: Lst, queue: Q, jobs: J) -> Self {
        Self { lister, queue, jobs, dead_letters: None, page_size: 1000 }
    }

    /// Gives the sweep the dead-letter queue to read ([`Self::sweep`]).
    pub fn with_dead_letters(mut self, dlq: Q) -> Self {
        self.dead_letters = Some(dlq);
        self
    }

    /// The job store, for entry points that also read jobs.
    pub fn jobs(&self) -> &J {
        &self.jobs
    }

    /// Runs steps until the listing is done, the job ends, or `deadline_ms` comes within
    /// `margin_ms`. Takes the job's driver lease so that two drivers never list the same job.
    pub async fn run(&self, id: &str, deadline_ms: i64, margin_ms: i64) -> Result<Step> {
        let owner = format!("driver-{:016x}", fastrand::u64(..));
        if !self.jobs.claim_driver(id, &owner, now_ms(), deadline_ms + 30_000).await? {
            tracing::info!(job_id = id, "another driver holds this job; leaving it to that driver");
            return Ok(Step::Held);
        }
        let result: Result<Step> = async {
            loop {
                let step = self.step(id).await?;
                if step != Step::Progress || now_ms() + margin_ms >= deadline_ms {
                    return Ok(step);
                }
            }
        }
        .await;
        if let Err(e) = &result {
            self.record_failure(id, e).await;
        }
        let _ = self.jobs.release_driver(id, &owner).await;
        result
    }

    /// A transient failure is noted and the step retried later; a permanent one (the manifest
    /// or bucket is gone, access denied) ends the job as FAILED with the reason.
    async fn record_failure(&self, id: &str, e: &Error) {
        tracing::error!(job_id = id, kind = %e.kind(), error = %e.chain(), "job step failed");
        let noted = if e.is_retryable() {
            self.jobs.set_error(id, &e.to_string()).await.map(|_| true)
        } else {
            self.jobs.fail(id, &e.to_string()).await
        };
        if let Err(e2) = noted {
            tracing::warn!(job_id = id, error = %e2.chain(), "could not record the failure on the job");
        }
    }

    /// One step of every job that still has listing to do, as `xcr pump` runs them locally.
    /// Returns how many such jobs there were.
    pub async fn step_open_jobs(&self) -> Result<usize> {
        let open: Vec<Job> =
            self.jobs.list(1000).await?.into_iter().filter(|j| !j.status.is_terminal() && !j.listing_done).collect();
        for job in &open {
            let owner = format!("pump-{:016x}", fastrand::u64(..));
            match self.jobs.claim_driver(&job.id, &owner, now_ms(), now_ms() + 60_000).await {
                Ok(true) => {}
                Ok(false) => continue,
                // One job's failed claim must not keep the others from their step; this job
                // gets its next chance at the next look (a lost answer may leave the lease held
                // until it lapses, which the lease's expiry bounds).
                Err(e) => {
                    tracing::warn!(job_id = %job.id, error = %e.chain(), "could not claim the job's driver lease");
                    continue;
                }
            }
            let result = self.step(&job.id).await;
            let _ = self.jobs.release_driver(&job.id, &owner).await;
            if let Err(e) = result {
                self.record_failure(&job.id, &e).await;
            }
        }
        Ok(open.len())
    }

    /// One bounded step (see the module doc).
    pub async fn step(&self, id: &str) -> Result<Step> {
        let mut job =
            self.jobs.get(id).await?.ok_or_else(|| Error::new(ErrorKind::NotFound, format!("no job {id}")))?;
        if job.status.is_terminal() {
            return Ok(Step::Ended(job.status));
        }
        if job.status == JobStatus::Pending {
            self.jobs.start(id).await?;
            job.status = JobStatus::Running;
        }
        if job.listing_done {
            return self.finish(id).await;
        }
        // A bucket listing is staged before it is enqueued (see [`StagedPage`]); a manifest page
        // needs no staging (its tasks carry their byte position, and the same range reads the
        // same lines), nor does a dry run (it enqueues nothing).
        let staging = job.spec.manifest.is_none() && !job.spec.dry_run;
        let (keys, next, done, staged) = if staging {
            let page = match self.jobs.staged_page(id).await? {
                Some(page) if page.from == job.checkpoint => {
                    tracing::info!(job_id = id, tasks = page.keys.len(), "enqueueing the page a previous step staged");
                    page
                }
                _ => {
                    let page = self.list_page(&job).await?;
                    if !self.jobs.stage_page(id, &page).await? {
                        // Another driver staged this page, or moved on, or the job ended: look again.
                        tracing::info!(job_id = id, "the page was staged or the job moved meanwhile; re-reading");
                        return self.settled(id).await;
                    }
                    page
                }
            };
            let bucket = &job.spec.source_bucket;
            let keys = page.keys.iter().map(|k| (bucket.clone(), k.clone(), None, None)).collect();
            (keys, page.next.clone(), page.done, Some(page))
        } else {
            let (keys, next, done) = self.page(&job).await?;
            (keys, next, done, None)
        };
        let listed = keys.len() as u64;
        let queued = if job.spec.dry_run {
            0
        } else {
            let bodies: Vec<String> = match job.spec.kind {
                JobKind::Copy => keys
                    .iter()
                    .map(|(bucket, key, version, task)| {
                        let mut cmd = json!({"bucket": bucket, "key": key, "job_id": id, "overwrite": job.spec.overwrite.as_str()});
                        if let Some(v) = version {
                            cmd["version_id"] = json!(v);
                        }
                        if let Some(t) = task {
                            cmd["task"] = json!(t);
                        }
                        if let Some(d) = job.spec.destination_for(key) {
                            cmd["destination"] = json!(d);
                        }
                        cmd.to_string()
                    })
                    .collect(),
                JobKind::Audit => vec![audit_page_task(&job, next.as_deref(), done)],
            };
            self.queue.send_all(&bodies).await?;
            bodies.len() as u64
        };
        let committed = match &staged {
            Some(page) => self.jobs.commit_staged_page(id, page, queued).await?,
            None => self.jobs.commit_page(id, job.checkpoint.as_deref(), next.as_deref(), done, listed, queued).await?,
        };
        if !committed {
            // Cancelled meanwhile, or another driver moved on: re-read next time.
            tracing::warn!(
                job_id = id,
                "checkpoint moved under this step; its page will be recounted by whoever holds it"
            );
            return self.settled(id).await;
        }
        tracing::info!(job_id = id, listed, queued, done, "job step committed");
        if done { self.finish(id).await } else { Ok(Step::Progress) }
    }

    /// What to report after a conditional write found the job changed under this step.
    async fn settled(&self, id: &str) -> Result<Step> {
        let now = self.jobs.get(id).await?.map(|j| j.status).unwrap_or(JobStatus::Cancelled);
        Ok(if now.is_terminal() { Step::Ended(now) } else { Step::Progress })
    }

    /// The next page of a bucket listing after the job's checkpoint, cut to what a staged page
    /// holds ([`StagedPage::fit`]). The checkpoint is a key (`after:KEY`, S3's `StartAfter`);
    /// one stored by an older version (S3's continuation token) is read once the old way.
    async fn list_page(&self, job: &Job) -> Result<StagedPage> {
        let spec = &job.spec;
        let max = i32::try_from(self.page_size).unwrap_or(1000);
        let (items, more) = match job.checkpoint.as_deref() {
            Some(token) if !token.starts_with(AFTER_KEY) => {
                let (items, next) = self.lister.list_page(&spec.source_bucket, &spec.prefix, Some(token), max).await?;
                (items, next.is_some())
            }
            after => {
                let start = after.and_then(|a| a.strip_prefix(AFTER_KEY));
                self.lister.list_after(&spec.source_bucket, &spec.prefix, start, max).await?
            }
        };
        Ok(StagedPage::fit(job.checkpoint.clone(), &items, more, |k| spec.matches(k)))
    }

    async fn finish(&self, id: &str) -> Result<Step> {
        Ok(match self.jobs.try_finish(id).await? {
            Some(status) => Step::Ended(status),
            None => Step::ListingDone,
        })
    }

    /// The next page of (bucket, key, version) after the job's checkpoint, the checkpoint after
    /// it, and whether the listing is complete.
    async fn page(&self, job: &Job) -> Result<(Vec<PageItem>, Option<String>, bool)> {
        let spec = &job.spec;
        if let Some(manifest) = &spec.manifest {
            let S3Url { bucket, key } = S3Url::object(manifest).map_err(|why| Error::new(ErrorKind::Invalid, why))?;
            let legacy = job.checkpoint.as_deref().is_some_and(|c| c.parse::<usize>().is_ok());
            if !legacy {
                return self.manifest_window(job, &bucket, &key).await;
            }
            let text = self.lister.fetch_text(&bucket, &key, MAX_MANIFEST_BYTES).await?;
            let entries = parse_manifest(&text, key.ends_with(".csv"), &spec.source_bucket)?;
            let start = job.checkpoint.as_deref().and_then(|c| c.parse::<usize>().ok()).unwrap_or(0).min(entries.len());
            let end = (start + self.page_size).min(entries.len());
            let keys = entries[start..end]
                .iter()
                .filter(|e| spec.matches(&e.key))
                .map(|e| (e.bucket.clone(), e.key.clone(), e.version_id.clone(), None))
                .collect();
            return Ok((keys, Some(end.to_string()), end >= entries.len()));
        }
        let page = self.list_page(job).await?;
        let keys = page.keys.into_iter().map(|k| (spec.source_bucket.clone(), k, None, None)).collect();
        Ok((keys, page.next, page.done))
    }

    /// The next page of a manifest: one ranged read from the checkpoint's byte offset, the
    /// whole lines in it (at most a page), and the offset after them (see the module doc).
    async fn manifest_window(
        &self,
        job: &Job,
        bucket: &str,
        key: &str,
    ) -> Result<(Vec<PageItem>, Option<String>, bool)> {
        let spec = &job.spec;
        let offset = match job.checkpoint.as_deref() {
            None => 0,
            Some(c) => c.strip_prefix('@').and_then(|o| o.parse::<u64>().ok()).ok_or_else(|| {
                Error::new(ErrorKind::Invalid, format!("manifest checkpoint {c:?} is not a byte offset"))
            })?,
        };
        let (window, total) = self.lister.fetch_range(bucket, key, offset, MANIFEST_WINDOW).await?;
        let eof = offset + window.len() as u64 >= total;
        let at = |why: String| {
            Error::new(ErrorKind::Invalid, format!("manifest s3://{bucket}/{key} at byte {offset}: {why}"))
        };
        let used = whole_lines(&window, eof, self.page_size)
            .ok_or_else(|| at(format!("a line is longer than {MANIFEST_WINDOW} bytes")))?;
        let text = std::str::from_utf8(&window[..used]).map_err(|_| at("not UTF-8 text".into()))?;
        let entries = parse_manifest(text, key.ends_with(".csv"), &spec.source_bucket)
            .map_err(|e| at(e.message().to_string()))?;
        let keys = entries
            .into_iter()
            .enumerate()
            .filter(|(_, e)| spec.matches(&e.key))
            .map(|(i, e)| (e.bucket, e.key, e.version_id, Some(format!("{offset}.{i}"))))
            .collect();
        let next = offset + used as u64;
        Ok((keys, Some(format!("@{next}")), next >= total))
    }
}

impl<Lst: ObjectLister, Q: TaskQueue + DeadLetters, J: JobStore> Driver<Lst, Q, J> {
    /// The reconciler (see the module doc): counts dead job tasks, ends complete jobs, and
    /// returns the open jobs nobody drives. Idempotent; every change it makes is a conditional
    /// write, so it races safely with drivers, tasks and other sweeps.
    pub async fn sweep(&self) -> Result<Swept> {
        let mut swept = Swept::default();
        let jobs: HashMap<String, Job> = self
            .jobs
            .list(1000)
            .await?
            .into_iter()
            .filter(|j| !j.status.is_terminal())
            .map(|j| (j.id.clone(), j))
            .collect();
        if jobs.is_empty() {
            return Ok(swept);
        }
        let touched = match &self.dead_letters {
            Some(dlq) => self.count_dead_letters(dlq, &jobs, &mut swept).await?,
            None => HashSet::new(),
        };
        for job in jobs.values() {
            if job.listing_done {
                if job.status == JobStatus::Running
                    && (job.counters.pending <= 0 || touched.contains(&job.id))
                    && let Some(status) = self.jobs.try_finish(&job.id).await?
                {
                    tracing::info!(job_id = %job.id, status = status.as_str(), "sweep: job finished");
                    swept.finished.push((job.id.clone(), status));
                }
                continue;
            }
            // Taking the lease for a moment tells whether anyone holds it; let go at once, so
            // the driver the caller starts can take it.
            let probe = format!("sweep-{:016x}", fastrand::u64(..));
            if self.jobs.claim_driver(&job.id, &probe, now_ms(), now_ms() + SWEEP_PROBE_MS).await? {
                self.jobs.release_driver(&job.id, &probe).await?;
                tracing::info!(job_id = %job.id, "sweep: nobody drives this job; resuming it");
                swept.resume.push(job.id.clone());
            }
        }
        swept.resume.sort();
        swept.finished.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(swept)
    }

    /// Counts a dead audit page task as failed ([`crate::jobs::audit_page`]); false if it was counted.
    async fn count_dead_audit_page(&self, page: &crate::jobs::audit_page::AuditPage) -> Result<bool> {
        if !self.jobs.record_audit_page(&page.job_id, &page.task_id(), AuditTally::Failed).await? {
            return Ok(false);
        }
        tracing::warn!(job_id = %page.job_id, page = page.page, "sweep: an audit page reached the DLQ uncounted; counted as failed");
        let why = format!("audit page {} reached the DLQ without being counted", page.page);
        self.jobs.set_error(&page.job_id, &why).await?;
        Ok(true)
    }

    /// Counts as failed each task of an open job found in the dead-letter queue. A task that
    /// failed on its last delivery was counted then, and its marker makes this a no-op; one whose
    /// last delivery died (timeout, out of memory) was not, and would hold its job RUNNING
    /// forever. Messages that are not job tasks are left alone. Returns the jobs counted in.
    async fn count_dead_letters(
        &self,
        dlq: &Q,
        jobs: &HashMap<String, Job>,
        swept: &mut Swept,
    ) -> Result<HashSet<String>> {
        let mut touched = HashSet::new();
        for body in dlq.peek_dead_letters(SWEEP_MAX_DEAD_LETTERS).await? {
            if let Some(Ok(page)) = crate::jobs::audit_page::AuditPage::from_body(&body) {
                // Boxed: the sweep's future stays the size it was before audit jobs.
                if jobs.contains_key(&page.job_id) && Box::pin(self.count_dead_audit_page(&page)).await? {
                    swept.dead_letters_counted += 1;
                    touched.insert(page.job_id);
                }
                continue;
            }
            // Not every dead letter is a job task (S3 events, on-failure records): skip those.
            let Ok(tasks) = crate::domain::events::decode_body(&body) else { continue };
            for task in tasks {
                let Some(job) = task.job_id.as_deref().and_then(|id| jobs.get(id)) else { continue };
                let o = &task.object;
                let task_id =
                    crate::jobs::task_id_at(&o.bucket, &o.key, o.version_id.as_deref(), task.job_task.as_deref());
                if self.jobs.record_task(&job.id, &task_id, crate::jobs::TaskTally::Failed).await? {
                    tracing::warn!(job_id = %job.id, object = %o, "sweep: a task reached the DLQ uncounted; counted as failed");
                    let why = format!(
                        "{o} reached the DLQ without being counted (its last delivery died: timeout or out of memory?)"
                    );
                    self.jobs.set_error(&job.id, &why).await?;
                    swept.dead_letters_counted += 1;
                    touched.insert(job.id.clone());
                }
            }
        }
        Ok(touched)
    }
}

#[cfg(test)]
mod tests {
    use super::whole_lines;

    #[test]
    fn a_page_takes_whole_lines_only() {
        // Two lines, then the start of a third: only the first two are taken.
        assert_eq!(whole_lines(b"a\nbb\nccc", false, 10), Some(5));
        // At the end of the object the last line needs no newline.
        assert_eq!(whole_lines(b"a\nbb\nccc", true, 10), Some(8));
        // At most a page of non-blank lines; blank lines cost nothing.
        assert_eq!(whole_lines(b"a\n\n\r\nb\nc\n", false, 2), Some(7));
        // A line longer than the window: nothing fits.
        assert_eq!(whole_lines(b"no newline in sight", false, 10), None);
        // Nothing left at all.
        assert_eq!(whole_lines(b"", true, 10), Some(0));
    }
}
