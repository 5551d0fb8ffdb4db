//! Structured logs: one JSON object per line on stderr, readable by CloudWatch Logs Insights
//! and by a person. Spans carry the ids (object, request, job) so every line of a task has them.

use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber. The filter comes from `XCR_LOG` (e.g. `debug`,
/// `xcr=debug,aws=warn`), default `info` for xcr and `warn` for the SDKs' chatter.
/// Safe to call twice: the second call is ignored.
pub fn init() {
    let filter = EnvFilter::try_from_env("XCR_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,aws_config=warn,aws_smithy_runtime=warn,hyper=warn"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
