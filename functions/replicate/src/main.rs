//! The `replicate` Lambda: S3 notifications (direct or through SQS, SNS, EventBridge) and
//! replicate commands in, verified GCS copies out.
//!
//! Decode, call the shared use case, encode: the logic lives in `xcr::entry::handler`, which `xcr pump`
//! also runs locally. Configuration is read and checked once at cold start.
#![recursion_limit = "256"]

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use tracing::Instrument;
use xcr::config::{Config, Needs};
use xcr::wiring::{self, S3ToGcsHandler};

#[tokio::main]
async fn main() -> Result<(), Error> {
    xcr::telemetry::init();
    let cfg = Config::from_env(Needs::FUNCTION).inspect_err(|e| tracing::error!(error = %e, "configuration"))?;
    let sdk = xcr::adapters::aws::sdk_config().await;
    let mut handler = wiring::handler_with(&sdk, &cfg)?;
    // A job task failing on its last delivery is counted as failed before it goes to the DLQ.
    if let Some(url) = &cfg.queue_url {
        let queue = xcr::adapters::aws::sqs::Queue::new(&sdk, url.clone());
        match queue.max_receive_count().await {
            Ok(max) => handler = handler.with_max_receives(max),
            Err(e) => tracing::warn!(error = %e.chain(), "cannot read the queue's redrive policy"),
        }
    }
    let handler: &'static S3ToGcsHandler = Box::leak(Box::new(handler));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let deadline_ms = i64::try_from(event.context.deadline).unwrap_or(i64::MAX);
        let span = tracing::info_span!("invocation", request_id = %event.context.request_id);
        handler.handle(&event.payload, deadline_ms).instrument(span).await.map_err(Error::from)
    }))
    .await
}
