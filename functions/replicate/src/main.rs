//! The `replicate` Lambda: an S3 event notification in, verified GCS copies out.
//!
//! Decode, call the shared use case, encode: everything else lives in the `xcr` library.
//! Returns an error only when something retryable failed, so that Lambda's asynchronous retry
//! and its on-failure destination take over; permanent failures (a source that is gone) are
//! logged and reported in the response instead of being retried forever.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};
use tracing::Instrument;
use xcr::config::{Config, Needs};
use xcr::events::{Task, decode_s3_notification};
use xcr::wiring::{self, S3ToGcs};

#[tokio::main]
async fn main() -> Result<(), Error> {
    xcr::telemetry::init();
    // Cold start: read and check the configuration once, fail fast with every problem listed.
    let cfg = Config::from_env(Needs::ROUTED)?;
    let replicator = wiring::replicator(&cfg).await?;
    let replicator = &replicator;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move { handle(replicator, event).await }))
        .await
}

async fn handle(replicator: &S3ToGcs, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let span = tracing::info_span!("invocation", request_id = %event.context.request_id);
    run(replicator, event.payload).instrument(span).await
}

async fn run(replicator: &S3ToGcs, payload: Value) -> Result<Value, Error> {
    let tasks = decode_s3_notification(&payload).map_err(|e| {
        tracing::error!(error = %e, "rejected event");
        e
    })?;
    let mut results = Vec::with_capacity(tasks.len());
    let mut retryable = Vec::new();
    for task in tasks {
        match task {
            Task::Copy { object, .. } => match replicator.replicate(&object, None).await {
                Ok(r) => results.push(json!({"object": object.to_string(), "outcome": r.outcome})),
                Err(e) => {
                    tracing::error!(object = %object, kind = %e.kind(), error = %e.chain(), "replication failed");
                    if e.is_retryable() {
                        retryable.push(format!("{object}: {e}"));
                    }
                    results
                        .push(json!({"object": object.to_string(), "outcome": "failed", "error": e.kind().as_str()}));
                }
            },
            Task::Delete { object, .. } => {
                // Deletes are replicated only when configured, ordered by the ledger: not yet.
                results.push(json!({"object": object.to_string(), "outcome": "skipped_delete"}));
            }
        }
    }
    if !retryable.is_empty() {
        return Err(
            format!("{} object(s) failed and will be retried: {}", retryable.len(), retryable.join("; ")).into()
        );
    }
    Ok(json!({"results": results}))
}
