//! What the use case answers: one [`Replication`] per destination, with its [`Outcome`], as the
//! CLI prints it, the API returns it and the logs record it.

use crate::domain::events::Task;
use crate::domain::model::Destination;
use crate::transfer::{Paused, TransferReport};
use serde::Serialize;

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
    /// The time budget ran out: the copy stopped at a chunk boundary with its checkpoint in the
    /// ledger (or did not start) and goes on in a continuation ([`crate::domain::budget`]).
    Continued,
    /// The task named a destination outside `XCR_ALLOWED_DESTINATIONS`: nothing was read or
    /// written. Not retried (the list does not change by waiting) and never silent: logged as
    /// a warning, counted as `refused`, and a job counts the task as failed.
    Refused,
}

impl Outcome {
    /// The name logs, metrics, the CLI and the API use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Replicated => "replicated",
            Self::AlreadyReplicated => "already_replicated",
            Self::Stale => "stale",
            Self::Busy => "busy",
            Self::Deleted => "deleted",
            Self::Skipped => "skipped",
            Self::Continued => "continued",
            Self::Refused => "refused",
        }
    }

    /// Whether the task must be delivered again (SQS partial failure, Lambda retry). A
    /// `continued` task must be too: the SQS handler does it at once as a new message, which
    /// spends no receive; any other caller can only fail and be retried.
    pub fn needs_retry(self) -> bool {
        matches!(self, Self::Busy | Self::Continued)
    }
}

/// The result of one task for one destination, as the CLI prints it and the API returns it.
#[derive(Debug, Clone, Serialize)]
pub struct Replication {
    /// How the task ended for this destination.
    pub outcome: Outcome,
    /// The object read (or that would have been).
    pub source: SourceSummary,
    /// Where it went (or would have).
    pub destination: DestinationSummary,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Bytes of the object copied, when one was.
    pub bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Base64 CRC32C verified on both ends, when a copy was made.
    pub crc32c: Option<String>,
    /// Why nothing was copied, for the outcomes other than `replicated`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    /// How the bytes went up (method, chunks, re-sends), when a copy was made.
    pub transfer: Option<TransferReport>,
    /// For `continued`: where the copy stopped and what this attempt sent.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub continued: Option<Paused>,
    /// Wall time of this destination's part of the task.
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
/// The source side of a [`Replication`]: the object as named, and what a read found.
pub struct SourceSummary {
    /// The S3 bucket.
    pub bucket: String,
    /// The S3 key.
    pub key: String,
    /// The version named by the task, or read.
    pub version_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The ETag read, when the object was read.
    pub etag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The size read, when the object was read.
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The last-modified time read (RFC 3339), when the object was read.
    pub last_modified: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
/// The destination side of a [`Replication`].
pub struct DestinationSummary {
    /// The GCS bucket.
    pub bucket: String,
    /// The object name.
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The generation GCS gave the copy, when one was made.
    pub generation: Option<String>,
}

/// A `continued` result for a destination the time budget left no time to start.
pub(super) fn not_started(task: &Task, dest: &Destination) -> Replication {
    let why = "not started: the time budget ran out; a continuation applies it";
    result(task, dest, Outcome::Continued, Some(why.to_string()), std::time::Instant::now())
}

/// A `skipped` result for a task that was not applied at all.
pub fn skipped_task(task: &Task, why: &str) -> Replication {
    skipped(task, task.destination.as_ref(), why)
}

pub(super) fn skipped(task: &Task, dest: Option<&Destination>, why: &str) -> Replication {
    let dest = dest.cloned().unwrap_or_else(|| Destination::new("", ""));
    result(task, &dest, Outcome::Skipped, Some(why.to_string()), std::time::Instant::now())
}

pub(super) fn result(
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
        continued: None,
        duration_ms: started.elapsed().as_millis() as u64,
        copied_by_own_job: None,
        retry_after_secs: None,
    }
}
