//! Builds the real adapters from a [`Config`]: what every entry point does at cold start.
//! [`ledger`] is the ledger choice (DynamoDB, or none for a plain `xcr replicate`).

pub mod ledger;

use crate::adapters::aws::ledger::DynamoLedger;
use crate::adapters::aws::s3::S3Source;
use crate::adapters::gcs::GcsClient;
use crate::adapters::gcs::auth::Auth;
use crate::config::Config;
use crate::domain::error::{Error, ErrorKind, Result};
use crate::domain::replicate::{ReplicateSettings, Replicator};
use crate::domain::routing::Router;
use crate::transfer::Transfer;
use crate::wiring::ledger::AnyLedger;

/// The production replicator: S3 in, GCS out, DynamoDB (or no) ledger.
pub type S3ToGcs = Replicator<S3Source, GcsClient, AnyLedger>;

/// The production handler (the replicate function and `xcr pump`).
pub type S3ToGcsHandler = crate::entry::handler::Handler<
    S3Source,
    GcsClient,
    AnyLedger,
    crate::adapters::aws::sqs::Queue,
    crate::adapters::aws::job_store::DynamoJobStore,
>;

/// The handler the replicate function and `xcr pump` run: busy records go back to
/// `XCR_QUEUE_URL` with a delay when it is set.
pub fn handler_with(sdk: &aws_config::SdkConfig, cfg: &Config) -> Result<S3ToGcsHandler> {
    let sdk = &crate::adapters::aws::with_timeouts(sdk, cfg.transfer.request_timeout);
    let requeue = cfg.queue_url.as_ref().map(|u| crate::adapters::aws::sqs::Queue::new(sdk, u.clone()));
    let jobs = cfg.jobs_table.as_ref().map(|t| crate::adapters::aws::job_store::DynamoJobStore::new(sdk, t.clone()));
    let audits = match &jobs {
        Some(j) => Some(audit_worker(sdk, cfg, j.clone(), requeue.clone())?),
        None => None,
    };
    let handler = crate::entry::handler::Handler::new(replicator_with(sdk, cfg)?, cfg.batch_concurrency, requeue, jobs)
        .with_retry_clock(cfg.retry_clock);
    Ok(match audits {
        Some(w) => handler.with_audits(w),
        None => handler,
    })
}

/// What runs audit jobs' page tasks ([`crate::jobs::audit_page`]): the same S3, GCS and ledger as the
/// replicator, the jobs table to count in, the queue to enqueue repairs on.
pub fn audit_worker(
    sdk: &aws_config::SdkConfig,
    cfg: &Config,
    jobs: crate::adapters::aws::job_store::DynamoJobStore,
    queue: Option<crate::adapters::aws::sqs::Queue>,
) -> Result<crate::jobs::audit_page::AuditWorker> {
    let sdk = &crate::adapters::aws::with_timeouts(sdk, cfg.transfer.request_timeout);
    Ok(crate::jobs::audit_page::AuditWorker {
        s3: S3Source::new(sdk).client().clone(),
        gcs: gcs_client(cfg)?,
        ledger: match &cfg.ledger_table {
            Some(t) => AnyLedger::Dynamo(DynamoLedger::new(sdk, t)),
            None => AnyLedger::Disabled,
        },
        jobs,
        queue,
        deletes: cfg.replicate_deletes,
        page_size: 1000,
    })
}

/// Builds the GCS client (auth included) from configuration.
pub fn gcs_client(cfg: &Config) -> Result<GcsClient> {
    let auth = Auth::from_config(&cfg.gcs_credentials)?;
    GcsClient::new(cfg.gcs_emulator.as_deref(), auth, cfg.transfer.request_timeout)
}

/// The routing rules from `XCR_DEST_BUCKET` and `XCR_RULES`, with the destination allowlist
/// (`XCR_ALLOWED_DESTINATIONS`, by default where those rules write).
pub fn router(cfg: &Config) -> Result<Router> {
    Router::new(cfg.dest_bucket.as_deref(), cfg.rules.as_deref())
        .and_then(|r| r.with_allowed_destinations(cfg.allowed_destinations.as_deref()))
        .map_err(|e| Error::new(ErrorKind::Config, format!("invalid routing configuration: {e}")))
}

/// Builds the replicator from the AWS SDK configuration and ours.
pub fn replicator_with(sdk: &aws_config::SdkConfig, cfg: &Config) -> Result<S3ToGcs> {
    replicator_split(sdk, sdk, cfg)
}

/// Like [`replicator_with`], with S3 and DynamoDB reached through configurations of their own
/// (e.g. different endpoints, as the fault tests do with one proxy in front of each). Every AWS
/// call is bounded by `XCR_REQUEST_TIMEOUT_SECS` ([`crate::adapters::aws::with_timeouts`]).
pub fn replicator_split(s3: &aws_config::SdkConfig, dynamodb: &aws_config::SdkConfig, cfg: &Config) -> Result<S3ToGcs> {
    let source = S3Source::new(&crate::adapters::aws::with_timeouts(s3, cfg.transfer.request_timeout));
    let dynamodb = crate::adapters::aws::with_timeouts(dynamodb, cfg.transfer.request_timeout);
    let sink = gcs_client(cfg)?;
    let ledger = match &cfg.ledger_table {
        Some(t) => AnyLedger::Dynamo(DynamoLedger::new(&dynamodb, t)),
        None => AnyLedger::Disabled,
    };
    let settings = ReplicateSettings { replicate_deletes: cfg.replicate_deletes, ..Default::default() };
    Ok(Replicator::new(Transfer::new(source, sink, cfg.transfer, cfg.retry), ledger, router(cfg)?, settings))
}

/// Builds the replicator: loads the AWS configuration from the environment, then the adapters.
pub async fn replicator(cfg: &Config) -> Result<S3ToGcs> {
    let sdk = crate::adapters::aws::sdk_config().await;
    replicator_with(&sdk, cfg)
}

/// The production job driver: lists S3, enqueues on `XCR_QUEUE_URL`, records in `XCR_JOBS_TABLE`.
pub type S3JobDriver = crate::jobs::migrate::Driver<
    S3Source,
    crate::adapters::aws::sqs::Queue,
    crate::adapters::aws::job_store::DynamoJobStore,
>;

/// The job driver, when a jobs table and a queue are configured; its sweep reads the DLQ when
/// one is configured.
pub fn driver_with(sdk: &aws_config::SdkConfig, cfg: &Config) -> Option<S3JobDriver> {
    let (table, queue) = (cfg.jobs_table.as_ref()?, cfg.queue_url.as_ref()?);
    let sdk = &crate::adapters::aws::with_timeouts(sdk, cfg.transfer.request_timeout);
    let driver = crate::jobs::migrate::Driver::new(
        S3Source::new(sdk),
        crate::adapters::aws::sqs::Queue::new(sdk, queue.clone()),
        crate::adapters::aws::job_store::DynamoJobStore::new(sdk, table.clone()),
    );
    // The sweep counts job tasks that died in the DLQ (`XCR_DLQ_URL`); without one it skips that.
    Some(match &cfg.dlq_url {
        Some(dlq) => driver.with_dead_letters(crate::adapters::aws::sqs::Queue::new(sdk, dlq.clone())),
        None => driver,
    })
}
