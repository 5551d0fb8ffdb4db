//! AWS adapters and the one mapping from SDK errors to [`crate::Error`].

mod attrs;
pub mod job_store;
pub mod lambda;
pub mod ledger;
pub mod s3;
pub mod sqs;

use crate::domain::error::{Error, ErrorKind, kind_for_status};
use crate::retry::RetryPolicy;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use std::time::Duration;

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

/// What a missing table, queue or function means to the person reading the error.
const MISSING_RESOURCE: &str =
    "the DynamoDB table, SQS queue or Lambda function does not exist (wrong name or region?)";

/// The codes with which DynamoDB, SQS and Lambda say that the resource a request names does not
/// exist. SQS answers its JSON protocol with `QueueDoesNotExist` and its query-compatible code
/// `AWS.SimpleQueueService.NonExistentQueue`; the SDK reports either, depending on the endpoint.
fn is_missing_resource(code: &str) -> bool {
    matches!(
        code,
        "ResourceNotFoundException"
            | "QueueDoesNotExist"
            | "AWS.SimpleQueueService.NonExistentQueue"
            | "NonExistentQueue"
    )
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
                // S3's answers about the source object (and its bucket): the source is gone.
                "NoSuchKey" | "NoSuchBucket" | "NoSuchVersion" | "NotFound" => ErrorKind::NotFound,
                // A DynamoDB table, an SQS queue or a Lambda function that does not exist is our
                // own configuration, never the source: `not_found` would make the handler
                // acknowledge every event as "source gone", silently, until someone notices.
                code if is_missing_resource(code) => ErrorKind::Config,
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
                // A plain write met an item inside a running transaction (the job item, while
                // tasks are counted): nothing was written, and the same write succeeds once the
                // transaction ends. The SDK does not retry it by itself.
                | "TransactionConflictException"
                | "TransactionInProgressException"
                | "InternalError"
                | "ServiceUnavailable"
                | "RequestTimeout" => ErrorKind::Transient,
                _ => kind_for_status(status),
            };
            let msg = se.err().message().unwrap_or("");
            let detail = format!("{status} {code} {msg}").trim().to_string();
            if is_missing_resource(code) { (kind, format!("{MISSING_RESOURCE}: {detail}")) } else { (kind, detail) }
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

/// How DynamoDB writes that a running transaction refused are retried: often and soon. Why:
/// the tasks of one migration job all count themselves in the job item with a transaction, so
/// during a migration every write to that item (a driver's page commit, a task's count, the
/// job's end) collides with one now and then, and a collision clears within milliseconds.
/// Sending the task back to the queue instead would cost it a whole visibility timeout, and
/// a job driver would lose its step.
pub(crate) const TRANSACTION_RETRY: RetryPolicy =
    RetryPolicy { max_attempts: 12, base_delay: Duration::from_millis(20), max_delay: Duration::from_millis(1000) };

/// The cancellation reasons of a `TransactWriteItems` that a retry can get past: another
/// transaction held one of its items, or one of its items was throttled.
const RETRYABLE_CANCELLATIONS: [&str; 3] = ["TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"];

/// Whether a cancelled transaction failed only for reasons a retry can get past (see
/// [`RETRYABLE_CANCELLATIONS`]); reasons that say the request itself is wrong (a failed
/// condition, a validation error, a size limit) make it false.
pub(crate) fn is_retryable_cancellation(reasons: &[&str]) -> bool {
    reasons.iter().any(|r| RETRYABLE_CANCELLATIONS.contains(r))
        && reasons.iter().all(|r| *r == "None" || RETRYABLE_CANCELLATIONS.contains(r))
}

/// The codes of a cancelled transaction's per-item reasons, in item order (`None` for an item
/// that was fine); empty for any other error.
pub(crate) fn cancellation_reasons(err: &SdkError<TransactWriteItemsError, HttpResponse>) -> Vec<&str> {
    match err.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(c)) => {
            c.cancellation_reasons().iter().map(|r| r.code().unwrap_or("None")).collect()
        }
        _ => Vec::new(),
    }
}

/// Whether `e` is a DynamoDB write that a running transaction refused (or a transaction
/// cancelled for such a reason): nothing was written, and the SDK's own retry does not cover it
/// (`TransactionConflictException` and `TransactionCanceledException` are 400s). Recognised by
/// the SDK error that [`classify`] keeps as the source, never by the message.
pub fn is_transaction_conflict(e: &Error) -> bool {
    let Some(source) = std::error::Error::source(e) else { return false };
    if let Some(err) = source.downcast_ref::<SdkError<UpdateItemError, HttpResponse>>() {
        return err.as_service_error().and_then(ProvideErrorMetadata::code) == Some("TransactionConflictException");
    }
    if let Some(err) = source.downcast_ref::<SdkError<TransactWriteItemsError, HttpResponse>>() {
        return is_retryable_cancellation(&cancellation_reasons(err));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::CancellationReason;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;
    use aws_smithy_types::timeout::TimeoutConfig;

    /// A service error as the SDK returns it: a 400 with `code` (`status` for the raw answer).
    fn service_error(status: u16, code: &str) -> SdkError<UpdateItemError, HttpResponse> {
        let meta = ErrorMetadata::builder().code(code).message("injected").build();
        let raw = HttpResponse::new(status.try_into().expect("status"), SdkBody::empty());
        SdkError::service_error(UpdateItemError::generic(meta), raw)
    }

    fn cancelled(reasons: &[&str]) -> SdkError<TransactWriteItemsError, HttpResponse> {
        let exception = aws_sdk_dynamodb::types::error::TransactionCanceledException::builder()
            .set_cancellation_reasons(Some(
                reasons.iter().map(|c| CancellationReason::builder().code(*c).build()).collect(),
            ))
            .build();
        let raw = HttpResponse::new(400.try_into().expect("status"), SdkBody::empty());
        SdkError::service_error(TransactWriteItemsError::TransactionCanceledException(exception), raw)
    }

    #[test]
    fn a_missing_table_or_queue_is_configuration_not_a_missing_source() {
        for code in ["ResourceNotFoundException", "QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue"] {
            let e = classify(service_error(400, code), "claim gs://b/k");
            assert_eq!(e.kind(), ErrorKind::Config, "{code}");
            assert!(e.to_string().contains("does not exist (wrong name or region?)"), "{e}");
            assert!(e.to_string().starts_with("claim gs://b/k: "), "{e}");
        }
        for code in ["NoSuchKey", "NoSuchBucket", "NoSuchVersion", "NotFound"] {
            assert_eq!(classify(service_error(404, code), "read").kind(), ErrorKind::NotFound, "{code}");
        }
    }

    #[test]
    fn a_write_refused_by_a_running_transaction_is_transient_and_retried_here() {
        let e = classify(service_error(400, "TransactionConflictException"), "commit job checkpoint");
        assert_eq!(e.kind(), ErrorKind::Transient);
        assert!(is_transaction_conflict(&e));
        let throttled = classify(service_error(400, "ThrottlingException"), "claim");
        assert!(throttled.is_retryable());
        assert!(!is_transaction_conflict(&throttled), "the SDK retries throttling itself");
        assert!(!is_transaction_conflict(&Error::new(ErrorKind::Transient, "TransactionConflictException")));

        let conflict =
            Error::new(ErrorKind::Transient, "count").with_source(cancelled(&["None", "TransactionConflict"]));
        assert!(is_transaction_conflict(&conflict));
        let counted =
            Error::new(ErrorKind::Invalid, "count").with_source(cancelled(&["ConditionalCheckFailed", "None"]));
        assert!(!is_transaction_conflict(&counted));
    }

    #[test]
    fn cancellations_are_retried_only_for_contention() {
        for reasons in [
            &["None", "TransactionConflict"][..],
            &["ThrottlingError", "None"],
            &["ProvisionedThroughputExceeded", "TransactionConflict"],
        ] {
            assert!(is_retryable_cancellation(reasons), "{reasons:?}");
        }
        for reasons in [
            &[][..],
            &["None", "None"],
            &["ConditionalCheckFailed", "TransactionConflict"],
            &["ValidationError", "None"],
            &["ItemCollectionSizeLimitExceeded", "ThrottlingError"],
        ] {
            assert!(!is_retryable_cancellation(reasons), "{reasons:?}");
        }
        assert_eq!(cancellation_reasons(&cancelled(&["None", "TransactionConflict"])), ["None", "TransactionConflict"]);
    }

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
