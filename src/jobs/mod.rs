//! Jobs: the durable record of a backfill or an audit, and the pure rules around it (spec,
//! status machine, counters, manifests, staged pages). The job's moving parts live beside it:
//! [`migrate`] (the driver and the sweep), [`audit_page`] (an audit job's page task) and
//! [`audit_report`] (where an audit's report goes).
//!
//! A job lists a bucket (or reads a manifest), enqueues one replicate command per object on the
//! replicate queue and counts what the replicate function makes of them. Its status only moves
//! forward, `PENDING -> RUNNING -> SUCCEEDED | FAILED | CANCELLED`, and every change is a
//! conditional write (see [`crate::ports::JobStore`]), so two drivers, a crash or a late task
//! can never move it backwards or count an object twice.

pub mod audit_page;
pub mod audit_report;
pub mod migrate;

use crate::domain::error::{Error, ErrorKind, Result};
use crate::domain::model::Overwrite;
use crate::domain::names::{GsUrl, S3Url, validate_s3_bucket};
use serde::{Deserialize, Serialize};

/// What a job does with each page of the listing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// One replicate command per object (the default; records written before kinds existed
    /// are copy jobs).
    #[default]
    Copy,
    /// A drift audit ([`crate::jobs::audit_page`]): one audit task per page of the S3 listing, which
    /// compares that page's key range with GCS's listing of the same range.
    Audit,
}

impl JobKind {
    /// True for a copy job, the kind every job had before audits existed.
    pub fn is_copy(&self) -> bool {
        *self == Self::Copy
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
/// Where a job is in its life. It only moves forward (every change is a conditional write),
/// so a late driver or task can never reopen a finished job.
pub enum JobStatus {
    /// Stored, not yet driven.
    Pending,
    /// Listing or waiting for its tasks.
    Running,
    /// Listed to the end and every task finished without failure.
    Succeeded,
    /// Ended with failed tasks, or could not go on (`last_error` says why).
    Failed,
    /// Stopped by a user: nothing more is listed, and its queued tasks do nothing.
    Cancelled,
}

impl JobStatus {
    /// The name stored and shown (`PENDING`, `RUNNING`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Running => "RUNNING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
        }
    }

    /// The inverse of [`JobStatus::as_str`]; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Running, Self::Succeeded, Self::Failed, Self::Cancelled]
            .into_iter()
            .find(|v| v.as_str() == s)
    }

    /// True once the job has ended: nothing moves it again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// What a person asks for: the body of `POST /v1/jobs` and of `xcr jobs create`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// `copy` (default) or `audit`.
    #[serde(default, skip_serializing_if = "JobKind::is_copy")]
    pub kind: JobKind,
    /// The S3 bucket to copy from (or to audit).
    #[schema(pattern = "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", example = "raw-data")]
    pub source_bucket: String,
    /// Only keys under this prefix (of the listing, or of the manifest's keys).
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub prefix: String,
    /// Only keys starting with one of these (empty: all).
    #[serde(default)]
    #[schema(schema_with = prefix_list_schema)]
    pub include_prefixes: Vec<String>,
    /// Never keys starting with one of these.
    #[serde(default)]
    #[schema(schema_with = prefix_list_schema)]
    pub exclude_prefixes: Vec<String>,
    /// `s3://bucket/key` of a manifest instead of a listing: CSV `bucket,key[,version_id]` with
    /// URL-encoded keys (as S3 Batch Operations takes) when it ends in `.csv`, else one raw key
    /// per line.
    #[serde(default)]
    #[schema(pattern = "^s3://[^/]+/.+$", example = "s3://raw-data/manifests/backfill.csv")]
    pub manifest: Option<String>,
    /// `gs://bucket` or `gs://bucket/prefix/` instead of the routing rules.
    #[serde(default)]
    #[schema(
        pattern = "^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/[^\\r\\n]{0,1024})?$",
        example = "gs://analytics-raw/backfill/"
    )]
    pub destination: Option<String>,
    #[serde(default)]
    /// What a task does when the destination already holds the object.
    pub overwrite: Overwrite,
    /// List and count, copy nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Audit jobs: enqueue the copies (and, with deletes replicated, the deletes) that close
    /// the drift each page finds, as `xcr audit --repair` does.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub repair: bool,
    /// Audit jobs: `s3://bucket[/prefix]` or `gs://bucket[/prefix]` under which each page task
    /// writes its report, `PREFIX + JOB_ID/page-NNNNNN.jsonl` (JSON lines: one per finding, then
    /// the page's counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        pattern = "^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]|gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9])(/[^\\r\\n]{0,900})?$",
        example = "gs://audit-reports/raw-data/"
    )]
    pub report: Option<String>,
}

/// Include/exclude lists: utoipa's field attributes cannot constrain the items.
fn prefix_list_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(ObjectBuilder::new().schema_type(Type::String).min_length(Some(1)).max_length(Some(1024)))
        .build()
}

impl JobSpec {
    /// Parses and validates a JSON spec, listing every problem at once.
    pub fn from_json(text: &str) -> Result<Self> {
        let spec: Self =
            serde_json::from_str(text).map_err(|e| Error::new(ErrorKind::Invalid, format!("invalid job spec: {e}")))?;
        spec.validate()?;
        Ok(spec)
    }

    /// Checks the spec and lists every problem at once (`invalid`), so a user fixes a spec in
    /// one pass; nothing is stored before it passes.
    pub fn validate(&self) -> Result<()> {
        let mut problems = Vec::new();
        if self.source_bucket.trim().is_empty() {
            problems.push("source_bucket is required".to_string());
        } else if let Err(why) = validate_s3_bucket(&self.source_bucket) {
            problems.push(format!("source_bucket: {why}"));
        }
        if self.prefix.len() > 1024 {
            problems.push("prefix: at most 1024 bytes".into());
        }
        if let Some(m) = &self.manifest
            && let Err(why) = S3Url::object(m)
        {
            problems.push(format!("manifest: {why}"));
        }
        if let Some(d) = &self.destination
            && let Err(why) = d.parse::<GsUrl>()
        {
            problems.push(format!("destination: {why}"));
        }
        for p in self.include_prefixes.iter().chain(&self.exclude_prefixes) {
            if p.is_empty() || p.len() > 1024 {
                problems.push("include/exclude prefixes must be 1 to 1024 bytes".into());
            }
        }
        match self.kind {
            JobKind::Copy => {
                if self.repair {
                    problems.push("repair: only for audit jobs (kind \"audit\")".into());
                }
                if self.report.is_some() {
                    problems.push("report: only for audit jobs (kind \"audit\")".into());
                }
            }
            JobKind::Audit => problems.extend(self.audit_problems()),
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::new(ErrorKind::Invalid, format!("invalid job spec: {}", problems.join("; "))))
        }
    }

    /// What an audit job cannot take: a page task compares a key range of both listings, so
    /// it needs one destination to list, and only a prefix can narrow both sides alike.
    fn audit_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.destination.is_none() {
            problems.push("destination: an audit job needs gs://bucket[/prefix/] to compare with".into());
        }
        if self.manifest.is_some() {
            problems.push("manifest: an audit job lists the bucket (a manifest is not a key range)".into());
        }
        if !self.include_prefixes.is_empty() || !self.exclude_prefixes.is_empty() {
            problems.push("include/exclude prefixes: an audit job takes only a prefix".into());
        }
        if self.dry_run {
            problems.push("dry_run: an audit job copies nothing; use repair: false".into());
        }
        if self.overwrite != Overwrite::default() {
            problems.push("overwrite: an audit job's repairs always overwrite".into());
        }
        if let Some(r) = &self.report
            && let Err(why) = crate::jobs::audit_report::ReportTarget::parse_prefix(r)
        {
            problems.push(format!("report: {why}"));
        }
        problems
    }

    /// Whether a listed key belongs to this job.
    pub fn matches(&self, key: &str) -> bool {
        key.starts_with(&self.prefix)
            && (self.include_prefixes.is_empty() || self.include_prefixes.iter().any(|p| key.starts_with(p.as_str())))
            && !self.exclude_prefixes.iter().any(|p| key.starts_with(p.as_str()))
    }

    /// The destination URL for one key when the job overrides routing.
    pub fn destination_for(&self, key: &str) -> Option<String> {
        let url: GsUrl = self.destination.as_deref()?.parse().ok()?;
        Some(url.join(key))
    }
}

/// One object a manifest names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// The bucket the line names (or the job's source bucket when the line names only a key).
    pub bucket: String,
    /// The key, decoded (CSV manifests URL-encode keys, as S3 Batch Operations does).
    pub key: String,
    /// The version to copy, when the manifest names one.
    pub version_id: Option<String>,
}

/// Parses a manifest: CSV `bucket,key[,version_id]` (keys URL-encoded, as S3 Batch Operations
/// manifests are) or one raw key per line in `default_bucket`. Blank lines are skipped;
/// duplicates keep their first occurrence, so every listed object is one task.
pub fn parse_manifest(text: &str, csv: bool, default_bucket: &str) -> Result<Vec<ManifestEntry>> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let entry = if csv {
            let mut cols = line.split(',').map(|c| c.trim().trim_matches('"'));
            let (Some(bucket), Some(key)) = (cols.next(), cols.next()) else {
                return Err(Error::new(
                    ErrorKind::Invalid,
                    format!("manifest line {}: expected bucket,key[,version_id]", n + 1),
                ));
            };
            let key = percent_encoding::percent_decode_str(&key.replace('+', " "))
                .decode_utf8()
                .map_err(|_| Error::new(ErrorKind::Invalid, format!("manifest line {}: key is not UTF-8", n + 1)))?
                .into_owned();
            if bucket.is_empty() || key.is_empty() {
                return Err(Error::new(ErrorKind::Invalid, format!("manifest line {}: empty bucket or key", n + 1)));
            }
            ManifestEntry {
                bucket: bucket.into(),
                key,
                version_id: cols.next().filter(|v| !v.is_empty()).map(str::to_string),
            }
        } else {
            ManifestEntry { bucket: default_bucket.into(), key: line.to_string(), version_id: None }
        };
        if entry.key.len() > 1024 {
            return Err(Error::new(ErrorKind::Invalid, format!("manifest line {}: key longer than 1024 bytes", n + 1)));
        }
        if seen.insert((entry.bucket.clone(), entry.key.clone(), entry.version_id.clone())) {
            out.push(entry);
        }
    }
    Ok(out)
}

/// Progress counters. `pending` is queued minus finished: the job ends when the listing is
/// done and it is zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Counters {
    /// Objects listed (or manifest entries read).
    pub listed: u64,
    /// Replicate commands enqueued.
    pub queued: u64,
    /// Tasks that copied the object.
    pub replicated: u64,
    /// Tasks that found nothing to do (already replicated, stale, not found).
    pub skipped: u64,
    /// Tasks that failed for good (including those counted from the dead-letter queue).
    pub failed: u64,
    /// Bytes copied by the job's tasks.
    pub bytes: u64,
    /// Queued minus finished; never below zero in a consistent store.
    pub pending: i64,
}

/// An audit job's counts, summed over its page tasks ([`crate::domain::audit::Counts`] plus what
/// repair enqueued and how many pages were audited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditCounters {
    /// Page tasks audited.
    pub pages: u64,
    /// Keys compared.
    pub compared: u64,
    /// Keys whose copy is proven current.
    pub matching: u64,
    /// In S3, not in GCS.
    pub missing: u64,
    /// In both, but different.
    pub different: u64,
    /// In GCS, not in S3.
    pub extra: u64,
    /// Same size, but nothing proves the bytes.
    pub unverifiable: u64,
    /// Copies and deletes enqueued by repair.
    pub repaired: u64,
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Job {
    /// The job id (`job-…`), unique; the API and CLI name jobs by it.
    pub id: String,
    /// What the job was asked to do, as validated at creation.
    pub spec: JobSpec,
    /// Where the job is in its life.
    pub status: JobStatus,
    /// Progress, counted once per task.
    pub counters: Counters,
    /// Audit jobs only: the drift found so far (a page task that failed counts in
    /// `counters.failed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditCounters>,
    /// Continuation token of the listing (an audit job: the last key listed), or the
    /// manifest's next entry index.
    pub checkpoint: Option<String>,
    /// True once the listing (or manifest) is read to its end.
    pub listing_done: bool,
    /// When the job was created (RFC 3339).
    pub created_at: String,
    /// When the job record last changed (RFC 3339).
    pub updated_at: String,
    /// When the job ended (RFC 3339).
    pub finished_at: Option<String>,
    /// Why the job failed, when it could not go on.
    pub last_error: Option<String>,
}

impl Job {
    /// A new job with a fresh id.
    pub fn new(spec: JobSpec, now: &str) -> Self {
        let audit = (spec.kind == JobKind::Audit).then(AuditCounters::default);
        Self {
            id: format!(
                "job-{}-{:08x}",
                now.replace([':', '-'], "").trim_end_matches('Z').replace('T', "t").split('.').next().unwrap_or(""),
                fastrand::u32(..)
            ),
            spec,
            status: JobStatus::Pending,
            audit,
            counters: Counters::default(),
            checkpoint: None,
            listing_done: false,
            created_at: now.to_string(),
            updated_at: now.to_string(),
            finished_at: None,
            last_error: None,
        }
    }

    /// Objects whose task finished.
    pub fn finished_tasks(&self) -> u64 {
        self.counters.replicated + self.counters.skipped + self.counters.failed
    }
}

/// Bytes of a staged page's keys (their JSON encoding) at most: the page and its position fit
/// in one DynamoDB item (400 KB) with room to spare. A page of 1,000 ordinary keys (about 100
/// bytes each) fits; a page of long keys is cut shorter (see [`StagedPage::fit`]).
pub const STAGED_PAGE_BYTES: usize = 320 * 1024;

/// Where a listing position that is a key (S3's `StartAfter`) starts in a job's checkpoint. An
/// older version stored S3's opaque continuation token there; no token contains a `:`.
pub const AFTER_KEY: &str = "after:";

/// A listed page written down before its tasks are enqueued, and enqueued from what was written.
///
/// Why: a driver that dies between enqueueing a page and committing its checkpoint repeats the
/// page. Listing it again would count the first attempt's tasks against a second listing that
/// may differ (a key deleted in between is counted although the committed page lacks it, and
/// the job would end before its last task). Staged, the repeat enqueues exactly the same tasks,
/// which the per-task marker counts once, and the commit (which removes the staged page in the
/// same transaction) adds exactly the tasks the page holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedPage {
    /// The checkpoint the page was listed after (`None`: the start of the listing).
    pub from: Option<String>,
    /// The checkpoint after the page.
    pub next: Option<String>,
    /// Whether the listing ends with this page.
    pub done: bool,
    /// The keys of the page that the job's filters keep, in listing order.
    pub keys: Vec<String>,
}

impl StagedPage {
    /// The page of `listed` (one listing after `from`, with `more` following it) whose kept
    /// keys (`keep`) fit [`STAGED_PAGE_BYTES`]: all of it, or the longest prefix that fits,
    /// continued after its last listed key. At least one key is always taken, so a job always
    /// advances (one key is at most 1,024 bytes).
    pub fn fit(from: Option<String>, listed: &[crate::ports::Listed], more: bool, keep: impl Fn(&str) -> bool) -> Self {
        let mut keys = Vec::new();
        let mut bytes = 0;
        let mut taken = 0;
        for item in listed {
            if keep(&item.key) {
                let size = serde_json::to_string(&item.key).map_or(item.key.len() + 2, |j| j.len()) + 1;
                if bytes + size > STAGED_PAGE_BYTES && !keys.is_empty() {
                    break;
                }
                bytes += size;
                keys.push(item.key.clone());
            }
            taken += 1;
        }
        let cut = taken < listed.len();
        let done = !more && !cut;
        let next = match listed[..taken].last() {
            Some(last) if !done => Some(format!("{AFTER_KEY}{}", last.key)),
            _ => from.clone(),
        };
        Self { from, next, done, keys }
    }
}

/// How a finished audit page task counts ([`crate::ports::JobStore::record_audit_page`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditTally {
    /// The page was audited.
    Audited {
        /// The page's findings by kind.
        counts: crate::domain::audit::Counts,
        /// Copies and deletes repair enqueued for the page.
        repaired: u64,
    },
    /// The page task failed (its walk or its report could not be done).
    Failed,
}

/// How a finished job task counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskTally {
    /// The task copied the object.
    Replicated {
        /// Bytes copied.
        bytes: u64,
    },
    /// The task found nothing to copy.
    Skipped,
    /// The task failed for good.
    Failed,
}

/// The identity under which a job counts a task: the object, and its version when the task
/// names one (a manifest may list two versions of one key: two tasks, both counted). Bucket
/// names never start with `@` and version ids never contain `#`, so no two forms collide.
pub fn task_id(bucket: &str, key: &str, version_id: Option<&str>) -> String {
    match version_id {
        Some(v) => format!("@{v}#{bucket}/{key}"),
        None => format!("{bucket}/{key}"),
    }
}

/// The id of a task that carries its position in a manifest ([`crate::domain::events::Task::job_task`]):
/// `%POSITION#` before [`task_id`] (no bucket name starts with `%` or `@`, so ids never collide).
pub fn task_id_at(bucket: &str, key: &str, version_id: Option<&str>, position: Option<&str>) -> String {
    match position {
        Some(p) => format!("%{p}#{}", task_id(bucket, key, version_id)),
        None => task_id(bucket, key, version_id),
    }
}

/// RFC 3339 "now", for job timestamps.
pub fn now_rfc3339() -> String {
    aws_smithy_types::DateTime::from(std::time::SystemTime::now())
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::Listed;

    fn listing(keys: &[String]) -> Vec<Listed> {
        keys.iter().map(|k| Listed { key: k.clone(), size: 1 }).collect()
    }

    #[test]
    fn a_page_that_fits_is_staged_whole_and_continues_after_its_last_key() {
        let keys: Vec<String> = (0..5).map(|i| format!("p/{i}")).collect();
        let page = StagedPage::fit(Some("after:a".into()), &listing(&keys), true, |k| k != "p/1");
        assert_eq!(page.keys, ["p/0", "p/2", "p/3", "p/4"], "filtered, in listing order");
        assert_eq!((page.next.as_deref(), page.done), (Some("after:p/4"), false));
        // The last page of a listing: done, the checkpoint stays where it was.
        let last = StagedPage::fit(Some("after:a".into()), &listing(&keys), false, |_| true);
        assert_eq!((last.next.as_deref(), last.done, last.keys.len()), (Some("after:a"), true, 5));
        // A filter that keeps nothing still moves past the page (after its last listed key).
        let none = StagedPage::fit(None, &listing(&keys), true, |_| false);
        assert_eq!((none.keys.len(), none.next.as_deref(), none.done), (0, Some("after:p/4"), false));
    }

    #[test]
    fn a_page_of_long_keys_is_cut_to_the_staged_page_budget() {
        let keys: Vec<String> = (0..1000).map(|i| format!("{i:04}/{}", "x".repeat(1015))).collect();
        let page = StagedPage::fit(None, &listing(&keys), false, |_| true);
        let bytes: usize = page.keys.iter().map(|k| serde_json::to_string(k).map_or(0, |j| j.len()) + 1).sum();
        assert!(bytes <= STAGED_PAGE_BYTES, "{bytes} bytes staged");
        assert!(page.keys.len() > 300 && page.keys.len() < 1000, "{} keys", page.keys.len());
        let last = page.keys.last().map(String::as_str).unwrap_or_default();
        assert_eq!(page.next, Some(format!("{AFTER_KEY}{last}")), "resumes after the last key kept");
        assert!(!page.done, "a cut page never ends the listing, even its last one");
        // The whole staged page, as stored, fits one DynamoDB item (400 KB) with room for the rest.
        assert!(serde_json::to_string(&page).map_or(0, |t| t.len()) < 380 * 1024);
    }

    #[test]
    fn task_ids_tell_versions_of_one_key_apart() {
        assert_eq!(task_id("b", "k", None), "b/k");
        assert_ne!(task_id("b", "k", Some("v1")), task_id("b", "k", Some("v2")));
        assert_ne!(task_id("b", "k", Some("v1")), task_id("b", "k", None));
    }

    #[test]
    fn specs_validate_and_list_every_problem() {
        let ok =
            JobSpec::from_json(r#"{"source_bucket": "src", "prefix": "logs/", "overwrite": "never"}"#).expect("valid");
        assert_eq!(ok.overwrite, Overwrite::Never);
        for (bad, needle) in [
            (r#"{"prefix": "x"}"#, "source_bucket"),
            (r#"{"source_bucket": ""}"#, "source_bucket is required"),
            (r#"{"source_bucket": "src", "overwrite": "sometimes"}"#, "unknown variant"),
            (r#"{"source_bucket": "src", "manifest": "http://x"}"#, "manifest"),
            (r#"{"source_bucket": "src", "destination": "gs://BAD"}"#, "destination"),
            (r#"{"source_bucket": "src", "colour": "red"}"#, "unknown field"),
        ] {
            let e = JobSpec::from_json(bad).expect_err(bad).to_string();
            assert!(e.contains(needle), "{bad}: {e}");
        }
        let e = JobSpec::from_json(r#"{"source_bucket": "a/b", "destination": "s3://x", "include_prefixes": [""]}"#)
            .expect_err("three problems")
            .to_string();
        assert_eq!(e.matches("; ").count(), 2, "{e}");
    }

    #[test]
    fn audit_specs_take_what_a_key_range_audit_can_do() {
        let ok = JobSpec::from_json(
            r#"{"kind": "audit", "source_bucket": "src", "prefix": "logs/", "destination": "gs://dst/copy/", "repair": true, "report": "s3://reports/audits/"}"#,
        )
        .expect("valid audit spec");
        assert_eq!((ok.kind, ok.repair), (JobKind::Audit, true));
        // A copy spec written before kinds existed is still a copy spec, and is written back
        // without the new fields.
        let old = JobSpec::from_json(r#"{"source_bucket": "src"}"#).expect("copy");
        assert_eq!(old.kind, JobKind::Copy);
        let text = serde_json::to_string(&old).expect("encode");
        assert!(!text.contains("kind") && !text.contains("repair") && !text.contains("report"), "{text}");
        for (bad, needle) in [
            (r#"{"kind": "audit", "source_bucket": "src"}"#, "destination"),
            (
                r#"{"kind": "audit", "source_bucket": "src", "destination": "gs://dst", "manifest": "s3://src/m.csv"}"#,
                "manifest",
            ),
            (
                r#"{"kind": "audit", "source_bucket": "src", "destination": "gs://dst", "include_prefixes": ["a"]}"#,
                "include",
            ),
            (
                r#"{"kind": "audit", "source_bucket": "src", "destination": "gs://dst", "overwrite": "never"}"#,
                "overwrite",
            ),
            (
                r#"{"kind": "audit", "source_bucket": "src", "destination": "gs://dst", "report": "http://x/y"}"#,
                "report",
            ),
            (r#"{"source_bucket": "src", "report": "s3://reports/"}"#, "report: only for audit jobs"),
            (r#"{"kind": "diff", "source_bucket": "src"}"#, "unknown variant"),
        ] {
            let e = JobSpec::from_json(bad).expect_err(bad).to_string();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn filters_and_destination_override() {
        let spec = JobSpec {
            source_bucket: "src".into(),
            prefix: "data/".into(),
            include_prefixes: vec!["data/a".into(), "data/b".into()],
            exclude_prefixes: vec!["data/b/tmp".into()],
            destination: Some("gs://dst/copy/".into()),
            ..Default::default()
        };
        assert!(spec.matches("data/a1"));
        assert!(spec.matches("data/b/x"));
        assert!(!spec.matches("data/b/tmp/x"));
        assert!(!spec.matches("data/c"));
        assert!(!spec.matches("other/a"));
        assert_eq!(spec.destination_for("data/a1").as_deref(), Some("gs://dst/copy/data/a1"));
    }

    #[test]
    fn manifests_parse_csv_and_lines() {
        let csv = "src,a%20b.txt\nsrc,dir%2Fc%2Bd.txt,v1\n\nsrc,a%20b.txt\n";
        let m = parse_manifest(csv, true, "ignored").expect("csv");
        assert_eq!(m.len(), 2, "duplicates collapse");
        assert_eq!(m[0].key, "a b.txt");
        assert_eq!(m[1].key, "dir/c+d.txt");
        assert_eq!(m[1].version_id.as_deref(), Some("v1"));
        let lines = parse_manifest("a b.txt\r\nplus+sign\n", false, "src").expect("lines");
        assert_eq!(lines.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(), ["a b.txt", "plus+sign"]);
        assert!(parse_manifest("just-one-column\n", true, "x").is_err());
    }

    #[test]
    fn statuses_round_trip() {
        for s in [JobStatus::Pending, JobStatus::Running, JobStatus::Succeeded, JobStatus::Failed, JobStatus::Cancelled]
        {
            assert_eq!(JobStatus::parse(s.as_str()), Some(s));
        }
        assert!(JobStatus::Cancelled.is_terminal() && !JobStatus::Running.is_terminal());
    }
}
