//! `xcr audit`: see [`xcr::domain::audit`].

use crate::exit::{Exit, Failure};
use xcr::adapters::aws::sqs::Queue;
use xcr::config::{Config, Needs};
use xcr::wiring;

#[derive(clap::Args)]
pub struct AuditArgs {
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
    pub json: bool,
    /// Keys per listing page on each side (1 to 1000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1000))]
    page_size: u32,
    /// Also write the report (JSON lines: the findings, then the counts) as the object
    /// s3://BUCKET/KEY or gs://BUCKET/NAME, once the audit is done.
    #[arg(long)]
    report: Option<String>,
}

/// Needs S3, GCS, a destination unless `--dest` names one, the queue only with `--repair`;
/// the ledger when `XCR_LEDGER_TABLE` is set (it vouches for copies without a shared checksum).
/// Exit 0 no drift, 1 drift, 2 usage or configuration, 4 the audit (or the repair) did not finish.
pub async fn audit(args: AuditArgs) -> Result<Exit, Failure> {
    let AuditArgs { source, dest, repair, json, page_size, report } = args;
    // Refused before anything is listed: a bad URL found after an hour's audit loses the hour.
    let report = report
        .as_deref()
        .map(xcr::jobs::audit_report::ReportTarget::parse_object)
        .transpose()
        .map_err(|why| Failure::usage(format!("--report {why}")))?;
    let Ok(xcr::domain::names::S3Url { bucket: source_bucket, key: source_prefix }) =
        xcr::domain::names::S3Url::parse(&source)
    else {
        return Err(Failure::usage("the source must look like s3://BUCKET or s3://BUCKET/PREFIX"));
    };
    let needs = Needs { destination: dest.is_none(), queue: repair, ..Needs::default() };
    let cfg = Config::from_env(needs)?;
    let (dest_bucket, dest_prefix) = match dest {
        Some(d) => {
            let url = crate::object::dest_url(&d, "--dest must look like gs://BUCKET or gs://BUCKET/PREFIX/")?;
            (url.bucket, url.path)
        }
        None if cfg.rules.as_deref().is_some_and(|r| !r.trim().is_empty()) => {
            return Err(Failure::usage("XCR_RULES is set: name the destination to audit with --dest"));
        }
        None => match cfg.dest_bucket.clone() {
            Some(b) => (b.trim_start_matches("gs://").trim_end_matches('/').to_string(), String::new()),
            None => return Err(Failure::usage("no destination: pass --dest or set XCR_DEST_BUCKET")),
        },
    };
    let scope = xcr::domain::audit::Scope {
        source_bucket: source_bucket.to_string(),
        source_prefix: source_prefix.to_string(),
        dest_bucket,
        dest_prefix,
        page_size,
        after: None,
        through: None,
    };
    let sdk = xcr::adapters::aws::with_timeouts(&xcr::adapters::aws::sdk_config().await, cfg.transfer.request_timeout);
    let s3 = xcr::adapters::aws::s3::S3Source::new(&sdk).client().clone();
    // Building the client is configuration (credentials): 2 whatever the kind says.
    let gcs = wiring::gcs_client(&cfg).map_err(|e| Failure::from(e).exit(Exit::Usage))?;
    let ledger = match &cfg.ledger_table {
        Some(t) => xcr::wiring::ledger::AnyLedger::Dynamo(xcr::adapters::aws::ledger::DynamoLedger::new(&sdk, t)),
        None => xcr::wiring::ledger::AnyLedger::Disabled,
    };
    let deletes = cfg.replicate_deletes;
    let mut commands: Vec<String> = Vec::new();
    // The report's findings are kept until the walk ends (an object is written whole).
    let mut reported: Vec<xcr::domain::audit::Finding> = Vec::new();
    let counts = xcr::domain::audit::walk(&s3, &gcs, &ledger, &scope, |f| {
        if json {
            println!("{}", serde_json::to_string(f).unwrap_or_default());
        } else {
            println!("{:<12} {} -> {}: {}", f.kind.as_str(), f.key, f.destination, f.reason);
        }
        if repair {
            commands.extend(xcr::domain::audit::repair_command(&scope.source_bucket, f, deletes));
        }
        if report.is_some() {
            reported.push(f.clone());
        }
    })
    .await
    .map_err(|e| Failure::from(e).context("the audit did not finish").exit(Exit::Incomplete))?;
    let mut enqueued = 0;
    if repair && !commands.is_empty() {
        let queue = Queue::new(&sdk, cfg.queue_url.clone().unwrap_or_default());
        xcr::ports::TaskQueue::send_all(&queue, &commands).await.map_err(|e| {
            Failure::from(e).context("the repair commands were not all enqueued").exit(Exit::Incomplete)
        })?;
        enqueued = commands.len();
    }
    let drift = counts.drift(deletes);
    let mut line = serde_json::to_value(counts).unwrap_or_default();
    line["drift"] = serde_json::json!(drift);
    line["deletes_replicated"] = serde_json::json!(deletes);
    if repair {
        line["enqueued"] = serde_json::json!(enqueued);
    }
    if let Some(target) = &report {
        let body = xcr::jobs::audit_report::render(&reported, &line)
            .map_err(|e| Failure::from(e).context("the report was not written").exit(Exit::Incomplete))?;
        target
            .write(&s3, &gcs, body)
            .await
            .map_err(|e| Failure::from(e).context("the report was not written").exit(Exit::Incomplete))?;
    }
    if json {
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
        if let Some(target) = &report {
            println!("report written to {}", target.url());
        }
    }
    Ok(if drift == 0 { Exit::Ok } else { Exit::Failed })
}
