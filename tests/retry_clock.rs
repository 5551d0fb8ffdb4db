//! The retry clock: a failed SQS record comes back in seconds, growing with each receive, not
//! after the queue's visibility timeout (5,400 s on the local stack, as with the template's
//! defaults on AWS), and a poison message reaches the dead-letter queue after `maxReceiveCount`
//! deliveries within the time the clock allows. The pump here keeps the queue's own visibility
//! timeout, as Lambda's event source mapping does: only the handler shortens it.

mod common;

use common::*;
use std::time::{Duration, Instant};
use xcr::adapters::aws::job_store::DynamoJobStore;
use xcr::adapters::aws::sqs::Queue;
use xcr::domain::redelivery::RetryClock;
use xcr::entry::handler::Handler;
use xcr::entry::pump::{PumpOptions, pump};

/// 1 s after the first failure, at most 4 s after the second: short enough for a test, the
/// same schedule as the defaults (15 s × 4ⁿ, capped) otherwise.
fn test_clock() -> RetryClock {
    RetryClock { base: Duration::from_secs(1), max: Duration::from_secs(4) }
}

async fn handler(stack: &Stack, max_receives: Option<u32>) -> xcr::wiring::S3ToGcsHandler {
    Handler::new(
        // The command below names a bucket outside the routes: listed, or it would be refused.
        replicator(stack, &[("XCR_ALLOWED_DESTINATIONS", &format!("gs://{} gs://created-later", stack.dest_bucket()))])
            .await,
        4,
        Some(Queue::new(&stack.sdk().await, stack.var("XCR_QUEUE_URL"))),
        None::<DynamoJobStore>,
    )
    .with_retry_clock(test_clock())
    .with_max_receives(max_receives)
}

fn opts(idle_secs: u64) -> PumpOptions {
    // No visibility override: the queue's own (long) timeout applies unless the handler sets one.
    PumpOptions { wait_secs: 1, until_idle: Some(Duration::from_secs(idle_secs)), ..Default::default() }
}

async fn drain_test_event(stack: &Stack, queue: &Queue) {
    let h = handler(stack, None).await;
    pump(&h, queue, "us-east-1", None::<&xcr::wiring::S3JobDriver>, &opts(2)).await.expect("drain");
}

/// A record that fails (its destination bucket does not exist yet) is delivered again within
/// seconds, and succeeds once the cause is fixed.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_record_is_retried_within_seconds() {
    let stack = Stack::up();
    let sdk = stack.sdk().await;
    let queue = Queue::new(&sdk, stack.var("XCR_QUEUE_URL"));
    assert!(queue.visibility_timeout().await.expect("attributes") >= 900, "the queue's own timeout is long");
    drain_test_event(&stack, &queue).await;
    let s3 = stack.s3().await;
    put(&s3, stack.source_bucket(), "clock/object.txt", b"comes back soon".to_vec()).await;
    let body = serde_json::json!({
        "bucket": stack.source_bucket(),
        "key": "clock/object.txt",
        "destination": "gs://created-later/clock/object.txt",
    })
    .to_string();
    queue.send(&[body.as_str()]).await.expect("send");

    let h = handler(&stack, Some(5)).await;
    // The first delivery of the command fails: the bucket does not exist.
    let first = pump(
        &h,
        &queue,
        "us-east-1",
        None::<&xcr::wiring::S3JobDriver>,
        &PumpOptions { max_batches: Some(1), ..opts(1) },
    )
    .await
    .expect("first delivery");
    // (The put's own S3 notification is in the queue too, and succeeds.)
    assert_eq!(first.failed, 1, "{first:?}");
    // Fix the cause, then wait for the retry: it comes within the clock's first step (1 s),
    // not after the queue's visibility timeout.
    let made = reqwest::Client::new()
        .post(format!("{}/storage/v1/b?project=xcr-tests", stack.gcs_endpoint()))
        .json(&serde_json::json!({"name": "created-later"}))
        .send()
        .await
        .expect("create bucket");
    assert!(made.status().is_success(), "{}", made.status());
    let started = Instant::now();
    // Without the clock the record would stay hidden for the queue's whole visibility timeout,
    // and the pump would wait for it.
    let retried = tokio::time::timeout(
        Duration::from_secs(60),
        pump(&h, &queue, "us-east-1", None::<&xcr::wiring::S3JobDriver>, &opts(3)),
    )
    .await
    .expect("the failed record did not come back within 60 s")
    .expect("retry");
    assert_eq!(retried.failed, 0, "{retried:?}");
    assert!(retried.deleted >= 1, "{retried:?}");
    assert!(started.elapsed() < Duration::from_secs(60), "retried after {:?}", started.elapsed());
    let (bytes, _) = gcs_read(stack.gcs_endpoint(), "created-later", "clock/object.txt").await.expect("copied");
    assert_eq!(bytes, b"comes back soon");
}

/// A poison message is delivered `maxReceiveCount` times, each retry after the clock's delay,
/// and is in the dead-letter queue within the clock's total (1 + 4 s, then 1 s after the last
/// delivery), not after three visibility timeouts (4.5 hours).
#[tokio::test(flavor = "multi_thread")]
async fn a_poison_message_reaches_the_dlq_on_the_clock() {
    let stack = Stack::up_with(&["MaxReceiveCount=3"]);
    let sdk = stack.sdk().await;
    let queue = Queue::new(&sdk, stack.var("XCR_QUEUE_URL"));
    let dlq = Queue::new(&sdk, stack.var("XCR_DLQ_URL"));
    drain_test_event(&stack, &queue).await;
    let max = queue.max_receive_count().await.expect("redrive policy");
    assert_eq!(max, Some(3));
    queue.send(&["{\"poison\": true}"]).await.expect("send");
    let h = handler(&stack, max).await;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(90);
    let mut deliveries = 0;
    while dlq.depth().await.expect("depth").0 == 0 {
        assert!(Instant::now() < deadline, "not in the DLQ after {deliveries} deliveries");
        // Without the clock the message would stay hidden for the queue's visibility timeout,
        // and the pump would wait for it.
        let left = deadline.saturating_duration_since(Instant::now());
        let stats = tokio::time::timeout(
            left,
            pump(
                &h,
                &queue,
                "us-east-1",
                None::<&xcr::wiring::S3JobDriver>,
                &PumpOptions { max_batches: Some(1), ..opts(1) },
            ),
        )
        .await
        .unwrap_or_else(|_| panic!("not in the DLQ after {deliveries} deliveries and {:?}", started.elapsed()))
        .expect("pump");
        deliveries += stats.failed;
        assert_eq!(stats.deleted, 0);
    }
    let took = started.elapsed();
    assert_eq!(deliveries, 3, "delivered maxReceiveCount times");
    // 1 s + up to 4 s + 1 s of clock, plus receive waits and processing.
    assert!(took < Duration::from_secs(45), "reached the DLQ after {took:?}");
    assert_eq!(queue.depth().await.expect("depth"), (0, 0));
}
