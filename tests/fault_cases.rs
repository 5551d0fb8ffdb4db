//! One exact fault at a time, each at the spot where the fault test (`tests/faults.rs`) found
//! xcr mishandling it: the fault proxy's script faults chosen requests and forwards the rest.
//! Each case replicates one object through the production wiring and checks the outcome, the
//! ledger and the bytes in GCS (read without the proxy).

mod common;
mod fault_proxy;

use common::*;
use fault_proxy::{Fault, FaultProxy, Plan, Service};
use std::time::Duration;
use xcr::aws::dynamodb::DynamoLedger;
use xcr::model::ObjectRef;
use xcr::replicate::{Outcome, Replication, now_ms};

const TIMEOUT_SECS: u64 = 2;
const CHUNK: usize = 256 * 1024;
/// A case that hangs fails here instead of hanging the suite.
const CASE_LIMIT: Duration = Duration::from_secs(60);

/// Proxies scripted per service (no fault where none is given).
struct Scripts {
    /// How long a stall holds its request: past the client's timeout, or past `CASE_LIMIT` to
    /// show that xcr does not wait on it at all.
    stall: Duration,
    s3: Vec<Option<Fault>>,
    dynamodb: Vec<Option<Fault>>,
    gcs: Vec<Option<Fault>>,
}

fn none() -> Scripts {
    Scripts { stall: Duration::from_millis(TIMEOUT_SECS * 1000 + 1500), s3: vec![], dynamodb: vec![], gcs: vec![] }
}

/// Puts `size` bytes at `key`, replicates it once through proxies scripted with `scripts`, and
/// checks the copy in GCS. Returns the replication's result.
async fn run_case(stack: &Stack, key: &str, size: usize, scripts: Scripts) -> xcr::Result<Replication> {
    let stall = scripts.stall;
    let s3p = FaultProxy::start(Service::S3, stack.var("AWS_ENDPOINT_URL"), Plan::script(stall, scripts.s3)).await;
    let ddbp =
        FaultProxy::start(Service::DynamoDb, stack.var("AWS_ENDPOINT_URL"), Plan::script(stall, scripts.dynamodb))
            .await;
    let gcsp = FaultProxy::start(Service::Gcs, stack.gcs_endpoint(), Plan::script(stall, scripts.gcs)).await;
    let data = bytes_of(size, size as u64);
    put(&stack.s3().await, stack.source_bucket(), key, data.clone()).await;

    let mut vars = stack.env.clone();
    for (k, v) in [
        ("STORAGE_EMULATOR_HOST", gcsp.url()),
        ("XCR_CHUNK_SIZE", CHUNK.to_string()),
        ("XCR_RESUMABLE_THRESHOLD", CHUNK.to_string()),
        ("XCR_REQUEST_TIMEOUT_SECS", TIMEOUT_SECS.to_string()),
    ] {
        vars.insert(k.to_string(), v);
    }
    let cfg = xcr::config::Config::from_vars(vars, xcr::config::Needs::FUNCTION).expect("config");
    let region = stack.var("AWS_REGION");
    let r = xcr::wiring::replicator_split(
        &fault_proxy::sdk_via(&s3p.url(), region).await,
        &fault_proxy::sdk_via(&ddbp.url(), region).await,
        &cfg,
    )
    .expect("replicator");
    let obj = ObjectRef::new(stack.source_bucket(), key);
    let result = tokio::time::timeout(CASE_LIMIT, r.replicate(&obj, None, now_ms() + 10_000))
        .await
        .unwrap_or_else(|_| panic!("{key}: replication hung for {CASE_LIMIT:?}"));
    if result.is_ok() {
        let (bytes, _) = gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), key)
            .await
            .unwrap_or_else(|| panic!("{key} not in GCS"));
        assert!(bytes == data, "{key}: GCS bytes differ");
    }
    result
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
    let r = run_case(
        &stack,
        "cases/lost-claim-answer",
        1000,
        Scripts { dynamodb: vec![Some(Fault::LostResponse)], ..none() },
    )
    .await
    .expect("replicated");
    assert_eq!(r.outcome, Outcome::Replicated, "a lost claim answer is still our claim");
    assert_eq!(lease_of(&stack, "cases/lost-claim-answer").await, None);

    // The completion applied, its answer lost: the retry finds our own record, not a lost lease.
    let r = run_case(
        &stack,
        "cases/lost-completion-answer",
        1000,
        Scripts { dynamodb: vec![None, Some(Fault::LostResponse)], ..none() },
    )
    .await
    .expect("replicated, not 'lease lost'");
    assert_eq!(r.outcome, Outcome::Replicated);
    assert_eq!(lease_of(&stack, "cases/lost-completion-answer").await, None);

    // A claim applied, then every retry refused: the task fails, and gives back the lease it may
    // hold, so the next delivery copies at once instead of waiting for the lease to expire.
    let key = "cases/failed-claim-releases";
    let e = run_case(
        &stack,
        key,
        1000,
        Scripts { dynamodb: vec![Some(Fault::LostResponse), Some(Fault::Reset), Some(Fault::Reset)], ..none() },
    )
    .await
    .expect_err("three failed attempts fail the claim");
    assert!(e.is_retryable(), "{}", e.chain());
    assert_eq!(lease_of(&stack, key).await, None, "the lease the failed claim took was released");
    let r = run_case(&stack, key, 1000, none()).await.expect("redelivery");
    assert_eq!(r.outcome, Outcome::Replicated, "the redelivery is not busy");

    // The claim's first attempt reaches DynamoDB only after the client gave up on it, retried,
    // copied and completed: applied then, it must not take the lease again.
    let key = "cases/late-claim";
    let r = run_case(&stack, key, 1000, Scripts { dynamodb: vec![Some(Fault::LateDelivery)], ..none() })
        .await
        .expect("replicated");
    assert_eq!(r.outcome, Outcome::Replicated);
    // The late copy lands `stall` after it was sent; look once it surely has.
    tokio::time::sleep(Duration::from_millis(TIMEOUT_SECS * 1000 + 2500)).await;
    assert_eq!(lease_of(&stack, key).await, None, "a late claim took the lease after the task completed");

    // DynamoDB holds a request (for longer than this case may take): the attempt times out and
    // is retried.
    let forever = Duration::from_secs(2 * CASE_LIMIT.as_secs());
    let r = run_case(
        &stack,
        "cases/stalled-dynamodb",
        1000,
        Scripts { stall: forever, dynamodb: vec![Some(Fault::Stall)], ..none() },
    )
    .await
    .expect("replicated");
    assert_eq!(r.outcome, Outcome::Replicated);

    // S3 holds a GetObject (as long).
    let r =
        run_case(&stack, "cases/stalled-s3", 1000, Scripts { stall: forever, s3: vec![Some(Fault::Stall)], ..none() })
            .await
            .expect("replicated");
    assert_eq!(r.outcome, Outcome::Replicated);

    // S3 sends half a body and then nothing: the SDK's stalled-stream protection fails the read,
    // and the stream is re-opened where it stopped.
    let r = run_case(
        &stack,
        "cases/stalled-s3-body",
        3 * CHUNK,
        Scripts { stall: forever, s3: vec![Some(Fault::BodyStall)], ..none() },
    )
    .await
    .expect("replicated");
    let report = r.transfer.as_ref().expect("a transfer report");
    assert!(report.source_reopens >= 1, "the stalled body was re-opened: {report:?}");

    // The first chunk of a resumable upload is lost before it arrives. The emulator's status
    // answer for an empty session (`Range: bytes=0-0`) names one byte; the chunk sent from byte 1
    // is refused, and is sent again from its start.
    let r = run_case(
        &stack,
        "cases/first-chunk-lost",
        3 * CHUNK,
        Scripts { gcs: vec![None, Some(Fault::Reset)], ..none() },
    )
    .await
    .expect("replicated");
    let report = r.transfer.as_ref().expect("a transfer report");
    assert!(report.resumed_chunks >= 1, "the first chunk was resumed: {report:?}");
}
