//! `xcr`: the command line. Runs the same use cases the Lambda functions run, against whatever
//! the environment points at (the local stack from `.xcr/local.env`, LocalStack, or real clouds).
//!
//! Exit codes: 0 success; 1 the operation failed (or `busy`: try again); 2 bad usage or
//! configuration; 3 the source object does not exist (`xcr status`: nothing is recorded for it).
//! `xcr audit`: 0 no drift, 1 drift found, 2 bad usage or configuration, 4 the audit could not
//! finish.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use std::process::ExitCode;
use std::time::Duration;
use xcr::aws::sqs::Queue;
use xcr::config::{Config, Needs};
use xcr::model::{Destination, ObjectRef};
use xcr::pump::PumpOptions;
use xcr::{ErrorKind, wiring};

#[derive(Parser)]
#[command(name = "xcr", version, about = "Replicate S3 objects into Google Cloud Storage", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Copy one S3 object to GCS, streamed and verified, and print the outcome.
    Replicate {
        /// The source, as s3://BUCKET/KEY (the key as it is, not URL-encoded).
        source: String,
        /// gs://BUCKET (same key), gs://BUCKET/NAME, or gs://BUCKET/PREFIX/ (prefix + key).
        /// Default: the same key in XCR_DEST_BUCKET.
        #[arg(long)]
        dest: Option<String>,
        /// Copy this version of the object (default: the current one).
        #[arg(long)]
        version_id: Option<String>,
        /// Print the outcome as one JSON object.
        #[arg(long)]
        json: bool,
        /// Seconds the ledger lease lasts past the claim and past each upload checkpoint. A run
        /// that dies (killed, crashed) blocks the destination this long; the next run then
        /// continues its upload. Must exceed the time one chunk takes to upload.
        #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
        lease: u64,
    },
    Copy(xcr::copy::cli::CopyArgs),
    /// Run the replicate function on the local queue, as Lambda's SQS event source mapping does.
    Pump {
        /// Queue to poll (default: XCR_QUEUE_URL).
        #[arg(long)]
        queue: Option<String>,
        /// Messages per batch, 1 to 10.
        #[arg(long, default_value_t = 10)]
        batch_size: i32,
        /// Visibility timeout given to received messages, seconds (default: the queue's).
        #[arg(long)]
        visibility_timeout: Option<i32>,
        /// Exit once the queue has been empty (nothing visible or in flight) this many seconds.
        #[arg(long)]
        until_idle: Option<u64>,
        /// Exit after this many batches.
        #[arg(long)]
        max_batches: Option<u64>,
        /// Batches handled at once (the next is received while the current one is copied).
        #[arg(long, default_value_t = 2)]
        concurrent_batches: usize,
        /// Print the totals as JSON when done.
        #[arg(long)]
        json: bool,
    },
    /// What the ledger knows about one object at each destination its routing rules give
    /// (outcome, GCS generation, size, CRC32C, source version and ETag, when, lag, or the last
    /// failure). Exit 3 when nothing is recorded for it.
    Status {
        /// The object, as s3://BUCKET/KEY.
        source: String,
        /// Look at this destination (gs://BUCKET, gs://BUCKET/NAME or gs://BUCKET/PREFIX/)
        /// instead of the routing rules'.
        #[arg(long)]
        dest: Option<String>,
        /// Print the status as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Drift audit: compare S3 with GCS key by key (size, checksum, content type, user metadata)
    /// and report what is missing, different, extra or unverifiable. Exit 0 no drift, 1 drift
    /// found, 2 bad usage or configuration, 4 the audit could not finish.
    Audit {
        /// What to audit, as s3://BUCKET or s3://BUCKET/PREFIX.
        source: String,
        /// gs://BUCKET or gs://BUCKET/PREFIX/ (the name is PREFIX + key). Default: the same key
        /// in XCR_DEST_BUCKET; required when XCR_RULES is set.
        #[arg(long)]
        dest: Option<String>,
        /// Enqueue on XCR_QUEUE_URL the copies (and, with XCR_REPLICATE_DELETES, the deletes)
        /// that close the drift; `xcr pump` or the replicate function then applies them.
        #[arg(long)]
        repair: bool,
        /// One JSON object per finding, then one with the counts.
        #[arg(long)]
        json: bool,
        /// Keys per listing page on each side (1 to 1000).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1000))]
        page_size: u32,
    },
    /// Dead-letter queue operations.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Migration jobs: copy what is already in a bucket (or a manifest).
    Jobs {
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// Serve the HTTP API (the api function's very Router) on this machine.
    Serve {
        /// Port to listen on; 0 picks a free one (printed on stdout).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Address to bind. The API has no authentication of its own (API Gateway's IAM auth
        /// guards it in the cloud): keep it on loopback unless something else guards it.
        #[arg(long, default_value = "127.0.0.1")]
        bind: std::net::IpAddr,
    },
}

#[derive(Subcommand)]
enum JobsCommand {
    /// Create a job (from flags, or a JSON spec with --spec FILE or --spec -).
    Create {
        #[arg(long)]
        source_bucket: Option<String>,
        #[arg(long, default_value = "")]
        prefix: String,
        /// Only keys starting with this (repeatable).
        #[arg(long = "include")]
        include_prefixes: Vec<String>,
        /// Never keys starting with this (repeatable).
        #[arg(long = "exclude")]
        exclude_prefixes: Vec<String>,
        /// s3://bucket/key of a manifest (CSV bucket,key[,version] if .csv, else one key per line).
        #[arg(long)]
        manifest: Option<String>,
        /// gs://bucket[/prefix/] instead of the routing rules.
        #[arg(long)]
        dest: Option<String>,
        /// different (default), never or always.
        #[arg(long, default_value = "different")]
        overwrite: String,
        /// List and count, copy nothing.
        #[arg(long)]
        dry_run: bool,
        /// A JSON job spec file ('-' for stdin) instead of the flags.
        #[arg(long)]
        spec: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List jobs, newest first.
    List {
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Show one job.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Cancel a job: listing stops and its queued tasks become no-ops.
    Cancel {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Follow a job with a live progress bar until it ends.
    Watch {
        id: String,
        /// Seconds between updates.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
        /// Print one JSON object per update instead of the bar.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Move messages from the dead-letter queue back to the replicate queue.
    Redrive {
        /// Dead-letter queue (default: XCR_DLQ_URL).
        #[arg(long)]
        dlq: Option<String>,
        /// Target queue (default: XCR_QUEUE_URL).
        #[arg(long)]
        queue: Option<String>,
        /// Move at most this many messages (default: all of them).
        #[arg(long)]
        max: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// Show how many messages wait in the dead-letter queue.
    Count {
        #[arg(long)]
        dlq: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    xcr::telemetry::init();
    match cli.command {
        Command::Replicate { source, dest, version_id, json, lease } => {
            replicate(&source, dest.as_deref(), version_id, json, Duration::from_secs(lease)).await
        }
        Command::Copy(args) => xcr::copy::cli::command(args).await,
        Command::Pump { queue, batch_size, visibility_timeout, until_idle, max_batches, concurrent_batches, json } => {
            let opts = PumpOptions {
                batch_size,
                concurrent_batches,
                visibility_secs: visibility_timeout,
                until_idle: until_idle.map(Duration::from_secs),
                max_batches,
                ..PumpOptions::default()
            };
            report(pump(queue, opts).await, json)
        }
        Command::Dlq { command: DlqCommand::Redrive { dlq, queue, max, json } } => {
            report(redrive(dlq, queue, max.unwrap_or(u64::MAX)).await.map(|n| serde_json::json!({"redriven": n})), json)
        }
        Command::Dlq { command: DlqCommand::Count { dlq, json } } => report(dlq_count(dlq).await, json),
        Command::Jobs { command } => jobs::run(command).await,
        Command::Audit { source, dest, repair, json, page_size } => {
            audit(&source, dest.as_deref(), repair, json, page_size).await
        }
        Command::Status { source, dest, json } => status(&source, dest.as_deref(), json).await,
        Command::Serve { port, bind } => match serve(bind, port).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("xcr: {e:#}");
                ExitCode::from(2)
            }
        },
    }
}

/// Runs the API until Ctrl-C or SIGTERM, then lets requests in flight finish.
async fn serve(bind: std::net::IpAddr, port: u16) -> anyhow::Result<()> {
    let cfg = Config::from_env(xcr::api::Api::NEEDS)?;
    let settings = xcr::api::settings::ApiSettings::from_env().map_err(anyhow::Error::msg)?;
    let sdk = xcr::aws::sdk_config().await;
    let api = xcr::api::Api::new(&sdk, &cfg, settings)?;
    let listener = tokio::net::TcpListener::bind((bind, port)).await.with_context(|| format!("bind {bind}:{port}"))?;
    let addr = listener.local_addr().context("local address")?;
    // On stdout, alone on its line: scripts and tests read the address from it.
    println!("listening on http://{addr}");
    tracing::info!(%addr, "serving the xcr API");
    axum::serve(listener, xcr::api::router(std::sync::Arc::new(api)))
        .with_graceful_shutdown(shutdown())
        .await
        .context("serve")?;
    Ok(())
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Prints a result (JSON or `key: value` lines) and turns it into an exit code.
fn report(result: anyhow::Result<serde_json::Value>, json: bool) -> ExitCode {
    match result {
        Ok(v) => {
            if json {
                println!("{v}");
            } else if let Some(map) = v.as_object() {
                for (k, v) in map {
                    println!("{k}: {v}");
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            if json {
                println!("{}", serde_json::json!({"outcome": "failed", "error": {"message": format!("{e:#}")}}));
            } else {
                eprintln!("xcr: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

fn queue_url(flag: Option<String>, from_config: Option<String>, var: &str) -> anyhow::Result<String> {
    flag.or(from_config).with_context(|| format!("no queue: pass it or set {var}"))
}

async fn pump(queue: Option<String>, opts: PumpOptions) -> anyhow::Result<serde_json::Value> {
    let cfg = Config::from_env(Needs::FUNCTION)?;
    let url = queue_url(queue, cfg.queue_url.clone(), "XCR_QUEUE_URL")?;
    let sdk = xcr::aws::sdk_config().await;
    let region = sdk.region().map(|r| r.to_string()).unwrap_or_default();
    let cfg = Config { queue_url: Some(url.clone()), ..cfg };
    let queue = Queue::new(&sdk, url);
    let handler = wiring::handler_with(&sdk, &cfg)?.with_max_receives(queue.max_receive_count().await?);
    let driver = wiring::driver_with(&sdk, &cfg);
    let stats = xcr::pump::pump(&handler, &queue, &region, driver.as_ref(), &opts).await?;
    Ok(serde_json::to_value(stats)?)
}

async fn redrive(dlq: Option<String>, queue: Option<String>, max: u64) -> anyhow::Result<u64> {
    let cfg = Config::from_env(Needs::default())?;
    let dlq = queue_url(dlq, cfg.dlq_url.clone(), "XCR_DLQ_URL")?;
    let queue = queue_url(queue, cfg.queue_url.clone(), "XCR_QUEUE_URL")?;
    let sdk = xcr::aws::sdk_config().await;
    Ok(xcr::pump::redrive(&Queue::new(&sdk, dlq), &Queue::new(&sdk, queue), max).await?)
}

async fn dlq_count(dlq: Option<String>) -> anyhow::Result<serde_json::Value> {
    let cfg = Config::from_env(Needs::default())?;
    let dlq = queue_url(dlq, cfg.dlq_url.clone(), "XCR_DLQ_URL")?;
    let sdk = xcr::aws::sdk_config().await;
    let (visible, in_flight) = Queue::new(&sdk, dlq).depth().await?;
    Ok(serde_json::json!({"messages": visible, "in_flight_or_delayed": in_flight}))
}

async fn replicate(
    source: &str,
    dest: Option<&str>,
    version_id: Option<String>,
    json: bool,
    lease: Duration,
) -> ExitCode {
    let fail = |kind: &str, message: String, code: u8| {
        if json {
            println!("{}", serde_json::json!({"outcome": "failed", "error": {"kind": kind, "message": message}}));
        } else {
            eprintln!("xcr: {message}");
        }
        ExitCode::from(code)
    };
    let (obj, dest) = match parse_targets(source, dest, version_id) {
        Ok(t) => t,
        Err(e) => return fail("invalid", format!("{e:#}"), 2),
    };
    // With an explicit --dest no default bucket is needed.
    let needs = if dest.is_some() { Needs::default() } else { Needs::ROUTED };
    let cfg = match Config::from_env(needs) {
        Ok(c) => c,
        Err(e) => return fail("config", e.to_string(), 2),
    };
    // A command has no deadline to bound its lease by: it holds the lease for `lease`, renewed
    // as the upload makes progress, so that a rerun after a crash waits at most that long.
    let replicator = match wiring::replicator(&cfg).await {
        Ok(r) => r.with_lease_ttl(Some(lease)),
        Err(e) => return fail(e.kind().as_str(), e.chain(), 2),
    };
    let deadline = xcr::replicate::now_ms() + lease.as_millis() as i64;
    match replicator.replicate(&obj, dest, deadline).await {
        Ok(r) => {
            if json {
                match serde_json::to_string(&r) {
                    Ok(s) => println!("{s}"),
                    Err(e) => return fail("internal", format!("cannot encode the outcome: {e}"), 1),
                }
            } else {
                let bytes = r.bytes.map(|b| format!(" ({b} bytes, crc32c {})", r.crc32c.as_deref().unwrap_or("?")));
                println!(
                    "{} s3://{}/{} -> gs://{}/{}{}{} in {} ms",
                    r.outcome.as_str(),
                    r.source.bucket,
                    r.source.key,
                    r.destination.bucket,
                    r.destination.name,
                    bytes.unwrap_or_default(),
                    r.detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default(),
                    r.duration_ms
                );
            }
            match r.outcome {
                // Outside XCR_ALLOWED_DESTINATIONS: a configuration matter, like a bad --dest.
                xcr::replicate::Outcome::Refused => ExitCode::from(2),
                o if o.needs_retry() => ExitCode::FAILURE,
                _ => ExitCode::SUCCESS,
            }
        }
        Err(e) => {
            let code = match e.kind() {
                ErrorKind::NotFound => 3,
                ErrorKind::Config => 2,
                _ => 1,
            };
            fail(e.kind().as_str(), e.chain(), code)
        }
    }
}

async fn status(source: &str, dest: Option<&str>, json: bool) -> ExitCode {
    let fail = |message: String, code: u8| {
        eprintln!("xcr: {message}");
        ExitCode::from(code)
    };
    let (obj, dest) = match parse_targets(source, dest, None) {
        Ok(t) => t,
        Err(e) => return fail(format!("{e:#}"), 2),
    };
    let needs = Needs { ledger: true, destination: dest.is_none(), ..Needs::default() };
    let cfg = match Config::from_env(needs) {
        Ok(c) => c,
        Err(e) => return fail(e.to_string(), 2),
    };
    let replicator = match wiring::replicator(&cfg).await {
        Ok(r) => r,
        Err(e) => return fail(e.chain(), 2),
    };
    let destinations = match dest {
        Some(d) => vec![d],
        None => replicator.router().route(&obj.bucket, &obj.key),
    };
    if destinations.is_empty() {
        return fail(format!("no routing rule matches {obj}; name a destination with --dest"), 2);
    }
    let now = xcr::replicate::now_ms();
    let st = match xcr::status::object_status(replicator.ledger(), &obj.bucket, &obj.key, &destinations, now).await {
        Ok(Some(st)) => st,
        Ok(None) => return fail(format!("nothing is recorded for {obj}"), 3),
        Err(e) => return fail(e.chain(), if e.kind() == ErrorKind::Config { 2 } else { 1 }),
    };
    if json {
        match serde_json::to_string(&st) {
            Ok(s) => println!("{s}"),
            Err(e) => return fail(format!("cannot encode the status: {e}"), 1),
        }
        return ExitCode::SUCCESS;
    }
    println!("s3://{}/{}", st.bucket, st.key);
    for d in &st.destinations {
        let mut line = format!("  {}: {}", d.destination, d.state);
        if let Some(done) = &d.done {
            line.push_str(&format!(" | last {} at {}", done.action, done.done_at));
            let fields = [
                ("generation", done.generation.clone()),
                ("bytes", done.size.map(|s| s.to_string())),
                ("crc32c", done.crc32c.clone()),
                ("version", done.source_version_id.clone()),
                ("etag", done.source_etag.clone()),
                ("lag", done.lag_seconds.map(|l| format!("{l:.1} s"))),
                ("job", done.job_id.clone()),
            ];
            for (name, v) in fields {
                if let Some(v) = v {
                    line.push_str(&format!(", {name} {v}"));
                }
            }
        }
        if let Some(f) = &d.failure {
            line.push_str(&format!(" | failed ({}) at {}: {}", f.kind, f.at, f.message));
        }
        if let Some(offset) = d.upload_offset {
            line.push_str(&format!(" | upload checkpoint at {offset} bytes"));
        }
        println!("{line}");
    }
    ExitCode::SUCCESS
}

/// `xcr audit`: see [`xcr::audit`].
async fn audit(source: &str, dest: Option<&str>, repair: bool, json: bool, page_size: u32) -> ExitCode {
    let fail = |message: String, code: u8| {
        eprintln!("xcr: {message}");
        ExitCode::from(code)
    };
    let Some((source_bucket, source_prefix)) =
        source.strip_prefix("s3://").map(|r| r.split_once('/').unwrap_or((r, ""))).filter(|(b, _)| !b.is_empty())
    else {
        return fail("the source must look like s3://BUCKET or s3://BUCKET/PREFIX".into(), 2);
    };
    let needs = Needs { ledger: false, destination: dest.is_none(), queue: repair, ..Needs::default() };
    let cfg = match Config::from_env(needs) {
        Ok(c) => c,
        Err(e) => return fail(e.to_string(), 2),
    };
    let (dest_bucket, dest_prefix) = match dest {
        Some(d) => {
            let Some(rest) = d.strip_prefix("gs://") else {
                return fail("--dest must look like gs://BUCKET or gs://BUCKET/PREFIX/".into(), 2);
            };
            let (b, p) = rest.split_once('/').unwrap_or((rest, ""));
            if let Err(why) = xcr::config::validate_gcs_bucket(b) {
                return fail(format!("--dest bucket {b:?}: {why}"), 2);
            }
            (b.to_string(), p.to_string())
        }
        None if cfg.rules.as_deref().is_some_and(|r| !r.trim().is_empty()) => {
            return fail("XCR_RULES is set: name the destination to audit with --dest".into(), 2);
        }
        None => match cfg.dest_bucket.clone() {
            Some(b) => (b.trim_start_matches("gs://").trim_end_matches('/').to_string(), String::new()),
            None => return fail("no destination: pass --dest or set XCR_DEST_BUCKET".into(), 2),
        },
    };
    let scope = xcr::audit::Scope {
        source_bucket: source_bucket.to_string(),
        source_prefix: source_prefix.to_string(),
        dest_bucket,
        dest_prefix,
        page_size,
    };
    let sdk = xcr::aws::with_timeouts(&xcr::aws::sdk_config().await, cfg.transfer.request_timeout);
    let s3 = xcr::aws::s3::S3Source::new(&sdk).client().clone();
    let gcs = match wiring::gcs_client(&cfg) {
        Ok(g) => g,
        Err(e) => return fail(e.chain(), 2),
    };
    let ledger = match &cfg.ledger_table {
        Some(t) => xcr::ledger::AnyLedger::Dynamo(xcr::aws::dynamodb::DynamoLedger::new(&sdk, t)),
        None => xcr::ledger::AnyLedger::Disabled,
    };
    let deletes = cfg.replicate_deletes;
    let mut commands: Vec<String> = Vec::new();
    let result = xcr::audit::walk(&s3, &gcs, &ledger, &scope, |f| {
        if json {
            println!("{}", serde_json::to_string(f).unwrap_or_default());
        } else {
            println!("{:<12} {} -> {}: {}", f.kind.as_str(), f.key, f.destination, f.reason);
        }
        if repair {
            let cmd = match f.kind {
                // `always`: the ledger may remember a copy that GCS no longer holds intact.
                xcr::audit::Kind::Missing | xcr::audit::Kind::Different => Some(serde_json::json!({
                    "bucket": scope.source_bucket, "key": f.key, "destination": f.destination, "overwrite": "always"})),
                xcr::audit::Kind::Extra if deletes => Some(serde_json::json!({
                    "bucket": scope.source_bucket, "key": f.key, "destination": f.destination, "action": "delete"})),
                _ => None,
            };
            commands.extend(cmd.map(|c| c.to_string()));
        }
    })
    .await;
    let counts = match result {
        Ok(c) => c,
        Err(e) => return fail(format!("the audit did not finish: {}", e.chain()), 4),
    };
    let mut enqueued = 0;
    if repair && !commands.is_empty() {
        let Some(url) = cfg.queue_url.clone() else {
            return fail("--repair needs XCR_QUEUE_URL".into(), 2);
        };
        let queue = Queue::new(&sdk, url);
        if let Err(e) = xcr::ports::TaskQueue::send_all(&queue, &commands).await {
            return fail(format!("the repair commands were not all enqueued: {}", e.chain()), 4);
        }
        enqueued = commands.len();
    }
    let drift = counts.drift(deletes);
    if json {
        let mut line = serde_json::to_value(counts).unwrap_or_default();
        line["drift"] = serde_json::json!(drift);
        line["deletes_replicated"] = serde_json::json!(deletes);
        if repair {
            line["enqueued"] = serde_json::json!(enqueued);
        }
        println!("{}", serde_json::json!({"counts": line}));
    } else {
        println!(
            "audited s3://{}/{} against gs://{}/{}: {} compared, {} matching, {} missing, {} different, {} extra{}, {} unverifiable",
            scope.source_bucket,
            scope.source_prefix,
            scope.dest_bucket,
            scope.dest_prefix,
            counts.compared,
            counts.matching,
            counts.missing,
            counts.different,
            counts.extra,
            if deletes { "" } else { " (not drift: XCR_REPLICATE_DELETES is off)" },
            counts.unverifiable
        );
        if repair {
            println!("enqueued {enqueued} repair commands on the queue (run `xcr pump --until-idle 5` locally)");
        }
    }
    if drift == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// Parses `s3://BUCKET/KEY` and `gs://BUCKET[/NAME]`.
fn parse_targets(
    source: &str,
    dest: Option<&str>,
    version_id: Option<String>,
) -> anyhow::Result<(ObjectRef, Option<Destination>)> {
    let rest = source.strip_prefix("s3://").context("the source must look like s3://BUCKET/KEY")?;
    let (bucket, key) = rest.split_once('/').context("the source must look like s3://BUCKET/KEY")?;
    if bucket.is_empty() || key.is_empty() {
        bail!("the source must look like s3://BUCKET/KEY, with a bucket and a key");
    }
    let obj = ObjectRef::new(bucket, key).with_version(version_id);
    let dest = match dest {
        None => None,
        Some(d) => {
            let rest = d.strip_prefix("gs://").context("--dest must look like gs://BUCKET[/NAME]")?;
            let (b, name) = rest.split_once('/').unwrap_or((rest, ""));
            xcr::config::validate_gcs_bucket(b).map_err(|why| anyhow::anyhow!("--dest bucket {b:?}: {why}"))?;
            let name = if name.is_empty() {
                key.to_string()
            } else if name.ends_with('/') {
                format!("{name}{key}")
            } else {
                name.to_string()
            };
            Some(Destination::new(b, name))
        }
    };
    Ok((obj, dest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        let (o, d) = parse_targets("s3://src/a b/c+d.txt", Some("gs://dst/pre/"), None).expect("ok");
        assert_eq!((o.bucket.as_str(), o.key.as_str()), ("src", "a b/c+d.txt"));
        assert_eq!(d.map(|d| d.name), Some("pre/a b/c+d.txt".to_string()));
        let (_, d) = parse_targets("s3://src/k", Some("gs://dst"), None).expect("ok");
        assert_eq!(d.map(|d| d.name), Some("k".to_string()));
        assert!(parse_targets("src/k", None, None).is_err());
        assert!(parse_targets("s3://src/", None, None).is_err());
        assert!(parse_targets("s3://src/k", Some("gs://BAD"), None).is_err());
    }
}

mod jobs {
    //! `xcr jobs`: create, list, show, cancel and watch migration jobs.

    use super::{JobsCommand, report};
    use anyhow::{Context, bail};
    use std::io::{IsTerminal, Read, Write};
    use std::process::ExitCode;
    use std::time::{Duration, Instant};
    use xcr::aws::jobs::DynamoJobStore;
    use xcr::config::{Config, Needs};
    use xcr::jobs::{Job, JobSpec, Overwrite, now_rfc3339};
    use xcr::ports::JobStore;

    pub async fn run(command: JobsCommand) -> ExitCode {
        match command {
            JobsCommand::Create {
                source_bucket,
                prefix,
                include_prefixes,
                exclude_prefixes,
                manifest,
                dest,
                overwrite,
                dry_run,
                spec,
                json,
            } => {
                let spec = match spec {
                    Some(path) => read_spec(&path),
                    None => Ok(JobSpec {
                        source_bucket: source_bucket.unwrap_or_default(),
                        prefix,
                        include_prefixes,
                        exclude_prefixes,
                        manifest,
                        destination: dest,
                        overwrite: Overwrite::parse(&overwrite).unwrap_or(Overwrite::Different),
                        dry_run,
                    }),
                };
                let valid_policy = Overwrite::parse(&overwrite).is_some();
                let result = async {
                    if !valid_policy {
                        bail!("--overwrite {overwrite:?}: expected different, never or always");
                    }
                    create(spec?).await
                }
                .await;
                match (result, json) {
                    (Ok(job), true) => report(Ok(serde_json::to_value(&job).unwrap_or_default()), true),
                    (Ok(job), false) => {
                        println!("created {} ({})", job.id, job.status.as_str());
                        ExitCode::SUCCESS
                    }
                    (Err(e), json) => report(Err(e), json),
                }
            }
            JobsCommand::List { limit, json } => {
                let result = async { Ok(store().await?.list(limit).await?) }.await;
                match (result, json) {
                    (Ok(jobs), true) => report(Ok(serde_json::to_value(&jobs).unwrap_or_default()), true),
                    (Ok(jobs), false) => {
                        println!(
                            "{:<30} {:<10} {:>8} {:>10} {:>8} {:>7}  CREATED",
                            "ID", "STATUS", "LISTED", "REPLICATED", "SKIPPED", "FAILED"
                        );
                        for j in jobs {
                            let c = j.counters;
                            println!(
                                "{:<30} {:<10} {:>8} {:>10} {:>8} {:>7}  {}",
                                j.id,
                                j.status.as_str(),
                                c.listed,
                                c.replicated,
                                c.skipped,
                                c.failed,
                                j.created_at
                            );
                        }
                        ExitCode::SUCCESS
                    }
                    (Err(e), json) => report(Err(e), json),
                }
            }
            JobsCommand::Show { id, json } => {
                report(show(&id).await.map(|j| serde_json::to_value(j).unwrap_or_default()), json)
            }
            JobsCommand::Cancel { id, json } => report(cancel(&id).await, json),
            JobsCommand::Watch { id, interval, json } => match watch(&id, interval, json).await {
                Ok(code) => code,
                Err(e) => report(Err(e), json),
            },
        }
    }

    async fn store() -> anyhow::Result<DynamoJobStore> {
        let cfg = Config::from_env(Needs::JOBS)?;
        let sdk = xcr::aws::sdk_config().await;
        Ok(DynamoJobStore::new(&sdk, cfg.jobs_table.context("XCR_JOBS_TABLE is required")?))
    }

    fn read_spec(path: &str) -> anyhow::Result<JobSpec> {
        let mut text = String::new();
        if path == "-" {
            std::io::stdin().read_to_string(&mut text).context("read the spec from stdin")?;
        } else {
            text = std::fs::read_to_string(path).with_context(|| format!("read {path}"))?;
        }
        Ok(JobSpec::from_json(&text)?)
    }

    async fn create(spec: JobSpec) -> anyhow::Result<Job> {
        spec.validate()?;
        let cfg = Config::from_env(Needs::JOBS)?;
        // The replicate function refuses each task outside XCR_ALLOWED_DESTINATIONS; refused
        // here at once when this environment says where destinations may go.
        if let (Some(Ok((bucket, prefix))), true) = (
            spec.destination.as_deref().map(xcr::jobs::parse_gs_prefix),
            cfg.dest_bucket.is_some() || cfg.rules.is_some() || cfg.allowed_destinations.is_some(),
        ) {
            let allowed = xcr::wiring::router(&cfg)?;
            anyhow::ensure!(
                allowed.allowed_destinations().permits_prefix(&bucket, &prefix),
                "destination gs://{bucket}/{prefix} is not in XCR_ALLOWED_DESTINATIONS (allowed: {})",
                allowed.allowed_destinations().describe()
            );
        }
        let sdk = xcr::aws::sdk_config().await;
        let store = DynamoJobStore::new(&sdk, cfg.jobs_table.clone().context("XCR_JOBS_TABLE is required")?);
        let job = Job::new(spec, &now_rfc3339());
        store.create(&job).await?;
        match &cfg.migrate_function {
            // In the cloud the migrate function drives the job; locally `xcr pump` does.
            Some(f) => {
                xcr::aws::lambda::Invoker::new(&sdk).invoke_async(f, &serde_json::json!({"job_id": job.id})).await?
            }
            None => eprintln!("xcr: XCR_MIGRATE_FUNCTION is not set: run `xcr pump` to drive the job locally"),
        }
        Ok(job)
    }

    async fn show(id: &str) -> anyhow::Result<Job> {
        store().await?.get(id).await?.with_context(|| format!("no job {id}"))
    }

    async fn cancel(id: &str) -> anyhow::Result<serde_json::Value> {
        let store = store().await?;
        // As the API answers: cancelling a cancelled job is done (200, rc 0); one that ended
        // otherwise is refused (409, rc 1).
        if !store.cancel(id).await? {
            let job = store.get(id).await?.with_context(|| format!("no job {id}"))?;
            if job.status != xcr::jobs::JobStatus::Cancelled {
                bail!("job {id} is already {}", job.status.as_str());
            }
        }
        Ok(serde_json::json!({"id": id, "status": "CANCELLED"}))
    }

    /// Polls the job; draws `[#####     ] 1200/2000 objects  350 obj/s  12.3 MiB/s  RUNNING`.
    async fn watch(id: &str, interval: f64, json: bool) -> anyhow::Result<ExitCode> {
        let store = store().await?;
        let started = Instant::now();
        let first = store.get(id).await?.with_context(|| format!("no job {id}"))?;
        let (done0, bytes0) = (first.finished_tasks(), first.counters.bytes);
        let tty = std::io::stderr().is_terminal();
        loop {
            let job = store.get(id).await?.with_context(|| format!("job {id} disappeared"))?;
            let c = job.counters;
            let secs = started.elapsed().as_secs_f64().max(0.001);
            let rate = (job.finished_tasks() - done0.min(job.finished_tasks())) as f64 / secs;
            let bps = (c.bytes - bytes0.min(c.bytes)) as f64 / secs;
            if json {
                let line = serde_json::json!({"id": job.id, "status": job.status, "counters": c, "listing_done": job.listing_done,
                    "objects_per_sec": rate, "bytes_per_sec": bps});
                println!("{line}");
            } else {
                let total = c.listed.max(1);
                let filled = ((job.finished_tasks() as f64 / total as f64) * 30.0).round() as usize;
                let bar = format!("{}{}", "#".repeat(filled.min(30)), " ".repeat(30 - filled.min(30)));
                let more = if job.listing_done { "" } else { "+" };
                let line = format!(
                    "[{bar}] {}/{}{more} objects  {:.0} obj/s  {:.1} MiB/s  {}  (replicated {}, skipped {}, failed {})",
                    job.finished_tasks(),
                    c.listed,
                    rate,
                    bps / 1048576.0,
                    job.status.as_str(),
                    c.replicated,
                    c.skipped,
                    c.failed
                );
                if tty {
                    eprint!("\r{line}\x1b[K");
                } else {
                    eprintln!("{line}");
                }
                let _ = std::io::stderr().flush();
            }
            if job.status.is_terminal() {
                if tty && !json {
                    eprintln!();
                }
                return Ok(if job.status == xcr::jobs::JobStatus::Succeeded {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                });
            }
            tokio::time::sleep(Duration::from_secs_f64(interval.max(0.1))).await;
        }
    }
}
