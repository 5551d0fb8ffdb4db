//! Metrics as CloudWatch Embedded Metric Format (EMF) lines: JSON log lines that CloudWatch Logs
//! turns into metrics, with no `PutMetricData` call, no extra IAM permission and no agent.
//!
//! Why a small writer of our own instead of a crate: the EMF crates on crates.io
//! (`metrics_cloudwatch_embedded` and friends) are backends for the global `metrics` facade,
//! flushed per Lambda invocation through their own `lambda_runtime` wrapper. xcr measures per
//! batch, and `xcr pump` handles two batches at once in one process (tests run several stacks
//! in one process too): a process-global recorder would mix their counts and samples. The format
//! itself is one JSON object (<https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>),
//! which [`Metrics::lines`] builds in a few lines of `serde_json`.
//!
//! One [`Metrics`] per invocation (or SQS batch, or API request), written at its end by
//! [`Sink::emit`]. Every line has the `Function` dimension (the Lambda function's name, or the
//! role `replicate`/`api`/`migrate` outside Lambda) and carries every total of the invocation;
//! further lines, only when there is something to say, break some totals down by
//! `DestinationBucket` and `ErrorKind`. An EMF line has one value per dimension name, which is
//! why a breakdown needs a line per value. Dimensions stay low-cardinality on purpose: never
//! a key, an object or a request id.
//!
//! Metric names ([`NAMESPACE`] `xcr`), all per invocation:
//! * `Tasks`: task-destination pairs decided; `ObjectsReplicated`, `BytesReplicated`,
//!   `ObjectsDeleted`; the other outcomes `Duplicates` (already replicated), `Stale`, `Busy`,
//!   `Skipped`, `NotFound`, `Continued`;
//! * `Failures`: task-destination pairs that ended in an error (any kind but not-found), also by
//!   `ErrorKind`, and those refused by `XCR_ALLOWED_DESTINATIONS` (kind `refused`, also counted
//!   as `Refused`: final and acknowledged, so the failure alarm is how anyone hears of them); `FailedRecords`: SQS records reported in `batchItemFailures` (the per-record
//!   failure a successful invocation hides from Lambda's `Errors`); `Records`, `HandedOn`
//!   (continuations sent on), `Requeued` (busy records put back);
//! * `ReplicationLatency` (Seconds): from the S3 event's `eventTime`, or for a command the time
//!   SQS received it (`SentTimestamp`), to the verified copy or delete; one sample per object.
//!   Seconds, so that the template's alarm compares it with the objective parameter as given;
//! * `CopyDuration` (Milliseconds): claim to verified copy, one sample per object;
//! * the migrate function's `Invocations`, `JobTasksFailed` (job tasks the sweep found dead in
//!   the DLQ) and `Failures` ([`emit_migrate`]); the api function's own line per copy request
//!   (the same names as the replicate function's).
//!
//! Where lines go ([`Sink::from_env`], `XCR_METRICS`): `stdout` (the default in Lambda, which
//! ships stdout to CloudWatch Logs beside the JSON logs on stderr), `stderr` (the default
//! elsewhere: `xcr pump` and `xcr serve` keep stdout for their human or `--json` output, and the
//! lines sit beside the logs), `off`, or a file path (appended to, one line per write).

use crate::domain::error::ErrorKind;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The CloudWatch namespace of every xcr metric.
pub const NAMESPACE: &str = "xcr";

/// EMF allows at most 100 values per metric per line.
const MAX_VALUES: usize = 100;

/// CloudWatch units used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A number of things (objects, tasks, failures).
    Count,
    /// Bytes.
    Bytes,
    /// Seconds (replication lag).
    Seconds,
    /// Milliseconds (durations).
    Milliseconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Self::Count => "Count",
            Self::Bytes => "Bytes",
            Self::Seconds => "Seconds",
            Self::Milliseconds => "Milliseconds",
        }
    }
}

fn unit_of(name: &str) -> Unit {
    match name {
        "BytesReplicated" => Unit::Bytes,
        "ReplicationLatency" => Unit::Seconds,
        "CopyDuration" => Unit::Milliseconds,
        _ => Unit::Count,
    }
}

/// What one destination bucket saw.
#[derive(Debug, Clone, Default)]
struct PerDestination {
    objects: u64,
    bytes: u64,
    latency_s: Vec<f64>,
}

/// One invocation's measurements.
#[derive(Debug, Clone)]
pub struct Metrics {
    function: String,
    counts: BTreeMap<&'static str, u64>,
    latency_s: Vec<f64>,
    copy_ms: Vec<f64>,
    per_destination: BTreeMap<String, PerDestination>,
    failures_by_kind: BTreeMap<String, u64>,
}

/// The `Function` dimension: the Lambda function's own name when running in Lambda (so that
/// two stacks in one account stay apart and the template's alarms can name it), else `role`.
pub fn function_name(role: &str) -> String {
    crate::config::lambda_function_name().unwrap_or_else(|| role.to_string())
}

impl Metrics {
    /// Measurements of `function` ([`function_name`]). Every counter of `always` is written
    /// even when zero, so that the alarms and dashboard see a 0 instead of missing data.
    pub fn new(function: impl Into<String>, always: &[&'static str]) -> Self {
        Self {
            function: function.into(),
            counts: always.iter().map(|n| (*n, 0)).collect(),
            latency_s: Vec::new(),
            copy_ms: Vec::new(),
            per_destination: BTreeMap::new(),
            failures_by_kind: BTreeMap::new(),
        }
    }

    /// The counters a replicating invocation always writes.
    pub const REPLICATE: &'static [&'static str] = &["Tasks", "ObjectsReplicated", "BytesReplicated", "Failures"];

    /// The function name the lines carry as a dimension.
    pub fn function(&self) -> &str {
        &self.function
    }

    /// Adds `n` to the counter `name`.
    pub fn add(&mut self, name: &'static str, n: u64) {
        *self.counts.entry(name).or_default() += n;
    }

    /// Every counter, by its EMF name.
    pub fn counts(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.counts.iter().map(|(k, v)| (*k, *v))
    }

    /// The counter `name` so far; 0 when never added to.
    pub fn count(&self, name: &str) -> u64 {
        self.counts.get(name).copied().unwrap_or(0)
    }

    /// One task-destination pair's result. `since_ms`: when the change became known to xcr (the
    /// event's time, else the command's enqueue time); `now_ms`: now.
    pub fn record(
        &mut self,
        result: &crate::Result<crate::domain::replicate::Replication>,
        since_ms: Option<i64>,
        now_ms: i64,
    ) {
        use crate::domain::replicate::Outcome;
        self.add("Tasks", 1);
        let rep = match result {
            Ok(rep) => rep,
            Err(e) if e.kind() == ErrorKind::NotFound => return self.add("NotFound", 1),
            Err(e) => return self.failure(e.kind().as_str()),
        };
        let name = match rep.outcome {
            // A destination outside XCR_ALLOWED_DESTINATIONS: acknowledged, never retried, so it
            // must at least raise the failure alarm (a misconfigured route or a forged command).
            Outcome::Refused => {
                self.add("Refused", 1);
                return self.failure("refused");
            }
            Outcome::Replicated => "ObjectsReplicated",
            Outcome::Deleted => "ObjectsDeleted",
            Outcome::AlreadyReplicated => "Duplicates",
            Outcome::Stale => "Stale",
            Outcome::Busy => "Busy",
            Outcome::Skipped => "Skipped",
            Outcome::Continued => "Continued",
        };
        self.add(name, 1);
        if !matches!(rep.outcome, Outcome::Replicated | Outcome::Deleted) {
            return;
        }
        let dest = self.per_destination.entry(rep.destination.bucket.clone()).or_default();
        let latency = since_ms.map(|t| (now_ms - t).max(0) as f64 / 1000.0);
        if rep.outcome == Outcome::Replicated {
            let bytes = rep.bytes.unwrap_or(0);
            dest.objects += 1;
            dest.bytes += bytes;
            *self.counts.entry("BytesReplicated").or_default() += bytes;
            self.copy_ms.push(rep.duration_ms as f64);
        }
        if let Some(l) = latency {
            dest.latency_s.push(l);
            self.latency_s.push(l);
        }
    }

    /// A failure of `kind` (an [`ErrorKind`] name, or `unreadable` for a message xcr could not
    /// decode).
    pub fn failure(&mut self, kind: &str) {
        self.add("Failures", 1);
        *self.failures_by_kind.entry(kind.to_string()).or_default() += 1;
    }

    /// The EMF lines, stamped `timestamp_ms`. Samples beyond 100 per metric go on extra lines.
    pub fn lines(&self, timestamp_ms: i64) -> Vec<Value> {
        let mut out = Vec::new();
        let mut main = Line::new(&self.function, timestamp_ms, &[]);
        for (name, n) in &self.counts {
            main.value(name, json!(n));
        }
        let mut rest = Vec::new();
        rest.extend(main.samples("ReplicationLatency", &self.latency_s));
        rest.extend(main.samples("CopyDuration", &self.copy_ms));
        out.push(main.finish());
        for (bucket, d) in &self.per_destination {
            let mut line = Line::new(&self.function, timestamp_ms, &[("DestinationBucket", bucket)]);
            line.value("ObjectsReplicated", json!(d.objects));
            line.value("BytesReplicated", json!(d.bytes));
            let extra = line.samples("ReplicationLatency", &d.latency_s);
            out.push(line.finish());
            for (_, chunk) in extra {
                let mut more = Line::new(&self.function, timestamp_ms, &[("DestinationBucket", bucket)]);
                more.value("ReplicationLatency", chunk);
                out.push(more.finish());
            }
        }
        for (kind, n) in &self.failures_by_kind {
            let mut line = Line::new(&self.function, timestamp_ms, &[("ErrorKind", kind)]);
            line.value("Failures", json!(n));
            out.push(line.finish());
        }
        for (name, chunk) in rest {
            let mut more = Line::new(&self.function, timestamp_ms, &[]);
            more.value(name, chunk);
            out.push(more.finish());
        }
        out
    }
}

/// One EMF object being built.
struct Line {
    root: Map<String, Value>,
    dimensions: Vec<String>,
    metrics: Vec<Value>,
    timestamp_ms: i64,
}

impl Line {
    fn new(function: &str, timestamp_ms: i64, dims: &[(&str, &str)]) -> Self {
        let mut root = Map::new();
        root.insert("Function".into(), json!(function));
        let mut dimensions = vec!["Function".to_string()];
        for (k, v) in dims {
            root.insert((*k).into(), json!(v));
            dimensions.push((*k).to_string());
        }
        Self { root, dimensions, metrics: Vec::new(), timestamp_ms }
    }

    fn value(&mut self, name: &str, v: Value) {
        self.metrics.push(json!({"Name": name, "Unit": unit_of(name).as_str()}));
        self.root.insert(name.to_string(), v);
    }

    /// Puts the first 100 samples on this line; returns the rest, 100 to a chunk, for extra
    /// lines. Nothing is written for no samples (an empty array is not a value).
    fn samples(&mut self, name: &'static str, values: &[f64]) -> Vec<(&'static str, Value)> {
        let mut chunks = values.chunks(MAX_VALUES);
        if let Some(first) = chunks.next() {
            self.value(name, json!(first));
        }
        chunks.map(|c| (name, json!(c))).collect()
    }

    fn finish(mut self) -> Value {
        self.root.insert(
            "_aws".into(),
            json!({
                "Timestamp": self.timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [self.dimensions],
                    "Metrics": self.metrics,
                }],
            }),
        );
        Value::Object(self.root)
    }
}

/// Writes one line set for `results` (a copy request of the api function: latency from the
/// request's arrival, `since_ms`) to [`Sink::from_env`].
pub fn emit_results(
    role: &str,
    results: &[crate::Result<crate::domain::replicate::Replication>],
    since_ms: Option<i64>,
) {
    let mut m = Metrics::new(function_name(role), Metrics::REPLICATE);
    let now = crate::domain::replicate::now_ms();
    results.iter().for_each(|r| m.record(r, since_ms, now));
    Sink::from_env().emit(&m);
}

/// Writes the migrate function's line for one invocation to [`Sink::from_env`]: `Invocations`
/// 1; `JobTasksFailed`, the job tasks a sweep found dead in the DLQ and counted failed (each
/// a per-record failure the replicate function's own metrics may never have shown, when its
/// last delivery ran out of time); and `Failures` (by `ErrorKind`) when the step or sweep
/// failed. `role` names it outside Lambda.
pub fn emit_migrate(role: &str, dead_letters_counted: u64, failed: Option<ErrorKind>) {
    let mut m = Metrics::new(function_name(role), &["Invocations", "JobTasksFailed", "Failures"]);
    m.add("Invocations", 1);
    m.add("JobTasksFailed", dead_letters_counted);
    if let Some(kind) = failed {
        m.failure(kind.as_str());
    }
    Sink::from_env().emit(&m);
}

/// Set by the CLI when it speaks to a person ([`quiet_by_default`]).
static QUIET_BY_DEFAULT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Without `XCR_METRICS`, write no metric lines: the CLI's human output on a terminal, where
/// EMF lines on stderr would bury what a person reads. An explicit `XCR_METRICS` still wins.
pub fn quiet_by_default() {
    QUIET_BY_DEFAULT.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Where EMF lines are written.
#[derive(Debug, Clone)]
pub enum Sink {
    /// Standard output: what CloudWatch Logs reads in Lambda.
    Stdout,
    /// Standard error: out of the way of the CLI's own output.
    Stderr,
    /// No metrics.
    Off,
    /// Appended to, one line per write.
    File(PathBuf),
    /// Kept in memory (tests).
    Memory(Arc<Mutex<Vec<Value>>>),
}

impl Sink {
    /// `XCR_METRICS`: `stdout`, `stderr`, `off`, or a file path. Unset: stdout in Lambda,
    /// stderr elsewhere (see the module doc), off for the CLI's human output
    /// ([`quiet_by_default`]).
    pub fn from_env() -> Self {
        match crate::config::metrics_target().as_deref() {
            Some("stdout") => Self::Stdout,
            Some("stderr") => Self::Stderr,
            Some("off") => Self::Off,
            Some(path) if !path.is_empty() => Self::File(PathBuf::from(path)),
            _ if crate::config::lambda_function_name().is_some() => Self::Stdout,
            _ if QUIET_BY_DEFAULT.load(std::sync::atomic::Ordering::Relaxed) => Self::Off,
            _ => Self::Stderr,
        }
    }

    /// A sink that keeps the lines, and the lines it keeps.
    pub fn memory() -> (Self, Arc<Mutex<Vec<Value>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        (Self::Memory(lines.clone()), lines)
    }

    /// Writes `metrics`' lines, stamped now. A write that fails is logged, never an error: a
    /// metric must not fail a copy.
    pub fn emit(&self, metrics: &Metrics) {
        let lines = metrics.lines(crate::domain::replicate::now_ms());
        let text = || lines.iter().map(|l| format!("{l}\n")).collect::<String>();
        let written = match self {
            Self::Off => Ok(()),
            // A raw handle: `print!` would panic on a closed pipe (`xcr pump | head`).
            Self::Stdout => std::io::stdout().lock().write_all(text().as_bytes()),
            // `eprint!` like the CLI's other stderr output: a test harness captures it instead
            // of flooding its output with the lines of every in-process handler.
            Self::Stderr => {
                eprint!("{}", text());
                Ok(())
            }
            Self::File(path) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| f.write_all(text().as_bytes())),
            Self::Memory(kept) => {
                kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend(lines.iter().cloned());
                Ok(())
            }
        };
        if let Err(e) = written {
            tracing::warn!(error = %e, "could not write metrics");
        }
    }
}

impl Default for Sink {
    fn default() -> Self {
        Self::from_env()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_follow_the_emf_specification() {
        let mut m = Metrics::new("replicate", Metrics::REPLICATE);
        m.failure("transient");
        m.failure("transient");
        m.failure("integrity");
        m.add("FailedRecords", 2);
        let lines = m.lines(1_700_000_000_000);
        assert_eq!(lines.len(), 3, "{lines:?}");
        for line in &lines {
            let directive = &line["_aws"]["CloudWatchMetrics"][0];
            assert_eq!(line["_aws"]["Timestamp"], 1_700_000_000_000_i64);
            assert_eq!(directive["Namespace"], NAMESPACE);
            for dim in directive["Dimensions"][0].as_array().expect("dimension set") {
                assert!(line[dim.as_str().expect("name")].is_string(), "dimension {dim} is a member: {line}");
            }
            for metric in directive["Metrics"].as_array().expect("metrics") {
                let name = metric["Name"].as_str().expect("name");
                assert!(line[name].is_number() || line[name].is_array(), "{name} has a value: {line}");
            }
        }
        assert_eq!(lines[0]["Failures"], 3);
        assert_eq!(lines[0]["FailedRecords"], 2);
        assert_eq!(lines[0]["ObjectsReplicated"], 0, "always written, as 0");
        let by_kind: Vec<(&str, u64)> = lines[1..]
            .iter()
            .map(|l| (l["ErrorKind"].as_str().unwrap_or_default(), l["Failures"].as_u64().unwrap_or_default()))
            .collect();
        assert_eq!(by_kind, [("integrity", 1), ("transient", 2)]);
    }

    #[test]
    fn more_than_100_samples_spill_onto_extra_lines() {
        let mut m = Metrics::new("replicate", &[]);
        m.latency_s = (0..250).map(f64::from).collect();
        let lines = m.lines(0);
        let counts: Vec<usize> =
            lines.iter().filter_map(|l| l["ReplicationLatency"].as_array()).map(Vec::len).collect();
        assert_eq!(counts, [100, 100, 50]);
    }
}
