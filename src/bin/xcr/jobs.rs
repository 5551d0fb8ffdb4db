//! `xcr jobs`: create, list, show, cancel and watch migration jobs. Needs the jobs table
//! (`XCR_JOBS_TABLE`) only: no GCS credential, no queue, no ledger.

use crate::exit::{Exit, Failure};
use crate::print;
use std::io::Read;
use std::time::{Duration, Instant};
use xcr::adapters::aws::job_store::DynamoJobStore;
use xcr::config::{Config, Needs};
use xcr::domain::model::Overwrite;
use xcr::jobs::{Job, JobKind, JobSpec, JobStatus, now_rfc3339};
use xcr::ports::JobStore;

// Parsed once per run: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(clap::Subcommand)]
pub enum JobsCommand {
    /// Create a job (from flags, or a JSON spec with --spec FILE or --spec -).
    Create {
        /// The bucket to copy from (spec: source_bucket).
        #[arg(long)]
        source_bucket: Option<String>,
        /// Only keys under this prefix (spec: prefix).
        #[arg(long, default_value = "")]
        prefix: String,
        /// Only keys starting with this; repeatable (spec: include_prefixes).
        #[arg(long = "include", visible_alias = "include-prefix")]
        include_prefixes: Vec<String>,
        /// Never keys starting with this; repeatable (spec: exclude_prefixes).
        #[arg(long = "exclude", visible_alias = "exclude-prefix")]
        exclude_prefixes: Vec<String>,
        /// s3://bucket/key of a manifest (CSV bucket,key[,version] if .csv, else one key per line).
        #[arg(long)]
        manifest: Option<String>,
        /// gs://bucket[/prefix/] instead of the routing rules (spec: destination).
        #[arg(long, visible_alias = "destination")]
        dest: Option<String>,
        /// different (default), never or always.
        #[arg(long, default_value = "different")]
        overwrite: String,
        /// List and count, copy nothing (spec: dry_run).
        #[arg(long)]
        dry_run: bool,
        /// copy (default) or audit: a drift audit in parallel page tasks, needs --dest (spec: kind).
        #[arg(long, default_value = "copy")]
        kind: String,
        /// Audit jobs: enqueue the copies (and, with deletes replicated, the deletes) that close
        /// the drift (spec: repair).
        #[arg(long)]
        repair: bool,
        /// Audit jobs: s3://BUCKET[/PREFIX] or gs://BUCKET[/PREFIX] for one report object per
        /// page, PREFIX + JOB_ID/page-NNNNNN.jsonl (spec: report).
        #[arg(long)]
        report: Option<String>,
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
    /// Follow a job until it ends: one line each time its counts or status change.
    Watch {
        id: String,
        /// Seconds between looks at the job.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
        /// Print one JSON object per change instead of the line.
        #[arg(long)]
        json: bool,
    },
}

impl JobsCommand {
    pub fn json(&self) -> bool {
        match self {
            Self::Create { json, .. }
            | Self::List { json, .. }
            | Self::Show { json, .. }
            | Self::Cancel { json, .. }
            | Self::Watch { json, .. } => *json,
        }
    }
}

pub async fn run(command: JobsCommand) -> Result<Exit, Failure> {
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
            kind,
            repair,
            report,
            spec,
            json,
        } => {
            let spec = match spec {
                Some(path) => read_spec(&path)?,
                None => JobSpec {
                    source_bucket: source_bucket.unwrap_or_default(),
                    prefix,
                    include_prefixes,
                    exclude_prefixes,
                    manifest,
                    destination: dest,
                    overwrite: Overwrite::parse(&overwrite).ok_or_else(|| {
                        Failure::usage(format!("--overwrite {overwrite:?}: expected different, never or always"))
                    })?,
                    dry_run,
                    kind: match kind.as_str() {
                        "copy" => JobKind::Copy,
                        "audit" => JobKind::Audit,
                        _ => return Err(Failure::usage(format!("--kind {kind:?}: expected copy or audit"))),
                    },
                    repair,
                    report,
                },
            };
            let job = create(spec).await?;
            if json {
                print::fields(&serde_json::to_value(&job).unwrap_or_default(), true);
            } else {
                println!("created {} ({})", job.id, job.status.as_str());
            }
        }
        JobsCommand::List { limit, json } => {
            let jobs = store().await?.list(limit).await?;
            if json {
                print::fields(&serde_json::to_value(&jobs).unwrap_or_default(), true);
            } else {
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
            }
        }
        JobsCommand::Show { id, json } => {
            let job = get(&store().await?, &id).await?;
            print::fields(&serde_json::to_value(job).unwrap_or_default(), json);
        }
        JobsCommand::Cancel { id, json } => {
            let store = store().await?;
            // As the API answers: cancelling a cancelled job is done (200, rc 0); one that ended
            // otherwise is refused (409, rc 1).
            if !store.cancel(&id).await? {
                let job = get(&store, &id).await?;
                if job.status != JobStatus::Cancelled {
                    return Err(Failure::new(
                        Exit::Failed,
                        "conflict",
                        format!("job {id} is already {}", job.status.as_str()),
                    ));
                }
            }
            print::fields(&serde_json::json!({"id": id, "status": "CANCELLED"}), json);
        }
        JobsCommand::Watch { id, interval, json } => return watch(&id, interval, json).await,
    }
    Ok(Exit::Ok)
}

async fn store() -> Result<DynamoJobStore, Failure> {
    let cfg = Config::from_env(Needs::JOBS)?;
    let sdk = xcr::adapters::aws::sdk_config().await;
    Ok(DynamoJobStore::new(&sdk, cfg.jobs_table.unwrap_or_default()))
}

/// The job, or "no job ID" (3).
async fn get(store: &DynamoJobStore, id: &str) -> Result<Job, Failure> {
    store.get(id).await?.ok_or_else(|| Failure::new(Exit::NotFound, "not_found", format!("no job {id}")))
}

fn read_spec(path: &str) -> Result<JobSpec, Failure> {
    let mut text = String::new();
    let read = if path == "-" {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(path).map(|t| text = t)
    };
    read.map_err(|e| Failure::usage(format!("cannot read the spec {path}: {e}")))?;
    JobSpec::from_json(&text).map_err(|e| Failure::usage(format!("the spec {path}: {}", e.summary())))
}

async fn create(spec: JobSpec) -> Result<Job, Failure> {
    spec.validate().map_err(|e| Failure::from(e).exit(Exit::Usage))?;
    let cfg = Config::from_env(Needs::JOBS)?;
    // The replicate function refuses each task outside XCR_ALLOWED_DESTINATIONS; refused
    // here at once when this environment says where destinations may go.
    if let (Some(Ok(xcr::domain::names::GsUrl { bucket, path: prefix })), true) = (
        spec.destination.as_deref().map(str::parse),
        cfg.dest_bucket.is_some() || cfg.rules.is_some() || cfg.allowed_destinations.is_some(),
    ) {
        let allowed = xcr::wiring::router(&cfg)?;
        if !allowed.allowed_destinations().permits_prefix(&bucket, &prefix) {
            return Err(Failure::new(
                Exit::Usage,
                "destination_not_allowed",
                format!(
                    "destination gs://{bucket}/{prefix} is not in XCR_ALLOWED_DESTINATIONS (allowed: {})",
                    allowed.allowed_destinations().describe()
                ),
            ));
        }
    }
    let sdk = xcr::adapters::aws::sdk_config().await;
    let store = DynamoJobStore::new(&sdk, cfg.jobs_table.clone().unwrap_or_default());
    let job = Job::new(spec, &now_rfc3339());
    store.create(&job).await?;
    match &cfg.migrate_function {
        // In the cloud the migrate function drives the job; locally `xcr pump` does.
        Some(f) => {
            xcr::adapters::aws::lambda::Invoker::new(&sdk)
                .invoke_async(f, &serde_json::json!({"job_id": job.id}))
                .await?
        }
        None => tracing::info!(
            target: xcr::telemetry::NOTE,
            job_id = %job.id,
            "XCR_MIGRATE_FUNCTION is not set: run `xcr pump` to drive the job locally"
        ),
    }
    Ok(job)
}

/// Polls the job and prints a line each time it changes:
/// `[#####     ] 1200/2000 objects  350 obj/s  12.3 MiB/s  RUNNING  (replicated …)`.
/// Whole lines, never a redrawn one: a pump running in the same terminal may write between
/// them, and the lines stay readable. Exit 0 when the job succeeded, 1 when it failed or was
/// cancelled, 3 when there is no such job.
async fn watch(id: &str, interval: f64, json: bool) -> Result<Exit, Failure> {
    let store = store().await?;
    let started = Instant::now();
    let first = get(&store, id).await?;
    let (done0, bytes0) = (first.finished_tasks(), first.counters.bytes);
    let mut last: Option<String> = None;
    loop {
        let job = get(&store, id).await.map_err(|f| f.context("the job disappeared"))?;
        let c = job.counters;
        // What changes a line: the counts, the status, the end of the listing.
        let state =
            serde_json::json!({"status": job.status, "counters": c, "listing_done": job.listing_done, "audit": job.audit})
                .to_string();
        if last.as_deref() != Some(state.as_str()) {
            let secs = started.elapsed().as_secs_f64().max(0.001);
            let rate = (job.finished_tasks() - done0.min(job.finished_tasks())) as f64 / secs;
            let bps = (c.bytes - bytes0.min(c.bytes)) as f64 / secs;
            if json {
                let mut line = serde_json::json!({"id": job.id, "status": job.status, "counters": c, "listing_done": job.listing_done,
                    "objects_per_sec": rate, "bytes_per_sec": bps});
                if let Some(a) = job.audit {
                    line["audit"] = serde_json::to_value(a).unwrap_or_default();
                }
                println!("{line}");
            } else if let Some(a) = job.audit {
                // An audit job's tasks are pages: the bar counts pages audited of pages queued.
                let pages_done = a.pages + c.failed;
                let filled = (((pages_done as f64 / c.queued.max(1) as f64) * 30.0).round() as usize).min(30);
                let bar = format!("{}{}", "#".repeat(filled), " ".repeat(30 - filled));
                let more = if job.listing_done { "" } else { "+" };
                println!(
                    "[{bar}] {pages_done}/{}{more} pages  {}  (compared {}, missing {}, different {}, extra {}, unverifiable {}, repaired {}, failed pages {})",
                    c.queued,
                    job.status.as_str(),
                    a.compared,
                    a.missing,
                    a.different,
                    a.extra,
                    a.unverifiable,
                    a.repaired,
                    c.failed
                );
            } else {
                let total = c.listed.max(1);
                let filled = (((job.finished_tasks() as f64 / total as f64) * 30.0).round() as usize).min(30);
                let bar = format!("{}{}", "#".repeat(filled), " ".repeat(30 - filled));
                let more = if job.listing_done { "" } else { "+" };
                println!(
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
            }
            last = Some(state);
        }
        if job.status.is_terminal() {
            return Ok(if job.status == JobStatus::Succeeded { Exit::Ok } else { Exit::Failed });
        }
        tokio::time::sleep(Duration::from_secs_f64(interval.max(0.1))).await;
    }
}
