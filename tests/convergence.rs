//! The replication contract, against real emulators (moto for S3 and DynamoDB, the GCS
//! emulator): with deletes replicated, once every event for a key has been applied — in any
//! order, duplicated, delayed, with job/API/CLI copies in between — the GCS object equals what
//! S3 serves now for that key (bytes, content type, user metadata), and is absent exactly when
//! S3 has no current object.
//!
//! moto sends no events for versioned deletes and no sequencers, so the tests make the events
//! themselves, as real S3 would send them for the operations they perform on moto's real
//! (versioned or unversioned) buckets: the event name S3 uses for each operation, the version id
//! it names, and a sequencer that grows per key.

mod common;

use aws_sdk_s3::types::MetadataDirective;
use common::*;
use std::collections::BTreeSet;
use xcr::adapters::aws::ledger::DynamoLedger;
use xcr::adapters::aws::s3::S3Source;
use xcr::adapters::gcs::GcsClient;
use xcr::domain::events::{Action, Task};
use xcr::domain::model::ObjectRef;
use xcr::domain::replicate::{Outcome, ReplicateSettings, Replicator, now_ms};
use xcr::domain::routing::Router;
use xcr::transfer::{Transfer, TransferConfig};

type Repl = Replicator<S3Source, GcsClient, DynamoLedger>;

/// An object as served: bytes, content type, user metadata (sorted).
type Served = (Vec<u8>, String, Vec<(String, String)>);

async fn replicator(stack: &Stack, deletes: bool) -> Repl {
    let sdk = stack.sdk().await;
    let transfer = Transfer::new(S3Source::new(&sdk), stack.gcs(), TransferConfig::default(), fast_retry());
    let router = Router::new(Some(stack.dest_bucket()), None).expect("router");
    let settings = ReplicateSettings { replicate_deletes: deletes, ..Default::default() };
    Replicator::new(transfer, ledger(&sdk, stack), router, settings)
}

/// A task as an S3 event notification would produce it.
fn event(action: Action, bucket: &str, key: &str, version: Option<&str>, seq: Option<u64>, name: &str) -> Task {
    let mut t = Task::new(action, ObjectRef::new(bucket, key).with_version(version.map(str::to_string)));
    t.sequencer = seq.map(|s| format!("{s:016X}"));
    t.event = Some(name.to_string());
    t
}

/// A command as a job, the API or the CLI sends it: no event, no sequencer.
fn command(action: Action, bucket: &str, key: &str, version: Option<&str>) -> Task {
    Task::new(action, ObjectRef::new(bucket, key).with_version(version.map(str::to_string)))
}

async fn apply(r: &Repl, task: &Task) -> xcr::Result<Outcome> {
    let mut results = r.apply(task, now_ms() + 60_000).await;
    assert_eq!(results.len(), 1);
    results.remove(0).map(|rep| rep.outcome)
}

async fn outcome(r: &Repl, task: &Task) -> Outcome {
    apply(r, task).await.unwrap_or_else(|e| panic!("{}: {}", task.object, e.chain()))
}

/// What S3 serves now for a key: bytes, content type and user metadata, or `None`.
async fn s3_current(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Option<Served> {
    match s3.get_object().bucket(bucket).key(key).send().await {
        Ok(o) => {
            let ct = o.content_type().unwrap_or_default().to_string();
            let mut md: Vec<(String, String)> =
                o.metadata().map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default();
            md.sort();
            let bytes = o.body.collect().await.expect("body").into_bytes().to_vec();
            Some((bytes, ct, md))
        }
        Err(e) => {
            let svc = e.into_service_error();
            assert!(svc.is_no_such_key(), "GET failed: {svc:?}");
            None
        }
    }
}

/// What GCS holds for a name, read independently: bytes, content type and the user metadata
/// (provenance keys left out).
async fn gcs_current(stack: &Stack, name: &str) -> Option<Served> {
    let (bytes, meta) = gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), name).await?;
    let ct = meta["contentType"].as_str().unwrap_or_default().to_string();
    let mut md: Vec<(String, String)> = meta["metadata"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| !k.starts_with("xcr-source-"))
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    md.sort();
    Some((bytes, ct, md))
}

async fn assert_converged(s3: &aws_sdk_s3::Client, stack: &Stack, bucket: &str, key: &str, what: &str) {
    let want = s3_current(s3, bucket, key).await;
    let got = gcs_current(stack, key).await;
    let show = |v: &Option<Served>| {
        v.as_ref().map(|(b, ct, md)| format!("{} bytes crc {} {ct} {md:?}", b.len(), crc32c_b64(b)))
    };
    assert!(want == got, "{what}: {key}: S3 serves {:?}, GCS holds {:?}", show(&want), show(&got));
}

async fn put_meta(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    data: Vec<u8>,
    ct: &str,
    tag: &str,
) -> Option<String> {
    let out = s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(data.into())
        .content_type(ct)
        .metadata("tag", tag)
        .send()
        .await
        .expect("put");
    out.version_id().map(str::to_string)
}

/// A self-copy that only replaces metadata (S3's way to change metadata in place).
async fn self_copy(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, ct: &str, tag: &str) -> Option<String> {
    let out = s3
        .copy_object()
        .bucket(bucket)
        .key(key)
        .copy_source(format!("{bucket}/{key}"))
        .metadata_directive(MetadataDirective::Replace)
        .content_type(ct)
        .metadata("tag", tag)
        .send()
        .await
        .expect("self-copy");
    out.version_id().map(str::to_string)
}

/// Every version and delete marker of `key`: (version id, is a delete marker, is latest).
async fn versions(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<(String, bool, bool)> {
    let out = s3.list_object_versions().bucket(bucket).prefix(key).send().await.expect("list versions");
    let mut all: Vec<(String, bool, bool)> = out
        .versions()
        .iter()
        .filter(|v| v.key() == Some(key))
        .map(|v| (v.version_id().unwrap_or_default().to_string(), false, v.is_latest().unwrap_or(false)))
        .collect();
    all.extend(
        out.delete_markers()
            .iter()
            .filter(|m| m.key() == Some(key))
            .map(|m| (m.version_id().unwrap_or_default().to_string(), true, m.is_latest().unwrap_or(false))),
    );
    all
}

async fn plain_bucket(s3: &aws_sdk_s3::Client) -> String {
    let name = "xcr-unversioned-src".to_string();
    match s3.create_bucket().bucket(&name).send().await {
        Ok(_) => {}
        Err(e) => {
            let svc = e.into_service_error();
            assert!(svc.is_bucket_already_owned_by_you(), "create bucket: {svc:?}");
        }
    }
    name
}

/// Every member of the delete and version family, on a versioned bucket, decided by what S3
/// serves after the operation: a noncurrent version's deletion changes nothing, the current
/// version's deletion brings the previous one back, a delete marker deletes the copy and its
/// removal restores it.
#[tokio::test(flavor = "multi_thread")]
async fn version_deletes_follow_what_s3_serves_now() {
    let stack = Stack::up();
    let s3 = stack.s3().await;
    let r = replicator(&stack, true).await;
    let (b, k) = (stack.source_bucket().to_string(), "fam/object.txt");
    let v1 = put_meta(&s3, &b, k, b"version one".to_vec(), "text/plain", "1").await.expect("versioned");
    let v2 = put_meta(&s3, &b, k, b"version two".to_vec(), "text/csv", "2").await.expect("versioned");
    let put2 = event(Action::Copy, &b, k, Some(&v2), Some(2), "ObjectCreated:Put");
    assert_eq!(outcome(&r, &put2).await, Outcome::Replicated);
    assert_converged(&s3, &stack, &b, k, "after two puts").await;

    // The old PUT's event, late: the current object is already copied.
    let put1 = event(Action::Copy, &b, k, Some(&v1), Some(1), "ObjectCreated:Put");
    assert_eq!(outcome(&r, &put1).await, Outcome::Stale, "below the ordering mark");

    // Permanently deleting the noncurrent version: S3 still serves v2; nothing changes.
    s3.delete_object().bucket(&b).key(k).version_id(&v1).send().await.expect("delete v1");
    let del_v1 = event(Action::Delete, &b, k, Some(&v1), Some(3), "ObjectRemoved:Delete");
    assert_eq!(outcome(&r, &del_v1).await, Outcome::AlreadyReplicated);
    assert_converged(&s3, &stack, &b, k, "noncurrent version deleted").await;

    // A third version, then permanently deleting it (the current one): v2 is current again,
    // although it is older than what GCS held.
    let v3 = put_meta(&s3, &b, k, b"version three".to_vec(), "text/html", "3").await.expect("versioned");
    assert_eq!(
        outcome(&r, &event(Action::Copy, &b, k, Some(&v3), Some(4), "ObjectCreated:Put")).await,
        Outcome::Replicated
    );
    s3.delete_object().bucket(&b).key(k).version_id(&v3).send().await.expect("delete v3");
    let del_v3 = event(Action::Delete, &b, k, Some(&v3), Some(5), "ObjectRemoved:Delete");
    assert_eq!(outcome(&r, &del_v3).await, Outcome::Replicated, "the previous version comes back");
    assert_converged(&s3, &stack, &b, k, "current version deleted").await;

    // A delete marker: S3 serves nothing, the copy goes.
    let marker = s3.delete_object().bucket(&b).key(k).send().await.expect("delete marker");
    let marker_id = marker.version_id().expect("marker version").to_string();
    let del_marker = event(Action::Delete, &b, k, Some(&marker_id), Some(6), "ObjectRemoved:DeleteMarkerCreated");
    assert_eq!(outcome(&r, &del_marker).await, Outcome::Deleted);
    assert_converged(&s3, &stack, &b, k, "delete marker").await;

    // Removing the delete marker: the object is back.
    s3.delete_object().bucket(&b).key(k).version_id(&marker_id).send().await.expect("undelete");
    let undelete = event(Action::Delete, &b, k, Some(&marker_id), Some(7), "ObjectRemoved:Delete");
    assert_eq!(outcome(&r, &undelete).await, Outcome::Replicated, "an undelete restores the copy");
    assert_converged(&s3, &stack, &b, k, "delete marker removed").await;

    // EventBridge's shape of the same thing, and a lifecycle expiration of a noncurrent version.
    let mut eb = event(Action::Delete, &b, k, Some(&v1), Some(8), "Object Deleted (Permanently Deleted)");
    eb.event_time = Some("2026-12-03T10:00:00Z".into());
    assert_eq!(outcome(&r, &eb).await, Outcome::AlreadyReplicated);
    let expired = event(Action::Delete, &b, k, Some(&v1), Some(9), "LifecycleExpiration:Delete");
    assert_eq!(outcome(&r, &expired).await, Outcome::AlreadyReplicated);
    assert_converged(&s3, &stack, &b, k, "late deletes of gone versions").await;
}

/// The ordering mark survives copies made without a sequencer, and duplicates and stale reads
/// raise it: PUT A, DELETE, PUT B delivered 1, 3, 2 with a CLI copy in between ends with B.
#[tokio::test(flavor = "multi_thread")]
async fn the_ordering_mark_survives_unsequenced_copies_and_rises_with_duplicates() {
    let stack = Stack::up();
    let s3 = stack.s3().await;
    let r = replicator(&stack, true).await;
    let sdk = stack.sdk().await;
    let led = ledger(&sdk, &stack);
    let b = plain_bucket(&s3).await;
    let k = "mark/object.txt";
    let mark = |key: &'static str| {
        let (led, dest) = (led.clone(), stack.dest_bucket().to_string());
        async move { led.get(&format!("gs://{dest}/{key}")).await.expect("read").and_then(|i| i.high_water) }
    };

    put_meta(&s3, &b, k, b"A".to_vec(), "text/plain", "a").await;
    assert_eq!(outcome(&r, &event(Action::Copy, &b, k, None, Some(1), "ObjectCreated:Put")).await, Outcome::Replicated);
    s3.delete_object().bucket(&b).key(k).send().await.expect("delete");
    put_meta(&s3, &b, k, b"B".to_vec(), "text/plain", "b").await;
    assert_eq!(outcome(&r, &event(Action::Copy, &b, k, None, Some(3), "ObjectCreated:Put")).await, Outcome::Replicated);
    // A CLI/API/job copy: no sequencer. It must not erase the mark.
    assert_eq!(outcome(&r, &command(Action::Copy, &b, k, None)).await, Outcome::AlreadyReplicated);
    assert_eq!(mark(k).await.as_deref(), Some(xcr::domain::events::sequencer_order(&format!("{:016X}", 3)).as_str()));
    // The delayed DELETE (e.g. redriven from the DLQ) is stale: B stays.
    assert_eq!(outcome(&r, &event(Action::Delete, &b, k, None, Some(2), "ObjectRemoved:Delete")).await, Outcome::Stale);
    assert_converged(&s3, &stack, &b, k, "1, 3, 2 with a CLI copy").await;

    // Duplicates raise the mark: the copy was made by a job first, the event finds it done.
    let k2 = "mark/second.txt";
    put_meta(&s3, &b, k2, b"C".to_vec(), "text/plain", "c").await;
    assert_eq!(outcome(&r, &command(Action::Copy, &b, k2, None)).await, Outcome::Replicated);
    assert_eq!(mark(k2).await, None, "an unsequenced copy sets no mark");
    assert_eq!(
        outcome(&r, &event(Action::Copy, &b, k2, None, Some(5), "ObjectCreated:Put")).await,
        Outcome::AlreadyReplicated
    );
    assert_eq!(mark(k2).await.as_deref(), Some(xcr::domain::events::sequencer_order(&format!("{:016X}", 5)).as_str()));
    assert_eq!(
        outcome(&r, &event(Action::Delete, &b, k2, None, Some(4), "ObjectRemoved:Delete")).await,
        Outcome::Stale
    );
    assert_converged(&s3, &stack, &b, k2, "mark raised by a duplicate").await;
}

/// A self-copy with `MetadataDirective=REPLACE` keeps the ETag and, unversioned, has no version
/// id: it still replicates, on an unversioned and a versioned bucket, with deletes on or off.
#[tokio::test(flavor = "multi_thread")]
async fn a_metadata_only_self_copy_replicates() {
    let stack = Stack::up();
    let s3 = stack.s3().await;
    let plain = plain_bucket(&s3).await;
    for deletes in [false, true] {
        let r = replicator(&stack, deletes).await;
        for b in [plain.clone(), stack.source_bucket().to_string()] {
            let k = format!("meta/{deletes}/{b}.txt");
            let v1 = put_meta(&s3, &b, &k, b"same bytes".to_vec(), "text/plain", "first").await;
            let first = event(Action::Copy, &b, &k, v1.as_deref(), None, "ObjectCreated:Put");
            assert_eq!(outcome(&r, &first).await, Outcome::Replicated);
            let v2 = self_copy(&s3, &b, &k, "application/json", "second").await;
            let copied = event(Action::Copy, &b, &k, v2.as_deref(), None, "ObjectCreated:Copy");
            assert_eq!(outcome(&r, &copied).await, Outcome::Replicated, "{b} deletes={deletes}");
            let (_, ct, md) = gcs_current(&stack, &k).await.expect("copied");
            assert_eq!((ct.as_str(), md), ("application/json", vec![("tag".to_string(), "second".to_string())]));
            // And now it is a duplicate.
            assert_eq!(outcome(&r, &copied).await, Outcome::AlreadyReplicated);
        }
    }
}

/// One S3 operation of a history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Put,
    Overwrite,
    SelfCopy,
    Delete,
    DeleteNoncurrent,
    DeleteCurrent,
    Undelete,
}

const VERSIONED_OPS: [Op; 7] =
    [Op::Put, Op::Overwrite, Op::SelfCopy, Op::Delete, Op::DeleteNoncurrent, Op::DeleteCurrent, Op::Undelete];
const PLAIN_OPS: [Op; 4] = [Op::Put, Op::Overwrite, Op::SelfCopy, Op::Delete];

/// Performs `op` on S3 and returns the event S3 would send for it, or `None` if the op does not
/// apply in the key's present state (it is then replaced by a put).
async fn perform(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    op: Op,
    versioned: bool,
    n: u64,
) -> Option<(Action, Option<String>, &'static str)> {
    let body = bytes_of(100 + (n as usize % 7) * 1000, n);
    let cts = ["text/plain", "text/csv", "application/json"];
    let ct = cts[n as usize % cts.len()];
    let exists = s3_current(s3, bucket, key).await.is_some();
    match op {
        Op::Put | Op::Overwrite => {
            let v = put_meta(s3, bucket, key, body, ct, &format!("t{n}")).await;
            Some((Action::Copy, v, "ObjectCreated:Put"))
        }
        Op::SelfCopy if exists => {
            let v = self_copy(s3, bucket, key, ct, &format!("m{n}")).await;
            Some((Action::Copy, v, "ObjectCreated:Copy"))
        }
        Op::Delete if exists || versioned => {
            let out = s3.delete_object().bucket(bucket).key(key).send().await.expect("delete");
            match out.version_id() {
                Some(marker) if versioned => {
                    Some((Action::Delete, Some(marker.to_string()), "ObjectRemoved:DeleteMarkerCreated"))
                }
                _ => Some((Action::Delete, None, "ObjectRemoved:Delete")),
            }
        }
        Op::DeleteNoncurrent | Op::DeleteCurrent | Op::Undelete if versioned => {
            let all = versions(s3, bucket, key).await;
            let pick = all.iter().find(|(_, marker, latest)| match op {
                Op::DeleteNoncurrent => !marker && !latest,
                Op::DeleteCurrent => !marker && *latest,
                _ => *marker && *latest,
            })?;
            s3.delete_object().bucket(bucket).key(key).version_id(&pick.0).send().await.expect("delete version");
            Some((Action::Delete, Some(pick.0.clone()), "ObjectRemoved:Delete"))
        }
        _ => None,
    }
}

/// Random histories of every operation on one key each, on a versioned and an unversioned bucket;
/// their events delivered duplicated, reordered and delayed, interleaved with job/API/CLI copies
/// (with and without a version, and delete commands); with real-S3 sequencers or none (as
/// emulators send). After quiescence the contract holds for every key. The seed is printed;
/// `XCR_TEST_HISTORIES` sets the number of histories (default: one per operation pair of the
/// versioned bucket, plus one per pair of the unversioned one), `XCR_TEST_SEED` the seed.
#[tokio::test(flavor = "multi_thread")]
async fn random_histories_converge_to_the_source() {
    let seed: u64 =
        std::env::var("XCR_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
    let pairs_versioned: Vec<(Op, Op)> =
        VERSIONED_OPS.iter().flat_map(|a| VERSIONED_OPS.iter().map(move |b| (*a, *b))).collect();
    let pairs_plain: Vec<(Op, Op)> = PLAIN_OPS.iter().flat_map(|a| PLAIN_OPS.iter().map(move |b| (*a, *b))).collect();
    let histories: usize = std::env::var("XCR_TEST_HISTORIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(pairs_versioned.len() + pairs_plain.len());
    println!("random_histories_converge_to_the_source: XCR_TEST_SEED={seed} XCR_TEST_HISTORIES={histories}");
    let mut rng = fastrand::Rng::with_seed(seed);

    let stack = Stack::up();
    let s3 = stack.s3().await;
    let r = replicator(&stack, true).await;
    let plain = plain_bucket(&s3).await;
    let mut covered: BTreeSet<(bool, Op, Op)> = BTreeSet::new();
    let mut n = 0u64;
    for h in 0..histories {
        let versioned = h % 2 == 0;
        let (bucket, ops, pairs) = if versioned {
            (stack.source_bucket().to_string(), &VERSIONED_OPS[..], &pairs_versioned)
        } else {
            (plain.clone(), &PLAIN_OPS[..], &pairs_plain)
        };
        let key = format!("hist/{seed}/{h}.bin");
        let sequenced = rng.bool();
        let what = format!(
            "history {h} (seed {seed}, {}versioned, sequencers {sequenced})",
            if versioned { "" } else { "un" }
        );
        // A put first, then the history's operation pair, then a random tail.
        let (a, b) = pairs[(h / 2) % pairs.len()];
        let mut plan = vec![Op::Put, a, b];
        for _ in 0..rng.usize(0..4) {
            plan.push(ops[rng.usize(..ops.len())]);
        }

        let mut pending: Vec<Task> = Vec::new();
        let mut delivered: Vec<Task> = Vec::new();
        let mut done_ops = Vec::new();
        let mut seq = 0u64;
        let deliver = |task: Task| {
            let r = &r;
            let what = &what;
            async move {
                match apply(r, &task).await {
                    Ok(o) => assert_ne!(o, Outcome::Busy, "{what}: nothing else holds a lease"),
                    Err(e) if e.kind() == xcr::ErrorKind::NotFound => {}
                    Err(e) => panic!("{what}: {:?} {}: {}", task.action, task.object, e.chain()),
                }
            }
        };
        for op in plan {
            n += 1;
            seq += 1 + rng.u64(0..3);
            let performed = match perform(&s3, &bucket, &key, op, versioned, n).await {
                Some(ev) => (op, ev),
                None => (Op::Put, perform(&s3, &bucket, &key, Op::Put, versioned, n).await.expect("put")),
            };
            done_ops.push(performed.0);
            let (action, version, name) = performed.1;
            let sequencer = sequenced.then_some(seq);
            pending.push(event(action, &bucket, &key, version.as_deref(), sequencer, name));
            // Deliver some events now (in any order), keep the rest for later.
            for _ in 0..rng.usize(0..3) {
                if pending.is_empty() {
                    break;
                }
                let t = pending.swap_remove(rng.usize(..pending.len()));
                deliver(t.clone()).await;
                delivered.push(t);
            }
            // A job, API or CLI copy in between: of the current object, of a version it names,
            // or a delete command.
            match rng.u8(0..10) {
                0 | 1 => deliver(command(Action::Copy, &bucket, &key, None)).await,
                2 => {
                    let known = versions(&s3, &bucket, &key).await;
                    let v = known.iter().filter(|(_, marker, _)| !marker).map(|(v, _, _)| v.clone()).next();
                    deliver(command(Action::Copy, &bucket, &key, v.as_deref())).await;
                }
                3 => deliver(command(Action::Delete, &bucket, &key, None)).await,
                // A duplicate of an event delivered earlier.
                4 if !delivered.is_empty() => deliver(delivered[rng.usize(..delivered.len())].clone()).await,
                _ => {}
            }
        }
        for w in done_ops.windows(2) {
            covered.insert((versioned, w[0], w[1]));
        }
        // Quiescence: every remaining event, shuffled, some twice.
        rng.shuffle(&mut pending);
        for t in pending {
            let twice = rng.u8(0..4) == 0;
            deliver(t.clone()).await;
            if twice {
                deliver(t).await;
            }
        }
        assert_converged(&s3, &stack, &bucket, &key, &what).await;
    }
    let possible = pairs_versioned.len() + pairs_plain.len();
    println!("operation pairs performed: {} of {possible}", covered.len());
}

/// Sequencers only order events of one key in one bucket. Where two buckets reach one
/// destination name anyway (a configuration the load-time check could not see: no allowlist
/// declares the sources), an event of one bucket is never refused as stale because of the
/// other's larger sequencer: its copy lands, decided by its own read.
#[tokio::test(flavor = "multi_thread")]
async fn another_buckets_sequencers_never_make_an_event_stale() {
    let stack = Stack::up();
    let s3 = stack.s3().await;
    let r = replicator(&stack, true).await;
    let a = stack.source_bucket().to_string();
    let b = plain_bucket(&s3).await;
    let k = "shared/name.txt";
    put_meta(&s3, &a, k, b"from a".to_vec(), "text/plain", "a").await;
    assert_eq!(
        outcome(&r, &event(Action::Copy, &a, k, None, Some(900), "ObjectCreated:Put")).await,
        Outcome::Replicated
    );
    put_meta(&s3, &b, k, b"from b".to_vec(), "text/plain", "b").await;
    // A smaller sequencer, but of another bucket: not stale.
    assert_eq!(outcome(&r, &event(Action::Copy, &b, k, None, Some(5), "ObjectCreated:Put")).await, Outcome::Replicated);
    assert_eq!(gcs_current(&stack, k).await.map(|o| o.0), Some(b"from b".to_vec()));
    // Within one bucket the mark still orders: b's older event is stale now.
    assert_eq!(outcome(&r, &event(Action::Copy, &b, k, None, Some(4), "ObjectCreated:Put")).await, Outcome::Stale);
}
