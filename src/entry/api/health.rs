//! `GET /` (what this deployment talks to) and `GET /v1/health` (live checks of every
//! dependency, each timed).

use super::SharedApi;
use crate::wiring::ledger::AnyLedger;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};
use utoipa::ToSchema;

/// A check that has not answered by then has failed: a health endpoint must answer quickly
/// even when a dependency hangs.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Serialize, ToSchema)]
/// `GET /`: what this service is and where it points.
pub struct ServiceInfo {
    #[schema(example = "xcr")]
    /// Always `xcr`.
    pub service: String,
    /// The crate version serving.
    pub version: String,
    /// Endpoints in use: an emulator's URL, or "REAL AWS" / "REAL GCS".
    pub targets: Targets,
    /// Where to look next.
    pub links: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
/// The endpoints this deployment talks to.
pub struct Targets {
    #[schema(example = "REAL AWS")]
    /// The AWS endpoint override, or `REAL AWS`.
    pub aws: String,
    #[schema(example = "REAL GCS")]
    /// The GCS endpoint (an emulator), or `REAL GCS`.
    pub gcs: String,
}

#[derive(Debug, Serialize, ToSchema)]
/// `GET /v1/health`: every dependency probed, for a load balancer or an operator.
pub struct Health {
    /// `pass` when every check passed, else `fail`.
    pub status: String,
    /// One entry per dependency: `s3`, `gcs`, `dynamodb`, `sqs`.
    pub checks: BTreeMap<String, Check>,
}

#[derive(Debug, Serialize, ToSchema)]
/// One dependency's probe.
pub struct Check {
    /// `pass` or `fail`.
    pub status: String,
    /// How long the probe took.
    pub latency_ms: u64,
    /// What was probed (a bucket, a table, a queue).
    pub target: String,
    /// Why it failed.
    pub error: Option<String>,
}

/// Service name, version and the active targets.
#[utoipa::path(get, path = "/", tag = "service", responses((status = 200, description = "Service information", body = ServiceInfo)))]
pub async fn root(State(api): State<SharedApi>) -> Json<ServiceInfo> {
    let links = [("health", "/v1/health"), ("openapi", "/openapi.json"), ("docs", "/docs")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Json(ServiceInfo {
        service: "xcr".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        targets: api.targets.clone(),
        links,
    })
}

/// Live checks of S3, GCS, DynamoDB and SQS.
#[utoipa::path(
    get, path = "/v1/health", tag = "service",
    responses(
        (status = 200, description = "Every dependency answered", body = Health),
        (status = 503, description = "At least one check failed", body = Health),
    )
)]
pub async fn health(State(api): State<SharedApi>) -> Response {
    let s3_target = api.settings.allow.exact().first().cloned();
    let s3 = timed(s3_target.clone().unwrap_or_else(|| "ListBuckets".into()), async {
        match &s3_target {
            // HeadBucket needs only s3:ListBucket on the source, which the role has.
            Some(b) => api
                .s3
                .head_bucket()
                .bucket(b)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| crate::adapters::aws::classify(e, "head bucket")),
            None => api
                .s3
                .list_buckets()
                .max_buckets(1)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| crate::adapters::aws::classify(e, "list buckets")),
        }
    });
    let gcs_target = api.probe_buckets.iter().map(|b| format!("gs://{b}")).collect::<Vec<_>>().join(",");
    let gcs = timed(gcs_target, async {
        if api.probe_buckets.is_empty() {
            return Err(crate::Error::new(crate::ErrorKind::Config, "no destination bucket to probe"));
        }
        let sink = api.replicator.transfer().sink();
        let probes = futures::future::join_all(api.probe_buckets.iter().map(|b| sink.probe(b))).await;
        probes.into_iter().collect::<crate::Result<Vec<()>>>().map(|_| ())
    });
    let ledger_table = api.ledger_table.clone();
    let dynamodb = timed(ledger_table.clone(), async {
        match api.replicator.ledger() {
            // A GetItem of a key that never exists: the data path, with the role's own rights.
            AnyLedger::Dynamo(l) => l.get("xcr-health-probe").await.map(|_| ()),
            AnyLedger::Disabled => Ok(()),
        }
    });
    let sqs = timed(api.queue.url().to_string(), async { api.queue.depth().await.map(|_| ()) });
    let (s3, gcs, dynamodb, sqs) = tokio::join!(s3, gcs, dynamodb, sqs);
    let checks: BTreeMap<String, Check> = [("s3", s3), ("gcs", gcs), ("dynamodb", dynamodb), ("sqs", sqs)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let ok = checks.values().all(|c| c.status == "pass");
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    if !ok {
        let failed: Vec<&str> = checks.iter().filter(|(_, c)| c.status != "pass").map(|(k, _)| k.as_str()).collect();
        tracing::warn!(failed = ?failed, "health check failed");
    }
    (status, Json(Health { status: if ok { "pass" } else { "fail" }.into(), checks })).into_response()
}

async fn timed(target: String, check: impl Future<Output = crate::Result<()>>) -> Check {
    let started = Instant::now();
    let result = match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(r) => r.map_err(|e| e.message().to_string()),
        Err(_) => Err(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())),
    };
    Check {
        status: if result.is_ok() { "pass" } else { "fail" }.into(),
        latency_ms: started.elapsed().as_millis() as u64,
        target,
        error: result.err(),
    }
}
