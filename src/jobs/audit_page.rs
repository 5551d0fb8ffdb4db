//! Audit jobs: the drift audit of [`crate::domain::audit`] split into page tasks, so that a bucket of
//! any size is audited in parallel by the replicate function's concurrency, not by one process.
//!
//! **Pages.** The job driver ([`crate::jobs::migrate`]) lists S3 as for a copy job, except that it
//! lists after the last key of the previous page (`StartAfter`, with that key as the job's
//! checkpoint) instead of after a continuation token: each page then knows its key range, `(the
//! previous page's last key, its own last key]`, and the last page's range runs to the end of the
//! prefix. The ranges cover the key space without gap or overlap, so a name only in GCS (an
//! `extra`), wherever it sorts, falls in exactly one page. The driver queues one task per page
//! on the replicate queue, `{"audit_page": {"job_id", "page", "after", "through"}}`.
//!
//! **A task** (run by the replicate function, or `xcr pump`, like any message on that queue)
//! reads its job's spec, merge-walks both listings over its range with [`crate::domain::audit::walk`]
//! (the same comparison rules as `xcr audit`), with `repair` enqueues the commands that close its
//! findings ([`crate::domain::audit::repair_command`], the same as `xcr audit --repair`), writes its
//! report, and counts its results on the job record once ([`JobStore::record_audit_page`]). The
//! task that counts the last page ends the job: SUCCEEDED when every page was audited, whatever
//! drift they found (the counts say that), FAILED when a page could not be audited. A task that
//! fails is retried as any record on the queue; one that fails permanently, or on its last
//! delivery, is counted failed, so that its job ends; its record still goes on to the DLQ, from
//! which a redrive audits the page again (and rewrites its report) without counting it twice.
//!
//! **Reports.** One object per page, `REPORT_PREFIX + JOB_ID/page-NNNNNN.jsonl`, rather than one
//! for the job: objects in S3 and GCS are written whole (no append), so a single report would
//! need one writer holding every finding of the bucket, or a compose step after the last page.
//! Per page, each task writes its own small object, a redelivered task rewrites the same one,
//! and nothing has to run after the last page. The job's totals are its record's counts.
//!
//! **Redelivery.** A page task delivered twice (SQS delivers at least once) audits twice and,
//! with repair, enqueues its copies twice: harmless (a copy with `overwrite: always` of the same
//! version, a delete of an absent object), and counted once in the job.

use crate::adapters::aws::job_store::DynamoJobStore;
use crate::adapters::aws::sqs::Queue;
use crate::adapters::gcs::GcsClient;
use crate::domain::audit::{Finding, Scope};
use crate::domain::error::{Error, ErrorKind, Result};
use crate::domain::names::GsUrl;
use crate::jobs::{AuditTally, JobKind, JobStatus};
use crate::ports::{JobStore, TaskQueue};
use crate::wiring::ledger::AnyLedger;
use serde::{Deserialize, Serialize};

/// One page task of an audit job, as queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditPage {
    /// The audit job this page belongs to.
    pub job_id: String,
    /// The page's number in the job (0, 1, ...): names its report and its count marker.
    pub page: u64,
    /// The range: keys after `after` (exclusive; `None`: from the start of the prefix) ...
    #[serde(default)]
    pub after: Option<String>,
    /// ... up to `through` (inclusive; `None`: to the end of the prefix).
    #[serde(default)]
    pub through: Option<String>,
}

impl AuditPage {
    /// The message body.
    pub fn body(&self) -> String {
        serde_json::json!({ "audit_page": self }).to_string()
    }

    /// `Some` when `body` is an audit page task (`Err` when it says so but is malformed),
    /// `None` for every other message.
    pub fn from_body(body: &str) -> Option<Result<Self>> {
        let v: serde_json::Value = serde_json::from_str(body).ok()?;
        let inner = v.get("audit_page")?;
        Some(
            serde_json::from_value(inner.clone())
                .map_err(|e| Error::new(ErrorKind::Invalid, format!("malformed audit page task: {e}"))),
        )
    }

    /// The task's identity in its job's count markers (no copy task id starts with `audit-`:
    /// those start with a bucket name, `@` or `%`, and no bucket name has a `#`).
    pub fn task_id(&self) -> String {
        format!("audit-page#{:06}", self.page)
    }

    /// The report object's name under the job's report prefix.
    pub fn report_suffix(&self) -> String {
        format!("{}/page-{:06}.jsonl", self.job_id, self.page)
    }
}

/// Runs audit page tasks: what the replicate function and `xcr pump` need besides the replicator.
pub struct AuditWorker {
    /// Lists and HEADs the source; writes S3 reports.
    pub s3: aws_sdk_s3::Client,
    /// Lists the destination; writes GCS reports.
    pub gcs: GcsClient,
    /// Ledger records that prove a copy current when no checksum is shared.
    pub ledger: AnyLedger,
    /// Where the page's count goes.
    pub jobs: DynamoJobStore,
    /// Where repair commands go (the replicate queue); `None`: a repairing job's pages fail.
    pub queue: Option<Queue>,
    /// `XCR_REPLICATE_DELETES`: whether an `extra` is drift, and repair deletes it.
    pub deletes: bool,
    /// Keys per listing request on each side (1 to 1000).
    pub page_size: u32,
}

impl AuditWorker {
    /// Runs one page task and counts it (module doc). `last_delivery`: a retryable failure now
    /// sends the record to the dead-letter queue, so it is counted failed.
    pub async fn run(&self, task: &AuditPage, last_delivery: bool) -> Result<()> {
        match Box::pin(self.audit(task)).await {
            Ok(Some(tally)) => self.count(task, tally).await,
            Ok(None) => Ok(()),
            Err(e) => {
                tracing::warn!(job_id = %task.job_id, page = task.page, kind = %e.kind(), error = %e.chain(), "audit page failed");
                if !e.is_retryable() || last_delivery {
                    let why = format!("audit page {} failed: {}", task.page, e.chain());
                    let _ = self.jobs.set_error(&task.job_id, &why).await;
                    if let Err(e2) = self.count(task, AuditTally::Failed).await {
                        tracing::warn!(job_id = %task.job_id, error = %e2.chain(), "could not count the failed page");
                    }
                }
                Err(e)
            }
        }
    }

    /// Audits the page; `None` when its job is gone or cancelled (the task is a no-op).
    async fn audit(&self, task: &AuditPage) -> Result<Option<AuditTally>> {
        let Some(job) = self.jobs.get(&task.job_id).await? else {
            tracing::info!(job_id = %task.job_id, "audit page of a job that does not exist: skipped");
            return Ok(None);
        };
        if job.status == JobStatus::Cancelled {
            return Ok(None);
        }
        let spec = &job.spec;
        if spec.kind != JobKind::Audit {
            return Err(Error::new(ErrorKind::Invalid, format!("job {} is not an audit job", job.id)));
        }
        let destination = spec.destination.as_deref().unwrap_or_default();
        let GsUrl { bucket: dest_bucket, path: dest_prefix } = destination
            .parse::<GsUrl>()
            .map_err(|why| Error::new(ErrorKind::Invalid, format!("destination: {why}")))?;
        let scope = Scope {
            source_bucket: spec.source_bucket.clone(),
            source_prefix: spec.prefix.clone(),
            dest_bucket,
            dest_prefix,
            page_size: self.page_size,
            after: task.after.clone(),
            through: task.through.clone(),
        };
        let mut findings: Vec<Finding> = Vec::new();
        let counts =
            crate::domain::audit::walk(&self.s3, &self.gcs, &self.ledger, &scope, |f| findings.push(f.clone())).await?;
        let commands: Vec<String> = if spec.repair {
            findings
                .iter()
                .filter_map(|f| crate::domain::audit::repair_command(&scope.source_bucket, f, self.deletes))
                .collect()
        } else {
            Vec::new()
        };
        if !commands.is_empty() {
            let queue = self.queue.as_ref().ok_or_else(|| {
                Error::new(ErrorKind::Config, "repair needs the replicate queue (XCR_QUEUE_URL) to enqueue on")
            })?;
            queue.send_all(&commands).await.map_err(|e| e.context("enqueue the repair commands"))?;
        }
        let repaired = commands.len() as u64;
        if let Some(prefix) = &spec.report {
            let target = crate::jobs::audit_report::ReportTarget::parse_prefix(prefix)
                .map_err(|why| Error::new(ErrorKind::Invalid, format!("report: {why}")))?
                .child(&task.report_suffix());
            let mut line = serde_json::to_value(counts).unwrap_or_default();
            line["drift"] = serde_json::json!(counts.drift(self.deletes));
            line["deletes_replicated"] = serde_json::json!(self.deletes);
            line["job_id"] = serde_json::json!(job.id);
            line["page"] = serde_json::json!(task.page);
            line["after"] = serde_json::json!(task.after);
            line["through"] = serde_json::json!(task.through);
            if spec.repair {
                line["enqueued"] = serde_json::json!(repaired);
            }
            let body = crate::jobs::audit_report::render(&findings, &line)?;
            target.write(&self.s3, &self.gcs, body).await?;
        }
        tracing::info!(
            job_id = %job.id, page = task.page, compared = counts.compared, missing = counts.missing,
            different = counts.different, extra = counts.extra, unverifiable = counts.unverifiable, repaired,
            "audit page done"
        );
        Ok(Some(AuditTally::Audited { counts, repaired }))
    }

    /// Counts the page once, and ends the job when it was the last one.
    async fn count(&self, task: &AuditPage, tally: AuditTally) -> Result<()> {
        let id = &task.job_id;
        if !self.jobs.record_audit_page(id, &task.task_id(), tally).await? {
            tracing::info!(job_id = %id, page = task.page, "audit page already counted");
        }
        // As for copy tasks: checked even when counted before (the counting delivery may have
        // died before this check).
        if let Some(j) = self.jobs.get(id).await?
            && j.status == JobStatus::Running
            && j.listing_done
            && j.counters.pending <= 0
            && let Some(status) = self.jobs.try_finish(id).await?
        {
            tracing::info!(job_id = %id, status = status.as_str(), "audit job finished");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tasks_round_trip_and_other_bodies_are_not_theirs() {
        let t = AuditPage { job_id: "job-1".into(), page: 3, after: Some("a/9".into()), through: None };
        assert_eq!(AuditPage::from_body(&t.body()).map(|r| r.ok()), Some(Some(t.clone())));
        assert_eq!(t.task_id(), "audit-page#000003");
        assert_eq!(t.report_suffix(), "job-1/page-000003.jsonl");
        assert!(AuditPage::from_body(r#"{"bucket": "b", "key": "k"}"#).is_none());
        assert!(AuditPage::from_body("not json").is_none());
        assert!(matches!(AuditPage::from_body(r#"{"audit_page": {"page": 1}}"#), Some(Err(_))));
    }
}
