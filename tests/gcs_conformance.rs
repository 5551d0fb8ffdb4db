//! Google's retry conformance scenarios, replayed against xcr's GCS adapter and transfer engine
//! through the fault proxy; and GCS answers read as GCS documents them.
//!
//! The scenarios are data: `tests/data/gcs-retry-tests.json` (a copy of
//! googleapis/conformance-tests `storage/v1/retry_tests.json`, see tests/data/README.md). Every
//! official Cloud Storage client library must end each one as its `expectSuccess` says. One case
//! is generated per scenario × method × instruction list that concerns xcr, named after it
//! (`s7_resumable_uploads_handle_complex_retries/storage.objects.insert[resumable]/return-408`),
//! and [`retry_conformance`] runs them all, reporting every failed case by name. The proxy plays
//! the testbench: it answers the method's first requests with the listed faults in order, then
//! forwards. A success must leave a byte-exact object written exactly once: one request that
//! created it upstream, and the generation xcr reports is the one GCS holds.
//!
//! Which emulator, and why (../shared/EMULATORS.md):
//! * one-request (multipart) inserts, deletes and metadata reads run on **fake-gcs-server**: it
//!   enforces `ifGenerationMatch` on multipart uploads, so a retried insert that landed twice
//!   would be refused (412) instead of passing silently;
//! * resumable inserts run on **gcp-storage-emulator** (the private stack's GCS): its status
//!   query answers `308` + `Range` as GCS does, where fake-gcs-server commits a truncated object
//!   on a status query and appends a re-sent chunk twice, which would fail every recovery for
//!   the emulator's sake. It ignores preconditions, so there the single upload is counted on
//!   the wire (the proxy records what the emulator answered).
//!
//! Where xcr deliberately differs from a client library, the case says so ([`deviation`]):
//! without a precondition (scenario 3), a client library must not retry an insert or a delete;
//! xcr retries both, because what it writes is a replica: a repeated insert writes the same
//! bytes again, a repeated delete finds the object gone, and the replicator sends a precondition
//! whenever the ledger knows the generation.

mod common;
mod fault_proxy;

use common::*;
use fault_proxy::{Fault, FaultProxy, Plan, Seen, Service};
use serde_json::Value;
use std::time::Duration;
use xcr::ErrorKind;
use xcr::adapters::aws::s3::S3Source;
use xcr::adapters::gcs::GcsClient;
use xcr::adapters::gcs::auth::Auth;
use xcr::domain::model::{Destination, ObjectRef};
use xcr::ports::{ObjectSink, UploadSpec};
use xcr::transfer::{Copy, CopyTerms, Transfer, TransferConfig, TransferReport};

const FAKE_BUCKET: &str = "conformance";
const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// The live object's bytes and generation, read with plain HTTP over the JSON API (not xcr's
/// code). Both emulators serve `alt=media`; the objects here carry ASCII metadata only.
async fn read_back(endpoint: &str, bucket: &str, name: &str) -> Option<(Vec<u8>, String)> {
    const SEGMENT: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
    let enc = |s: &str| percent_encoding::utf8_percent_encode(s, SEGMENT).to_string();
    let url = format!("{endpoint}/storage/v1/b/{}/o/{}", enc(bucket), enc(name));
    let http = reqwest::Client::new();
    let meta = http.get(&url).send().await.expect("GET metadata");
    if meta.status().as_u16() == 404 {
        return None;
    }
    let meta: Value = meta.json().await.expect("metadata json");
    let generation = match &meta["generation"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let media = http.get(format!("{url}?alt=media")).send().await.expect("GET media");
    assert!(media.status().is_success(), "media GET {}", media.status());
    Some((media.bytes().await.expect("body").to_vec(), generation))
}

/// How xcr exercises one JSON API method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    /// `storage.objects.insert` as one multipart request (objects up to the resumable
    /// threshold), through [`Transfer`] from S3.
    InsertSingle,
    /// `storage.objects.insert` as a resumable session (larger objects).
    InsertResumable,
    /// `storage.objects.delete` of the live object ([`Transfer::delete_fenced`]).
    Delete,
    /// `storage.objects.get` of the metadata ([`Transfer::stat`]).
    Get,
}

impl Call {
    fn label(self) -> &'static str {
        match self {
            Call::InsertSingle => "storage.objects.insert[multipart]",
            Call::InsertResumable => "storage.objects.insert[resumable]",
            Call::Delete => "storage.objects.delete",
            Call::Get => "storage.objects.get",
        }
    }

    fn method(self) -> &'static str {
        match self {
            Call::InsertSingle | Call::InsertResumable => "storage.objects.insert",
            Call::Delete => "storage.objects.delete",
            Call::Get => "storage.objects.get",
        }
    }
}

#[derive(Debug, Clone)]
struct Case {
    name: String,
    call: Call,
    instructions: Vec<String>,
    precondition: bool,
    /// What xcr must do: the scenario's `expectSuccess`, unless [`deviation`] says otherwise.
    expect_success: bool,
    /// Why xcr's expectation differs from the scenario's, when it does.
    deviation: Option<&'static str>,
}

/// Where xcr's policy deliberately differs from a client library's: the scenario, and why.
fn deviation(scenario: u64, call: Call) -> Option<&'static str> {
    match (scenario, call) {
        (3, Call::InsertSingle | Call::InsertResumable) => Some(
            "xcr retries an insert without a precondition: it writes a replica, so a repeated insert writes the \
             same bytes (and the replicator sends ifGenerationMatch whenever the ledger knows the generation)",
        ),
        (3, Call::Delete) => {
            Some("xcr retries a delete without a precondition: a repeated delete of a replica finds it gone (success)")
        }
        _ => None,
    }
}

/// The proxy fault that plays one testbench instruction; `None`: not applicable to xcr.
fn fault_of(instruction: &str) -> Option<Fault> {
    Some(match instruction {
        "return-503" => Fault::Unavailable,
        "return-408" => Fault::RequestTimeout,
        "return-400" => Fault::BadRequest,
        "return-401" => Fault::Unauthorized,
        "return-reset-connection" => Fault::Reset,
        "return-broken-stream" => Fault::BodyBreak,
        "return-503-after-256K" => Fault::ServerErrorAfter(256 * 1024),
        "return-503-after-8192K" => Fault::ServerErrorAfter(8192 * 1024),
        // xcr's own additions (see [`applied_then_lost`]).
        "reset-after-apply" => Fault::LostResponse,
        "pass" => Fault::Pass,
        _ => return None,
    })
}

/// The cases that concern xcr, generated from the scenarios file, and the ones left out with
/// the reason. Methods xcr never calls (buckets, ACLs, HMAC keys, notifications, compose,
/// rewrite, patch...) are not cases; `storage.objects.list` is only xcr's health probe, which
/// is answered once and reported, not retried.
fn cases() -> (Vec<Case>, Vec<(String, &'static str)>) {
    let text = std::fs::read_to_string(root().join("tests/data/gcs-retry-tests.json")).expect("scenarios file");
    let doc: Value = serde_json::from_str(&text).expect("scenarios json");
    let (mut cases, mut skipped) = (Vec::new(), Vec::new());
    for t in doc["retryTests"].as_array().expect("retryTests") {
        let id = t["id"].as_u64().expect("id");
        if ![1, 2, 3, 5, 6, 7, 8].contains(&id) {
            continue; // 4: ACLs, HMAC keys, notifications: xcr calls none of them.
        }
        let description = t["description"].as_str().expect("description");
        let precondition = t["preconditionProvided"].as_bool().unwrap_or(false);
        for m in t["methods"].as_array().expect("methods") {
            let calls: &[Call] = match (m["name"].as_str().expect("method name"), id) {
                ("storage.objects.insert", 7) => &[Call::InsertResumable],
                ("storage.objects.insert", 1 | 8) => &[],
                ("storage.objects.insert", _) => &[Call::InsertSingle, Call::InsertResumable],
                ("storage.objects.delete", _) => &[Call::Delete],
                ("storage.objects.get", _) => &[Call::Get],
                _ => &[],
            };
            for &call in calls {
                for c in t["cases"].as_array().expect("cases") {
                    let instructions: Vec<String> = c["instructions"]
                        .as_array()
                        .expect("instructions")
                        .iter()
                        .map(|i| i.as_str().expect("instruction").to_string())
                        .collect();
                    let name = format!("s{id}_{description}/{}/{}", call.label(), instructions.join("+"));
                    if instructions.iter().any(|i| fault_of(i).is_none()) {
                        skipped.push((
                            name,
                            "xcr reads no object media from GCS: a metadata answer never reaches 256 KiB",
                        ));
                        continue;
                    }
                    let expect = t["expectSuccess"].as_bool().expect("expectSuccess");
                    cases.push(Case {
                        name,
                        call,
                        instructions,
                        precondition,
                        expect_success: if deviation(id, call).is_some() { true } else { expect },
                        deviation: deviation(id, call),
                    });
                }
            }
        }
    }
    cases.extend(applied_then_lost());
    (cases, skipped)
}

/// Beyond Google's scenarios, whose faults all strike before a request is applied: the write
/// GCS applied whose answer never arrived (the connection reset after it). That is the case a
/// generation precondition exists for: the retried insert gets 412, and xcr then finds its own
/// object (same size and CRC32C) instead of writing a second generation; the retried delete
/// finds the object gone; a resumable chunk is confirmed by a status query.
fn applied_then_lost() -> Vec<Case> {
    let lists: [(Call, &[&str]); 4] = [
        (Call::InsertSingle, &["reset-after-apply"]),
        (Call::InsertSingle, &["reset-after-apply", "return-503"]),
        // The session's start passes; the first chunk is applied, its answer lost.
        (Call::InsertResumable, &["pass", "reset-after-apply"]),
        (Call::Delete, &["reset-after-apply"]),
    ];
    lists
        .into_iter()
        .map(|(call, list)| Case {
            name: format!("x1_applied_write_answer_lost/{}/{}", call.label(), list.join("+")),
            call,
            instructions: list.iter().map(|i| i.to_string()).collect(),
            precondition: true,
            expect_success: true,
            deviation: None,
        })
        .collect()
}

/// What the cases share: S3 (moto) and gcp-storage-emulator from a private stack, and a
/// fake-gcs-server.
struct Rig {
    stack: Stack,
    fake: FakeGcs,
    s3: aws_sdk_s3::Client,
    sdk: aws_config::SdkConfig,
}

fn config() -> TransferConfig {
    // 1 MiB chunks: the 8192K scenario needs an object larger than 8 MiB and a chunk that ends
    // there; small objects keep a case within a second.
    TransferConfig {
        chunk_size: MIB as u64,
        resumable_threshold: MIB as u64,
        request_timeout: Duration::from_secs(30),
        ..TransferConfig::default()
    }
}

impl Rig {
    async fn up() -> Self {
        let stack = Stack::up();
        let fake = FakeGcs::start(FAKE_BUCKET).await;
        let (s3, sdk) = (stack.s3().await, stack.sdk().await);
        Self { stack, fake, s3, sdk }
    }

    /// The emulator a call runs on (see the module's documentation), and its bucket.
    fn upstream(&self, call: Call) -> (String, String) {
        match call {
            Call::InsertResumable => (self.stack.gcs_endpoint().to_string(), self.stack.dest_bucket().to_string()),
            _ => (self.fake.url.clone(), FAKE_BUCKET.to_string()),
        }
    }

    fn transfer(&self, gcs_url: &str) -> Transfer<S3Source, GcsClient> {
        let gcs = GcsClient::new(Some(gcs_url), Auth::Anonymous, Duration::from_secs(30)).expect("client");
        Transfer::new(S3Source::new(&self.sdk), gcs, config(), fast_retry())
    }
}

/// Requests that created an object upstream: an upload answered 2xx, except a session's start.
fn creations(seen: &[Seen]) -> usize {
    seen.iter()
        .filter(|s| fault_proxy::gcs_method(&s.method, &s.path) == Some("storage.objects.insert"))
        .filter(|s| !s.query.contains("uploadType=resumable") || s.method == "PUT")
        .filter(|s| s.upstream.is_some_and(|u| (200..300).contains(&u)))
        .count()
}

async fn copy(
    transfer: &Transfer<S3Source, GcsClient>,
    obj: &ObjectRef,
    dest: &Destination,
    fence: Option<u64>,
) -> xcr::Result<TransferReport> {
    match transfer.copy_journaled(obj, dest, |_| None::<()>, CopyTerms::fenced(fence)).await? {
        Copy::Done(r) => Ok(r),
        _ => Err(xcr::Error::new(ErrorKind::Invalid, "not copied")),
    }
}

/// Runs one case; `Err` says what went wrong.
async fn run(rig: &Rig, case: &Case, n: usize) -> Result<(), String> {
    let (endpoint, bucket) = rig.upstream(case.call);
    let proxy = FaultProxy::start(Service::Gcs, &endpoint, Plan::script(Duration::from_secs(1), vec![])).await;
    let name = format!("conformance/{n}");
    let direct = GcsClient::new(Some(&endpoint), Auth::Anonymous, Duration::from_secs(30)).expect("client");
    // An object to read or delete, written without the proxy.
    let existing = match case.call {
        Call::Delete | Call::Get => {
            let data = bytes_of(10 * KIB, n as u64);
            let spec = UploadSpec {
                bucket: bucket.clone(),
                name: name.clone(),
                size: data.len() as u64,
                crc32c: Some(crc32c_b64(&data)),
                ..Default::default()
            };
            Some(direct.upload_single(&spec, data.into()).await.map_err(|e| format!("setup upload: {}", e.chain()))?)
        }
        _ => None,
    };
    for i in &case.instructions {
        proxy.fault_next(case.call.method(), "", fault_of(i).expect("applicable"), 1);
    }
    let transfer = rig.transfer(&proxy.url());
    let mut data = Vec::new();
    let result: xcr::Result<Option<String>> = match case.call {
        Call::InsertSingle | Call::InsertResumable => {
            let len = match (case.call, case.instructions.iter().any(|i| i.ends_with("8192K"))) {
                (Call::InsertSingle, _) => 100 * KIB,
                (_, true) => 9 * MIB + 4321,
                _ => 2 * MIB + 4321,
            };
            data = bytes_of(len, n as u64 + 1000);
            let key = format!("conformance/{n}");
            put(&rig.s3, rig.stack.source_bucket(), &key, data.clone()).await;
            let obj = ObjectRef::new(rig.stack.source_bucket(), &key);
            let fence = case.precondition.then_some(0);
            copy(&transfer, &obj, &Destination::new(&bucket, &name), fence).await.map(|r| Some(r.stored.generation))
        }
        Call::Delete => {
            let g: u64 = existing.as_ref().and_then(|o| o.generation.parse().ok()).ok_or("numeric generation")?;
            transfer.delete_fenced(&bucket, &name, case.precondition.then_some(g)).await.map(|()| None)
        }
        Call::Get => match transfer.stat(&bucket, &name).await {
            Ok(Some(o)) if Some(&o) == existing.as_ref() => Ok(Some(o.generation)),
            Ok(other) => return Err(format!("read {other:?}, expected {existing:?}")),
            Err(e) => Err(e),
        },
    };
    let seen = proxy.seen_since(0);
    let of_method = seen.iter().filter(|s| fault_proxy::gcs_method(&s.method, &s.path) == Some(case.call.method()));
    let requests = of_method.count();
    if proxy.armed() > 0 {
        return Err(format!("{} instruction(s) never reached a request", proxy.armed()));
    }
    // "503 after N bytes": GCS kept the bytes up to N (the cut chunk was applied upstream).
    let cut = seen.iter().any(|s| matches!(s.fault, Some(Fault::ServerErrorAfter(_))) && s.upstream == Some(308));
    if case.instructions.iter().any(|i| i.starts_with("return-503-after")) && !cut {
        return Err("no part of the upload landed before the 503".into());
    }
    match (result, case.expect_success) {
        (Ok(generation), true) => {
            let held = read_back(&endpoint, &bucket, &name).await;
            match case.call {
                Call::Delete if held.is_some() => Err("the object is still there".into()),
                Call::Delete => Ok(()),
                Call::Get => Ok(()),
                _ => {
                    let (bytes, held_gen) = held.ok_or("no object")?;
                    if bytes != data {
                        return Err(format!("object differs: {} bytes, sent {}", bytes.len(), data.len()));
                    }
                    if Some(&held_gen) != generation.as_ref() {
                        return Err(format!("GCS holds generation {held_gen}, xcr reported {generation:?}"));
                    }
                    match creations(&seen) {
                        1 => Ok(()),
                        c => Err(format!("written {c} times")),
                    }
                }
            }
        }
        (Err(e), false) => {
            // Final errors are final: no request of the method after the one that got it.
            if e.is_retryable() {
                return Err(format!("failed with a retryable error: {}", e.chain()));
            }
            if requests != case.instructions.len() {
                return Err(format!(
                    "{requests} requests for {} instructions: retried past a final error",
                    case.instructions.len()
                ));
            }
            let held = read_back(&endpoint, &bucket, &name).await;
            match case.call {
                Call::Delete | Call::Get if held.is_none() => Err("the object is gone".into()),
                Call::InsertSingle | Call::InsertResumable if held.is_some() => Err("an object was written".into()),
                _ => Ok(()),
            }
        }
        (Ok(_), false) => Err("succeeded; the scenario expects a failure".into()),
        (Err(e), true) => Err(format!("failed: {}", e.chain())),
    }
}

/// Every generated case, one after the other (the gcp-storage-emulator serves one request at a
/// time); the failures are listed by case name.
#[tokio::test(flavor = "multi_thread")]
async fn retry_conformance() {
    let (cases, skipped) = cases();
    // The generator must keep finding what concerns xcr in the file.
    for scenario in ["s2_", "s5_", "s6_", "s7_", "s8_", "x1_"] {
        assert!(cases.iter().any(|c| c.name.starts_with(scenario)), "no case of {scenario}");
    }
    assert!(cases.len() >= 30, "{} cases", cases.len());
    let rig = Rig::up().await;
    let mut failed = Vec::new();
    for (n, case) in cases.iter().enumerate() {
        let started = std::time::Instant::now();
        let outcome = run(&rig, case, n).await;
        let took = started.elapsed().as_millis();
        match &outcome {
            Ok(()) => match case.deviation {
                Some(why) => eprintln!("ok   {} ({took} ms; expects success, deliberately: {why})", case.name),
                None => eprintln!("ok   {} ({took} ms)", case.name),
            },
            Err(why) => {
                eprintln!("FAIL {} ({took} ms): {why}", case.name);
                failed.push(format!("{}: {why}", case.name));
            }
        }
    }
    for (name, why) in &skipped {
        eprintln!("skip {name}: {why}");
    }
    assert!(failed.is_empty(), "{} of {} cases failed:\n{}", failed.len(), cases.len(), failed.join("\n"));
}

/// Copies `data` through a proxy in front of `endpoint` armed with `faults` (in order) on
/// `storage.objects.insert`, and checks the object GCS holds: byte-exact, the generation xcr
/// reported, created by one request. Returns what the proxy saw.
async fn copy_through(
    rig: &Rig,
    endpoint: &str,
    bucket: &str,
    key: &str,
    data: Vec<u8>,
    faults: &[Fault],
    fence: Option<u64>,
) -> (TransferReport, Vec<Seen>) {
    let proxy = FaultProxy::start(Service::Gcs, endpoint, Plan::script(Duration::from_secs(1), vec![])).await;
    for f in faults {
        proxy.fault_next("storage.objects.insert", "", *f, 1);
    }
    put(&rig.s3, rig.stack.source_bucket(), key, data.clone()).await;
    let obj = ObjectRef::new(rig.stack.source_bucket(), key);
    let report = copy(&rig.transfer(&proxy.url()), &obj, &Destination::new(bucket, key), fence)
        .await
        .unwrap_or_else(|e| panic!("{key} through {faults:?}: {}", e.chain()));
    assert_eq!(proxy.armed(), 0, "every fault reached its request");
    let seen = proxy.seen_since(0);
    let (bytes, generation) = read_back(endpoint, bucket, key).await.expect("object in GCS");
    assert_eq!(bytes, data, "{key}: byte-exact");
    assert_eq!(generation, report.stored.generation, "{key}: xcr reports the generation GCS holds");
    assert_eq!(creations(&seen), 1, "{key}: written exactly once: {seen:#?}");
    (report, seen)
}

/// A strict GCS answer leaves out fields holding zero or empty values (proto3 JSON): an empty
/// object's upload answer has no `size`. xcr reads the documented default (0), so a 0-byte copy
/// is one upload, not an "unreadable answer" uploaded again and again. The metadata read of the
/// same object reads the same way.
#[tokio::test(flavor = "multi_thread")]
async fn an_answer_without_its_zero_fields_reads_as_their_defaults() {
    let rig = Rig::up().await;
    let (report, seen) = copy_through(
        &rig,
        &rig.fake.url.clone(),
        FAKE_BUCKET,
        "strict/empty",
        Vec::new(),
        &[Fault::DropZeroFields],
        Some(0),
    )
    .await;
    assert_eq!(report.stored.size, 0);
    assert_eq!(seen.iter().filter(|s| s.method == "POST").count(), 1, "one upload request: {seen:#?}");

    let proxy = FaultProxy::start(Service::Gcs, &rig.fake.url, Plan::script(Duration::from_secs(1), vec![])).await;
    proxy.fault_next("storage.objects.get", "", Fault::DropZeroFields, 1);
    let found = rig.transfer(&proxy.url()).stat(FAKE_BUCKET, "strict/empty").await.expect("stat").expect("exists");
    assert_eq!((found.size, found.generation), (0, report.stored.generation));
    assert_eq!(proxy.armed(), 0);
}

/// GCS accepted an upload but its answer cannot be read (garbled, or broken off mid-body): xcr
/// reads the object's metadata back and takes it when it is what was sent; it never sends the
/// upload again. No precondition here, so a blind retry would have written a second generation
/// (with one, it would get 412). One-request uploads on fake-gcs-server.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_answer_after_an_upload_is_read_back_never_uploaded_again() {
    let rig = Rig::up().await;
    for (i, fault) in [Fault::GarbledAnswer, Fault::BodyBreak].into_iter().enumerate() {
        let key = format!("unreadable/single-{i}");
        let data = bytes_of(64 * KIB, i as u64);
        let (_, seen) = copy_through(&rig, &rig.fake.url.clone(), FAKE_BUCKET, &key, data, &[fault], None).await;
        let kinds: Vec<(String, &str)> = seen
            .iter()
            .map(|s| (s.method.clone(), fault_proxy::gcs_method(&s.method, &s.path).unwrap_or("?")))
            .collect();
        assert_eq!(
            kinds,
            vec![("POST".to_string(), "storage.objects.insert"), ("GET".to_string(), "storage.objects.get")],
            "{fault:?}: one upload, then one metadata read"
        );
    }
}

/// The same for a resumable upload whose last chunk was finalized with an unreadable answer:
/// the object is read back, no chunk is sent again and no new session is started. On
/// gcp-storage-emulator (resumable sessions).
#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_answer_to_the_last_chunk_is_read_back_never_uploaded_again() {
    let rig = Rig::up().await;
    let (endpoint, bucket) = rig.upstream(Call::InsertResumable);
    // A session's start and two full chunks pass; the third, last chunk's answer is garbled.
    let faults = [Fault::Pass, Fault::Pass, Fault::Pass, Fault::GarbledAnswer];
    let (_, seen) =
        copy_through(&rig, &endpoint, &bucket, "unreadable/resumable", bytes_of(2 * MIB + 7, 9), &faults, Some(0))
            .await;
    let uploads = seen.iter().filter(|s| s.path.starts_with("/upload/")).count();
    assert_eq!(uploads, 4, "one session start and three chunks, none again: {seen:#?}");
    assert_eq!(seen.last().map(|s| s.method.as_str()), Some("GET"), "then one metadata read");
}

/// Plays another writer: after the wrapped client's upload returns (its answer unreadable),
/// writes other bytes to the same name straight to the emulator, before xcr reads back.
struct WriterAfter {
    direct: GcsClient,
}

impl SinkHooks for WriterAfter {
    async fn upload_single(
        &self,
        inner: &GcsClient,
        spec: &UploadSpec,
        data: bytes::Bytes,
    ) -> xcr::Result<xcr::domain::model::StoredObject> {
        let out = inner.upload_single(spec, data).await;
        let other = b"another writer".to_vec();
        let foreign = UploadSpec {
            size: other.len() as u64,
            crc32c: Some(crc32c_b64(&other)),
            if_generation_match: None,
            ..spec.clone()
        };
        self.direct.upload_single(&foreign, other.into()).await.expect("the other writer");
        out
    }
}

/// An unreadable answer to an upload, and by the time xcr reads the object back another writer
/// has replaced it: xcr neither takes the other object as its own nor deletes it (it is not a
/// corrupt copy of xcr's), nor uploads again: `conflict`, for the lease holder to decide again.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_answer_for_an_object_replaced_since_is_a_conflict() {
    let rig = Rig::up().await;
    let proxy = FaultProxy::start(Service::Gcs, &rig.fake.url, Plan::script(Duration::from_secs(1), vec![])).await;
    proxy.fault_next("storage.objects.insert", "", Fault::GarbledAnswer, 1);
    let client = |url: &str| GcsClient::new(Some(url), Auth::Anonymous, Duration::from_secs(30)).expect("client");
    let sink = Around::new(client(&proxy.url()), WriterAfter { direct: client(&rig.fake.url) });
    let transfer = Transfer::new(S3Source::new(&rig.sdk), sink, config(), fast_retry());
    let key = "unreadable/replaced";
    put(&rig.s3, rig.stack.source_bucket(), key, bytes_of(32 * KIB, 5)).await;
    let obj = ObjectRef::new(rig.stack.source_bucket(), key);
    let out = transfer
        .copy_journaled(&obj, &Destination::new(FAKE_BUCKET, key), |_| None::<()>, CopyTerms::fenced(None))
        .await;
    let Err(e) = out else { panic!("took another writer's object as this copy's") };
    assert_eq!(e.kind(), ErrorKind::Conflict, "{}", e.chain());
    let uploads = proxy.seen_since(0).iter().filter(|s| s.method == "POST").count();
    assert_eq!(uploads, 1, "never uploaded again");
    let (bytes, _) = read_back(&rig.fake.url, FAKE_BUCKET, key).await.expect("the other writer's object stays");
    assert_eq!(bytes, b"another writer");
}
