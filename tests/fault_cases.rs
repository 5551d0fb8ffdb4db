//! One exact fault at a time, each at the spot where the fault test (`tests/faults.rs`) found
//! xcr mishandling it: each fault is armed at the request it belongs to, named by what the
//! request is (DynamoDB `X-Amz-Target` plus the update expression it carries, the S3 operation,
//! the GCS upload step: [`FaultProxy::fault_next`]), not by arrival number, so one more request
//! elsewhere in xcr does not move it. Each case replicates one object through the production
//! wiring, asserts that its fault fired, and checks the outcome, the ledger and, whenever GCS
//! holds the object, its bytes (read without the proxy).

mod common;
mod fault_proxy;

use common::*;
use fault_proxy::{Fault, FaultProxy, Plan, Service};
use serde_json::{Value, json};
use std::time::Duration;
use xcr::ErrorKind;
use xcr::adapters::aws::job_store::DynamoJobStore;
use xcr::adapters::aws::ledger::DynamoLedger;
use xcr::adapters::aws::sqs::Queue;
use xcr::domain::model::ObjectRef;
use xcr::domain::replicate::{Outcome, Replication, now_ms};
use xcr::jobs::{Job, JobSpec, JobStatus, now_rfc3339};
use xcr::ports::JobStore;

const TIMEOUT_SECS: u64 = 2;
const CHUNK: usize = 256 * 1024;
/// A case that hangs fails here instead of hanging the suite.
const CASE_LIMIT: Duration = Duration::from_secs(60);

/// One fault armed at one exact request, by what the request is (see
/// [`FaultProxy::fault_next`]): the operation (DynamoDB `X-Amz-Target`, S3 operation, GCS upload
/// step), a string its body must contain (empty: any), the fault, how many times.
type Armed = (&'static str, &'static str, Fault, u32);

/// The ledger's calls, told apart by their update expressions (every DynamoDB call is `POST /`,
/// and claim, completion and release are all `UpdateItem` on the same table).
const CLAIM: &str = "SET lease_owner = :owner, lease_expires = :until";
const COMPLETE: &str = "done_action = :action";

/// Faults per service (none where none is given).
struct Scripts {
    /// How long a stall holds its request: past the client's timeout, or past `CASE_LIMIT` to
    /// show that xcr does not wait on it at all.
    stall: Duration,
    s3: Vec<Armed>,
    dynamodb: Vec<Armed>,
    gcs: Vec<Armed>,
    /// Configuration overrides on top of the stack's.
    env: Vec<(&'static str, String)>,
}

fn none() -> Scripts {
    Scripts {
        stall: Duration::from_millis(TIMEOUT_SECS * 1000 + 1500),
        s3: vec![],
        dynamodb: vec![],
        gcs: vec![],
        env: vec![],
    }
}

/// The three proxies of one case, kept for the case's own checks.
struct Proxies {
    dynamodb: FaultProxy,
    #[allow(dead_code)]
    s3: FaultProxy,
    #[allow(dead_code)]
    gcs: FaultProxy,
}

/// Puts `size` bytes at `key`, replicates it once through proxies armed with `scripts`, checks
/// that every armed fault fired, and, whenever GCS holds the object (whatever the result), that
/// it holds these bytes. Returns the replication's result and the proxies.
async fn run_case(stack: &Stack, key: &str, size: usize, scripts: Scripts) -> (xcr::Result<Replication>, Proxies) {
    let stall = scripts.stall;
    let start = |service, upstream: String, armed: Vec<Armed>| async move {
        let p = FaultProxy::start(service, &upstream, Plan::script(stall, vec![])).await;
        for (operation, body, fault, times) in armed {
            p.fault_next(operation, body, fault, times);
        }
        p
    };
    let aws = stack.var("AWS_ENDPOINT_URL").to_string();
    let s3p = start(Service::S3, aws.clone(), scripts.s3).await;
    let ddbp = start(Service::DynamoDb, aws, scripts.dynamodb).await;
    let gcsp = start(Service::Gcs, stack.gcs_endpoint().to_string(), scripts.gcs).await;
    let data = bytes_of(size, size as u64);
    put(&stack.s3().await, stack.source_bucket(), key, data.clone()).await;

    let (_, r) =
        fault_proxy::replicator_via(stack, [&s3p.url(), &ddbp.url(), &gcsp.url()], CHUNK, TIMEOUT_SECS, scripts.env)
            .await;
    let obj = ObjectRef::new(stack.source_bucket(), key);
    let result = tokio::time::timeout(CASE_LIMIT, r.replicate(&obj, None, now_ms() + 10_000))
        .await
        .unwrap_or_else(|_| panic!("{key}: replication hung for {CASE_LIMIT:?}"));
    for (name, p) in [("S3", &s3p), ("DynamoDB", &ddbp), ("GCS", &gcsp)] {
        assert_eq!(p.armed(), 0, "{key}: a fault armed for {name} never fired: {:?}", p.counts().by_fault);
    }
    match gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), key).await {
        Some((bytes, _)) => assert!(bytes == data, "{key}: GCS bytes differ"),
        None => assert!(result.is_err(), "{key}: replicated, yet not in GCS"),
    }
    (result, Proxies { dynamodb: ddbp, s3: s3p, gcs: gcsp })
}

async fn lease_of(stack: &Stack, key: &str) -> Option<String> {
    let ledger = DynamoLedger::new(&stack.sdk().await, stack.var("XCR_LEDGER_TABLE"));
    let item = ledger.get(&format!("gs://{}/{key}", stack.dest_bucket())).await.expect("ledger read");
    item.and_then(|i| i.lease_owner)
}

#[tokio::test(flavor = "multi_thread")]
async fn each_fault_at_its_worst_spot() {
    let stack = Stack::up();

    // A claim applied in DynamoDB whose answer is lost: the SDK's retry finds the lease taken, by
    // this very claim. It is ours: replicated at once, not `busy` until the lease expires.
    let (r, _) = run_case(
        &stack,
        "cases/lost-claim-answer",
        1000,
        Scripts { dynamodb: vec![("UpdateItem", CLAIM, Fault::LostResponse, 1)], ..none() },
    )
    .await;
    let r = r.expect("replicated");
    assert_eq!(r.outcome, Outcome::Replicated, "a lost claim answer is still our claim");
    assert_eq!(lease_of(&stack, "cases/lost-claim-answer").await, None);

    // The completion applied, its answer lost: the retry finds our own record, not a lost lease.
    let (r, _) = run_case(
        &stack,
        "cases/lost-completion-answer",
        1000,
        Scripts { dynamodb: vec![("UpdateItem", COMPLETE, Fault::LostResponse, 1)], ..none() },
    )
    .await;
    let r = r.expect("replicated, not 'lease lost'");
    assert_eq!(r.outcome, Outcome::Replicated);
    assert_eq!(lease_of(&stack, "cases/lost-completion-answer").await, None);

    // A claim applied, then every retry refused: the task fails, and gives back the lease it may
    // hold, so the next delivery copies at once instead of waiting for the lease to expire.
    let key = "cases/failed-claim-releases";
    let (e, _) = run_case(
        &stack,
        key,
        1000,
        Scripts {
            dynamodb: vec![("UpdateItem", CLAIM, Fault::LostResponse, 1), ("UpdateItem", CLAIM, Fault::Reset, 2)],
            ..none()
        },
    )
    .await;
    let e = e.expect_err("three failed attempts fail the claim");
    assert!(e.is_retryable(), "{}", e.chain());
    assert_eq!(lease_of(&stack, key).await, None, "the lease the failed claim took was released");
    let (r, _) = run_case(&stack, key, 1000, none()).await;
    assert_eq!(r.expect("redelivery").outcome, Outcome::Replicated, "the redelivery is not busy");

    // The claim's first attempt reaches DynamoDB only after the client gave up on it, retried,
    // copied and completed: applied then, it must not take the lease again.
    let key = "cases/late-claim";
    let (r, proxies) = run_case(
        &stack,
        key,
        1000,
        Scripts { dynamodb: vec![("UpdateItem", CLAIM, Fault::LateDelivery, 1)], ..none() },
    )
    .await;
    assert_eq!(r.expect("replicated").outcome, Outcome::Replicated);
    // The late claim lands `stall` after it was sent: wait until DynamoDB has answered it, and
    // see that it refused it (400: the condition failed), then that no lease was taken.
    let late = || {
        proxies
            .dynamodb
            .seen_since(0)
            .into_iter()
            .find(|s| s.fault == Some(Fault::LateDelivery))
            .and_then(|s| s.upstream)
    };
    wait_until("the late claim to reach DynamoDB", Duration::from_secs(30), || async { late().is_some() }).await;
    assert_eq!(late(), Some(400), "DynamoDB refused the late claim (its condition failed)");
    assert_eq!(lease_of(&stack, key).await, None, "a late claim took the lease after the task completed");

    // DynamoDB holds the claim (for longer than this case may take): the attempt times out and
    // is retried.
    let forever = Duration::from_secs(2 * CASE_LIMIT.as_secs());
    let (r, _) = run_case(
        &stack,
        "cases/stalled-dynamodb",
        1000,
        Scripts { stall: forever, dynamodb: vec![("UpdateItem", CLAIM, Fault::Stall, 1)], ..none() },
    )
    .await;
    assert_eq!(r.expect("replicated").outcome, Outcome::Replicated);

    // S3 holds a GetObject (as long).
    let (r, _) = run_case(
        &stack,
        "cases/stalled-s3",
        1000,
        Scripts { stall: forever, s3: vec![("GetObject", "", Fault::Stall, 1)], ..none() },
    )
    .await;
    assert_eq!(r.expect("replicated").outcome, Outcome::Replicated);

    // S3 sends half a body and then nothing: the SDK's stalled-stream protection fails the read,
    // and the stream is re-opened where it stopped.
    let (r, _) = run_case(
        &stack,
        "cases/stalled-s3-body",
        3 * CHUNK,
        Scripts { stall: forever, s3: vec![("GetObject", "", Fault::BodyStall, 1)], ..none() },
    )
    .await;
    let r = r.expect("replicated");
    let report = r.transfer.as_ref().expect("a transfer report");
    assert!(report.source_reopens >= 1, "the stalled body was re-opened: {report:?}");

    // The first chunk of a resumable upload is lost before it arrives. The emulator's status
    // answer for an empty session (`Range: bytes=0-0`) names one byte; the chunk sent from byte 1
    // is refused, and is sent again from its start.
    let (r, _) = run_case(
        &stack,
        "cases/first-chunk-lost",
        3 * CHUNK,
        Scripts { gcs: vec![("insert.chunk.first", "", Fault::Reset, 1)], ..none() },
    )
    .await;
    let r = r.expect("replicated");
    let report = r.transfer.as_ref().expect("a transfer report");
    assert!(report.resumed_chunks >= 1, "the first chunk was resumed: {report:?}");
}

/// An SQS event of one record per body, as Lambda delivers it.
fn sqs_event(bodies: &[(&str, Value)]) -> Value {
    let records: Vec<Value> = bodies
        .iter()
        .map(|(id, body)| {
            json!({"messageId": id, "receiptHandle": "r", "body": body.to_string(), "eventSource": "aws:sqs",
                   "attributes": {"ApproximateReceiveCount": "1"}})
        })
        .collect();
    json!({ "Records": records })
}

fn failed_ids(resp: &Value) -> Vec<String> {
    resp["batchItemFailures"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f["itemIdentifier"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// The replicate handler with its DynamoDB calls (ledger and jobs) through `ddbp`, and its
/// DynamoDB-backed jobs store (also through the proxy), as the function builds them.
async fn handler_via(stack: &Stack, ddbp: &FaultProxy) -> (xcr::wiring::S3ToGcsHandler, DynamoJobStore) {
    let mut vars = stack.env.clone();
    vars.insert("XCR_REQUEST_TIMEOUT_SECS".into(), TIMEOUT_SECS.to_string());
    let cfg = xcr::config::Config::from_vars(vars, xcr::config::Needs::FUNCTION).expect("config");
    let ddb = fault_proxy::sdk_via(&ddbp.url(), stack.var("AWS_REGION")).await;
    let r = xcr::wiring::replicator_split(&stack.sdk().await, &ddb, &cfg).expect("replicator");
    let jobs = DynamoJobStore::new(&ddb, stack.var("XCR_JOBS_TABLE"));
    (xcr::entry::handler::Handler::new(r, 1, None::<Queue>, Some(jobs.clone())), jobs)
}

/// DynamoDB's own refusals, at the call where each one hurts: a missing table is a
/// configuration error that fails the task (never "source gone", which would acknowledge it),
/// and a write refused by a running transaction is retried until it goes through.
#[tokio::test(flavor = "multi_thread")]
async fn dynamodb_refusals_are_classified_where_they_happen() {
    let stack = Stack::up();
    let ledger_table = format!("\"{}\"", stack.var("XCR_LEDGER_TABLE"));
    let jobs_table = format!("\"{}\"", stack.var("XCR_JOBS_TABLE"));

    // The ledger claim answers ResourceNotFoundException: a configuration error, not retried.
    let (e, _) = run_case(
        &stack,
        "cases/ledger-table-missing",
        1000,
        Scripts { dynamodb: vec![("UpdateItem", CLAIM, Fault::ResourceNotFound, 1)], ..none() },
    )
    .await;
    let e = e.expect_err("a missing ledger table fails the task");
    assert_eq!(e.kind(), ErrorKind::Config, "{}", e.chain());
    assert!(e.to_string().contains("does not exist (wrong name or region?)"), "{e}");

    // The same from the emulator itself: a ledger table name that does not exist.
    let (e, _) = run_case(
        &stack,
        "cases/ledger-table-misnamed",
        1000,
        Scripts { env: vec![("XCR_LEDGER_TABLE", "xcr-no-such-table".into())], ..none() },
    )
    .await;
    let e = e.expect_err("a misnamed ledger table fails the task");
    assert_eq!(e.kind(), ErrorKind::Config, "{}", e.chain());

    // SQS's answer for a queue that does not exist (a busy record's requeue) is configuration too.
    let url = stack.var("XCR_QUEUE_URL");
    let missing = format!("{}/xcr-no-such-queue", url.rsplit_once('/').map_or(url, |(base, _)| base));
    let e = xcr::ports::TaskQueue::send_delayed(&Queue::new(&stack.sdk().await, missing), "{}", 1)
        .await
        .expect_err("no such queue");
    assert_eq!(e.kind(), ErrorKind::Config, "{}", e.chain());

    // A claim refused by a running transaction is retried, and the copy goes through.
    let (r, _) = run_case(
        &stack,
        "cases/claim-conflict",
        1000,
        Scripts { dynamodb: vec![("UpdateItem", CLAIM, Fault::TransactionConflict, 2)], ..none() },
    )
    .await;
    let r = r.expect("a transaction conflict on the claim is retried");
    assert_eq!(r.outcome, Outcome::Replicated);

    // Through the handler: an SQS record whose claim meets a missing table is reported in
    // batchItemFailures (it goes to the DLQ, not away); a direct invocation fails with `config`.
    let ddbp =
        FaultProxy::start(Service::DynamoDb, stack.var("AWS_ENDPOINT_URL"), Plan::script(Duration::ZERO, vec![])).await;
    let (handler, jobs) = handler_via(&stack, &ddbp).await;
    let bucket = stack.source_bucket();
    let s3 = stack.s3().await;
    put(&s3, bucket, "cases/sqs-table-missing", b"x".to_vec()).await;
    let command = json!({"bucket": bucket, "key": "cases/sqs-table-missing"});
    ddbp.fault_next("UpdateItem", &ledger_table, Fault::ResourceNotFound, 1);
    let resp = handler.handle(&sqs_event(&[("m-missing-table", command.clone())]), now_ms() + 30_000).await;
    let resp = resp.unwrap_or_else(|e| panic!("{}", e.chain()));
    assert_eq!(failed_ids(&resp), ["m-missing-table"], "{resp}");
    assert_eq!(resp["batchItemFailures"].as_array().map(Vec::len), Some(1));
    ddbp.fault_next("UpdateItem", &ledger_table, Fault::ResourceNotFound, 1);
    let e = handler.handle(&command, now_ms() + 30_000).await.expect_err("a direct invocation fails");
    assert_eq!(e.kind(), ErrorKind::Config, "{}", e.chain());
    assert_eq!(ddbp.armed(), 0, "both faults were used");

    // A migration job whose writes collide with transactions: the start and the page commit
    // (plain writes), the task's claim, its count (TransactWriteItems cancelled for
    // TransactionConflict, twice) and the job's end all go through, and the job is exact.
    let job = Job::new(JobSpec { source_bucket: bucket.into(), ..Default::default() }, &now_rfc3339());
    jobs.create(&job).await.expect("create job");
    ddbp.fault_next("UpdateItem", &jobs_table, Fault::TransactionConflict, 1);
    assert!(jobs.start(&job.id).await.expect("start despite a conflict"));
    ddbp.fault_next("UpdateItem", &jobs_table, Fault::TransactionConflict, 1);
    assert!(jobs.commit_page(&job.id, None, None, true, 1, 1).await.expect("commit despite a conflict"));
    assert_eq!(ddbp.armed(), 0);

    put(&s3, bucket, "cases/job-task-conflicts", b"counted once".to_vec()).await;
    let task = json!({"bucket": bucket, "key": "cases/job-task-conflicts", "job_id": job.id});
    ddbp.fault_next("UpdateItem", &ledger_table, Fault::TransactionConflict, 1);
    ddbp.fault_next("TransactWriteItems", "", Fault::TransactionCanceledByConflict, 2);
    ddbp.fault_next("UpdateItem", &jobs_table, Fault::TransactionConflict, 1);
    let mark = ddbp.mark();
    let resp = handler.handle(&sqs_event(&[("m-job-task", task)]), now_ms() + 30_000).await;
    let resp = resp.unwrap_or_else(|e| panic!("{}", e.chain()));
    assert_eq!(failed_ids(&resp), Vec::<String>::new(), "{resp}");
    assert_eq!(ddbp.armed(), 0, "every armed conflict was met: {:?}", ddbp.counts_since(mark));
    assert_eq!(ddbp.counts_since(mark).faulted, 4);
    let done = jobs.get(&job.id).await.expect("read job").expect("the job exists");
    assert_eq!(done.status, JobStatus::Succeeded, "{done:?}");
    assert_eq!((done.counters.replicated, done.counters.pending, done.counters.failed), (1, 0, 0), "{done:?}");
    let (bytes, _) =
        gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), "cases/job-task-conflicts").await.expect("copied");
    assert_eq!(bytes, b"counted once");
}
