//! The HTTP API: one axum [`Router`] that `xcr serve` runs locally and the `api` Lambda runs
//! under API Gateway (lambda_http), unchanged.
//!
//! * `GET /`, `GET /v1/health`: what this is, and live checks of its dependencies.
//! * `POST /v1/replicate`, `POST /v1/replicate/batch`: explicit copies through the ledger.
//! * `/v1/jobs...`: migration jobs.
//! * `GET /v1/objects/{bucket}/{key}`: what the ledger knows about one object.
//! * `GET /openapi.json`, `GET /docs`: the contract, generated from this code.
//!
//! Every answer carries `x-request-id`; every error is `{"error": {"code", "message",
//! "request_id"}}`; bodies are capped at [`MAX_BODY_BYTES`] and unknown fields are refused.

pub mod copy_requests;
pub mod docs;
pub mod error;
mod extract;
pub mod health;
pub mod jobs;
pub mod objects;
pub mod settings;

use crate::adapters::aws::job_store::DynamoJobStore;
use crate::adapters::aws::lambda::Invoker;
use crate::adapters::aws::sqs::Queue;
use crate::config::Config;
use crate::wiring::S3ToGcs;
use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use error::ApiError;
use settings::ApiSettings;
use std::sync::Arc;
use std::time::Instant;

/// Largest request body: a full batch (1,000 keys of up to 1,024 bytes, JSON-escaped) fits.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// The header that carries the request id in and out.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The state every route handler shares.
pub type SharedApi = Arc<Api>;

/// Everything the handlers use, built once at start-up.
pub struct Api {
    pub(crate) replicator: S3ToGcs,
    pub(crate) s3: aws_sdk_s3::Client,
    pub(crate) queue: Queue,
    pub(crate) jobs: DynamoJobStore,
    /// The migrate function to start jobs with (cloud); `None` locally, where `xcr pump` drives.
    pub(crate) starter: Option<(Invoker, String)>,
    pub(crate) settings: ApiSettings,
    pub(crate) targets: health::Targets,
    /// The GCS buckets the health check lists: every bucket a route can write to.
    pub(crate) probe_buckets: Vec<String>,
    pub(crate) ledger_table: String,
    pub(crate) batch_concurrency: usize,
}

impl Api {
    /// The configuration the API needs: a route, the ledger, the jobs table and the queue.
    pub const NEEDS: crate::config::Needs =
        crate::config::Needs { destination: true, ledger: true, jobs: true, queue: true, dlq: false, no_gcs: false };

    /// Builds the adapters from configuration (what the api function does at cold start).
    pub fn new(sdk: &aws_config::SdkConfig, cfg: &Config, settings: ApiSettings) -> crate::Result<Self> {
        let missing = |what: &str| crate::Error::new(crate::ErrorKind::Config, format!("{what} is required"));
        // Every AWS call bounded by XCR_REQUEST_TIMEOUT_SECS, as in the other functions.
        let sdk = &crate::adapters::aws::with_timeouts(sdk, cfg.transfer.request_timeout);
        let replicator = crate::wiring::replicator_with(sdk, cfg)?;
        let s3 = replicator.transfer().source().client().clone();
        let ledger_table = cfg.ledger_table.clone().ok_or_else(|| missing("XCR_LEDGER_TABLE"))?;
        let jobs = DynamoJobStore::new(sdk, cfg.jobs_table.clone().ok_or_else(|| missing("XCR_JOBS_TABLE"))?);
        let queue = Queue::new(sdk, cfg.queue_url.clone().ok_or_else(|| missing("XCR_QUEUE_URL"))?);
        let starter = cfg.migrate_function.clone().map(|f| (Invoker::new(sdk), f));
        let probe_buckets = replicator.router().buckets();
        if settings.allow.is_empty() {
            tracing::warn!("XCR_ALLOWED_SOURCE_BUCKETS is empty: every request naming a bucket will be refused (403)");
        } else if settings.allow.allows_any() {
            tracing::warn!("XCR_ALLOWED_SOURCE_BUCKETS is \"*\": the API may read any bucket the role can reach");
        }
        Ok(Self {
            replicator,
            s3,
            queue,
            jobs,
            starter,
            targets: health::Targets {
                aws: cfg.aws_endpoint.clone().unwrap_or_else(|| "REAL AWS".into()),
                gcs: cfg.gcs_emulator.clone().unwrap_or_else(|| "REAL GCS".into()),
            },
            probe_buckets,
            ledger_table,
            batch_concurrency: cfg.batch_concurrency,
            settings,
        })
    }

    /// Default deny: 403 unless `XCR_ALLOWED_SOURCE_BUCKETS` allows the bucket.
    pub(crate) fn allow(&self, bucket: &str) -> Result<(), ApiError> {
        if self.settings.allow.allows(bucket) {
            Ok(())
        } else {
            tracing::warn!(bucket, "refused: bucket not allowed");
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "bucket_not_allowed",
                format!("bucket {bucket:?} is not in XCR_ALLOWED_SOURCE_BUCKETS"),
            ))
        }
    }
}

impl Api {
    /// 403 unless `XCR_ALLOWED_DESTINATIONS` (by default: where the routing rules write) covers
    /// every name of `bucket` under `prefix`: a caller names a destination, the deployment
    /// decides where it may write. `prefix` is a whole object name for a single copy.
    pub(crate) fn allow_destination(&self, bucket: &str, prefix: &str) -> Result<(), ApiError> {
        let allowed = self.replicator.router().allowed_destinations();
        if allowed.permits_prefix(bucket, prefix) {
            Ok(())
        } else {
            let shown: String = prefix.chars().take(200).collect();
            tracing::warn!(bucket, prefix = %shown, "refused: destination not allowed");
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "destination_not_allowed",
                format!(
                    "destination gs://{bucket}/{shown} is not in XCR_ALLOWED_DESTINATIONS (allowed: {})",
                    allowed.describe()
                ),
            ))
        }
    }
}

/// The API's Router.
pub fn router(api: SharedApi) -> Router {
    Router::new()
        .route("/", get(health::root))
        .route("/v1/health", get(health::health))
        .route("/v1/replicate", post(copy_requests::replicate_one))
        .route("/v1/replicate/batch", post(copy_requests::replicate_batch))
        .route("/v1/jobs", post(jobs::create_job).get(jobs::list_jobs))
        .route("/v1/jobs/{id}", get(jobs::get_job))
        .route("/v1/jobs/{id}/cancel", post(jobs::cancel_job))
        .route("/v1/objects/{bucket}/{*key}", get(objects::object_status))
        .route("/openapi.json", get(docs::openapi_json))
        .route("/docs", get(docs::docs_page))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(api)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .layer(axum::middleware::from_fn(request_context))
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!("no route {} {}", req.method(), esc_path(req.uri().path())))
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {}", req.method(), esc_path(req.uri().path())),
    )
}

fn esc_path(p: &str) -> String {
    p.chars().take(200).collect()
}

/// A bug must still answer in the error shape, without its message or backtrace.
fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the service logs").into_response()
}

/// Gives the request an id (the caller's `x-request-id` when it is sane, which the api
/// function sets to API Gateway's request id; else a new one), makes it current for error
/// bodies and log lines, echoes it in the response and logs one line per request.
async fn request_context(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| (1..=128).contains(&v.len()) && v.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)))
        .map(str::to_string)
        .unwrap_or_else(|| format!("{:032x}", fastrand::u128(..)));
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string());
    let path = route.unwrap_or_else(|| esc_path(req.uri().path()));
    let started = Instant::now();
    let span = tracing::info_span!("request", request_id = %id);
    let mut resp =
        error::REQUEST_ID.scope(id.clone(), tracing::Instrument::instrument(next.run(req), span.clone())).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    span.in_scope(|| {
        tracing::info!(
            method = %method,
            path = %path,
            status = resp.status().as_u16(),
            duration_ms = started.elapsed().as_millis() as u64,
            "request"
        )
    });
    resp
}
