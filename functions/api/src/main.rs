//! The `api` Lambda: API Gateway (HTTP API payload v2, or REST API v1) in front of the very
//! Router `xcr serve` runs locally (`xcr::api`).
//!
//! The only thing added here is the request id: API Gateway's own id is passed to the Router as
//! `x-request-id`, so an error body, the response header, the function's log lines and API
//! Gateway's access log all name the same request.

use lambda_http::{Error, RequestExt};
use std::sync::Arc;
use xcr::api::{Api, REQUEST_ID_HEADER, settings::ApiSettings};
use xcr::config::Config;

#[tokio::main]
async fn main() -> Result<(), Error> {
    xcr::telemetry::init();
    let cfg = Config::from_env(Api::NEEDS).inspect_err(|e| tracing::error!(error = %e, "configuration"))?;
    let settings = ApiSettings::from_env().inspect_err(|e| tracing::error!(error = %e, "configuration"))?;
    let sdk = xcr::aws::sdk_config().await;
    let router = xcr::api::router(Arc::new(Api::new(&sdk, &cfg, settings)?));
    let app = tower::ServiceBuilder::new().map_request(with_request_id).service(router);
    lambda_http::run(app).await
}

/// Copies API Gateway's request id (or, failing that, Lambda's) into `x-request-id`.
fn with_request_id(mut req: lambda_http::Request) -> lambda_http::Request {
    let id = match req.request_context_ref() {
        Some(lambda_http::request::RequestContext::ApiGatewayV2(c)) => c.request_id.clone(),
        Some(lambda_http::request::RequestContext::ApiGatewayV1(c)) => c.request_id.clone(),
        _ => None,
    }
    .or_else(|| req.lambda_context_ref().map(|c| c.request_id.clone()));
    if let Some(id) = id
        && let Ok(v) = http::HeaderValue::from_str(&id)
    {
        req.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    req
}
