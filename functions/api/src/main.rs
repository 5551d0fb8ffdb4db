//! The `api` Lambda: API Gateway (HTTP API payload v2, or REST API v1) in front of the very
//! Router `xcr serve` runs locally (`xcr::entry::api`).
//!
//! Two things are added here, both about the event rather than the API:
//! * API Gateway's own request id is passed to the Router as `x-request-id`, so an error body,
//!   the response header, the function's log lines and API Gateway's access log all name the
//!   same request;
//! * a REST API (v1) stage name, which lambda_http puts in front of the path (`/prod/v1/jobs`),
//!   is taken off again: the Router's paths are the same under every stage.

use lambda_http::{Error, RequestExt};
use std::sync::Arc;
use xcr::config::Config;
use xcr::entry::api::{Api, REQUEST_ID_HEADER};

#[tokio::main]
async fn main() -> Result<(), Error> {
    xcr::telemetry::init();
    let cfg = Config::from_env(Api::NEEDS).inspect_err(|e| tracing::error!(error = %e, "configuration"))?;
    let settings = Config::api_settings_from_env().inspect_err(|e| tracing::error!(error = %e, "configuration"))?;
    let sdk = xcr::adapters::aws::sdk_config().await;
    let router = xcr::entry::api::router(Arc::new(Api::new(&sdk, &cfg, settings)?));
    let app = tower::ServiceBuilder::new().map_request(normalize).service(router);
    lambda_http::run(app).await
}

/// Sets `x-request-id` from API Gateway's request id (or, failing that, Lambda's) and removes a
/// stage prefix from the path.
fn normalize(mut req: lambda_http::Request) -> lambda_http::Request {
    use lambda_http::request::RequestContext;
    let (id, stage) = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(c)) => (c.request_id.clone(), c.stage.clone()),
        Some(RequestContext::ApiGatewayV1(c)) => (c.request_id.clone(), c.stage.clone()),
        _ => (None, None),
    };
    let id = id.or_else(|| req.lambda_context_ref().map(|c| c.request_id.clone()));
    if let Some(id) = id
        && let Ok(v) = http::HeaderValue::from_str(&id)
    {
        req.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    if let Some(uri) = stage.filter(|s| s != "$default").and_then(|s| without_stage(req.uri(), &s)) {
        *req.uri_mut() = uri;
    }
    req
}

/// `/STAGE/rest?query` -> `/rest?query`; None when the path does not start with the stage.
fn without_stage(uri: &http::Uri, stage: &str) -> Option<http::Uri> {
    let rest = uri.path().strip_prefix('/')?.strip_prefix(stage)?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    let path = if rest.is_empty() { "/" } else { rest };
    let pq = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = pq.parse().ok();
    http::Uri::from_parts(parts).ok()
}

#[cfg(test)]
mod tests {
    use super::without_stage;

    #[test]
    fn stage_prefixes_come_off() {
        let uri = |s: &str| s.parse::<http::Uri>().expect("uri");
        let cut = |u: &str, stage: &str| without_stage(&uri(u), stage).map(|u| u.to_string());
        assert_eq!(cut("https://h/prod/v1/jobs?limit=2", "prod").as_deref(), Some("https://h/v1/jobs?limit=2"));
        assert_eq!(cut("/prod", "prod").as_deref(), Some("/"));
        assert_eq!(cut("/production/v1", "prod"), None);
        assert_eq!(cut("/v1/health", "prod"), None);
    }
}
