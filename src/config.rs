//! The one place that reads the environment.
//!
//! [`Config::from_env`] runs once at cold start. It checks every variable and, if anything is
//! wrong, fails with one message that lists every problem, so a deploy is fixed in one pass
//! instead of one redeploy per typo. The API's own variables are read here too
//! ([`Config::api_settings_from_env`]). Nothing else in the crate calls `std::env::var`
//! (except `telemetry` and `metrics`, see docs/architecture.md), and the
//! AWS SDK's own loader, which reads the standard `AWS_*` variables (`AWS_ENDPOINT_URL`,
//! `AWS_REGION`, `AWS_MAX_ATTEMPTS`, credentials) the way every AWS tool does.

use crate::domain::names::validate_gcs_bucket;
use crate::retry::RetryPolicy;
use crate::transfer::TransferConfig;
use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

/// Where Google credentials come from. Only consulted when no emulator is configured.
#[derive(Clone, PartialEq, Eq)]
pub enum GcsCredentials {
    /// `STORAGE_EMULATOR_HOST` is set: requests go unauthenticated to the emulator.
    Emulator,
    /// `XCR_GCP_CREDENTIALS` holds a JSON credential: a service-account key, or an
    /// `external_account` (Workload Identity Federation) config whose credential source is the
    /// Lambda's own AWS role, so no long-lived Google key lives in AWS.
    Json(serde_json::Value),
    /// `GOOGLE_APPLICATION_CREDENTIALS` (or `XCR_GCP_CREDENTIALS` naming a file): Application
    /// Default Credentials, resolved by google-cloud-auth.
    ApplicationDefault,
}

impl fmt::Debug for GcsCredentials {
    /// Never prints key material: only which kind of credential is configured.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Emulator => f.write_str("Emulator"),
            Self::Json(v) => write!(f, "Json(type={})", v.get("type").and_then(|t| t.as_str()).unwrap_or("?")),
            Self::ApplicationDefault => f.write_str("ApplicationDefault"),
        }
    }
}

/// Everything the functions and the CLI need, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Default route: the same key into this GCS bucket.
    pub dest_bucket: Option<String>,
    /// Routing rules as given (JSON or a file path); parsed by the routing layer.
    pub rules: Option<String>,
    /// `XCR_LEDGER_TABLE`: the DynamoDB ledger; unset, a plain `xcr replicate` copies without one.
    pub ledger_table: Option<String>,
    /// `XCR_JOBS_TABLE`: where migration and audit jobs are stored.
    pub jobs_table: Option<String>,
    /// `XCR_QUEUE_URL`: the replicate queue (continuations, job tasks, `202` API copies).
    pub queue_url: Option<String>,
    /// `XCR_DLQ_URL`: the replicate queue's dead-letter queue (redrive, the job sweep).
    pub dlq_url: Option<String>,
    /// `AWS_ENDPOINT_URL`, when an emulator or LocalStack stands in for AWS.
    pub aws_endpoint: Option<String>,
    /// Base URL of the GCS emulator (`STORAGE_EMULATOR_HOST`, scheme added if missing).
    pub gcs_emulator: Option<String>,
    /// How to authenticate to GCS (`XCR_GCP_CREDENTIALS`, `GOOGLE_APPLICATION_CREDENTIALS`, or
    /// none for an emulator).
    pub gcs_credentials: GcsCredentials,
    /// Chunk size, resumable threshold and request timeout for the streaming engine.
    pub transfer: TransferConfig,
    /// Retry policy for GCS calls and S3 stream re-opens.
    pub retry: RetryPolicy,
    /// When a failed SQS record comes back (`XCR_RETRY_BASE_SECS`, `XCR_RETRY_MAX_SECS`).
    pub retry_clock: crate::domain::redelivery::RetryClock,
    /// Apply `ObjectRemoved` events to GCS (`XCR_REPLICATE_DELETES`, default false).
    pub replicate_deletes: bool,
    /// Records of one SQS batch processed at once (`XCR_BATCH_CONCURRENCY`, default 4).
    pub batch_concurrency: usize,
    /// The migrate function to invoke when a job is created (`XCR_MIGRATE_FUNCTION`); unset
    /// locally, where `xcr pump` drives jobs.
    pub migrate_function: Option<String>,
    /// `XCR_ALLOWED_DESTINATIONS` as given; unset: where the routes write
    /// ([`crate::domain::routing::DestAllowlist`]).
    pub allowed_destinations: Option<String>,
}

/// Names of every variable read here, for docs and error messages.
pub mod vars {
    /// The default destination bucket.
    pub const DEST_BUCKET: &str = "XCR_DEST_BUCKET";
    /// Routing rules (JSON, or a path to a JSON file).
    pub const RULES: &str = "XCR_RULES";
    /// The DynamoDB ledger table.
    pub const LEDGER_TABLE: &str = "XCR_LEDGER_TABLE";
    /// The DynamoDB jobs table.
    pub const JOBS_TABLE: &str = "XCR_JOBS_TABLE";
    /// The replicate queue URL.
    pub const QUEUE_URL: &str = "XCR_QUEUE_URL";
    /// The dead-letter queue URL.
    pub const DLQ_URL: &str = "XCR_DLQ_URL";
    /// Bytes per resumable chunk (a multiple of 256 KiB).
    pub const CHUNK_SIZE: &str = "XCR_CHUNK_SIZE";
    /// Objects larger than this use a resumable session.
    pub const RESUMABLE_THRESHOLD: &str = "XCR_RESUMABLE_THRESHOLD";
    /// Attempts for GCS calls and S3 stream re-opens.
    pub const MAX_ATTEMPTS: &str = "XCR_MAX_ATTEMPTS";
    /// Seconds one GCS request may take.
    pub const REQUEST_TIMEOUT: &str = "XCR_REQUEST_TIMEOUT_SECS";
    /// Google credentials: a service account key or external-account JSON, inline or as a path.
    pub const GCP_CREDENTIALS: &str = "XCR_GCP_CREDENTIALS";
    /// Mirror S3 removals as GCS deletes (`true`/`false`).
    pub const REPLICATE_DELETES: &str = "XCR_REPLICATE_DELETES";
    /// SQS records of one batch (and keys of one API batch) processed at once.
    pub const BATCH_CONCURRENCY: &str = "XCR_BATCH_CONCURRENCY";
    /// First retry delay for GCS calls and stream re-opens, in seconds.
    pub const RETRY_BASE_SECS: &str = "XCR_RETRY_BASE_SECS";
    /// Longest retry delay, in seconds.
    pub const RETRY_MAX_SECS: &str = "XCR_RETRY_MAX_SECS";
    /// The migrate function, which `xcr jobs create` and the API invoke to start a job.
    pub const MIGRATE_FUNCTION: &str = "XCR_MIGRATE_FUNCTION";
    /// Read whole by the API's settings; here only to declare the source buckets to the
    /// routing collision check.
    pub const ALLOWED_SOURCE_BUCKETS: &str = crate::entry::api::settings::ALLOWED_SOURCE_BUCKETS;
    /// Where explicit destinations may write ([`crate::domain::routing::DestAllowlist`]).
    pub const ALLOWED_DESTINATIONS: &str = crate::domain::routing::ALLOWED_DESTINATIONS;
    /// The standard Google variable, read when `XCR_GCP_CREDENTIALS` is unset.
    pub const GOOGLE_APPLICATION_CREDENTIALS: &str = "GOOGLE_APPLICATION_CREDENTIALS";
    /// The GCS emulator's host; set, no Google credential is needed.
    pub const STORAGE_EMULATOR_HOST: &str = "STORAGE_EMULATOR_HOST";
    /// The AWS SDK's endpoint override (an emulator or LocalStack).
    pub const AWS_ENDPOINT_URL: &str = "AWS_ENDPOINT_URL";
}

/// Every problem found, one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

impl ConfigError {
    /// Whether a required setting is missing (not only set wrong): then a shell that never
    /// loaded the settings is the likely cause, and the CLI says where they are.
    pub fn lacks_settings(&self) -> bool {
        self.0.iter().any(|p| {
            p.ends_with(" is required") || p.starts_with("no destination:") || p.starts_with("no GCS credentials:")
        })
    }
}

impl Config {
    /// Reads the process environment; `needs` says which optional settings this entry point
    /// cannot do without, so that their absence is reported with every other problem.
    pub fn from_env(needs: Needs) -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars().collect(), needs)
    }

    /// The HTTP API's own settings (source-bucket allowlist, synchronous size limit), read
    /// here so that this module stays the one reader of the environment; the API is handed
    /// the result ([`crate::entry::api::Api::new`]).
    pub fn api_settings_from_env() -> Result<crate::entry::api::settings::ApiSettings, String> {
        crate::entry::api::settings::ApiSettings::from_vars(&std::env::vars().collect())
    }

    /// Reads a given set of variables: the same validation, testable without touching the
    /// process environment.
    pub fn from_vars(env: HashMap<String, String>, needs: Needs) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let get = |k: &str| env.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());

        let dest_bucket = get(vars::DEST_BUCKET);
        if let Some(b) = &dest_bucket
            && let Err(why) = validate_gcs_bucket(b)
        {
            problems.push(format!("{}={b:?}: {why}", vars::DEST_BUCKET));
        }
        let rules = get(vars::RULES);
        let allowed_destinations = get(vars::ALLOWED_DESTINATIONS);
        check_routes(
            dest_bucket.as_deref(),
            rules.as_deref(),
            get(vars::ALLOWED_SOURCE_BUCKETS),
            allowed_destinations.as_deref(),
            &mut problems,
        );
        if needs.destination && dest_bucket.is_none() && rules.is_none() {
            problems.push(format!(
                "no destination: set {} (copy every key into that GCS bucket) or {} (routing rules)",
                vars::DEST_BUCKET,
                vars::RULES
            ));
        }

        let defaults = TransferConfig::default();
        let chunk_size = parse_size(&get(vars::CHUNK_SIZE), vars::CHUNK_SIZE, defaults.chunk_size, &mut problems);
        if chunk_size == 0 || !chunk_size.is_multiple_of(crate::transfer::GCS_CHUNK_ALIGN) {
            problems.push(format!(
                "{}={chunk_size}: must be a positive multiple of 256 KiB (262144), as GCS resumable uploads require",
                vars::CHUNK_SIZE
            ));
        } else if chunk_size > 1024 * 1024 * 1024 {
            problems
                .push(format!("{}={chunk_size}: at most 1 GiB (memory holds about three chunks)", vars::CHUNK_SIZE));
        }
        let resumable_threshold = parse_size(
            &get(vars::RESUMABLE_THRESHOLD),
            vars::RESUMABLE_THRESHOLD,
            defaults.resumable_threshold,
            &mut problems,
        );
        if resumable_threshold > 256 * 1024 * 1024 {
            problems.push(format!(
                "{}={resumable_threshold}: at most 256 MiB (a single-request upload holds the whole object in memory)",
                vars::RESUMABLE_THRESHOLD
            ));
        }

        let mut retry = RetryPolicy::default();
        if let Some(v) = get(vars::MAX_ATTEMPTS) {
            match v.parse::<u32>() {
                Ok(n) if (1..=50).contains(&n) => retry.max_attempts = n,
                _ => problems.push(format!("{}={v:?}: expected a whole number from 1 to 50", vars::MAX_ATTEMPTS)),
            }
        }
        let mut request_timeout = defaults.request_timeout;
        if let Some(v) = get(vars::REQUEST_TIMEOUT) {
            match v.parse::<u64>() {
                Ok(n) if (1..=3600).contains(&n) => request_timeout = Duration::from_secs(n),
                _ => problems.push(format!("{}={v:?}: expected seconds from 1 to 3600", vars::REQUEST_TIMEOUT)),
            }
        }

        let replicate_deletes = match get(vars::REPLICATE_DELETES).map(|v| v.to_ascii_lowercase()) {
            None => false,
            Some(v) if matches!(v.as_str(), "true" | "1" | "yes" | "on") => true,
            Some(v) if matches!(v.as_str(), "false" | "0" | "no" | "off") => false,
            Some(v) => {
                problems.push(format!("{}={v:?}: expected true or false", vars::REPLICATE_DELETES));
                false
            }
        };
        let mut batch_concurrency = 4;
        if let Some(v) = get(vars::BATCH_CONCURRENCY) {
            match v.parse::<usize>() {
                Ok(n) if (1..=64).contains(&n) => batch_concurrency = n,
                _ => problems.push(format!("{}={v:?}: expected a whole number from 1 to 64", vars::BATCH_CONCURRENCY)),
            }
        }

        let mut retry_clock = crate::domain::redelivery::RetryClock::default();
        for (var, slot, range) in [
            (vars::RETRY_BASE_SECS, &mut retry_clock.base, 1..=900u64),
            (vars::RETRY_MAX_SECS, &mut retry_clock.max, 1..=43_200u64),
        ] {
            if let Some(v) = get(var) {
                match v.parse::<u64>() {
                    Ok(n) if range.contains(&n) => *slot = std::time::Duration::from_secs(n),
                    _ => problems.push(format!(
                        "{var}={v:?}: expected whole seconds from {} to {}",
                        range.start(),
                        range.end()
                    )),
                }
            }
        }

        let gcs_emulator = get(vars::STORAGE_EMULATOR_HOST).map(|h| {
            let h = h.trim_end_matches('/');
            if h.contains("://") { h.to_string() } else { format!("http://{h}") }
        });
        let gcs_credentials = if gcs_emulator.is_some() {
            GcsCredentials::Emulator
        } else if let Some(v) = get(vars::GCP_CREDENTIALS) {
            if v.starts_with('{') {
                match serde_json::from_str::<serde_json::Value>(&v) {
                    Ok(json) => typed_credential(json, "", &mut problems),
                    Err(e) => {
                        // The serde message names a line and column, never the secret's content.
                        problems.push(format!("{}: not valid JSON ({e})", vars::GCP_CREDENTIALS));
                        GcsCredentials::ApplicationDefault
                    }
                }
            } else {
                match std::fs::read_to_string(&v) {
                    Ok(text) => match serde_json::from_str::<serde_json::Value>(&text) {
                        Ok(json) => typed_credential(json, &format!(" (file {v:?})"), &mut problems),
                        Err(e) => {
                            problems.push(format!("{}: file {v:?} is not valid JSON ({e})", vars::GCP_CREDENTIALS));
                            GcsCredentials::ApplicationDefault
                        }
                    },
                    Err(e) => {
                        problems.push(format!("{}: cannot read {v:?}: {e}", vars::GCP_CREDENTIALS));
                        GcsCredentials::ApplicationDefault
                    }
                }
            }
        } else if get(vars::GOOGLE_APPLICATION_CREDENTIALS).is_some() || needs.no_gcs {
            // An entry point that never calls GCS (the migrate function) needs no credential:
            // least privilege, it is deployed without one.
            GcsCredentials::ApplicationDefault
        } else {
            problems.push(format!(
                "no GCS credentials: set {} (service-account key or Workload Identity Federation config, JSON or a path), \
                 or {}, or {} for an emulator",
                vars::GCP_CREDENTIALS,
                vars::GOOGLE_APPLICATION_CREDENTIALS,
                vars::STORAGE_EMULATOR_HOST
            ));
            GcsCredentials::ApplicationDefault
        };

        let ledger_table = get(vars::LEDGER_TABLE);
        let jobs_table = get(vars::JOBS_TABLE);
        let queue_url = get(vars::QUEUE_URL);
        let dlq_url = get(vars::DLQ_URL);
        for (needed, value, name) in [
            (needs.ledger, &ledger_table, vars::LEDGER_TABLE),
            (needs.jobs, &jobs_table, vars::JOBS_TABLE),
            (needs.queue, &queue_url, vars::QUEUE_URL),
            (needs.dlq, &dlq_url, vars::DLQ_URL),
        ] {
            if needed && value.is_none() {
                problems.push(format!("{name} is required"));
            }
        }

        if !problems.is_empty() {
            return Err(ConfigError(problems));
        }
        Ok(Self {
            dest_bucket,
            rules,
            ledger_table,
            jobs_table,
            queue_url,
            dlq_url,
            aws_endpoint: get(vars::AWS_ENDPOINT_URL),
            gcs_emulator,
            gcs_credentials,
            transfer: TransferConfig { chunk_size, resumable_threshold, request_timeout, ..TransferConfig::default() },
            retry,
            retry_clock,
            replicate_deletes,
            batch_concurrency,
            migrate_function: get(vars::MIGRATE_FUNCTION),
            allowed_destinations,
        })
    }
}

/// Checks the routing configuration once, at load: its rules, and that no two source buckets
/// can reach the same destination object name (see [`crate::domain::routing`]). Why here and not only
/// when the router is built: a collision is a deployment mistake that no retry fixes, and it
/// belongs in the one message that lists every problem, before any event is touched.
///
/// The destination allowlist is checked here too, for the same reason: a list that does not
/// cover the routes' own writes, or a malformed one, is refused with everything else. Without
/// routes (the migrate function, job commands) an explicit list is still parsed.
fn check_routes(
    dest: Option<&str>,
    rules: Option<&str>,
    allowed: Option<String>,
    allowed_dest: Option<&str>,
    problems: &mut Vec<String>,
) {
    if dest.is_none() && rules.is_none() {
        if let Some(Err(why)) = allowed_dest.map(crate::domain::routing::DestAllowlist::parse) {
            problems.push(why);
        }
        return;
    }
    let allow = match crate::entry::api::settings::Allowlist::parse(allowed.as_deref().unwrap_or("")) {
        Ok(list) => list,
        Err(why) => {
            problems.push(why);
            return;
        }
    };
    // An invalid XCR_DEST_BUCKET is already listed; the rules are still checked without it.
    let dest = dest.filter(|b| validate_gcs_bucket(b).is_ok());
    if let Err(e) = crate::domain::routing::Router::new(dest, rules)
        .and_then(|r| r.with_allowed_destinations(allowed_dest))
        .and_then(|r| r.check_collisions(allow.sources()))
    {
        problems.push(e.to_string());
    }
}

/// The credential types xcr builds itself. `authorized_user` and
/// `impersonated_service_account` are refused rather than accepted and then silently replaced
/// by Application Default Credentials (what google-cloud-auth would do with them here).
fn typed_credential(json: serde_json::Value, origin: &str, problems: &mut Vec<String>) -> GcsCredentials {
    match json.get("type").and_then(|t| t.as_str()) {
        Some("service_account" | "external_account") => GcsCredentials::Json(json),
        other => {
            problems.push(format!(
                "{}{origin}: unsupported credential type {other:?}: expected \"external_account\" (Workload Identity \
                 Federation, infra/gcp/setup.sh) or \"service_account\"; for a user or impersonated credential use \
                 {} instead",
                vars::GCP_CREDENTIALS,
                vars::GOOGLE_APPLICATION_CREDENTIALS
            ));
            GcsCredentials::ApplicationDefault
        }
    }
}

/// Which optional settings an entry point requires.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    /// `XCR_DEST_BUCKET` or `XCR_RULES`: anything that replicates without an explicit target.
    pub destination: bool,
    /// `XCR_LEDGER_TABLE`: an entry point that claims and records.
    pub ledger: bool,
    /// `XCR_JOBS_TABLE`: an entry point that reads or writes jobs.
    pub jobs: bool,
    /// `XCR_QUEUE_URL`: an entry point that enqueues or receives.
    pub queue: bool,
    /// `XCR_DLQ_URL`: an entry point that reads the dead-letter queue.
    pub dlq: bool,
    /// The entry point never calls GCS: no Google credential is required (or given, in the
    /// template: the migrate function has none).
    pub no_gcs: bool,
}

impl Needs {
    /// A replicating entry point that routes by configuration.
    pub const ROUTED: Self =
        Self { destination: true, ledger: false, jobs: false, queue: false, dlq: false, no_gcs: false };
    /// The migrate function: jobs and the queue their tasks go to.
    pub const MIGRATE: Self =
        Self { destination: false, ledger: false, jobs: true, queue: true, dlq: false, no_gcs: true };
    /// Job commands of the CLI.
    pub const JOBS: Self =
        Self { destination: false, ledger: false, jobs: true, queue: false, dlq: false, no_gcs: true };
    /// The replicate function and the local pump: routed, with a ledger.
    pub const FUNCTION: Self =
        Self { destination: true, ledger: true, jobs: false, queue: false, dlq: false, no_gcs: false };
}

/// `XCR_LOG`, the log filter (`None` when unset or blank). A function of its own, not a
/// field of [`Config`]: logging starts before the configuration is read, so that a
/// configuration error is logged like everything else ([`crate::telemetry`]).
pub fn log_filter() -> Option<String> {
    std::env::var("XCR_LOG").ok().filter(|s| !s.trim().is_empty())
}

/// `XCR_METRICS`, trimmed (`None` when unset or blank): where the EMF lines go
/// ([`crate::metrics::Sink::from_env`]). Read per handler, not per [`Config`], because tests
/// and the CLI build handlers without one.
pub fn metrics_target() -> Option<String> {
    std::env::var("XCR_METRICS").ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// `AWS_LAMBDA_FUNCTION_NAME`, set by Lambda in every function (`None` elsewhere, or blank):
/// the metrics' `Function` dimension, and the sign that EMF lines belong on stdout.
pub fn lambda_function_name() -> Option<String> {
    std::env::var("AWS_LAMBDA_FUNCTION_NAME").ok().filter(|n| !n.is_empty())
}

/// Parses `8388608`, `8MiB`, `256KiB`, `1GiB` (binary units; `K`/`M`/`G` mean the same).
pub fn parse_size_str(v: &str) -> Option<u64> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn parse_size(v: &Option<String>, name: &str, default: u64, problems: &mut Vec<String>) -> u64 {
    match v {
        None => default,
        Some(s) => parse_size_str(s).unwrap_or_else(|| {
            problems.push(format!("{name}={s:?}: expected a size such as 8388608, 8MiB or 256KiB"));
            default
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn minimal_emulator_config_loads_with_defaults() {
        let c = Config::from_vars(
            env(&[("XCR_DEST_BUCKET", "dest"), ("STORAGE_EMULATOR_HOST", "127.0.0.1:9023")]),
            Needs::ROUTED,
        )
        .expect("valid");
        assert_eq!(c.gcs_emulator.as_deref(), Some("http://127.0.0.1:9023"));
        assert_eq!(c.gcs_credentials, GcsCredentials::Emulator);
        assert_eq!(c.transfer, TransferConfig::default());
    }

    #[test]
    fn every_problem_is_listed_at_once() {
        let err = Config::from_vars(
            env(&[("XCR_CHUNK_SIZE", "1000"), ("XCR_RESUMABLE_THRESHOLD", "lots"), ("XCR_MAX_ATTEMPTS", "0")]),
            Needs { ledger: true, ..Needs::ROUTED },
        )
        .expect_err("invalid");
        let msg = err.to_string();
        assert_eq!(err.0.len(), 6, "{msg}");
        assert!(err.lacks_settings());
        for needle in [
            "XCR_LEDGER_TABLE is required",
            "no destination",
            "XCR_CHUNK_SIZE",
            "XCR_RESUMABLE_THRESHOLD",
            "XCR_MAX_ATTEMPTS",
            "no GCS credentials",
        ] {
            assert!(msg.contains(needle), "missing {needle} in {msg}");
        }
    }

    #[test]
    fn destination_is_only_required_when_needed() {
        let vars = env(&[("STORAGE_EMULATOR_HOST", "http://127.0.0.1:1")]);
        assert!(Config::from_vars(vars.clone(), Needs::default()).is_ok());
        let err = Config::from_vars(vars, Needs::ROUTED).expect_err("needs a destination");
        assert!(err.to_string().contains("no destination"), "{err}");
    }

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size_str("8MiB"), Some(8 << 20));
        assert_eq!(parse_size_str("256 KiB"), Some(256 << 10));
        assert_eq!(parse_size_str("1g"), Some(1 << 30));
        assert_eq!(parse_size_str("123"), Some(123));
        assert_eq!(parse_size_str("12 parsecs"), None);
        assert_eq!(parse_size_str("99999999999999999999G"), None);
    }

    #[test]
    fn inline_credentials_are_typed_and_never_printed() {
        let key = r#"{"type":"service_account","private_key":"-----BEGIN SECRET-----"}"#;
        let c = Config::from_vars(env(&[("XCR_DEST_BUCKET", "dest"), ("XCR_GCP_CREDENTIALS", key)]), Needs::ROUTED)
            .expect("valid");
        let shown = format!("{c:?}");
        assert!(shown.contains("service_account"));
        assert!(!shown.contains("SECRET"), "{shown}");

        let bad = Config::from_vars(
            env(&[("XCR_DEST_BUCKET", "dest"), ("XCR_GCP_CREDENTIALS", "{\"private_key\": SECRET")]),
            Needs::ROUTED,
        )
        .expect_err("invalid json");
        assert!(!bad.to_string().contains("SECRET"), "{bad}");
    }

    #[test]
    fn routes_where_two_source_buckets_meet_are_refused_at_load() {
        let load = |pairs: &[(&str, &str)]| {
            let mut vars = env(&[("STORAGE_EMULATOR_HOST", "127.0.0.1:9023")]);
            vars.extend(env(pairs));
            Config::from_vars(vars, Needs::ROUTED).map(|_| ()).map_err(|e| e.to_string())
        };
        // The default bucket, for one declared source bucket or none declared: accepted.
        assert_eq!(load(&[("XCR_DEST_BUCKET", "dest"), ("XCR_ALLOWED_SOURCE_BUCKETS", "only-one")]), Ok(()));
        assert_eq!(load(&[("XCR_DEST_BUCKET", "dest")]), Ok(()));
        // For several, a prefix or any: refused, naming both sources, the destination and the fix.
        let e = load(&[("XCR_DEST_BUCKET", "dest"), ("XCR_ALLOWED_SOURCE_BUCKETS", "src-a,src-b")]).unwrap_err();
        for want in ["XCR_DEST_BUCKET", "src-a and src-b", "gs://dest/", "own key_prefix"] {
            assert!(e.contains(want), "missing {want:?} in {e}");
        }
        assert!(load(&[("XCR_DEST_BUCKET", "dest"), ("XCR_ALLOWED_SOURCE_BUCKETS", "logs-*")]).is_err());
        let star = r#"[{"source_bucket": "*", "destinations": [{"bucket": "all"}]}]"#;
        let e = load(&[("XCR_RULES", star), ("XCR_ALLOWED_SOURCE_BUCKETS", "*")]).unwrap_err();
        assert!(e.contains("rules[0].destinations[0] (any source bucket -> gs://all/*)"), "{e}");

        // One rule per bucket, each under its own key_prefix: accepted, even with many buckets.
        let own = r#"[{"source_bucket": "src-a", "destinations": [{"bucket": "ddd", "key_prefix": "a/"}]},
                      {"source_bucket": "src-b", "destinations": [{"bucket": "ddd", "key_prefix": "b/"}]}]"#;
        assert_eq!(load(&[("XCR_RULES", own), ("XCR_ALLOWED_SOURCE_BUCKETS", "src-a,src-b")]), Ok(()));
        // Overlapping names of two buckets in one GCS bucket: refused whatever is declared.
        let shared = r#"[{"source_bucket": "src-a", "prefix": "logs/", "destinations": [{"bucket": "ddd"}]},
                         {"source_bucket": "src-b", "destinations": [{"bucket": "ddd", "key_prefix": "logs/x"}]}]"#;
        let e = load(&[("XCR_RULES", shared)]).unwrap_err();
        assert!(e.contains("s3://src-a and s3://src-b"), "{e}");
        // Suffixes that exclude each other keep the names apart.
        let split = r#"[{"source_bucket": "src-a", "suffix": ".gz", "destinations": [{"bucket": "ddd"}]},
                        {"source_bucket": "src-b", "suffix": ".csv", "destinations": [{"bucket": "ddd"}]}]"#;
        assert_eq!(load(&[("XCR_RULES", split)]), Ok(()));
        // A rule of another bucket writing into the default bucket of the declared one.
        let into_default = r#"[{"source_bucket": "other", "destinations": [{"bucket": "dest", "key_prefix": "o/"}]}]"#;
        let e =
            load(&[("XCR_DEST_BUCKET", "dest"), ("XCR_RULES", into_default), ("XCR_ALLOWED_SOURCE_BUCKETS", "src")])
                .unwrap_err();
        assert!(e.contains("s3://src and s3://other"), "{e}");
        // Bad rules are reported at load too, with everything else.
        assert!(load(&[("XCR_RULES", "[")]).is_err_and(|e| e.contains("routing configuration")));
    }

    #[test]
    fn a_destination_list_that_forbids_the_routes_is_refused_at_load() {
        let load = |pairs: &[(&str, &str)]| {
            let mut vars = env(&[("STORAGE_EMULATOR_HOST", "127.0.0.1:9023")]);
            vars.extend(env(pairs));
            Config::from_vars(vars, Needs::ROUTED).map_err(|e| e.to_string())
        };
        let ok = load(&[("XCR_DEST_BUCKET", "dest"), ("XCR_ALLOWED_DESTINATIONS", "gs://dest gs://other/x/")]);
        assert_eq!(ok.expect("covers the route").allowed_destinations.as_deref(), Some("gs://dest gs://other/x/"));
        let e = load(&[("XCR_DEST_BUCKET", "dest"), ("XCR_ALLOWED_DESTINATIONS", "gs://other")]).unwrap_err();
        assert!(e.contains("does not cover where the routes write: gs://dest/"), "{e}");
        // Without routes (migrate, job commands) a malformed list is still reported.
        let e = Config::from_vars(
            env(&[("STORAGE_EMULATOR_HOST", "x:1"), ("XCR_ALLOWED_DESTINATIONS", "gs://UP")]),
            Needs::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("XCR_ALLOWED_DESTINATIONS"), "{e}");
        assert!(!e.lacks_settings(), "set wrong, not missing: {e}");
    }

    #[test]
    fn credentials_that_would_be_ignored_are_refused_and_migrate_needs_none() {
        for kind in ["authorized_user", "impersonated_service_account"] {
            let cred = format!(r#"{{"type":"{kind}","refresh_token":"SECRET"}}"#);
            let e =
                Config::from_vars(env(&[("XCR_DEST_BUCKET", "dest"), ("XCR_GCP_CREDENTIALS", &cred)]), Needs::ROUTED)
                    .expect_err("refused");
            assert!(e.to_string().contains("unsupported credential type") && !e.to_string().contains("SECRET"), "{e}");
        }
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("user.json");
        std::fs::write(&file, r#"{"type":"authorized_user"}"#).expect("write");
        let path = file.display().to_string();
        assert!(
            Config::from_vars(env(&[("XCR_DEST_BUCKET", "dest"), ("XCR_GCP_CREDENTIALS", &path)]), Needs::ROUTED)
                .is_err_and(|e| e.to_string().contains("file"))
        );
        // The migrate function is deployed without a Google credential.
        let migrate = env(&[("XCR_JOBS_TABLE", "j"), ("XCR_QUEUE_URL", "http://q")]);
        assert!(Config::from_vars(migrate.clone(), Needs::MIGRATE).is_ok());
        assert!(
            Config::from_vars(migrate, Needs::FUNCTION).is_err_and(|e| e.to_string().contains("no GCS credentials"))
        );
    }

    #[test]
    fn bucket_names_are_checked() {
        assert!(validate_gcs_bucket("my-bucket.example").is_ok());
        assert!(validate_gcs_bucket("My_Bucket").is_err());
        assert!(validate_gcs_bucket("-x-").is_err());
        assert!(validate_gcs_bucket("ab").is_err());
    }
}
