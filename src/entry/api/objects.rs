//! `GET /v1/objects/{bucket}/{key}`: what the ledger knows about one object at each destination
//! its routing rules give ([`crate::domain::status`]).

use super::SharedApi;
use super::error::ApiError;
use super::extract::ApiPath;
use crate::domain::status::ObjectStatus;
use axum::Json;
use axum::extract::State;

/// What xcr recorded for one object: per destination, the outcome, GCS generation, size,
/// CRC32C, source version and ETag, when, the lag, or the last failure.
#[utoipa::path(
    get, path = "/v1/objects/{bucket}/{key}", tag = "replicate",
    params(
        ("bucket" = String, Path, description = "The S3 bucket; it must be allowed by XCR_ALLOWED_SOURCE_BUCKETS"),
        ("key" = String, Path, description = "The object key, the rest of the path (slashes included; percent-encode `?`, `#` and `%`)"),
    ),
    responses(
        (status = 200, description = "What the ledger records for each routed destination", body = ObjectStatus),
        (status = 400, description = "Invalid path", body = super::error::ErrorBody),
        (status = 403, description = "Bucket not in XCR_ALLOWED_SOURCE_BUCKETS, or no routing rule matches the object", body = super::error::ErrorBody),
        (status = 404, description = "Nothing is recorded for the object at any destination", body = super::error::ErrorBody),
        (status = 500, description = "Internal error", body = super::error::ErrorBody),
        (status = 503, description = "DynamoDB unavailable", body = super::error::ErrorBody),
    )
)]
pub async fn object_status(
    State(api): State<SharedApi>,
    ApiPath((bucket, key)): ApiPath<(String, String)>,
) -> Result<Json<ObjectStatus>, ApiError> {
    if key.is_empty() || key.len() > 1024 {
        return Err(ApiError::invalid("the key must be 1 to 1024 bytes"));
    }
    api.allow(&bucket)?;
    let destinations = api.replicator.router().route(&bucket, &key);
    if destinations.is_empty() {
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "no_route",
            format!("no routing rule matches s3://{bucket}/{key}"),
        ));
    }
    let ledger = api.replicator.ledger();
    match crate::domain::status::object_status(ledger, &bucket, &key, &destinations, crate::domain::replicate::now_ms())
        .await
    {
        Ok(Some(st)) => Ok(Json(st)),
        Ok(None) => Err(ApiError::not_found(format!("nothing is recorded for s3://{bucket}/{key}"))),
        Err(e) => Err(ApiError::from(e)),
    }
}
