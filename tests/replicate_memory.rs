//! The replicate use case (`xcr::domain::replicate::Replicator`) on the in-memory adapters
//! (`xcr::adapters::memory`): its decisions without an emulator, in milliseconds. Part of `make check`.
//! The in-memory adapters are held to the real ones' contract by the conformance suites
//! (tests/conformance_memory.rs, tests/conformance_emulators.rs); tests/replicate.rs runs the
//! use case end to end on the emulators.

use std::time::Duration;
use xcr::adapters::memory::{MemoryLedger, MemorySink, MemorySource, Put};
use xcr::domain::events::{Action, Task};
use xcr::domain::model::{ContentHeaders, Destination, ObjectRef};
use xcr::domain::replicate::{Outcome, ReplicateSettings, Replication, Replicator, ledger_key, now_ms};
use xcr::domain::routing::Router;
use xcr::retry::RetryPolicy;
use xcr::transfer::{Transfer, TransferConfig};
use xcr::{ErrorKind, Result};

const SRC: &str = "src";
const DST: &str = "dst";

type Mem = Replicator<MemorySource, MemorySink, MemoryLedger>;

/// Routes every key of `src` to the same name in `dst`; two attempts per request.
fn replicator(versioned: bool) -> Mem {
    let source = MemorySource::new();
    source.create_bucket(SRC, versioned);
    let retry =
        RetryPolicy { max_attempts: 2, base_delay: Duration::from_millis(1), max_delay: Duration::from_millis(2) };
    let transfer = Transfer::new(source, MemorySink::with_buckets(&[DST]), TransferConfig::default(), retry);
    let router = Router::new(Some(DST), None).expect("router");
    Replicator::new(transfer, MemoryLedger::new(), router, ReplicateSettings::default())
}

fn task(key: &str, version_id: Option<&str>, sequencer: Option<&str>) -> Task {
    Task {
        action: Action::Copy,
        object: ObjectRef { bucket: SRC.into(), key: key.into(), version_id: version_id.map(str::to_string) },
        sequencer: sequencer.map(str::to_string),
        event_time: None,
        job_id: None,
        job_task: None,
        destination: None,
        overwrite: None,
        event: Some("ObjectCreated:Put".into()),
    }
}

async fn apply(r: &Mem, t: &Task) -> Result<Replication> {
    let mut results = r.apply(t, now_ms() + 60_000).await;
    assert_eq!(results.len(), 1, "one destination");
    results.remove(0)
}

fn put(r: &Mem, key: &str, data: &[u8], last_modified: &str) -> Option<String> {
    let put = Put {
        data: bytes::Bytes::copy_from_slice(data),
        headers: ContentHeaders { content_type: Some("text/plain".into()), ..Default::default() },
        user_metadata: [("owner".to_string(), "ann".to_string())].into(),
        last_modified: Some(last_modified.into()),
        with_crc32c: true,
    };
    r.transfer().source().put_with(SRC, key, put).expect("put").0
}

fn ledger_item(r: &Mem, key: &str) -> xcr::ports::LedgerItem {
    let dest = Destination { bucket: DST.into(), name: key.into(), storage_class: None };
    r.ledger().get(&ledger_key(&dest)).expect("a ledger item")
}

#[tokio::test]
async fn a_new_object_is_copied_verified_and_recorded() {
    let r = replicator(false);
    put(&r, "a/new.txt", b"hello", "2031-01-01T00:00:00Z");
    let got = apply(&r, &task("a/new.txt", None, Some("0A"))).await.expect("replicate");
    assert_eq!((got.outcome, got.bytes), (Outcome::Replicated, Some(5)));
    let copy = r.transfer().sink().object(DST, "a/new.txt").expect("copied");
    assert_eq!(copy.data, &b"hello"[..]);
    assert_eq!(copy.headers.content_type.as_deref(), Some("text/plain"));
    assert_eq!(copy.metadata.get("owner").map(String::as_str), Some("ann"), "user metadata");
    assert_eq!(copy.metadata.get(xcr::transfer::metadata::PROV_BUCKET).map(String::as_str), Some(SRC), "provenance");
    let item = ledger_item(&r, "a/new.txt");
    let done = item.done.expect("recorded");
    assert_eq!(done.generation, Some(copy.object.generation.clone()), "the ledger records the generation GCS holds");
    assert_eq!((item.lease_owner, item.high_water.is_some()), (None, true), "lease gone, mark set");
}

#[tokio::test]
async fn a_duplicate_delivery_is_skipped_without_an_upload() {
    let r = replicator(false);
    put(&r, "dup.txt", b"once", "2031-01-01T00:00:00Z");
    let event = task("dup.txt", None, Some("0A"));
    assert_eq!(apply(&r, &event).await.expect("first").outcome, Outcome::Replicated);
    assert_eq!(r.transfer().sink().writes(), 1);
    // The same event delivered again: refused by the ledger's mark before any read.
    assert_eq!(apply(&r, &event).await.expect("again").outcome, Outcome::AlreadyReplicated);
    // A command without a sequencer (CLI, API): the read under the lease finds the same version.
    assert_eq!(apply(&r, &task("dup.txt", None, None)).await.expect("command").outcome, Outcome::AlreadyReplicated);
    assert_eq!(r.transfer().sink().writes(), 1, "nothing was uploaded again");
}

#[tokio::test]
async fn an_older_version_is_refused_after_a_newer_one() {
    let r = replicator(true);
    let v1 = put(&r, "v.txt", b"version one", "2031-01-01T00:00:00Z").expect("versioned");
    let v2 = put(&r, "v.txt", b"version two", "2031-01-01T00:00:05Z").expect("versioned");
    let newer = apply(&r, &task("v.txt", Some(&v2), Some("0B"))).await.expect("newer");
    assert_eq!(newer.outcome, Outcome::Replicated);
    // The older event arrives late: its sequencer is below the mark.
    let late = apply(&r, &task("v.txt", Some(&v1), Some("0A"))).await.expect("older event");
    assert_eq!(late.outcome, Outcome::Stale);
    // A command naming the older version (no sequencer): read, then refused by its age.
    let pinned = apply(&r, &task("v.txt", Some(&v1), None)).await.expect("older version");
    assert_eq!(pinned.outcome, Outcome::Stale);
    let copy = r.transfer().sink().object(DST, "v.txt").expect("copied");
    assert_eq!(copy.data, &b"version two"[..], "GCS keeps the newer version");
    assert_eq!((r.transfer().sink().writes(), r.transfer().sink().refused()), (1, 0));
}

#[tokio::test]
async fn a_failed_upload_releases_the_lease_for_a_retry() {
    let r = replicator(false);
    put(&r, "fail.txt", b"retry me", "2031-01-01T00:00:00Z");
    let sink = r.transfer().sink();
    // Every attempt of the first delivery fails (the policy makes two).
    sink.fail_next(ErrorKind::Transient);
    sink.fail_next(ErrorKind::Transient);
    let event = task("fail.txt", None, Some("0A"));
    let e = apply(&r, &event).await.expect_err("the upload failed");
    assert!(e.is_retryable(), "a transient failure is retried by redelivery: {e}");
    let item = ledger_item(&r, "fail.txt");
    assert_eq!((item.lease_owner, item.done), (None, None), "released at once, nothing recorded");
    assert_eq!(item.failure.map(|f| f.kind).as_deref(), Some("transient"), "the failure is noted for operators");
    assert!(sink.object(DST, "fail.txt").is_none());
    // The redelivery claims at once (no lease to wait for) and copies.
    let again = apply(&r, &event).await.expect("the retry");
    assert_eq!(again.outcome, Outcome::Replicated);
    let item = ledger_item(&r, "fail.txt");
    assert_eq!((item.failure, item.done.is_some()), (None, true), "recorded; the note is cleared");
}

#[tokio::test]
async fn a_copy_fenced_by_a_foreign_write_decides_again_from_what_gcs_holds() {
    let r = replicator(false);
    put(&r, "fenced.txt", b"from s3", "2031-01-01T00:00:00Z");
    assert_eq!(apply(&r, &task("fenced.txt", None, Some("0A"))).await.expect("first").outcome, Outcome::Replicated);
    // Someone else writes the object in GCS: the generation the ledger recorded is no longer live.
    let sink = r.transfer().sink();
    let foreign =
        xcr::ports::UploadSpec { bucket: DST.into(), name: "fenced.txt".into(), size: 7, ..Default::default() };
    xcr::ports::ObjectSink::upload_single(sink, &foreign, bytes::Bytes::from_static(b"foreign"))
        .await
        .expect("a foreign write");
    put(&r, "fenced.txt", b"newer in s3", "2031-01-01T00:00:09Z");
    let got = apply(&r, &task("fenced.txt", None, Some("0B"))).await.expect("a newer event");
    assert_eq!(got.outcome, Outcome::Replicated, "the holder decided again and copied");
    assert_eq!(sink.refused(), 1, "GCS refused the write fenced on the recorded generation once");
    let copy = sink.object(DST, "fenced.txt").expect("copied");
    assert_eq!(copy.data, &b"newer in s3"[..]);
    assert_eq!(ledger_item(&r, "fenced.txt").done.and_then(|d| d.generation), Some(copy.object.generation));
}

/// A job's copy whose ledger record was never written (the write failed after the upload had
/// landed) is still the job's own copy when a later delivery of its task finds it in GCS: the
/// object's provenance names the job (`xcr-source-job-id`), so the job counts it replicated
/// with its bytes, not skipped. Another job finding the same object is told it was not its copy.
#[tokio::test]
async fn a_jobs_copy_without_its_ledger_record_is_known_by_its_provenance() {
    let r = replicator(false);
    put(&r, "j/a.txt", b"hello", "2031-01-01T00:00:00Z");
    let job_task = |job: &str| Task {
        job_id: Some(job.into()),
        overwrite: Some(xcr::domain::model::Overwrite::Different),
        event: None,
        ..task("j/a.txt", None, None)
    };
    let first = apply(&r, &job_task("job-1")).await.expect("copy");
    assert_eq!(first.outcome, Outcome::Replicated);
    let copy = r.transfer().sink().object(DST, "j/a.txt").expect("copied");
    assert_eq!(copy.metadata.get(xcr::transfer::metadata::PROV_JOB).map(String::as_str), Some("job-1"));

    // The same S3 and GCS, and a ledger that never got the record.
    let retry =
        RetryPolicy { max_attempts: 2, base_delay: Duration::from_millis(1), max_delay: Duration::from_millis(2) };
    let transfer =
        Transfer::new(r.transfer().source().clone(), r.transfer().sink().clone(), TransferConfig::default(), retry);
    let router = Router::new(Some(DST), None).expect("router");
    let forgetful = Replicator::new(transfer, MemoryLedger::new(), router, ReplicateSettings::default());
    let again = apply(&forgetful, &job_task("job-1")).await.expect("the task again");
    assert_eq!((again.outcome, again.copied_by_own_job), (Outcome::AlreadyReplicated, Some(5)), "{again:?}");
    let other = apply(&forgetful, &job_task("job-2")).await.expect("another job's task");
    assert_eq!((other.outcome, other.copied_by_own_job), (Outcome::AlreadyReplicated, None), "{other:?}");
    assert_eq!(r.transfer().sink().writes(), 1, "nothing uploaded twice");
}

/// A source object whose own metadata carries the provenance key cannot pass for a job's copy:
/// only the copy's job is written there.
#[tokio::test]
async fn a_source_cannot_forge_the_job_provenance() {
    let r = replicator(false);
    let forged = Put {
        data: bytes::Bytes::from_static(b"x"),
        headers: ContentHeaders::default(),
        user_metadata: [(xcr::transfer::metadata::PROV_JOB.to_string(), "job-1".to_string())].into(),
        last_modified: Some("2031-01-01T00:00:00Z".into()),
        with_crc32c: true,
    };
    r.transfer().source().put_with(SRC, "f.txt", forged).expect("put");
    apply(&r, &task("f.txt", None, Some("0A"))).await.expect("copy");
    let copy = r.transfer().sink().object(DST, "f.txt").expect("copied");
    assert_eq!(copy.metadata.get(xcr::transfer::metadata::PROV_JOB), None, "{:?}", copy.metadata);
}
