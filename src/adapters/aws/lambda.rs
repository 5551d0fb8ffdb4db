//! Asynchronous Lambda invocation: how a migration job is started and continued in the cloud.

use super::classify;
use crate::domain::error::Result;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;

#[derive(Debug, Clone)]
/// Starts a Lambda function asynchronously (`Event` invocation): how a job is started by the
/// API and continued by the migrate function itself before its deadline.
pub struct Invoker {
    client: aws_sdk_lambda::Client,
}

impl Invoker {
    /// An invoker with the shared SDK configuration (endpoint override, region, timeouts).
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        Self { client: aws_sdk_lambda::Client::new(sdk) }
    }

    /// Queues an invocation of `function` (name or ARN) with `payload` and returns at once.
    pub async fn invoke_async(&self, function: &str, payload: &serde_json::Value) -> Result<()> {
        self.client
            .invoke()
            .function_name(function)
            .invocation_type(InvocationType::Event)
            .payload(Blob::new(payload.to_string()))
            .send()
            .await
            .map_err(|e| classify(e, &format!("invoke {function}")))?;
        Ok(())
    }
}
