//! `POST /v1/replicate` and `POST /v1/replicate/batch`: explicit copies, idempotent through the
//! ledger like every other entry point.
//!
//! An HTTP request has a hard time limit (API Gateway waits 30 s), so a copy is done inside the
//! request only when it surely fits: objects above `XCR_API_SYNC_MAX_BYTES` (default 64 MiB),
//! and batch keys not started within [`BATCH_SYNC_BUDGET`], are put on the replicate queue
//! instead and answered `queued` (202 for a single call) with the SQS message id.

use super::error::{ApiError, ErrorDetail};
use super::extract::ApiJson;
use super::{Api, SharedApi};
use crate::domain::error::{Error, ErrorKind};
use crate::domain::events::{Action, Task};
use crate::domain::model::{Destination, ObjectRef};
use crate::domain::names::{GsUrl, validate_s3_bucket};
use crate::domain::replicate::{Outcome, Replication, validate_key};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};
use utoipa::ToSchema;

/// Most keys one batch call takes.
pub const MAX_BATCH_KEYS: usize = 1000;
/// Batch keys not started this long after the request arrived are queued rather than copied, so
/// that the response is back well within API Gateway's 30 s.
pub const BATCH_SYNC_BUDGET: Duration = Duration::from_secs(20);
/// The deadline a synchronous copy runs under: the API function's longest timeout. Ledger leases
/// last until then plus the replicator's margin.
const REQUEST_DEADLINE: Duration = Duration::from_secs(30);

/// One object to copy now.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplicateRequest {
    /// The S3 bucket; it must be allowed by `XCR_ALLOWED_SOURCE_BUCKETS`.
    #[schema(pattern = "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", example = "raw-data")]
    pub bucket: String,
    /// The object key as stored (not URL-encoded): 1 to 1,024 bytes of UTF-8, no line breaks
    /// (GCS object names cannot hold them).
    #[schema(min_length = 1, max_length = 1024, pattern = "^[^\\r\\n]+$", example = "logs/2026/11/23/app.json")]
    pub key: String,
    /// Copy this version rather than the current one.
    #[serde(default)]
    #[schema(max_length = 1024, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$")]
    pub version_id: Option<String>,
    /// `gs://bucket/name`, or `gs://bucket` to keep the key as the name. Default: the routing
    /// rules (`XCR_DEST_BUCKET` / `XCR_RULES`).
    #[serde(default)]
    #[schema(
        pattern = "^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/[^\\r\\n]{0,1024})?$",
        example = "gs://analytics-raw"
    )]
    pub destination: Option<String>,
}

/// Many keys of one bucket.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    #[schema(pattern = "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", example = "raw-data")]
    /// The source bucket every key is read from.
    pub bucket: String,
    /// 1 to 1,000 distinct keys, each as in a single call.
    #[schema(schema_with = key_list_schema)]
    pub keys: Vec<String>,
    /// `gs://bucket` or `gs://bucket/prefix/`: each key is copied to prefix + key (a key whose
    /// name would pass 1,024 bytes fails alone, with 400 in its result). Default: the routing
    /// rules.
    #[serde(default)]
    #[schema(
        pattern = "^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/[^\\r\\n]{0,1024})?$",
        example = "gs://analytics-raw/backfill/"
    )]
    pub destination: Option<String>,
    /// Queue every key and answer 202 at once with the message ids.
    #[serde(default, rename = "async")]
    pub asynchronous: bool,
}

/// `keys`: what utoipa's field attributes cannot say (item constraints, uniqueness).
fn key_list_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    let key = ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(1024))
        .pattern(Some("^[^\\r\\n]+$"));
    ArrayBuilder::new()
        .items(key)
        .min_items(Some(1))
        .max_items(Some(MAX_BATCH_KEYS))
        .unique_items(true)
        .examples([serde_json::json!(["a.csv", "b.csv"])])
        .build()
}

/// What became of a request, in the same words for single calls and batch items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApiOutcome {
    /// Copied and verified.
    Replicated,
    /// This version was already in GCS: nothing was uploaded.
    AlreadyReplicated,
    /// Something newer was already replicated: nothing changed.
    Stale,
    /// Nothing to do (every destination skipped it).
    Skipped,
    /// Put on the replicate queue: too large for a request, or the batch's time ran out.
    Queued,
    /// Another worker is copying this object right now: retry later.
    Busy,
    /// See `error`.
    Failed,
}

#[derive(Debug, Serialize, ToSchema)]
/// The source side of an answer.
pub struct SourceOut {
    /// The S3 bucket.
    pub bucket: String,
    /// The S3 key.
    pub key: String,
    /// The version named or read.
    pub version_id: Option<String>,
    /// The ETag read, when the object was read.
    pub etag: Option<String>,
    /// The size read, when the object was read.
    pub size: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
/// One destination's result.
pub struct DestinationOut {
    /// The GCS bucket.
    pub bucket: String,
    /// The object name.
    pub name: String,
    /// How the copy to this destination ended.
    pub outcome: ApiOutcome,
    /// The GCS generation written (or found already written).
    pub generation: Option<String>,
    /// Bytes copied (none when nothing was uploaded).
    pub bytes: Option<u64>,
    /// Base64 CRC32C verified on both ends, when a copy was made.
    pub crc32c: Option<String>,
    /// Why nothing was copied, for outcomes other than `replicated`.
    pub detail: Option<String>,
}

/// The answer to `POST /v1/replicate`: 200 with the outcome, or 202 `queued`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplicateResponse {
    /// How the request ended; `queued` when the copy was handed to the queue.
    pub outcome: ApiOutcome,
    /// The object read.
    pub source: SourceOut,
    /// One entry per destination object (routing rules may name several).
    pub destinations: Vec<DestinationOut>,
    /// The SQS message id when `queued`.
    pub message_id: Option<String>,
    /// Why it was queued, or what was found.
    pub detail: Option<String>,
    /// Wall time of the request's work.
    pub duration_ms: u64,
}

/// One key of a batch: the single call's outcome, and the status the single call would answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchItem {
    /// The S3 key.
    pub key: String,
    /// The HTTP status this key would have had alone.
    pub status: u16,
    /// The key's outcome.
    pub outcome: ApiOutcome,
    /// One entry per destination.
    pub destinations: Vec<DestinationOut>,
    /// The queue message id, when the key was queued.
    pub message_id: Option<String>,
    /// Why the key failed, in the error shape of a single request.
    pub error: Option<ErrorDetail>,
}

#[derive(Debug, Serialize, ToSchema)]
/// The answer to a synchronous `POST /v1/replicate/batch`.
pub struct BatchResponse {
    /// The source bucket.
    pub bucket: String,
    /// In the order of the request's keys.
    pub results: Vec<BatchItem>,
    /// Number of keys per outcome.
    pub summary: BTreeMap<String, u64>,
    /// Wall time of the whole batch.
    pub duration_ms: u64,
}

#[derive(Debug, Serialize, ToSchema)]
/// One key of an asynchronous batch, queued or not.
pub struct QueuedMessage {
    /// The S3 key.
    pub key: String,
    /// None when this key was not queued (see `error`).
    pub message_id: Option<String>,
    /// Why the key could not be queued.
    pub error: Option<ErrorDetail>,
}

/// The answer to an `"async": true` batch.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchQueuedResponse {
    /// The source bucket.
    pub bucket: String,
    /// Keys queued.
    pub queued: u64,
    /// Keys that could not be queued.
    pub failed: u64,
    /// One entry per key, in request order.
    pub messages: Vec<QueuedMessage>,
}

/// Copy one object now (or queue it when too large for a request).
#[utoipa::path(
    post, path = "/v1/replicate", tag = "replicate",
    request_body = ReplicateRequest,
    responses(
        (status = 200, description = "Done: `replicated`, `already_replicated` or `stale`", body = ReplicateResponse),
        (status = 202, description = "Too large for a request: queued (`outcome: queued`, `message_id`)", body = ReplicateResponse),
        (status = 400, description = "Invalid input", body = super::error::ErrorBody),
        (status = 403, description = "Bucket not in XCR_ALLOWED_SOURCE_BUCKETS, destination not in XCR_ALLOWED_DESTINATIONS, no routing rule for the object (`no_route`: name a destination), or access denied", body = super::error::ErrorBody),
        (status = 404, description = "The source object (or version) does not exist", body = super::error::ErrorBody),
        (status = 409, description = "Busy: another worker is copying it (Retry-After), or the source changed mid-copy", body = super::error::ErrorBody),
        (status = 413, description = "Body too large", body = super::error::ErrorBody),
        (status = 415, description = "Body is not JSON", body = super::error::ErrorBody),
        (status = 500, description = "Internal error", body = super::error::ErrorBody),
        (status = 503, description = "A dependency failed after retries (`unavailable`, Retry-After), or the deployment is misconfigured (`misconfigured`: e.g. the destination bucket does not exist; the message names it)", body = super::error::ErrorBody),
    )
)]
pub async fn replicate_one(State(api): State<SharedApi>, ApiJson(req): ApiJson<ReplicateRequest>) -> Response {
    let started = Instant::now();
    let result = async {
        validate_s3_bucket(&req.bucket).map_err(ApiError::invalid)?;
        validate_key(&req.key).map_err(ApiError::from)?;
        let version = validate_version(req.version_id)?;
        let obj = ObjectRef::new(req.bucket, req.key).with_version(version);
        let dest = req
            .destination
            .as_deref()
            .map(|d| {
                crate::domain::events::parse_gs_url(d, &obj.key)
                    .map_err(|e| ApiError::invalid(strip_command(e.message())))
            })
            .transpose()?;
        api.allow(&obj.bucket)?;
        if let Some(d) = &dest {
            api.allow_destination(&d.bucket, &d.name)?;
        }
        api.process(obj, dest, false).await
    }
    .await;
    match result {
        Ok(done) => done.into_single(started).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Copy up to 1,000 keys of one bucket, concurrently with a bound, or queue them all.
#[utoipa::path(
    post, path = "/v1/replicate/batch", tag = "replicate",
    request_body = BatchRequest,
    responses(
        (status = 200, description = "Per-key results, in request order", body = BatchResponse),
        (status = 202, description = "`async`: every key queued", body = BatchQueuedResponse),
        (status = 400, description = "Invalid input (names the first bad key)", body = super::error::ErrorBody),
        (status = 403, description = "Bucket not in XCR_ALLOWED_SOURCE_BUCKETS, or destination not in XCR_ALLOWED_DESTINATIONS", body = super::error::ErrorBody),
        (status = 413, description = "Body too large", body = super::error::ErrorBody),
        (status = 415, description = "Body is not JSON", body = super::error::ErrorBody),
        (status = 500, description = "Internal error", body = super::error::ErrorBody),
        (status = 503, description = "The queue is unavailable (async)", body = super::error::ErrorBody),
    )
)]
pub async fn replicate_batch(State(api): State<SharedApi>, ApiJson(req): ApiJson<BatchRequest>) -> Response {
    let started = Instant::now();
    match batch(&api, req, started).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn batch(api: &Api, req: BatchRequest, started: Instant) -> Result<Response, ApiError> {
    validate_s3_bucket(&req.bucket).map_err(ApiError::invalid)?;
    if req.keys.is_empty() || req.keys.len() > MAX_BATCH_KEYS {
        return Err(ApiError::invalid(format!("keys: 1 to {MAX_BATCH_KEYS} keys, got {}", req.keys.len())));
    }
    let mut seen = HashSet::new();
    for (i, key) in req.keys.iter().enumerate() {
        validate_key(key).map_err(|e| ApiError::invalid(format!("keys[{i}]: {}", e.message())))?;
        if !seen.insert(key.as_str()) {
            return Err(ApiError::invalid(format!("keys[{i}]: {key:?} appears twice")));
        }
    }
    let prefix = req
        .destination
        .as_deref()
        .map(|d| d.parse::<GsUrl>().map_err(|why| ApiError::invalid(format!("destination: {why}"))))
        .transpose()?;
    let dest_for = |key: &str| prefix.as_ref().map(|p| Destination::new(p.bucket.clone(), format!("{}{key}", p.path)));
    // A key whose destination name would be too long fails alone (the request itself is valid).
    let too_long = |dest: &Option<Destination>| match dest {
        Some(d) if d.name.len() > 1024 => Some(ApiError::invalid(format!(
            "gs://{}/{}... would be longer than 1024 bytes",
            d.bucket,
            d.name.chars().take(40).collect::<String>()
        ))),
        _ => None,
    };
    api.allow(&req.bucket)?;
    // Every key lands under the one prefix: checking the prefix checks them all.
    if let Some(p) = &prefix {
        api.allow_destination(&p.bucket, &p.path)?;
    }

    if req.asynchronous {
        let mut messages: Vec<QueuedMessage> = Vec::with_capacity(req.keys.len());
        let mut bodies = Vec::new();
        for key in req.keys {
            let dest = dest_for(&key);
            match too_long(&dest) {
                Some(e) => messages.push(QueuedMessage { key, message_id: None, error: Some(e.detail()) }),
                None => {
                    bodies
                        .push((messages.len(), command(&ObjectRef::new(&req.bucket, &key), dest.as_ref()).to_string()));
                    messages.push(QueuedMessage { key, message_id: None, error: None });
                }
            }
        }
        let refs: Vec<&str> = bodies.iter().map(|(_, b)| b.as_str()).collect();
        let ids = api.queue.send(&refs).await.map_err(ApiError::from)?;
        for ((i, _), id) in bodies.iter().zip(ids) {
            match id {
                Some(id) => messages[*i].message_id = Some(id),
                None => {
                    let e = ApiError::from(Error::new(ErrorKind::Transient, "SQS refused the message"));
                    messages[*i].error = Some(e.detail());
                }
            }
        }
        let queued = messages.iter().filter(|m| m.message_id.is_some()).count() as u64;
        let failed = messages.len() as u64 - queued;
        tracing::info!(bucket = %req.bucket, queued, failed, "batch queued");
        let body = BatchQueuedResponse { bucket: req.bucket, queued, failed, messages };
        return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
    }

    let bucket = req.bucket.clone();
    let mut results: Vec<(usize, BatchItem)> = futures::stream::iter(req.keys.into_iter().enumerate())
        .map(|(i, key)| {
            let obj = ObjectRef::new(&bucket, &key);
            let dest = dest_for(&key);
            async move {
                let over_budget = started.elapsed() > BATCH_SYNC_BUDGET;
                let processed = match too_long(&dest) {
                    Some(e) => Err(e),
                    None => api.process(obj, dest, over_budget).await,
                };
                let item = match processed {
                    Ok(done) => done.into_item(key),
                    Err(e) => BatchItem {
                        key,
                        status: e.status.as_u16(),
                        outcome: if e.code == "busy" { ApiOutcome::Busy } else { ApiOutcome::Failed },
                        destinations: Vec::new(),
                        message_id: None,
                        error: Some(e.detail()),
                    },
                };
                (i, item)
            }
        })
        .buffer_unordered(api.batch_concurrency)
        .collect()
        .await;
    results.sort_by_key(|(i, _)| *i);
    let results: Vec<BatchItem> = results.into_iter().map(|(_, item)| item).collect();
    let mut summary = BTreeMap::new();
    for r in &results {
        *summary.entry(outcome_name(r.outcome).to_string()).or_insert(0) += 1;
    }
    tracing::info!(bucket = %bucket, keys = results.len(), summary = ?summary, "batch done");
    let body = BatchResponse { bucket, results, summary, duration_ms: started.elapsed().as_millis() as u64 };
    Ok((StatusCode::OK, Json(body)).into_response())
}

/// What [`Api::process`] did with one object.
pub(super) enum Processed {
    Done { source: SourceOut, results: Vec<Replication> },
    Queued { source: SourceOut, message_id: Option<String>, reason: String },
}

impl Processed {
    fn outcome(&self) -> ApiOutcome {
        match self {
            Self::Queued { .. } => ApiOutcome::Queued,
            Self::Done { results, .. } => aggregate(results),
        }
    }

    fn into_single(self, started: Instant) -> Response {
        let outcome = self.outcome();
        let (status, source, destinations, message_id, detail) = match self {
            Self::Queued { source, message_id, reason } => {
                (StatusCode::ACCEPTED, source, Vec::new(), message_id, Some(reason))
            }
            Self::Done { source, results } => {
                (StatusCode::OK, source, results.iter().map(dest_out).collect(), None, None)
            }
        };
        let body = ReplicateResponse {
            outcome,
            source,
            destinations,
            message_id,
            detail,
            duration_ms: started.elapsed().as_millis() as u64,
        };
        (status, Json(body)).into_response()
    }

    fn into_item(self, key: String) -> BatchItem {
        let outcome = self.outcome();
        match self {
            Self::Queued { message_id, .. } => {
                BatchItem { key, status: 202, outcome, destinations: Vec::new(), message_id, error: None }
            }
            Self::Done { results, .. } => BatchItem {
                key,
                status: 200,
                outcome,
                destinations: results.iter().map(dest_out).collect(),
                message_id: None,
                error: None,
            },
        }
    }
}

impl Api {
    /// Checks the source, then copies it within the request or queues it. Busy destinations
    /// and failures come back as errors (409, 503...) with the single call's codes.
    pub(super) async fn process(
        &self,
        obj: ObjectRef,
        dest: Option<Destination>,
        queue_anyway: bool,
    ) -> Result<Processed, ApiError> {
        let task = Task { destination: dest, ..Task::new(Action::Copy, obj) };
        let destinations = self.replicator.destinations(&task);
        // 403 like the allowlist: the request is well formed, and this deployment's configuration
        // does not replicate that bucket (with every bucket allowed, routes cannot cover every
        // bucket, since two buckets must not share destination names: see crate::domain::routing).
        if destinations.is_empty() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "no_route",
                format!("no routing rule matches {}; name a destination", task.object),
            ));
        }
        // One HEAD: a missing object is a 404 before anything is claimed, and the size decides
        // whether the copy fits in the request.
        let size = self.head(&task.object).await?;
        let source = SourceOut {
            bucket: task.object.bucket.clone(),
            key: task.object.key.clone(),
            version_id: task.object.version_id.clone(),
            etag: None,
            size: Some(size),
        };
        let reason = if size > self.settings.sync_max_bytes {
            Some(format!(
                "{size} bytes is more than XCR_API_SYNC_MAX_BYTES ({}) can copy within a request",
                self.settings.sync_max_bytes
            ))
        } else if queue_anyway {
            Some(format!("not started within the batch's {} s budget", BATCH_SYNC_BUDGET.as_secs()))
        } else {
            None
        };
        if let Some(reason) = reason {
            let body = command(&task.object, task.destination.as_ref()).to_string();
            let ids = self.queue.send(&[body.as_str()]).await.map_err(ApiError::from)?;
            let message_id = ids.into_iter().next().flatten();
            if message_id.is_none() {
                return Err(ApiError::from(Error::new(ErrorKind::Transient, "SQS refused the message")));
            }
            tracing::info!(object = %task.object, size, message_id = message_id.as_deref(), %reason, "queued");
            return Ok(Processed::Queued { source, message_id, reason });
        }

        let requested = crate::domain::replicate::now_ms();
        let deadline = requested + REQUEST_DEADLINE.as_millis() as i64;
        let applied = self.replicator.apply(&task, deadline).await;
        crate::metrics::emit_results("api", &applied, Some(requested));
        let mut results = Vec::new();
        for r in applied {
            results.push(r.map_err(ApiError::from)?);
        }
        if let Some(busy) = results.iter().find(|r| r.outcome == Outcome::Busy) {
            let wait = busy.retry_after_secs.unwrap_or(5);
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "busy",
                format!(
                    "gs://{}/{} is being written by another worker; retry in {wait} s",
                    busy.destination.bucket, busy.destination.name
                ),
            )
            .with_retry_after(wait));
        }
        let mut source = source;
        if let Some(r) = results.iter().find(|r| r.source.etag.is_some()) {
            source.etag = r.source.etag.clone();
            source.size = r.source.size.or(source.size);
            source.version_id = r.source.version_id.clone().or(source.version_id);
        }
        Ok(Processed::Done { source, results })
    }

    /// The source's size; 404 when the object or version does not exist.
    async fn head(&self, obj: &ObjectRef) -> Result<u64, ApiError> {
        let mut req = self.s3.head_object().bucket(&obj.bucket).key(&obj.key);
        if let Some(v) = &obj.version_id {
            req = req.version_id(v);
        }
        match req.send().await {
            Ok(out) => Ok(out.content_length().and_then(|l| u64::try_from(l).ok()).unwrap_or(0)),
            Err(e) => {
                let e = crate::adapters::aws::classify(e, &format!("head {obj}"));
                if e.kind() == ErrorKind::NotFound {
                    Err(ApiError::not_found(format!("{obj} does not exist")))
                } else if e.kind() == ErrorKind::Invalid && obj.version_id.is_some() {
                    // S3 answers 400 (with no body to a HEAD) to a version id it could never
                    // have issued: to the caller, that version does not exist.
                    Err(ApiError::not_found(format!("{obj} does not exist (no such version)")))
                } else {
                    Err(ApiError::from(e))
                }
            }
        }
    }
}

/// A replicate command, as the replicate function decodes it from the queue.
fn command(obj: &ObjectRef, dest: Option<&Destination>) -> serde_json::Value {
    let mut c = serde_json::json!({"bucket": obj.bucket, "key": obj.key});
    if let Some(v) = &obj.version_id {
        c["version_id"] = serde_json::json!(v);
    }
    if let Some(d) = dest {
        c["destination"] = serde_json::json!(format!("gs://{}/{}", d.bucket, d.name));
    }
    c
}

fn validate_version(v: Option<String>) -> Result<Option<String>, ApiError> {
    match v {
        Some(v) if v.is_empty() || v.len() > 1024 || v.chars().any(char::is_control) => {
            Err(ApiError::invalid("version_id must be 1 to 1024 printable characters"))
        }
        other => Ok(other),
    }
}

/// The command decoder's messages start with "invalid replicate command: "; the API has its own.
fn strip_command(m: &str) -> String {
    m.strip_prefix("invalid replicate command: ").unwrap_or(m).to_string()
}

fn aggregate(results: &[Replication]) -> ApiOutcome {
    let has = |o: Outcome| results.iter().any(|r| r.outcome == o);
    if has(Outcome::Replicated) {
        ApiOutcome::Replicated
    } else if has(Outcome::AlreadyReplicated) {
        ApiOutcome::AlreadyReplicated
    } else if has(Outcome::Stale) {
        ApiOutcome::Stale
    } else {
        ApiOutcome::Skipped
    }
}

fn map_outcome(o: Outcome) -> ApiOutcome {
    match o {
        Outcome::Replicated => ApiOutcome::Replicated,
        Outcome::AlreadyReplicated => ApiOutcome::AlreadyReplicated,
        Outcome::Stale => ApiOutcome::Stale,
        // The API copies without a time budget, so nothing continues; if something did, the
        // caller's retry would continue it, as after `busy`.
        Outcome::Busy | Outcome::Continued => ApiOutcome::Busy,
        Outcome::Deleted | Outcome::Skipped => ApiOutcome::Skipped,
        // Checked before the copy (403), so only a route changed underneath gets here.
        Outcome::Refused => ApiOutcome::Failed,
    }
}

fn outcome_name(o: ApiOutcome) -> &'static str {
    match o {
        ApiOutcome::Replicated => "replicated",
        ApiOutcome::AlreadyReplicated => "already_replicated",
        ApiOutcome::Stale => "stale",
        ApiOutcome::Skipped => "skipped",
        ApiOutcome::Queued => "queued",
        ApiOutcome::Busy => "busy",
        ApiOutcome::Failed => "failed",
    }
}

fn dest_out(r: &Replication) -> DestinationOut {
    DestinationOut {
        bucket: r.destination.bucket.clone(),
        name: r.destination.name.clone(),
        outcome: map_outcome(r.outcome),
        generation: r.destination.generation.clone(),
        bytes: r.bytes,
        crc32c: r.crc32c.clone(),
        detail: r.detail.clone(),
    }
}
