//! The `migrate` Lambda: drives one migration job per invocation, `{"job_id": "..."}`.
//!
//! It lists and enqueues in bounded steps (`xcr::migrate::Driver`) until the deadline is a
//! minute away, then invokes itself again asynchronously for the rest: a job can take far
//! longer than one invocation's 15 minutes. Every step is checkpointed, so a crash or timeout
//! resumes from the last checkpoint without losing or double-counting an object.
#![recursion_limit = "256"]

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};
use tracing::Instrument;
use xcr::config::{Config, Needs};
use xcr::migrate::Step;
use xcr::wiring::{self, S3JobDriver};

/// Time kept free at the end of an invocation for the last commit and the re-invocation.
const MARGIN_MS: i64 = 60_000;

#[tokio::main]
async fn main() -> Result<(), Error> {
    xcr::telemetry::init();
    let cfg = Config::from_env(Needs::MIGRATE).inspect_err(|e| tracing::error!(error = %e, "configuration"))?;
    let sdk = xcr::aws::sdk_config().await;
    let driver: &'static S3JobDriver =
        Box::leak(Box::new(wiring::driver_with(&sdk, &cfg).ok_or("XCR_JOBS_TABLE and XCR_QUEUE_URL are required")?));
    let invoker: &'static xcr::aws::lambda::Invoker = Box::leak(Box::new(xcr::aws::lambda::Invoker::new(&sdk)));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let job_id = event.payload["job_id"].as_str().ok_or("expected {\"job_id\": \"...\"}")?.to_string();
        let deadline_ms = i64::try_from(event.context.deadline).unwrap_or(i64::MAX);
        let span = tracing::info_span!("invocation", request_id = %event.context.request_id, job_id = %job_id);
        async {
            let step = driver.run(&job_id, deadline_ms, MARGIN_MS).await?;
            if step == Step::Progress {
                // More to list: continue in a fresh invocation with a fresh 15 minutes.
                invoker.invoke_async(&event.context.invoked_function_arn, &json!({"job_id": job_id})).await?;
            }
            Ok::<Value, Error>(json!({"job_id": job_id, "step": format!("{step:?}")}))
        }
        .instrument(span)
        .await
    }))
    .await
}
