//! Structured logs: one JSON object per line on stderr, readable by CloudWatch Logs Insights
//! and by a person. Spans carry the ids (object, request, job) so every line of a task has them.

use tracing_subscriber::EnvFilter;

/// Crates whose detailed logs carry secrets, capped at `info` whatever `XCR_LOG` says: at
/// debug and trace the AWS SDK prints request and response bodies (ledger items hold
/// resumable-session URIs, which are bearer credentials for the upload) and SigV4's canonical
/// request (with the session token); the HTTP and TLS stacks print headers and frames
/// (Authorization); Google's auth prints token exchanges.
pub const CAPPED: [&str; 14] = [
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http",
    "aws_smithy_http_client",
    "aws_sigv4",
    "aws_config",
    "aws_credential_types",
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "rustls",
    "google_cloud_auth",
    "google_cloud_gax",
];

/// The default: xcr at info, the SDK's chatter at warn.
const DEFAULT: &str = "info,aws_config=warn,aws_smithy_runtime=warn,hyper=warn";

/// The filter for an `XCR_LOG` value (`None`: [`DEFAULT`]): its directives, except that a
/// [`CAPPED`] crate is never more verbose than `info` (an explicit `warn` or `off` for it is
/// kept), so `XCR_LOG=trace` raises xcr's own level only. xcr itself never logs a session URI
/// or a credential at any level (tests/logs.rs reads every line at trace to check).
pub fn filter(spec: Option<&str>) -> EnvFilter {
    let spec = spec.map(str::trim).filter(|s| !s.is_empty()).unwrap_or(DEFAULT);
    let mut directives: Vec<String> = Vec::new();
    let mut quiet: Vec<&str> = Vec::new();
    for d in spec.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let (target, level) = d.split_once('=').unwrap_or(("", d));
        let target = target.split(['[', '{']).next().unwrap_or(target);
        if let Some(t) = CAPPED.iter().find(|t| **t == target) {
            if matches!(level.to_ascii_lowercase().as_str(), "error" | "warn" | "off") {
                quiet.push(t);
                directives.push(d.to_string());
            }
            continue;
        }
        directives.push(d.to_string());
    }
    directives.extend(CAPPED.iter().filter(|t| !quiet.contains(t)).map(|t| format!("{t}=info")));
    let text = directives.join(",");
    EnvFilter::try_new(&text).unwrap_or_else(|_| filter(Some(DEFAULT)))
}

/// Installs the JSON subscriber. The filter comes from `XCR_LOG` (e.g. `debug`,
/// `xcr=debug,aws=warn`), default `info`; see [`filter`] for what it cannot raise.
/// Safe to call twice: the second call is ignored.
pub fn init() {
    let spec = std::env::var("XCR_LOG").ok();
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_env_filter(filter(spec.as_deref()))
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    #[test]
    fn trace_raises_xcr_only_and_keeps_quiet_crates_quiet() {
        let shown = |spec: Option<&str>| super::filter(spec).to_string();
        let trace = shown(Some("trace"));
        assert!(trace.contains("aws_smithy_runtime=info") && trace.contains("aws_sigv4=info"), "{trace}");
        let explicit = shown(Some("xcr=trace,aws_smithy_runtime=trace,hyper=off"));
        assert!(!explicit.contains("aws_smithy_runtime=trace") && explicit.contains("hyper=off"), "{explicit}");
        let default = shown(None);
        assert!(
            default.contains("aws_smithy_runtime=warn") && !default.contains("aws_smithy_runtime=info"),
            "{default}"
        );
    }
}
