//! `/v1/jobs`: create, list, show and cancel migration jobs (see [`crate::jobs`]).
//!
//! Creating a job stores it PENDING and, in the cloud, invokes the migrate function to drive
//! it; locally `xcr pump` drives open jobs. A job whose driver cannot be started is marked
//! FAILED at once rather than left PENDING with nothing to run it.

use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::{Api, SharedApi};
use crate::domain::names::{GsUrl, S3Url};
use crate::jobs::{Job, JobSpec, now_rfc3339};
use crate::ports::JobStore;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

const DEFAULT_LIST: usize = 20;
const MAX_LIST: usize = 100;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
/// The query of `GET /v1/jobs`.
pub struct ListQuery {
    /// How many jobs, newest first (1 to 100, default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
/// The answer of `GET /v1/jobs`.
pub struct JobList {
    /// Jobs, newest first.
    pub jobs: Vec<Job>,
}

/// Start a migration job: `kind: copy` (the default) copies, `kind: audit` audits drift in
/// parallel page tasks (needs `destination`; `repair` and `report` optional) and counts it in
/// the job's `audit` counters.
#[utoipa::path(
    post, path = "/v1/jobs", tag = "jobs",
    request_body = JobSpec,
    responses(
        (status = 201, description = "Created (PENDING); `Location` names it", body = Job),
        (status = 400, description = "Invalid spec (missing bucket, bad manifest or report URL, unknown kind, policy or field, an audit job without destination or with manifest, filters, dry_run or overwrite, repair or report on a copy job)", body = super::error::ErrorBody),
        (status = 403, description = "Source or manifest bucket not in XCR_ALLOWED_SOURCE_BUCKETS, or destination (or a gs:// report) not in XCR_ALLOWED_DESTINATIONS", body = super::error::ErrorBody),
        (status = 413, description = "Body too large", body = super::error::ErrorBody),
        (status = 415, description = "Body is not JSON", body = super::error::ErrorBody),
        (status = 500, description = "Internal error", body = super::error::ErrorBody),
        (status = 503, description = "DynamoDB or the migrate function unavailable", body = super::error::ErrorBody),
    )
)]
pub async fn create_job(State(api): State<SharedApi>, ApiJson(spec): ApiJson<JobSpec>) -> Response {
    match create(&api, spec).await {
        Ok(job) => {
            let mut resp = (StatusCode::CREATED, Json(&job)).into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("/v1/jobs/{}", job.id)) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            resp
        }
        Err(e) => e.into_response(),
    }
}

async fn create(api: &Api, spec: JobSpec) -> Result<Job, ApiError> {
    spec.validate().map_err(ApiError::from)?;
    api.allow(&spec.source_bucket)?;
    if let Some(m) = &spec.manifest {
        let manifest = S3Url::object(m).map_err(ApiError::invalid)?;
        api.allow(&manifest.bucket)?;
    }
    // Refused now rather than task by task later (the replicate function would refuse each).
    if let Some(Ok(dest)) = spec.destination.as_deref().map(str::parse::<GsUrl>) {
        api.allow_destination(&dest.bucket, &dest.path)?;
    }
    // An audit report in GCS is written by the replicate function, as its copies are: the same
    // allowlist. (An S3 report bucket is bounded by the function's IAM role alone.)
    if let Some(Ok(crate::jobs::audit_report::ReportTarget::Gcs { bucket, name })) =
        spec.report.as_deref().map(crate::jobs::audit_report::ReportTarget::parse_prefix)
    {
        api.allow_destination(&bucket, &name)?;
    }
    let job = Job::new(spec, &now_rfc3339());
    api.jobs.create(&job).await.map_err(ApiError::from)?;
    tracing::info!(job_id = %job.id, source = %job.spec.source_bucket, "job created");
    if let Some((invoker, function)) = &api.starter
        && let Err(e) = invoker.invoke_async(function, &serde_json::json!({"job_id": job.id})).await
    {
        let why = format!("could not start the migrate function: {}", e.message());
        tracing::error!(job_id = %job.id, error = %e.chain(), "job not started");
        let _ = api.jobs.fail(&job.id, &why).await;
        return Err(ApiError::from(e));
    }
    Ok(job)
}

/// Jobs, newest first.
#[utoipa::path(
    get, path = "/v1/jobs", tag = "jobs",
    params(ListQuery),
    responses(
        (status = 200, description = "Newest first", body = JobList),
        (status = 400, description = "Invalid query", body = super::error::ErrorBody),
        (status = 500, description = "Internal error", body = super::error::ErrorBody),
        (status = 503, description = "DynamoDB unavailable", body = super::error::ErrorBody),
    )
)]
pub async fn list_jobs(
    State(api): State<SharedApi>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<JobList>, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIST);
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(ApiError::invalid(format!("limit must be 1 to {MAX_LIST}, got {limit}")));
    }
    let jobs = api.jobs.list(limit).await.map_err(ApiError::from)?;
    Ok(Json(JobList { jobs }))
}

/// One job, with its counters and checkpoint.
#[utoipa::path(
    get, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "The job id (`job-...`)", pattern = "^[A-Za-z0-9_-]{1,128}$")),
    responses(
        (status = 200, description = "The job", body = Job),
        (status = 400, description = "Not a job id", body = super::error::ErrorBody),
        (status = 404, description = "No such job", body = super::error::ErrorBody),
        (status = 500, description = "Internal error", body = super::error::ErrorBody),
        (status = 503, description = "DynamoDB unavailable", body = super::error::ErrorBody),
    )
)]
pub async fn get_job(State(api): State<SharedApi>, ApiPath(id): ApiPath<String>) -> Result<Json<Job>, ApiError> {
    validate_id(&id)?;
    match api.jobs.get(&id).await.map_err(ApiError::from)? {
        Some(job) => Ok(Json(job)),
        None => Err(ApiError::not_found(format!("no job {id}"))),
    }
}

/// Cancel a job: listing stops and its queued tasks become no-ops.
#[utoipa::path(
    post, path = "/v1/jobs/{id}/cancel", tag = "jobs",
    params(("id" = String, Path, description = "The job id (`job-...`)", pattern = "^[A-Za-z0-9_-]{1,128}$")),
    responses(
        (status = 200, description = "Cancelled: the job as it is now", body = Job),
        (status = 400, description = "Not a job id", body = super::error::ErrorBody),
        (status = 404, description = "No such job", body = super::error::ErrorBody),
        (status = 409, description = "The job had already ended", body = super::error::ErrorBody),
        (status = 500, description = "Internal error", body = super::error::ErrorBody),
        (status = 503, description = "DynamoDB unavailable", body = super::error::ErrorBody),
    )
)]
pub async fn cancel_job(State(api): State<SharedApi>, ApiPath(id): ApiPath<String>) -> Result<Json<Job>, ApiError> {
    validate_id(&id)?;
    let cancelled = api.jobs.cancel(&id).await.map_err(ApiError::from)?;
    let job =
        api.jobs.get(&id).await.map_err(ApiError::from)?.ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
    if !cancelled && job.status != crate::jobs::JobStatus::Cancelled {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "job_ended",
            format!("job {id} is already {}", job.status.as_str()),
        ));
    }
    tracing::info!(job_id = %id, "job cancelled");
    Ok(Json(job))
}

/// Job ids are ours (`job-<time>-<hex>`); anything else is refused before DynamoDB sees it.
fn validate_id(id: &str) -> Result<(), ApiError> {
    let ok = (1..=128).contains(&id.len()) && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok { Ok(()) } else { Err(ApiError::invalid("not a job id: expected 1 to 128 letters, digits, '-' or '_'")) }
}
