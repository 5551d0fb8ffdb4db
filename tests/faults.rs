//! Fault injection: the replicate function's handler runs against real emulators with a
//! fault-injecting proxy in front of each of S3, DynamoDB and GCS (`fault_proxy`), which resets
//! connections, loses answers, returns 5xx and throttling errors in each service's own format,
//! and stalls requests and S3 bodies past the client's timeout, on a seeded share of requests.
//!
//! What it proves, for 500 objects of mixed sizes (most small, some resumable in several chunks):
//! * nothing is lost: delivered as SQS would (failed records again, until none fails), every
//!   object reaches GCS byte-exact with its content type and user metadata, read back without
//!   the proxies and without xcr's code;
//! * nothing is duplicated: in the first round one record in five is delivered twice at once
//!   (in two batches run together); uploads are counted per object where they complete (at the
//!   GCS proxy: a one-request upload or a session's last chunk answered 200/201), and every
//!   object has at least one and at most one whose answer reached xcr in time. (The emulator
//!   ignores preconditions, so a retry after a lost or late answer completes again here, where
//!   GCS would answer 412 to its `ifGenerationMatch=0`; those are counted and printed, not
//!   refused.) Then every event delivered again through the faulty proxies ends
//!   `already_replicated`, no upload request at all reaches GCS, and every GCS generation stays
//!   the same;
//! * the ledger ends consistent: each item's done record names the generation, size and CRC32C
//!   GCS holds, and no lease is left held;
//! * the faults really happened: at least 20% of the requests on each path were faulted, and
//!   every kind of fault the path injects (`Service::rate_faults`) was injected at least once
//!   in the copy phase.
//!
//! The job store is left out here: tests/migrate_faults.rs runs migration jobs through the
//! same faults.
//!
//! `XCR_FAULT_OBJECTS` changes the object count, `XCR_FAULT_SEED` the seed; with `XCR_LOG` set
//! (e.g. `warn`), xcr's logs go to stderr.

mod common;
mod fault_proxy;

use common::*;
use fault_proxy::{FaultProxy, Plan, Service};
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use xcr::adapters::aws::job_store::DynamoJobStore;
use xcr::adapters::aws::ledger::DynamoLedger;
use xcr::adapters::aws::sqs::Queue;
use xcr::domain::replicate::now_ms;

/// Share of requests faulted on each path, in percent.
const FAULT_PERCENT: u64 = 25;
/// The client timeout xcr is configured with (`XCR_REQUEST_TIMEOUT_SECS`); stalls outlast it.
const TIMEOUT_SECS: u64 = 2;
/// Chunk size and single-request threshold: objects above it go up in several chunks.
const CHUNK: usize = 256 * 1024;
/// Bounded redelivery, as SQS's maxReceiveCount bounds it.
const MAX_ROUNDS: usize = 40;

struct Object {
    key: String,
    data: Vec<u8>,
    content_type: &'static str,
    cache_control: Option<&'static str>,
    metadata: HashMap<String, String>,
    version_id: Option<String>,
    etag: String,
    sequencer: Option<String>,
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Mostly small objects (0 B to 48 KiB, the exact threshold among them), one in ten above the
/// threshold (2 to 5 chunks), with varied content types, cache control and user metadata.
fn plan_objects(count: usize, seed: u64) -> Vec<Object> {
    const TYPES: [&str; 5] =
        ["text/plain; charset=utf-8", "application/json", "image/png", "application/octet-stream", "text/csv"];
    (0..count)
        .map(|i| {
            let r = bytes_of(8, seed ^ (i as u64 + 1));
            let r = u64::from_le_bytes(r.try_into().expect("8 bytes"));
            let size = match i {
                1 => 0,
                2 => 1,
                3 => CHUNK,
                4 => CHUNK + 1,
                _ if i % 10 == 0 => CHUNK + 1 + (r % (4 * CHUNK as u64)) as usize,
                _ => (r % (48 * 1024)) as usize,
            };
            let mut metadata = HashMap::new();
            metadata.insert("index".to_string(), i.to_string());
            metadata.insert("owner".to_string(), format!("team-{}", i % 7));
            Object {
                key: format!("faults/dir {}/obj+{i:04}.bin", i % 13),
                data: bytes_of(size, seed.wrapping_add(i as u64)),
                content_type: TYPES[i % TYPES.len()],
                cache_control: (i % 3 == 0).then_some("public, max-age=60"),
                metadata,
                version_id: None,
                etag: String::new(),
                // Half the events carry a sequencer, as real S3 notifications do; the other half
                // are ordered by version and ETag, as emulator and API events are.
                sequencer: (i % 2 == 0).then(|| format!("{:018X}", 0x0065_A7B3_C8D1_0000u64 + i as u64)),
            }
        })
        .collect()
}

/// S3's notification encoding of a key: form-encoded, `+` for a space.
fn event_key(key: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'/');
    percent_encoding::utf8_percent_encode(key, KEEP).to_string().replace("%20", "+")
}

fn s3_record(bucket: &str, o: &Object) -> Value {
    let mut object = json!({ "key": event_key(&o.key), "size": o.data.len(), "eTag": o.etag });
    if let Some(v) = &o.version_id {
        object["versionId"] = json!(v);
    }
    if let Some(s) = &o.sequencer {
        object["sequencer"] = json!(s);
    }
    json!({
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-23T08:00:00.000Z", "eventName": "ObjectCreated:Put",
        "s3": { "s3SchemaVersion": "1.0", "bucket": { "name": bucket, "arn": format!("arn:aws:s3:::{bucket}") }, "object": object }
    })
}

fn sqs_batch(bucket: &str, objects: &[Object], ids: &[usize]) -> Value {
    let records: Vec<Value> = ids
        .iter()
        .map(|&i| {
            json!({
                "messageId": format!("m-{i}"), "receiptHandle": format!("r-{i}"), "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:xcr-replicate", "awsRegion": "us-east-1",
                "attributes": { "ApproximateReceiveCount": "1" }, "messageAttributes": {},
                "body": json!({ "Records": [s3_record(bucket, &objects[i])] }).to_string(),
            })
        })
        .collect();
    json!({ "Records": records })
}

/// One SQS batch invocation: the indexes of the records to deliver again (the reported
/// failures, or the whole batch when the invocation itself failed, as SQS would).
async fn deliver(handler: &xcr::wiring::S3ToGcsHandler, payload: &Value, ids: Vec<usize>) -> Vec<usize> {
    // Lambda's deadline for this invocation; leases last until it plus a margin.
    match handler.handle(payload, now_ms() + 10_000).await {
        Ok(resp) => resp["batchItemFailures"]
            .as_array()
            .expect("batchItemFailures")
            .iter()
            .map(|f| {
                let id = f["itemIdentifier"].as_str().expect("itemIdentifier");
                id.trim_start_matches("m-").parse::<usize>().expect("message id")
            })
            .collect(),
        Err(e) => {
            eprintln!("invocation failed: {}", e.chain());
            ids
        }
    }
}

/// Every object name in the bucket, read straight from the emulator.
async fn gcs_list(endpoint: &str, bucket: &str) -> Vec<String> {
    let http = reqwest::Client::new();
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut req = http.get(format!("{endpoint}/storage/v1/b/{bucket}/o")).query(&[("maxResults", "1000")]);
        if let Some(t) = &token {
            req = req.query(&[("pageToken", t)]);
        }
        let page: Value = req.send().await.expect("list").json().await.expect("list json");
        for item in page["items"].as_array().into_iter().flatten() {
            names.push(item["name"].as_str().expect("name").to_string());
        }
        match page["nextPageToken"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => return names,
        }
    }
}

/// What GCS holds for each object (generation, size, crc32c), checked byte for byte and field
/// by field against what was put into S3, read directly from the emulator.
async fn verify_gcs(stack: &Stack, objects: &[Object]) -> Vec<(String, u64, String)> {
    let endpoint = stack.gcs_endpoint().to_string();
    let bucket = stack.dest_bucket().to_string();
    let reads = futures::stream::iter(objects.iter().map(|o| {
        let (endpoint, bucket) = (endpoint.clone(), bucket.clone());
        async move { (o, gcs_read(&endpoint, &bucket, &o.key).await) }
    }))
    .buffered(4)
    .collect::<Vec<_>>()
    .await;
    let mut out = Vec::new();
    for (o, read) in reads {
        let (bytes, meta) = read.unwrap_or_else(|| panic!("{} is missing from GCS", o.key));
        assert!(bytes == o.data, "{}: {} bytes in GCS, {} in S3, or different bytes", o.key, bytes.len(), o.data.len());
        assert_eq!(meta["contentType"].as_str(), Some(o.content_type), "{}: content type", o.key);
        assert_eq!(meta["cacheControl"].as_str(), o.cache_control, "{}: cache control", o.key);
        for (k, v) in &o.metadata {
            assert_eq!(meta["metadata"][k].as_str(), Some(v.as_str()), "{}: user metadata {k}", o.key);
        }
        assert_eq!(meta["metadata"]["xcr-source-etag"].as_str(), Some(o.etag.as_str()), "{}: provenance", o.key);
        let crc = meta["crc32c"].as_str().unwrap_or_default().to_string();
        assert_eq!(crc, crc32c_b64(&o.data), "{}: crc32c", o.key);
        let size: u64 = meta["size"].as_str().and_then(|s| s.parse().ok()).expect("size");
        assert_eq!(size, o.data.len() as u64, "{}: size", o.key);
        let generation = match &meta["generation"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        out.push((generation, size, crc));
    }
    let mut names = gcs_list(&endpoint, &bucket).await;
    names.sort();
    let mut expected: Vec<String> = objects.iter().map(|o| o.key.clone()).collect();
    expected.sort();
    assert_eq!(names, expected, "GCS holds exactly the objects put into S3");
    out
}

/// The end of the stack's moto log, to explain an emulator failure.
fn moto_log_tail(stack: &Stack) -> String {
    let mut out = String::new();
    for entry in walk(stack.dir()) {
        if entry.to_string_lossy().contains("moto") {
            let text = std::fs::read_to_string(&entry).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(60).collect();
            out.push_str(&format!(
                "== {}\n{}\n",
                entry.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
    }
    out
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

/// Each ledger item records the generation, size and CRC32C GCS holds, and holds no lease.
async fn verify_ledger(
    stack: &Stack,
    ledger: &DynamoLedger,
    bucket: &str,
    objects: &[Object],
    held: &[(String, u64, String)],
) {
    for (o, (generation, size, crc)) in objects.iter().zip(held) {
        let key = format!("gs://{bucket}/{}", o.key);
        let item = match ledger.get(&key).await {
            Ok(item) => item.unwrap_or_else(|| panic!("no ledger item for {key}")),
            Err(e) => panic!("ledger read {key}: {}\nmoto log:\n{}", e.chain(), moto_log_tail(stack)),
        };
        let done = item.done.unwrap_or_else(|| panic!("{key}: no done record"));
        assert_eq!(done.action, "copy", "{key}");
        assert_eq!(done.generation.as_deref(), Some(generation.as_str()), "{key}: ledger generation vs GCS");
        assert_eq!(done.size, Some(*size), "{key}: ledger size");
        assert_eq!(done.crc32c.as_deref(), Some(crc.as_str()), "{key}: ledger crc32c");
        assert_eq!(done.etag.as_deref(), Some(o.etag.as_str()), "{key}: ledger etag");
        assert_eq!(done.version_id, o.version_id, "{key}: ledger version");
        assert_eq!(item.lease_owner, None, "{key}: a lease is still held");
        assert_eq!(item.lease_expires_ms, None, "{key}: a lease is still held");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_object_arrives_once_through_injected_faults() {
    if std::env::var_os("XCR_LOG").is_some() {
        xcr::telemetry::init();
    }
    let started = Instant::now();
    let count = env_num("XCR_FAULT_OBJECTS", 500) as usize;
    let seed = env_num("XCR_FAULT_SEED", 7);
    let stack = Stack::up();
    let bucket = stack.source_bucket().to_string();
    let dest = stack.dest_bucket().to_string();

    // Put the objects straight into S3 (no proxy).
    let s3 = stack.s3().await;
    let mut objects = plan_objects(count, seed);
    let puts = futures::stream::iter(objects.iter().map(|o| {
        let mut req = s3
            .put_object()
            .bucket(&bucket)
            .key(&o.key)
            .content_type(o.content_type)
            .set_cache_control(o.cache_control.map(str::to_string))
            .body(o.data.clone().into());
        for (k, v) in &o.metadata {
            req = req.metadata(k, v);
        }
        req.send()
    }))
    .buffered(8)
    .collect::<Vec<_>>()
    .await;
    for (o, put) in objects.iter_mut().zip(puts) {
        let put = put.expect("put object");
        o.version_id = put.version_id().filter(|v| *v != "null").map(str::to_string);
        o.etag = put.e_tag().unwrap_or_default().trim_matches('"').to_string();
    }
    let large = objects.iter().filter(|o| o.data.len() > CHUNK).count();
    eprintln!("setup: {count} objects ({large} resumable) in S3 after {:.1}s", started.elapsed().as_secs_f32());

    // One proxy in front of each service; xcr talks only to the proxies.
    let plan = |n: u64| Plan {
        rate_percent: FAULT_PERCENT,
        seed: seed.wrapping_mul(31).wrapping_add(n),
        // Far past the client's timeout: xcr must give up on a stalled request by itself.
        stall: Duration::from_secs(60),
        script: Vec::new(),
    };
    let s3p = FaultProxy::start(Service::S3, stack.var("AWS_ENDPOINT_URL"), plan(1)).await;
    let ddbp = FaultProxy::start(Service::DynamoDb, stack.var("AWS_ENDPOINT_URL"), plan(2)).await;
    let gcsp = FaultProxy::start(Service::Gcs, stack.gcs_endpoint(), plan(3)).await;

    let (cfg, replicator) = fault_proxy::replicator_via(
        &stack,
        [&s3p.url(), &ddbp.url(), &gcsp.url()],
        CHUNK,
        TIMEOUT_SECS,
        vec![("XCR_BATCH_CONCURRENCY", "4".to_string())],
    )
    .await;
    // No requeue queue: a busy record is reported as a batch item failure and redelivered.
    let handler =
        xcr::entry::handler::Handler::new(replicator, cfg.batch_concurrency, None::<Queue>, None::<DynamoJobStore>);

    // Phase 1: deliver every event as SQS batches of ten, four batches at a time (four Lambda
    // instances); redeliver whatever a batch reports as failed, as SQS would, until nothing fails.
    // In the first round, one record in five is also delivered a second time at once (SQS is
    // at-least-once): batches go in pairs started together, each carrying, first, the twins of
    // its partner's every fifth record.
    let mut pending: Vec<usize> = (0..count).collect();
    let mut rounds = 0;
    let mut twin_pairs = 0;
    let mut overlapped = 0;
    while !pending.is_empty() {
        rounds += 1;
        assert!(rounds <= MAX_ROUNDS, "{} records still failing after {MAX_ROUNDS} deliveries", pending.len());
        let batches: Vec<Vec<usize>> = pending.chunks(10).map(<[usize]>::to_vec).collect();
        let pairs: Vec<(Vec<usize>, Vec<usize>)> = batches
            .chunks(2)
            .map(|pair| {
                let a = pair[0].clone();
                let b = pair.get(1).cloned().unwrap_or_default();
                if rounds > 1 {
                    return (a, b);
                }
                let twins = |of: &[usize]| of.iter().copied().filter(|i| i % 5 == 0).collect::<Vec<_>>();
                let b = if b.is_empty() { b } else { twins(&a).into_iter().chain(b.iter().copied()).collect() };
                let a = twins(&b).into_iter().filter(|i| !a.contains(i)).chain(a.iter().copied()).collect();
                (a, b)
            })
            .collect();
        let invoke = |ids: Vec<usize>| {
            let payload = sqs_batch(&bucket, &objects, &ids);
            let handler = &handler;
            async move {
                let begun = Instant::now();
                let failed = deliver(handler, &payload, ids).await;
                (failed, begun, Instant::now())
            }
        };
        let failed: Vec<Vec<usize>> = futures::stream::iter(pairs.into_iter().map(|(a, b)| {
            let (a_twins, b_twins) =
                (a.iter().filter(|i| b.contains(i)).count(), b.iter().filter(|i| a.contains(i)).count());
            let (fa, fb) = (invoke(a), invoke(b));
            async move {
                let ((fa, a0, a1), (fb, b0, b1)) = futures::join!(fa, fb);
                let twins = a_twins.max(b_twins);
                (fa.into_iter().chain(fb).collect::<Vec<_>>(), twins, a0 < b1 && b0 < a1)
            }
        }))
        .buffer_unordered(2)
        .map(|(failed, twins, overlap)| {
            if twins > 0 {
                twin_pairs += 1;
                overlapped += usize::from(overlap);
            }
            failed
        })
        .collect()
        .await;
        pending = failed.into_iter().flatten().collect();
        pending.sort_unstable();
        pending.dedup();
        eprintln!("round {rounds}: {} records to redeliver ({:.1}s)", pending.len(), started.elapsed().as_secs_f32());
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    eprintln!("twins: {} records delivered twice, in {twin_pairs} pairs of batches run at once", count.div_ceil(5));
    assert!(twin_pairs > 0 && overlapped == twin_pairs, "twin deliveries ran at once: {overlapped} of {twin_pairs}");
    let phase1 = started.elapsed();

    // Read back without proxies and without xcr's code.
    let held = verify_gcs(&stack, &objects).await;
    let direct = stack.sdk().await;
    let ledger = DynamoLedger::new(&direct, stack.var("XCR_LEDGER_TABLE"));
    verify_ledger(&stack, &ledger, &dest, &objects, &held).await;
    let (s3_1, ddb_1, gcs_1) = (s3p.counts(), ddbp.counts(), gcsp.counts());
    eprintln!("phase 1 (copy): {rounds} delivery rounds in {:.1}s", phase1.as_secs_f32());
    for (name, c) in [("s3", &s3_1), ("dynamodb", &ddb_1), ("gcs", &gcs_1)] {
        c.print(name);
    }

    // Uploads per object, counted where they complete: at the GCS proxy, a forwarded upload
    // request the emulator answered 200/201 with the object (a one-request upload, or a
    // session's last chunk). The emulator ignores preconditions, so a retry after an answer
    // xcr never got (a lost answer, or one slower than xcr's timeout) completes a second
    // upload here where GCS would refuse it with 412 (`ifGenerationMatch=0`). What "once"
    // means here, then: every object completed at least one upload, and at most one whose
    // answer reached xcr in time, i.e. xcr never uploads again an object it saw stored, twin
    // deliveries included.
    let mut completed: HashMap<String, (usize, usize)> = HashMap::new();
    let answered_within = Duration::from_secs(TIMEOUT_SECS).as_millis() as u64 * 3 / 4;
    for s in gcsp.seen_since(0) {
        if let Some(name) = s.completed {
            let e = completed.entry(name).or_default();
            e.0 += 1;
            let answered = s.fault.is_none() && s.upstream_ms.is_some_and(|ms| ms < answered_within);
            e.1 += usize::from(answered);
        }
    }
    for o in &objects {
        let (all, answered) = completed.get(&o.key).copied().unwrap_or_default();
        assert!(all >= 1, "{}: no completed upload seen", o.key);
        assert!(answered <= 1, "{}: {answered} uploads completed and answered in time ({all} in all)", o.key);
    }
    let again = completed.values().filter(|(all, _)| *all > 1).count();
    eprintln!("  uploads: {} completed for {count} objects; {again} objects uploaded again after an unseen answer", {
        completed.values().map(|(all, _)| all).sum::<usize>()
    });

    // Phase 2: every event again, through the same faults, one direct invocation per event
    // (S3 -> Lambda); a failed invocation is retried, as Lambda retries asynchronous invokes.
    let marks = (s3p.mark(), ddbp.mark(), gcsp.mark());
    let mut outcomes: BTreeMap<usize, String> = BTreeMap::new();
    let mut last_errors: BTreeMap<usize, String> = BTreeMap::new();
    let mut pending: Vec<usize> = (0..count).collect();
    let mut rounds2 = 0;
    while !pending.is_empty() {
        rounds2 += 1;
        assert!(
            rounds2 <= MAX_ROUNDS,
            "{} redeliveries still failing after {MAX_ROUNDS} rounds: {last_errors:?}",
            pending.len()
        );
        let results: Vec<(usize, Result<String, String>)> = futures::stream::iter(pending.iter().map(|&i| {
            let payload = json!({ "Records": [s3_record(&bucket, &objects[i])] });
            let handler = &handler;
            async move {
                match handler.handle(&payload, now_ms() + 10_000).await {
                    Ok(resp) => (i, Ok(resp["results"][0]["outcome"].as_str().unwrap_or("?").to_string())),
                    Err(e) => (i, Err(e.chain().to_string())),
                }
            }
        }))
        .buffer_unordered(16)
        .collect()
        .await;
        pending.clear();
        last_errors.clear();
        for (i, outcome) in results {
            match outcome {
                Ok(o) => {
                    outcomes.insert(i, o);
                }
                Err(e) => {
                    last_errors.insert(i, e);
                    pending.push(i);
                }
            }
        }
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let not_duplicate: Vec<_> = outcomes.iter().filter(|(_, o)| o.as_str() != "already_replicated").collect();
    assert!(not_duplicate.is_empty(), "redelivered events that were not already_replicated: {not_duplicate:?}");
    let uploads = gcsp.seen_since(marks.2).iter().filter(|s| s.path.starts_with("/upload/")).count();
    assert_eq!(uploads, 0, "a redelivered event reached GCS with an upload");
    let held_after = verify_gcs(&stack, &objects).await;
    for ((o, before), after) in objects.iter().zip(&held).zip(&held_after) {
        assert_eq!(before.0, after.0, "{}: the GCS generation changed on redelivery", o.key);
    }
    verify_ledger(&stack, &ledger, &dest, &objects, &held_after).await;
    let (s3_2, ddb_2) = (s3p.counts_since(marks.0), ddbp.counts_since(marks.1));
    eprintln!(
        "phase 2 (redelivery): {rounds2} rounds; s3 {} requests {:.1}% faulted, dynamodb {} requests {:.1}% faulted, gcs {} requests",
        s3_2.requests,
        s3_2.rate() * 100.0,
        ddb_2.requests,
        ddb_2.rate() * 100.0,
        gcsp.counts_since(marks.2).requests
    );

    // The faults really happened, on every path, each kind of them.
    for (name, service, c) in [
        ("s3", Service::S3, s3p.counts()),
        ("dynamodb", Service::DynamoDb, ddbp.counts()),
        ("gcs", Service::Gcs, gcsp.counts()),
    ] {
        assert!(c.requests >= 100, "{name}: only {} requests went through the proxy", c.requests);
        assert!(c.rate() >= 0.20, "{name}: only {:.1}% of {} requests were faulted", c.rate() * 100.0, c.requests);
        for f in service.rate_faults() {
            let n = c.by_fault.get(&format!("{f:?}")).copied().unwrap_or(0);
            assert!(n > 0, "{name}: no {f:?} was injected ({:?})", c.by_fault);
        }
    }
    // And in phase 1, where the copies were made, on every path.
    for (name, service, c) in
        [("s3", Service::S3, &s3_1), ("dynamodb", Service::DynamoDb, &ddb_1), ("gcs", Service::Gcs, &gcs_1)]
    {
        for f in service.rate_faults() {
            assert!(
                c.by_fault.get(&format!("{f:?}")).is_some_and(|n| *n > 0),
                "{name}, phase 1: no {f:?} ({:?})",
                c.by_fault
            );
        }
    }
    eprintln!("total {:.1}s", started.elapsed().as_secs_f32());
}
