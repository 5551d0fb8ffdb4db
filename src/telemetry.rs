//! Structured logs: one JSON object per line on stderr, readable by CloudWatch Logs Insights
//! and by a person. Spans carry the ids (object, request, job) so every line of a task has them.
//!
//! The functions always log JSON ([`init`]). The CLI on a terminal speaks to a person instead
//! ([`init_human`]): warnings, errors and the notes meant for people ([`NOTE`]), one short line
//! each, so that a command's own output is not drowned in the replicator's bookkeeping.

use std::fmt::Write as _;
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer as _, filter::FilterExt as _};

/// The target of info events written for a person at a terminal (what the pump waits on, what
/// to run next): shown by the CLI's human output, which otherwise shows warnings and errors
/// only. In the JSON log they are ordinary info lines.
pub const NOTE: &str = "xcr::note";

/// The target of the per-task outcome lines (`task done`, `task failed`, `task refused`): a
/// command that copies one object prints that outcome itself, so its human output hides them.
pub const TASK: &str = "xcr::task";

/// The human output's default: warnings, errors and notes. The [`CAPPED`] crates are named at
/// `warn` too: [`filter`] would otherwise raise them to its cap, `info`.
fn human_default() -> String {
    let capped: Vec<String> = CAPPED.iter().map(|t| format!("{t}=warn")).collect();
    format!("warn,{NOTE}=info,{}", capped.join(","))
}

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

/// Installs the human subscriber of the CLI on a terminal: one short line per event on stderr,
/// `xcr: warning: MESSAGE (field=value, ...)`, without timestamps, targets or debug dumps. The
/// filter is `XCR_LOG` as for JSON (capped the same way), by default warnings, errors and
/// [`NOTE`]s. `hide` drops events the command reports itself (its final error), so that a
/// person reads each error once.
pub fn init_human(hide: impl Fn(&Metadata<'_>) -> bool + Send + Sync + 'static) {
    let spec = crate::config::log_filter();
    let filter = filter(Some(spec.unwrap_or_else(human_default).as_str()));
    let hide = tracing_subscriber::filter::filter_fn(move |m| !hide(m));
    let layer =
        tracing_subscriber::fmt::layer().event_format(Human).with_writer(std::io::stderr).with_filter(filter.and(hide));
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

/// The human line format (see [`init_human`]).
struct Human;

impl<S, N> FormatEvent<S, N> for Human
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut w: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = match *event.metadata().level() {
            tracing::Level::ERROR => "error: ",
            tracing::Level::WARN => "warning: ",
            _ => "",
        };
        write!(w, "xcr: {level}{}", fields.message)?;
        // The span's fields name what the line is about (the object, the job).
        let mut shown: Vec<String> = Vec::new();
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(f) = span.extensions().get::<FormattedFields<N>>()
                    && !f.is_empty()
                {
                    shown.push(f.to_string());
                }
            }
        }
        shown.extend(fields.rest.iter().map(|(k, v)| format!("{k}={v}")));
        if !shown.is_empty() {
            write!(w, " ({})", shown.join(", "))?;
        }
        writeln!(w)
    }
}

/// An event's message and its other fields, as text; `error` fields without debug dumps.
#[derive(Default)]
struct Fields {
    message: String,
    rest: Vec<(&'static str, String)>,
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.keep(field.name(), value.to_string());
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        self.keep(field.name(), text);
    }
}

impl Fields {
    fn keep(&mut self, name: &'static str, value: String) {
        match name {
            "message" => self.message = value,
            "error" => self.rest.push((name, crate::domain::error::without_dumps(&value))),
            _ => self.rest.push((name, value)),
        }
    }
}

/// Installs the JSON subscriber. The filter comes from `XCR_LOG` (e.g. `debug`,
/// `xcr=debug,aws=warn`), default `info`; see [`filter`] for what it cannot raise.
/// Safe to call twice: the second call is ignored.
pub fn init() {
    let spec = crate::config::log_filter();
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
    fn the_human_default_shows_notes_warnings_and_errors_only() {
        let f = super::filter(Some(&super::human_default())).to_string();
        let directives: Vec<&str> = f.split(',').collect();
        assert!(directives.contains(&"warn") && directives.contains(&"xcr::note=info"), "{f}");
        assert!(directives.contains(&"aws_smithy_runtime=warn") && !f.contains("aws_smithy_runtime=info"), "{f}");
    }

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
