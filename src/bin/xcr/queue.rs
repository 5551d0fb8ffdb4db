//! `xcr pump` and `xcr dlq`: the replicate queue and its dead letters.

use crate::exit::{Exit, Failure};
use crate::print;
use std::time::Duration;
use xcr::adapters::aws::sqs::Queue;
use xcr::config::{Config, Needs};
use xcr::entry::pump::PumpOptions;
use xcr::wiring;

#[derive(clap::Args)]
pub struct PumpArgs {
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
    pub json: bool,
}

#[derive(clap::Subcommand)]
pub enum DlqCommand {
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
        /// Dead-letter queue (default: XCR_DLQ_URL).
        #[arg(long)]
        dlq: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

impl DlqCommand {
    pub fn json(&self) -> bool {
        match self {
            Self::Redrive { json, .. } | Self::Count { json, .. } => *json,
        }
    }
}

/// Runs the replicate handler over the queue. Needs what the replicate function needs (a
/// destination, the ledger, GCS) and a queue (`--queue` or `XCR_QUEUE_URL`); with
/// `XCR_JOBS_TABLE` it drives jobs too.
pub async fn pump(args: PumpArgs) -> Result<Exit, Failure> {
    let opts = PumpOptions {
        batch_size: args.batch_size,
        concurrent_batches: args.concurrent_batches,
        visibility_secs: args.visibility_timeout,
        until_idle: args.until_idle.map(Duration::from_secs),
        max_batches: args.max_batches,
        ..PumpOptions::default()
    };
    let cfg = Config::from_env(Needs { queue: args.queue.is_none(), ..Needs::FUNCTION })?;
    let url = args.queue.or(cfg.queue_url.clone()).unwrap_or_default();
    let sdk = xcr::adapters::aws::sdk_config().await;
    let region = sdk.region().map(|r| r.to_string()).unwrap_or_default();
    let cfg = Config { queue_url: Some(url.clone()), ..cfg };
    let queue = Queue::new(&sdk, url);
    let handler = wiring::handler_with(&sdk, &cfg)?.with_max_receives(queue.max_receive_count().await?);
    let driver = wiring::driver_with(&sdk, &cfg);
    let stats = xcr::entry::pump::pump(&handler, &queue, &region, driver.as_ref(), &opts).await?;
    // Messages deleted and failed, and what became of the objects in them (the same counters as
    // the functions' EMF lines: ObjectsReplicated, Duplicates, NotFound, Failures, ...).
    let mut out = serde_json::to_value(stats).unwrap_or_default();
    out["outcomes"] = serde_json::json!(
        handler.outcome_totals().into_iter().filter(|(_, n)| *n > 0).collect::<std::collections::BTreeMap<_, _>>()
    );
    print::fields(&out, args.json);
    Ok(Exit::Ok)
}

/// Needs only the queues (flags or `XCR_DLQ_URL`, `XCR_QUEUE_URL`): no GCS, no tables.
pub async fn dlq(command: DlqCommand) -> Result<Exit, Failure> {
    match command {
        DlqCommand::Redrive { dlq, queue, max, json } => {
            let cfg = Config::from_env(Needs { dlq: dlq.is_none(), queue: queue.is_none(), ..queue_only() })?;
            let dlq = dlq.or(cfg.dlq_url).unwrap_or_default();
            let queue = queue.or(cfg.queue_url).unwrap_or_default();
            let sdk = xcr::adapters::aws::sdk_config().await;
            let moved =
                xcr::entry::pump::redrive(&Queue::new(&sdk, dlq), &Queue::new(&sdk, queue), max.unwrap_or(u64::MAX))
                    .await?;
            print::fields(&serde_json::json!({"redriven": moved}), json);
        }
        DlqCommand::Count { dlq, json } => {
            let cfg = Config::from_env(Needs { dlq: dlq.is_none(), ..queue_only() })?;
            let dlq = dlq.or(cfg.dlq_url).unwrap_or_default();
            let sdk = xcr::adapters::aws::sdk_config().await;
            let (visible, in_flight) = Queue::new(&sdk, dlq).depth().await?;
            print::fields(&serde_json::json!({"messages": visible, "in_flight_or_delayed": in_flight}), json);
        }
    }
    Ok(Exit::Ok)
}

/// A command that only talks to SQS: no Google credential.
fn queue_only() -> Needs {
    Needs { no_gcs: true, ..Needs::default() }
}
