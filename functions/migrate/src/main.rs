//! The `migrate` Lambda: drives one migration job per invocation, `{"job_id": "..."}`, or
//! sweeps them all, `{"sweep": true}` (or the event of an EventBridge schedule).
//!
//! A driver lists and enqueues in bounded steps (`xcr::jobs::migrate::Driver`) until the deadline is
//! a minute away, then invokes itself again asynchronously for the rest: a job can take far
//! longer than one invocation's 15 minutes. Every step is checkpointed, so a crash or timeout
//! resumes from the last checkpoint without losing or double-counting an object. A driver that
//! finds the job held by another does not re-invoke itself: the holder goes on.
//!
//! The sweep (`xcr::jobs::migrate::Driver::sweep`), run by the template's schedule, is what makes
//! every job end when a link of that chain breaks: it invokes a driver for each open job whose
//! driver lease has lapsed (its chain died: Lambda's two async retries ran out, the invocation
//! was throttled away), counts job tasks that died in the DLQ as failed, and ends jobs that are
//! complete. The failed invocations themselves go to the function's on-failure queue, for a
//! person to look at: the sweep already makes their jobs progress, so that queue is never
//! redriven automatically.
#![recursion_limit = "256"]

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};
use tracing::Instrument;
use xcr::config::{Config, Needs};
use xcr::jobs::migrate::Step;
use xcr::wiring::{self, S3JobDriver};

/// Time kept free at the end of an invocation for the last commit and the re-invocation.
const MARGIN_MS: i64 = 60_000;

/// Whether the event asks for a sweep: `{"sweep": true}`, or an EventBridge scheduled event.
fn is_sweep(payload: &Value) -> bool {
    payload["sweep"].as_bool() == Some(true)
        || (payload["source"] == "aws.events" && payload["detail-type"] == "Scheduled Event")
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    xcr::telemetry::init();
    let cfg = Config::from_env(Needs::MIGRATE).inspect_err(|e| tracing::error!(error = %e, "configuration"))?;
    let sdk = xcr::adapters::aws::sdk_config().await;
    let driver: &'static S3JobDriver =
        Box::leak(Box::new(wiring::driver_with(&sdk, &cfg).ok_or("XCR_JOBS_TABLE and XCR_QUEUE_URL are required")?));
    let invoker: &'static xcr::adapters::aws::lambda::Invoker =
        Box::leak(Box::new(xcr::adapters::aws::lambda::Invoker::new(&sdk)));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let me = event.context.invoked_function_arn.clone();
        if is_sweep(&event.payload) {
            let span = tracing::info_span!("sweep", request_id = %event.context.request_id);
            return async {
                let swept =
                    driver.sweep().await.inspect_err(|e| xcr::metrics::emit_migrate("migrate", 0, Some(e.kind())))?;
                xcr::metrics::emit_migrate("migrate", swept.dead_letters_counted, None);
                // One job that cannot be resumed now does not keep the others waiting.
                let mut failed = Vec::new();
                for job_id in &swept.resume {
                    if let Err(e) = invoker.invoke_async(&me, &json!({"job_id": job_id})).await {
                        tracing::error!(job_id = %job_id, error = %e.chain(), "sweep: could not resume the job");
                        failed.push(job_id.clone());
                    }
                }
                tracing::info!(swept = ?swept, "sweep done");
                if !failed.is_empty() {
                    return Err(Error::from(format!("sweep: could not resume {}", failed.join(", "))));
                }
                Ok::<Value, Error>(serde_json::to_value(&swept)?)
            }
            .instrument(span)
            .await;
        }
        let job_id =
            event.payload["job_id"].as_str().ok_or("expected {\"job_id\": \"...\"} or {\"sweep\": true}")?.to_string();
        let deadline_ms = i64::try_from(event.context.deadline).unwrap_or(i64::MAX);
        let span = tracing::info_span!("invocation", request_id = %event.context.request_id, job_id = %job_id);
        async {
            let step = driver.run(&job_id, deadline_ms, MARGIN_MS).await;
            xcr::metrics::emit_migrate("migrate", 0, step.as_ref().err().map(xcr::Error::kind));
            let step = step?;
            // More to list: continue in a fresh invocation with a fresh 15 minutes. Not when
            // another driver holds the job (`Held`): that one continues it, and were it dead,
            // the sweep resumes the job once its lease lapses; re-invoking would spin.
            if step == Step::Progress {
                invoker.invoke_async(&me, &json!({"job_id": job_id})).await?;
            }
            Ok::<Value, Error>(json!({"job_id": job_id, "step": format!("{step:?}")}))
        }
        .instrument(span)
        .await
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_on_its_own_event_and_on_a_schedule_only() {
        assert!(is_sweep(&json!({"sweep": true})));
        assert!(is_sweep(&json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}})));
        assert!(!is_sweep(&json!({"sweep": "yes"})));
        assert!(!is_sweep(&json!({"job_id": "job-1"})));
        assert!(!is_sweep(&json!({"source": "aws.s3", "detail-type": "Object Created"})));
    }
}
