//! The replicate use case and handler against real emulators: ledger claims in DynamoDB (moto),
//! ordering, duplicates, leases, SQS batches, the dead-letter queue and deletes.

mod common;

use common::*;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use xcr::adapters::aws::job_store::DynamoJobStore;
use xcr::adapters::aws::ledger::DynamoLedger;
use xcr::adapters::aws::s3::S3Source;
use xcr::adapters::aws::sqs::Queue;
use xcr::adapters::gcs::GcsClient;
use xcr::domain::events::{Action, Task};
use xcr::domain::model::{ObjectRef, StoredObject};
use xcr::domain::replicate::{Outcome, ReplicateSettings, Replicator, now_ms};
use xcr::domain::routing::Router;
use xcr::entry::handler::Handler;
use xcr::entry::pump::{PumpOptions, pump, redrive};
use xcr::ports::{Claim, ClaimRequest, Ledger, ObjectSink, UploadSpec};
use xcr::transfer::{Transfer, TransferConfig};

/// Records every upload (the source version it carried), around the real GCS client.
/// Optionally holds each upload of a source version for a set time (`delays`, by version id),
/// so that copies of different versions overlap in races.
struct RecordingSink {
    uploads: Mutex<Vec<String>>,
    /// (object name, source version) of every upload, in the order they started.
    named: Mutex<Vec<(String, String)>>,
    delays: Mutex<HashMap<String, u64>>,
    count: AtomicU32,
}

impl RecordingSink {
    fn note(&self, spec: &UploadSpec) {
        self.count.fetch_add(1, Ordering::SeqCst);
        let v = spec.metadata.get("xcr-source-version-id").cloned().unwrap_or_default();
        self.uploads.lock().expect("lock").push(v.clone());
        self.named.lock().expect("lock").push((spec.name.clone(), v));
    }

    async fn hold(&self, spec: &UploadSpec) {
        let v = spec.metadata.get("xcr-source-version-id").cloned().unwrap_or_default();
        let ms = self.delays.lock().expect("lock").get(&v).copied();
        if let Some(ms) = ms {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
    }
}

impl SinkHooks for RecordingSink {
    async fn upload_single(
        &self,
        inner: &GcsClient,
        spec: &UploadSpec,
        data: bytes::Bytes,
    ) -> xcr::Result<StoredObject> {
        self.note(spec);
        self.hold(spec).await;
        inner.upload_single(spec, data).await
    }
    async fn start_session(&self, inner: &GcsClient, spec: &UploadSpec) -> xcr::Result<String> {
        self.note(spec);
        inner.start_session(spec).await
    }
}

async fn recording(stack: &Stack, deletes: bool) -> Replicator<S3Source, Around<RecordingSink>, DynamoLedger> {
    let sdk = stack.sdk().await;
    let sink = Around::new(
        stack.gcs(),
        RecordingSink {
            uploads: Mutex::new(vec![]),
            named: Mutex::new(vec![]),
            delays: Mutex::new(HashMap::new()),
            count: AtomicU32::new(0),
        },
    );
    let transfer = Transfer::new(S3Source::new(&sdk), sink, TransferConfig::default(), fast_retry());
    let router = Router::new(Some(stack.dest_bucket()), None).expect("router");
    let settings = ReplicateSettings { replicate_deletes: deletes, ..Default::default() };
    Replicator::new(transfer, ledger(&sdk, stack), router, settings)
}

fn copy_task(bucket: &str, key: &str, version: Option<&str>, seq: Option<&str>) -> Task {
    Task {
        action: Action::Copy,
        object: ObjectRef::new(bucket, key).with_version(version.map(str::to_string)),
        sequencer: seq.map(str::to_string),
        event_time: None,
        job_id: None,
        job_task: None,
        destination: None,
        overwrite: None,
        event: None,
    }
}

fn deadline() -> i64 {
    now_ms() + 60_000
}

async fn outcome(r: &Replicator<S3Source, Around<RecordingSink>, DynamoLedger>, task: &Task) -> Outcome {
    let mut results = r.apply(task, deadline()).await;
    assert_eq!(results.len(), 1);
    results.remove(0).unwrap_or_else(|e| panic!("{}", e.chain())).outcome
}

/// The same event ten times at once: exactly one upload; the others are duplicates or busy.
#[tokio::test(flavor = "multi_thread")]
async fn ten_concurrent_deliveries_upload_once() {
    let stack = Stack::up();
    let s3 = stack.s3().await;
    let put = put(&s3, stack.source_bucket(), "dup/object.bin", bytes_of(300_000, 1)).await;
    let r = recording(&stack, false).await;
    let task = copy_task(stack.source_bucket(), "dup/object.bin", put.version_id(), Some("0055AED6DCD90281E5"));
    let outcomes = futures::future::join_all((0..10).map(|_| outcome(&r, &task))).await;
    let replicated = outcomes.iter().filter(|o| **o == Outcome::Replicated).count();
    assert_eq!(replicated, 1, "{outcomes:?}");
    assert!(
        outcomes.iter().all(|o| matches!(o, Outcome::Replicated | Outcome::AlreadyReplicated | Outcome::Busy)),
        "{outcomes:?}"
    );
    assert_eq!(r.transfer().sink().hooks.count.load(Ordering::SeqCst), 1, "exactly one upload");
    // Once settled, every redelivery is a duplicate and uploads nothing.
    assert_eq!(outcome(&r, &task).await, Outcome::AlreadyReplicated);
    // Without a sequencer (API call, job), the version and ETag tell the duplicate.
    assert_eq!(
        outcome(&r, &copy_task(stack.source_bucket(), "dup/object.bin", None, None)).await,
        Outcome::AlreadyReplicated
    );
    assert_eq!(r.transfer().sink().hooks.count.load(Ordering::SeqCst), 1);
}

/// Three versions, their events delivered in many orders with duplicates: GCS always ends at the
/// newest and no upload ever goes back to an older version.
#[tokio::test(flavor = "multi_thread")]
async fn versions_in_any_order_end_at_the_newest() {
    let stack = Stack::up();
    let s3 = stack.s3().await;
    let bucket = stack.source_bucket().to_string();
    let mut rng = fastrand::Rng::with_seed(7);
    for (trial, with_sequencer) in [(0, true), (1, true), (2, true), (3, false), (4, false)] {
        let key = format!("order/{trial}.bin");
        let mut versions = Vec::new();
        for v in 0..3u64 {
            let data = bytes_of(1000 + v as usize, v + 10 * trial);
            let out = put(&s3, &bucket, &key, data.clone()).await;
            versions.push((out.version_id().expect("versioned bucket").to_string(), data));
            if !with_sequencer {
                // Without sequencers versions are ordered by last-modified, which S3 keeps in seconds.
                tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
            }
        }
        let seqs = ["0055AED6DCD90281E5", "0055AED6DCD90281E6", "0055AED6DCD9028200"];
        let mut deliveries: Vec<usize> = (0..3).chain((0..4).map(|_| rng.usize(0..3))).collect();
        rng.shuffle(&mut deliveries);
        let r = recording(&stack, false).await;
        for (round, &i) in deliveries.iter().enumerate() {
            let task = copy_task(&bucket, &key, Some(&versions[i].0), with_sequencer.then_some(seqs[i]));
            // Half of the deliveries race a duplicate of themselves.
            if round % 2 == 0 {
                futures::future::join_all([outcome(&r, &task), outcome(&r, &task)]).await;
            } else {
                outcome(&r, &task).await;
            }
        }
        let uploads = r.transfer().sink().hooks.uploads.lock().expect("lock").clone();
        let order: Vec<usize> =
            uploads.iter().map(|v| versions.iter().position(|(id, _)| id == v).expect("known version")).collect();
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "trial {trial}: uploads went back in time: {order:?} for deliveries {deliveries:?}"
        );
        let (got, meta) = gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), &key).await.expect("copied");
        assert!(got == versions[2].1, "trial {trial}: GCS must hold the newest version (deliveries {deliveries:?})");
        let done = ledger_item(&stack, stack.dest_bucket(), &key).await.and_then(|i| i.done).expect("a done record");
        assert_eq!(done.version_id.as_deref(), Some(versions[2].0.as_str()), "trial {trial}: the ledger's version");
        assert_eq!(done.generation, Some(generation_of(&meta)), "trial {trial}: the ledger's generation");
    }
}

/// Different versions of one key raced against each other, many seeds: each of three versions
/// is delivered once or twice, all deliveries start together (seeded start offsets) and every
/// upload is held for a seeded time, so an older version's copy is often in flight when a newer
/// event arrives. A delivery told `busy` is redelivered, as SQS would. Every seed ends with GCS
/// at the newest version, the ledger's record naming that version and GCS's generation, uploads
/// that never went back in time and the newest uploaded exactly once; across the seeds both
/// `busy` (a newer event met an older copy in flight) and `stale` (an older event met a newer
/// record) happened, so the races this names did run.
#[tokio::test(flavor = "multi_thread")]
async fn versions_of_one_key_raced_against_each_other_end_at_the_newest() {
    const SEEDS: u64 = 16;
    let stack = Stack::up();
    let s3 = stack.s3().await;
    let sdk = stack.sdk().await;
    let bucket = stack.source_bucket().to_string();
    let r = recording(&stack, false).await;
    let led = ledger(&sdk, &stack);
    let seqs = ["0055AED6DCD90281E5", "0055AED6DCD90281E6", "0055AED6DCD9028200"];
    let mut plans = Vec::new();
    for seed in 0..SEEDS {
        let mut rng = fastrand::Rng::with_seed(1000 + seed);
        let key = format!("race/{seed}.bin");
        let mut versions = Vec::new();
        for v in 0..3u64 {
            let data = bytes_of(2000 + v as usize, 100 * seed + v);
            let out = put(&s3, &bucket, &key, data.clone()).await;
            let id = out.version_id().expect("versioned bucket").to_string();
            r.transfer().sink().hooks.delays.lock().expect("lock").insert(id.clone(), rng.u64(20..150));
            versions.push((id, data));
        }
        // Each version once or twice, with a start offset within the others' upload time.
        let mut deliveries: Vec<(usize, u64)> = Vec::new();
        for v in 0..3 {
            for _ in 0..rng.usize(1..=2) {
                deliveries.push((v, rng.u64(0..40)));
            }
        }
        rng.shuffle(&mut deliveries);
        plans.push((key, versions, deliveries));
    }
    let deliver = |key: String, version: String, seq: &'static str, offset: u64| {
        let (r, bucket) = (&r, &bucket);
        async move {
            tokio::time::sleep(std::time::Duration::from_millis(offset)).await;
            let task = copy_task(bucket, &key, Some(&version), Some(seq));
            let mut seen = Vec::new();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            loop {
                let o = outcome(r, &task).await;
                seen.push(o);
                if o != Outcome::Busy {
                    return seen;
                }
                assert!(std::time::Instant::now() < deadline, "{key} {version}: busy for a minute: {seen:?}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };
    let all = plans.iter().flat_map(|(key, versions, deliveries)| {
        deliveries.iter().map(|&(v, offset)| deliver(key.clone(), versions[v].0.clone(), seqs[v], offset))
    });
    let outcomes: Vec<Vec<Outcome>> = futures::future::join_all(all).await;
    let flat: Vec<&Outcome> = outcomes.iter().flatten().collect();
    assert!(
        flat.iter()
            .all(|o| matches!(o, Outcome::Replicated | Outcome::AlreadyReplicated | Outcome::Stale | Outcome::Busy)),
        "{outcomes:?}"
    );
    let named = r.transfer().sink().hooks.named.lock().expect("lock").clone();
    for (key, versions, deliveries) in &plans {
        let order: Vec<usize> = named
            .iter()
            .filter(|(n, _)| n == key)
            .map(|(_, v)| versions.iter().position(|(id, _)| id == v).expect("known version"))
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{key}: uploads went back in time: {order:?} ({deliveries:?})");
        assert_eq!(order.last(), Some(&2), "{key}: the newest was uploaded, once ({order:?})");
        let (got, meta) = gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), key).await.expect("copied");
        assert!(got == versions[2].1, "{key}: GCS must hold the newest version ({deliveries:?})");
        let done = led
            .get(&format!("gs://{}/{key}", stack.dest_bucket()))
            .await
            .expect("ledger")
            .and_then(|i| i.done)
            .expect("a done record");
        assert_eq!(done.version_id.as_deref(), Some(versions[2].0.as_str()), "{key}: the ledger names the newest");
        assert_eq!(done.generation, Some(generation_of(&meta)), "{key}: the ledger names GCS's generation");
        assert_eq!(done.crc32c.as_deref(), Some(crc32c_b64(&versions[2].1).as_str()));
    }
    let busy = flat.iter().filter(|o| ***o == Outcome::Busy).count();
    let stale = flat.iter().filter(|o| ***o == Outcome::Stale).count();
    eprintln!("{SEEDS} seeds: {} deliveries, {busy} busy, {stale} stale", outcomes.len());
    assert!(busy > 0 && stale > 0, "the versions never overlapped: {busy} busy, {stale} stale");
}

/// Holds the upload of one source version (`held`) until `release` is notified, after telling
/// `entered` that it is in flight. Every upload's result is recorded.
struct GateSink {
    held: String,
    entered: tokio::sync::Notify,
    release: tokio::sync::Notify,
    results: Mutex<Vec<(String, Result<String, xcr::ErrorKind>)>>,
}

impl SinkHooks for GateSink {
    async fn upload_single(
        &self,
        inner: &GcsClient,
        spec: &UploadSpec,
        data: bytes::Bytes,
    ) -> xcr::Result<StoredObject> {
        let v = spec.metadata.get("xcr-source-version-id").cloned().unwrap_or_default();
        if v == self.held {
            self.entered.notify_one();
            self.release.notified().await;
        }
        let res = inner.upload_single(spec, data).await;
        let noted = res.as_ref().map(|s| s.generation.clone()).map_err(|e| e.kind());
        self.results.lock().expect("lock").push((v, noted));
        res
    }
}

/// The race that matters, built deterministically: the older version's copy is held in its
/// upload; the newer event, delivered meanwhile, is `busy` while the older holder's lease runs;
/// once that lease has expired the newer copy claims, uploads and completes; only then is the
/// older copy's upload released. Its late write carries the generation precondition it claimed
/// with (none yet: `ifGenerationMatch=0`), GCS (fake-gcs-server, which enforces it) refuses it,
/// and the old holder gives up without recording. GCS ends at the newer version and the
/// ledger's record names it with GCS's generation.
#[tokio::test(flavor = "multi_thread")]
async fn an_older_copy_still_uploading_when_a_newer_completes_is_refused() {
    const DEST: &str = "race-fenced";
    let stack = Stack::up();
    let gcs = FakeGcs::start(DEST).await;
    let s3 = stack.s3().await;
    let sdk = stack.sdk().await;
    let (b, k) = (stack.source_bucket().to_string(), "race/late.bin");
    let old = put(&s3, &b, k, bytes_of(3000, 41)).await.version_id().expect("versioned").to_string();
    let newer_bytes = bytes_of(3001, 42);
    let newer = put(&s3, &b, k, newer_bytes.clone()).await.version_id().expect("versioned").to_string();
    let sink = Around::new(
        gcs.client(),
        GateSink {
            held: old.clone(),
            entered: tokio::sync::Notify::new(),
            release: tokio::sync::Notify::new(),
            results: Mutex::new(vec![]),
        },
    );
    let transfer = Transfer::new(S3Source::new(&sdk), sink, TransferConfig::default(), fast_retry());
    // A short lease (the time-to-live form callers without a hard deadline use), so that the
    // held copy outlives it in seconds.
    let lease = std::time::Duration::from_secs(3);
    let r = Replicator::new(transfer, ledger(&sdk, &stack), Router::new(Some(DEST), None).expect("router"), {
        ReplicateSettings::default()
    })
    .with_lease_ttl(Some(lease));
    let old_task = copy_task(&b, k, Some(&old), Some("0055AED6DCD90281E5"));
    let new_task = copy_task(&b, k, Some(&newer), Some("0055AED6DCD90281E6"));
    let gate = &r.transfer().sink().hooks;
    let apply = |t: Task| {
        let r = &r;
        async move { r.apply(&t, deadline()).await.remove(0) }
    };
    let newer_run = async {
        tokio::time::timeout(std::time::Duration::from_secs(30), gate.entered.notified())
            .await
            .expect("the older copy reached its upload");
        let started = std::time::Instant::now();
        let first = apply(new_task.clone()).await.unwrap_or_else(|e| panic!("{}", e.chain()));
        if started.elapsed() < lease {
            assert_eq!(first.outcome, Outcome::Busy, "the older holder's lease still runs");
        }
        // Redelivered until the older holder's lease has expired and the newer copy lands.
        let mut last = first.outcome;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while last != Outcome::Replicated {
            assert_eq!(last, Outcome::Busy);
            assert!(std::time::Instant::now() < deadline, "the newer copy never got the lease");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            last = apply(new_task.clone()).await.unwrap_or_else(|e| panic!("{}", e.chain())).outcome;
        }
        gate.release.notify_one();
    };
    let (old_result, ()) = tokio::join!(apply(old_task.clone()), newer_run);
    match old_result {
        Err(e) => assert!(e.chain().contains("lease"), "the old holder stops on its lost lease: {}", e.chain()),
        Ok(o) => panic!("the late older copy must not succeed: {o:?}"),
    }
    let results = gate.results.lock().expect("lock").clone();
    assert_eq!(results.len(), 2, "{results:?}");
    assert_eq!(results[0].0, newer);
    assert!(results[0].1.is_ok(), "{results:?}");
    assert_eq!(results[1], (old.clone(), Err(xcr::ErrorKind::Conflict)), "GCS refused the late write");
    let (bytes, generation) = gcs.read(k).await.expect("in GCS");
    assert!(bytes == newer_bytes, "GCS holds the newer version");
    let done = ledger_item(&stack, DEST, k).await.and_then(|i| i.done).expect("done record");
    assert_eq!(done.version_id.as_deref(), Some(newer.as_str()));
    assert_eq!(done.generation.as_deref(), Some(generation.as_str()), "ledger and GCS agree");
    // A redelivery of the older event now is stale and uploads nothing.
    assert_eq!(apply(old_task).await.expect("stale").outcome, Outcome::Stale);
    assert_eq!(gate.results.lock().expect("lock").len(), 2);
}

/// A claim whose holder crashed blocks the key only until its lease expires.
#[tokio::test(flavor = "multi_thread")]
async fn crashed_claim_expires_and_the_next_delivery_succeeds() {
    let stack = Stack::up();
    let s3 = stack.s3().await;
    put(&s3, stack.source_bucket(), "crash/obj.bin", bytes_of(5000, 3)).await;
    let r = recording(&stack, false).await;
    let key = format!("gs://{}/crash/obj.bin", stack.dest_bucket());
    let crashed = ClaimRequest {
        key,
        owner: "crashed-worker".into(),
        now_ms: now_ms(),
        lease_until_ms: now_ms() + 2000,
        sequencer: None,
        source_bucket: String::new(),
    };
    assert!(matches!(r.ledger().claim(&crashed).await.expect("claim"), Claim::Acquired { .. }));
    let task = copy_task(stack.source_bucket(), "crash/obj.bin", None, None);
    assert_eq!(outcome(&r, &task).await, Outcome::Busy);
    // Redelivered until the lease has expired (a condition, not a sleep guessed at the lease).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match outcome(&r, &task).await {
            Outcome::Replicated => break,
            Outcome::Busy => assert!(std::time::Instant::now() < deadline, "the crashed claim never expired"),
            other => panic!("{other:?}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(now_ms() >= crashed.lease_until_ms, "replicated only once the crashed lease had expired");
}

/// A batch with a good record, a missing source, an unreadable body and a busy key: exactly the
/// unreadable and the busy records are reported for redelivery. With a queue to requeue to, the
/// busy one goes back with a delay instead (acknowledged, its receive count untouched).
#[tokio::test(flavor = "multi_thread")]
async fn partial_batch_failure_is_reported_exactly() {
    let stack = Stack::up();
    let s3 = stack.s3().await;
    let bucket = stack.source_bucket();
    put(&s3, bucket, "batch/good.txt", b"good".to_vec()).await;
    put(&s3, bucket, "batch/busy.txt", b"busy".to_vec()).await;
    let sdk = stack.sdk().await;
    let queue = Queue::new(&sdk, stack.var("XCR_QUEUE_URL"));
    // Empty the queue of what the uploads notified, to count the requeued record alone.
    sdk_purge(&sdk, stack.var("XCR_QUEUE_URL")).await;
    let without_requeue = Handler::new(replicator(&stack, &[]).await, 4, None::<Queue>, None::<DynamoJobStore>);
    let with_requeue = Handler::new(replicator(&stack, &[]).await, 4, Some(queue.clone()), None::<DynamoJobStore>)
        .with_retry_clock(fast_clock());
    // Someone else holds the busy key.
    let hold = ClaimRequest {
        key: format!("gs://{}/batch/busy.txt", stack.dest_bucket()),
        owner: "other".into(),
        now_ms: now_ms(),
        lease_until_ms: now_ms() + 600_000,
        sequencer: None,
        source_bucket: String::new(),
    };
    without_requeue.replicator().ledger().claim(&hold).await.expect("hold");
    let s3_event = |key: &str| {
        json!({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": bucket}, "object": {"key": key}}}]}).to_string()
    };
    let record = |id: &str, body: String| json!({"messageId": id, "receiptHandle": "r", "body": body, "eventSource": "aws:sqs", "attributes": {}});
    let busy_body = json!({"bucket": bucket, "key": "batch/busy.txt"}).to_string();
    let event = json!({"Records": [
        record("m-good", s3_event("batch/good.txt")),
        record("m-missing", s3_event("batch/never-written.txt")),
        record("m-garbage", "this is not json {".into()),
        record("m-busy", busy_body.clone()),
    ]});
    let failed = |resp: serde_json::Value| {
        let mut ids: Vec<String> = resp["batchItemFailures"]
            .as_array()
            .expect("failures")
            .iter()
            .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_string))
            .collect();
        ids.sort_unstable();
        ids
    };
    assert_eq!(failed(without_requeue.handle(&event, deadline()).await.expect("handled")), vec!["m-busy", "m-garbage"]);
    assert!(gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), "batch/good.txt").await.is_some());
    assert_eq!(queue.depth().await.expect("depth"), (0, 0), "nothing requeued without a queue");

    assert_eq!(failed(with_requeue.handle(&event, deadline()).await.expect("handled")), vec!["m-garbage"]);
    assert_eq!(queue.depth().await.expect("depth"), (0, 1), "the busy record waits, delayed, in the queue");
    // It comes back once its delay is over: received with long polls until then.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let back = loop {
        let got = queue.receive(10, 5, Some(30)).await.expect("receive");
        if !got.is_empty() {
            break got;
        }
        assert!(std::time::Instant::now() < deadline, "the requeued record never came back");
    };
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].body, busy_body);
    assert_eq!(back[0].receive_count, 1, "requeued as a new message");
}

async fn sdk_purge(sdk: &aws_config::SdkConfig, url: &str) {
    aws_sdk_sqs::Client::new(sdk).purge_queue().queue_url(url).send().await.expect("purge");
}

/// A message that can never be processed reaches the DLQ after maxReceiveCount deliveries, and
/// `redrive` brings it back.
#[tokio::test(flavor = "multi_thread")]
async fn poison_message_reaches_the_dlq_and_redrive_brings_it_back() {
    let stack = Stack::up_with(&["MaxReceiveCount=2"]);
    let sdk = stack.sdk().await;
    let queue = Queue::new(&sdk, stack.var("XCR_QUEUE_URL"));
    let dlq = Queue::new(&sdk, stack.var("XCR_DLQ_URL"));
    // Drain the s3:TestEvent that configuring the notification produced.
    let handler = Handler::new(
        replicator(&stack, &[]).await,
        4,
        Some(Queue::new(&stack.sdk().await, stack.var("XCR_QUEUE_URL"))),
        None::<DynamoJobStore>,
    )
    .with_retry_clock(xcr::domain::redelivery::RetryClock {
        base: std::time::Duration::from_secs(1),
        max: std::time::Duration::from_secs(1),
    });
    let opts = PumpOptions {
        wait_secs: 1,
        visibility_secs: Some(1),
        until_idle: Some(std::time::Duration::from_secs(2)),
        ..Default::default()
    };
    pump(&handler, &queue, "us-east-1", None::<&xcr::wiring::S3JobDriver>, &opts).await.expect("drain");
    queue.send(&["{\"poison\": true}"]).await.expect("send");
    let stats = pump(&handler, &queue, "us-east-1", None::<&xcr::wiring::S3JobDriver>, &opts).await.expect("pump");
    assert_eq!(stats.deleted, 0, "{stats:?}");
    assert!(stats.failed >= 2, "delivered maxReceiveCount times: {stats:?}");
    assert_eq!(dlq.depth().await.expect("depth").0, 1, "the poison message is in the DLQ");
    assert_eq!(queue.depth().await.expect("depth"), (0, 0));
    assert_eq!(redrive(&dlq, &queue, 100).await.expect("redrive"), 1);
    assert_eq!(dlq.depth().await.expect("depth").0, 0);
    let back = queue.receive(10, 1, Some(30)).await.expect("receive");
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].body, "{\"poison\": true}");
}

fn delete_task(bucket: &str, key: &str, seq: Option<&str>, event_time: Option<&str>) -> Task {
    Task {
        action: Action::Delete,
        object: ObjectRef::new(bucket, key),
        sequencer: seq.map(str::to_string),
        event_time: event_time.map(str::to_string),
        job_id: None,
        job_task: None,
        destination: None,
        overwrite: None,
        event: None,
    }
}

/// Deletes are off by default; when on, they are ordered against writes by the same ledger.
#[tokio::test(flavor = "multi_thread")]
async fn deletes_are_ordered_like_writes_and_off_by_default() {
    let stack = Stack::up();
    let s3 = stack.s3().await;
    let bucket = stack.source_bucket();
    let present = |key: &'static str| {
        let (endpoint, dest) = (stack.gcs_endpoint().to_string(), stack.dest_bucket().to_string());
        async move { gcs_read(&endpoint, &dest, key).await.is_some() }
    };

    // Off by default: a delete event changes nothing.
    put(&s3, bucket, "del/off.txt", b"x".to_vec()).await;
    let off = recording(&stack, false).await;
    assert_eq!(outcome(&off, &copy_task(bucket, "del/off.txt", None, Some("10"))).await, Outcome::Replicated);
    assert_eq!(outcome(&off, &delete_task(bucket, "del/off.txt", Some("20"), None)).await, Outcome::Skipped);
    assert!(present("del/off.txt").await);

    let on = recording(&stack, true).await;
    // A delete older than the recorded write does nothing: the ordering mark refuses it.
    put(&s3, bucket, "del/a.txt", b"a".to_vec()).await;
    assert_eq!(outcome(&on, &copy_task(bucket, "del/a.txt", None, Some("0020"))).await, Outcome::Replicated);
    assert_eq!(outcome(&on, &delete_task(bucket, "del/a.txt", Some("0010"), None)).await, Outcome::Stale);
    assert!(present("del/a.txt").await);
    // A newer delete removes it once S3 has no current object; a write older than that delete
    // then does nothing.
    s3.delete_object().bucket(bucket).key("del/a.txt").send().await.expect("delete");
    assert_eq!(outcome(&on, &delete_task(bucket, "del/a.txt", Some("0030"), None)).await, Outcome::Deleted);
    assert!(!present("del/a.txt").await);
    assert_eq!(outcome(&on, &copy_task(bucket, "del/a.txt", None, Some("0025"))).await, Outcome::Stale);
    assert!(!present("del/a.txt").await);
    // A write after the delete brings it back.
    put(&s3, bucket, "del/a.txt", b"a again".to_vec()).await;
    assert_eq!(outcome(&on, &copy_task(bucket, "del/a.txt", None, Some("0040"))).await, Outcome::Replicated);
    assert!(present("del/a.txt").await);

    // A delete event is decided by what S3 serves now, with or without a sequencer: while the
    // object exists the copy stays (nothing is uploaded), once it is gone the copy goes.
    put(&s3, bucket, "del/b.txt", b"b".to_vec()).await;
    assert_eq!(outcome(&on, &copy_task(bucket, "del/b.txt", None, None)).await, Outcome::Replicated);
    assert_eq!(outcome(&on, &delete_task(bucket, "del/b.txt", None, None)).await, Outcome::AlreadyReplicated);
    assert!(present("del/b.txt").await);
    s3.delete_object().bucket(bucket).key("del/b.txt").send().await.expect("delete");
    assert_eq!(outcome(&on, &delete_task(bucket, "del/b.txt", None, None)).await, Outcome::Deleted);
    assert!(!present("del/b.txt").await);
}

/// S3 -> SQS notifications -> pump -> replicate -> GCS, through the queue the template created.
#[tokio::test(flavor = "multi_thread")]
async fn notifications_flow_through_the_queue_into_gcs() {
    let stack = Stack::up();
    let s3 = stack.s3().await;
    let keys = ["flow/one.txt", "flow/with space+plus.txt", "flow/ünïcødé/deep/é.bin"];
    for (i, k) in keys.iter().enumerate() {
        put(&s3, stack.source_bucket(), k, bytes_of(10_000 + i, i as u64)).await;
    }
    let sdk = stack.sdk().await;
    let queue = Queue::new(&sdk, stack.var("XCR_QUEUE_URL"));
    let handler = Handler::new(
        replicator(&stack, &[]).await,
        4,
        Some(Queue::new(&stack.sdk().await, stack.var("XCR_QUEUE_URL"))),
        None::<DynamoJobStore>,
    );
    let opts = PumpOptions { wait_secs: 1, until_idle: Some(std::time::Duration::from_secs(2)), ..Default::default() };
    let stats = pump(&handler, &queue, "us-east-1", None::<&xcr::wiring::S3JobDriver>, &opts).await.expect("pump");
    assert_eq!(stats.failed, 0, "{stats:?}");
    for (i, k) in keys.iter().enumerate() {
        let (got, _) = gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), k)
            .await
            .unwrap_or_else(|| panic!("{k} not replicated"));
        assert!(got == bytes_of(10_000 + i, i as u64), "{k}");
    }
    // The ledger recorded each copy.
    let item = ledger_item(&stack, stack.dest_bucket(), "flow/one.txt").await.expect("item");
    let done = item.done.expect("done record");
    assert_eq!(done.action, "copy");
    assert_eq!(done.crc32c.as_deref(), Some(crc32c_b64(&bytes_of(10_000, 0)).as_str()));
    assert!(item.lease_owner.is_none(), "the lease is released on completion");
}

/// An SSE-KMS source object (the default kind in many existing buckets) goes through the local
/// stack: put with `aws:kms` and a key id, read back by S3 as KMS-encrypted, copied, verified and
/// readable in GCS with the same bytes. What this proves locally: xcr reads such objects and
/// does not take their ETag for an MD5 (under SSE-KMS it is none on AWS). What it cannot: moto
/// neither encrypts nor checks `kms:Decrypt`, so the permission itself (`SourceKmsKeyArns`,
/// `kms:ViaService`) is proven by the template's cfn-guard rule and tests/infra, not here.
#[tokio::test(flavor = "multi_thread")]
async fn an_sse_kms_object_is_replicated() {
    use aws_sdk_s3::types::ServerSideEncryption;
    let stack = Stack::up();
    let s3 = stack.s3().await;
    let src = stack.source_bucket();
    let key_id = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555";
    let data = bytes_of(300_000, 7);
    s3.put_object()
        .bucket(src)
        .key("kms/object.bin")
        .body(data.clone().into())
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id(key_id)
        .send()
        .await
        .expect("put with SSE-KMS");
    let head = s3.head_object().bucket(src).key("kms/object.bin").send().await.expect("head");
    assert_eq!(head.server_side_encryption(), Some(&ServerSideEncryption::AwsKms), "the emulator kept the KMS headers");
    let r = replicator(&stack, &[]).await;
    let done = r
        .replicate(&ObjectRef::new(src, "kms/object.bin"), None, now_ms() + 60_000)
        .await
        .expect("an SSE-KMS object replicates");
    assert_eq!(done.outcome, Outcome::Replicated, "{done:?}");
    let (bytes, _) = gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), "kms/object.bin").await.expect("in GCS");
    assert!(bytes == data, "same bytes in GCS");
}
