//! Per-object status: what the ledger knows about one S3 object at each of the destinations its
//! routing rules give (`GET /v1/objects/{bucket}/{key}`, `xcr status s3://BUCKET/KEY`).
//!
//! It reads the ledger only (one consistent read per destination), never GCS or S3: it says what
//! xcr did and when, not whether the buckets match now (that is the audit's question). A
//! destination with no ledger item is `unknown`; when no destination has one, nothing is
//! recorded for the object and the caller answers 404.

use crate::domain::error::Result;
use crate::domain::model::Destination;
use crate::domain::replicate::ledger_key;
use crate::ports::LedgerItem;
use crate::wiring::ledger::AnyLedger;
use serde::Serialize;
use utoipa::ToSchema;

/// What the ledger knows about one object, per destination.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ObjectStatus {
    /// The source bucket asked about.
    pub bucket: String,
    /// The source key asked about.
    pub key: String,
    /// One entry per destination the routing rules give this key.
    pub destinations: Vec<DestinationStatus>,
}

/// One destination's state.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DestinationStatus {
    /// `gs://bucket/name`.
    pub destination: String,
    /// `replicated` (the last action recorded is a verified copy), `deleted`, `failed` (the last
    /// attempt failed; `done` may still describe an older copy), `source_missing` (the last
    /// attempt found no source object: not a failure, nothing to copy), `in_progress` (a live lease),
    /// `pending` (claimed before, nothing recorded yet: a continuation or a retry is due) or
    /// `unknown` (the ledger has nothing for this destination).
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The last completed action, when one is recorded.
    pub done: Option<DoneStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The last failed attempt, when one is noted (kept until a later success).
    pub failure: Option<FailureStatus>,
    /// Bytes of an unfinished resumable upload GCS had confirmed, when one is remembered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload_offset: Option<u64>,
    /// When a live lease runs out (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_expires: Option<String>,
}

/// The last completed action, as recorded.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DoneStatus {
    /// `copy` or `delete`.
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The GCS generation the copy produced (for a delete: none).
    pub generation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Bytes copied.
    pub size: Option<u64>,
    /// Base64 of the big-endian CRC32C GCS verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crc32c: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The S3 version that was copied, when the bucket is versioned.
    pub source_version_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The S3 ETag that was copied.
    pub source_etag: Option<String>,
    /// The source's last-modified time (for a delete: the event's time), RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_last_modified: Option<String>,
    /// When xcr recorded it, RFC 3339.
    pub done_at: String,
    /// `done_at` minus `source_last_modified`, in seconds: how long after the source changed
    /// the copy was verified (S3 keeps last-modified in whole seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The migration job whose task recorded it, if any.
    pub job_id: Option<String>,
}

/// The last failed attempt, as noted.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FailureStatus {
    /// An error kind: `access_denied`, `integrity`, `transient`, ...
    pub kind: String,
    /// The error as it was logged (no secrets: messages never carry credentials or session URIs).
    pub message: String,
    /// RFC 3339.
    pub at: String,
}

/// The status of `bucket`/`key` at `destinations`; `None` when the ledger has nothing for any.
pub async fn object_status(
    ledger: &AnyLedger,
    bucket: &str,
    key: &str,
    destinations: &[Destination],
    now_ms: i64,
) -> Result<Option<ObjectStatus>> {
    let mut out = Vec::with_capacity(destinations.len());
    let mut known = false;
    for dest in destinations {
        let item = ledger.get(&ledger_key(dest)).await?;
        known |= item.is_some();
        out.push(destination_status(dest, item.as_ref(), now_ms));
    }
    Ok(known.then(|| ObjectStatus { bucket: bucket.into(), key: key.into(), destinations: out }))
}

/// One destination's status from its ledger item (pure).
pub fn destination_status(dest: &Destination, item: Option<&LedgerItem>, now_ms: i64) -> DestinationStatus {
    let mut st = DestinationStatus {
        destination: dest.to_string(),
        state: "unknown".into(),
        done: None,
        failure: None,
        upload_offset: None,
        lease_expires: None,
    };
    let Some(item) = item else { return st };
    st.done = item.done.as_ref().map(|d| DoneStatus {
        action: d.action.clone(),
        generation: d.generation.clone(),
        size: d.size,
        crc32c: d.crc32c.clone(),
        source_version_id: d.version_id.clone(),
        source_etag: d.etag.clone(),
        source_last_modified: d.last_modified_ms.map(rfc3339),
        done_at: rfc3339(d.done_at_ms),
        lag_seconds: d.last_modified_ms.map(|lm| (d.done_at_ms - lm).max(0) as f64 / 1000.0),
        job_id: d.job_id.clone(),
    });
    st.failure = item.failure.as_ref().map(|f| FailureStatus {
        kind: f.kind.clone(),
        message: f.message.clone(),
        at: rfc3339(f.at_ms),
    });
    st.upload_offset = item.upload.as_ref().map(|u| u.offset);
    let leased = item.lease_owner.is_some() && item.lease_expires_ms.is_some_and(|t| t > now_ms);
    if leased {
        st.lease_expires = item.lease_expires_ms.map(rfc3339);
    }
    st.state = if leased {
        "in_progress"
    } else if let Some(f) = &st.failure {
        if f.kind == crate::ErrorKind::NotFound.as_str() { "source_missing" } else { "failed" }
    } else {
        match st.done.as_ref().map(|d| d.action.as_str()) {
            Some("delete") => "deleted",
            Some(_) => "replicated",
            None => "pending",
        }
    }
    .into();
    st
}

fn rfc3339(ms: i64) -> String {
    aws_smithy_types::DateTime::from_millis(ms)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_else(|_| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::{DoneRecord, FailureNote};

    #[test]
    fn states_follow_the_item() {
        let dest = Destination::new("d", "k");
        let done = DoneRecord {
            action: "copy".into(),
            last_modified_ms: Some(1_700_000_000_000),
            done_at_ms: 1_700_000_002_500,
            generation: Some("7".into()),
            ..Default::default()
        };
        let st = |item: &LedgerItem, now| destination_status(&dest, Some(item), now);
        assert_eq!(destination_status(&dest, None, 0).state, "unknown");
        let replicated = LedgerItem { done: Some(done.clone()), ..Default::default() };
        let s = st(&replicated, 0);
        assert_eq!(s.state, "replicated");
        let d = s.done.expect("done");
        assert_eq!(d.lag_seconds, Some(2.5));
        assert_eq!(d.done_at, "2023-11-14T22:13:22.5Z");
        let failed = LedgerItem {
            failure: Some(FailureNote { kind: "integrity".into(), message: "m".into(), at_ms: 0 }),
            ..replicated.clone()
        };
        assert_eq!(st(&failed, 0).state, "failed");
        let gone = LedgerItem {
            failure: Some(FailureNote { kind: "not_found".into(), message: "m".into(), at_ms: 0 }),
            ..Default::default()
        };
        assert_eq!(st(&gone, 0).state, "source_missing", "a missing source is not a failure");
        let leased = LedgerItem { lease_owner: Some("o".into()), lease_expires_ms: Some(10), ..failed.clone() };
        assert_eq!(st(&leased, 5).state, "in_progress");
        assert_eq!(st(&leased, 50).state, "failed", "an expired lease is no longer in progress");
        assert_eq!(st(&LedgerItem::default(), 0).state, "pending");
        let deleted = LedgerItem { done: Some(DoneRecord { action: "delete".into(), ..done }), ..Default::default() };
        assert_eq!(st(&deleted, 0).state, "deleted");
    }
}
