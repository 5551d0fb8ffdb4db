//! AWS adapters and the one mapping from SDK errors to [`crate::Error`].

mod attrs;
pub mod dynamodb;
pub mod jobs;
pub mod lambda;
pub mod s3;
pub mod sqs;

use crate::error::{Error, ErrorKind, kind_for_status};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

/// Loads the shared SDK configuration: region, credentials, `AWS_ENDPOINT_URL` and retry
/// settings come from the standard AWS variables and profiles. The SDK retries throttling and
/// 5xx with backoff itself (standard mode, `AWS_MAX_ATTEMPTS`).
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await
}

/// Bounds every AWS call made with the returned configuration: connecting, waiting for the
/// response headers, and each attempt as a whole may take at most `attempt` (connecting at most
/// 10 s), and an attempt that runs out is retried like any other transient failure.
///
/// Why: the SDK's defaults bound only connecting. An S3 or DynamoDB endpoint that accepts a
/// request and then never answers (a stalled connection, a dying load balancer, a throttled
/// emulator) would otherwise hold the call, the task and the whole Lambda invocation until the
/// function's own timeout kills it, and the SDK's retries would never run. The fault tests
/// (`tests/faults.rs`, `tests/fault_cases.rs`) stall requests and showed exactly that hang. A
/// response body that stalls after its headers is outside these limits; the SDK's stalled-stream
/// protection (on by default) fails it, and the transfer re-opens the stream where it stopped.
/// Limits already set on `sdk` (in code, or by `AWS_*` configuration) are kept.
pub fn with_timeouts(sdk: &aws_config::SdkConfig, attempt: std::time::Duration) -> aws_config::SdkConfig {
    use aws_smithy_types::timeout::TimeoutConfig;
    let ours = TimeoutConfig::builder()
        .connect_timeout(attempt.min(std::time::Duration::from_secs(10)))
        .read_timeout(attempt)
        .operation_attempt_timeout(attempt);
    let merged = match sdk.timeout_config() {
        Some(set) => set.to_builder().take_unset_from(ours).build(),
        None => ours.build(),
    };
    sdk.to_builder().timeout_config(merged).build()
}

/// Classifies any SDK error. Service codes come first (they are precise), then the HTTP status,
/// then the kind of transport failure.
pub fn classify<E>(err: SdkError<E, HttpResponse>, what: &str) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (kind, detail) = match &err {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let code = se.err().code().unwrap_or("");
            let kind = match code {
                "NoSuchKey" | "NoSuchBucket" | "NoSuchVersion" | "NotFound" | "ResourceNotFoundException" => {
                    ErrorKind::NotFound
                }
                "PreconditionFailed" => ErrorKind::SourceChanged,
                "AccessDenied"
                | "AccessDeniedException"
                | "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "ExpiredToken"
                | "ExpiredTokenException"
                | "AllAccessDisabled" => ErrorKind::AccessDenied,
                "SlowDown"
                | "Throttling"
                | "ThrottlingException"
                | "ProvisionedThroughputExceededException"
                | "RequestLimitExceeded"
                | "InternalError"
                | "ServiceUnavailable"
                | "RequestTimeout" => ErrorKind::Transient,
                _ => kind_for_status(status),
            };
            let msg = se.err().message().unwrap_or("");
            (kind, format!("{} {code} {msg}", status).trim().to_string())
        }
        SdkError::TimeoutError(_) => (ErrorKind::Transient, "timed out".into()),
        SdkError::DispatchFailure(d) => {
            let kind = if d.is_user() { ErrorKind::Invalid } else { ErrorKind::Transient };
            (kind, "could not send the request".into())
        }
        SdkError::ResponseError(_) => (ErrorKind::Transient, "unreadable response".into()),
        SdkError::ConstructionFailure(_) => (ErrorKind::Invalid, "invalid request".into()),
        _ => (ErrorKind::Transient, "unexpected SDK error".into()),
    };
    Error::new(kind, format!("{what}: {detail}")).with_source(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_types::timeout::TimeoutConfig;
    use std::time::Duration;

    #[test]
    fn every_call_gets_attempt_and_read_limits_and_explicit_ones_stay() {
        let bare = aws_config::SdkConfig::builder().build();
        let t = with_timeouts(&bare, Duration::from_secs(7));
        let tc = t.timeout_config().expect("timeouts set");
        assert_eq!(tc.operation_attempt_timeout(), Some(Duration::from_secs(7)));
        assert_eq!(tc.read_timeout(), Some(Duration::from_secs(7)));
        assert_eq!(tc.connect_timeout(), Some(Duration::from_secs(7)));
        assert_eq!(
            with_timeouts(&bare, Duration::from_secs(120)).timeout_config().and_then(|t| t.connect_timeout()),
            Some(Duration::from_secs(10))
        );

        let set = aws_config::SdkConfig::builder()
            .timeout_config(TimeoutConfig::builder().operation_attempt_timeout(Duration::from_secs(3)).build())
            .build();
        let tc = with_timeouts(&set, Duration::from_secs(7)).timeout_config().cloned().expect("timeouts set");
        assert_eq!(tc.operation_attempt_timeout(), Some(Duration::from_secs(3)), "an explicit limit is kept");
        assert_eq!(tc.read_timeout(), Some(Duration::from_secs(7)));
    }
}
