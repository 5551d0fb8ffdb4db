//! `xcr audit` against the emulators: a bucket seeded with every kind of drift is reported
//! exactly, `--repair` enqueues exactly what closes it, and after `xcr pump` a second audit finds
//! no drift.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::process::Command;
use xcr::ports::{ObjectSink, UploadSpec};

/// Runs xcr with the stack's environment plus `extra`: exit code, stdout lines as JSON, stderr.
fn xcr(stack: &Stack, extra: &[(&str, &str)], args: &[&str]) -> (i32, Vec<serde_json::Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xcr"))
        .args(args)
        .env_clear()
        .envs(stack.command_env())
        .envs(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .expect("run xcr");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let lines = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    (out.status.code().unwrap_or(-1), lines, String::from_utf8_lossy(&out.stderr).to_string())
}

/// The findings as (kind, key) pairs, and the counts line.
fn findings(lines: &[serde_json::Value]) -> (Vec<(String, String)>, serde_json::Value) {
    let mut out = Vec::new();
    let mut counts = serde_json::Value::Null;
    for l in lines {
        if let Some(c) = l.get("counts") {
            counts = c.clone();
        } else {
            out.push((l["kind"].as_str().unwrap_or("?").to_string(), l["key"].as_str().unwrap_or("?").to_string()));
        }
    }
    (out, counts)
}

/// Writes an object into GCS directly, as something other than xcr would.
async fn gcs_put(stack: &Stack, name: &str, data: Vec<u8>, content_type: &str) {
    let spec = UploadSpec {
        bucket: stack.dest_bucket().to_string(),
        name: name.to_string(),
        size: data.len() as u64,
        headers: xcr::domain::model::ContentHeaders { content_type: Some(content_type.into()), ..Default::default() },
        metadata: BTreeMap::new(),
        ..Default::default()
    };
    stack.gcs().upload_single(&spec, data.into()).await.expect("direct GCS upload");
}

/// Seeds one key of each kind of drift, plus three that match, in the stack's buckets: a copy
/// made by xcr for the keys that were ever copied, then the drift made by hand.
async fn seed_drift(stack: &Stack) {
    let s3 = stack.s3().await;
    let src = stack.source_bucket().to_string();
    let ct = "application/x-audit";
    let put_ct = |key: &'static str, data: Vec<u8>| {
        let s3 = s3.clone();
        let src = src.clone();
        async move {
            s3.put_object().bucket(&src).key(key).content_type(ct).body(data.into()).send().await.expect("put");
        }
    };
    // Copied by xcr and untouched since (one with a name that sorts by its UTF-8 bytes).
    for (i, key) in ["a/match-1", "a/match-2", "a/é-match"].into_iter().enumerate() {
        put_ct(key, bytes_of(3_000 + i, i as u64)).await;
    }
    // In S3 only.
    put_ct("b/missing", bytes_of(1_000, 20)).await;
    // Copied, then GCS's bytes replaced by others of the same size.
    put_ct("c/corrupt", bytes_of(2_000, 30)).await;
    // Copied, then the S3 object's metadata replaced (a self-copy: same bytes, same ETag).
    put_ct("d/metadata", bytes_of(2_500, 40)).await;
    // Multipart in S3 (ETag "-2", no stored CRC32C), written to GCS by someone else: no shared
    // checksum and no ledger record.
    let multi = bytes_of(5 * 1024 * 1024 + 100, 50);
    let up =
        s3.create_multipart_upload().bucket(&src).key("f/unverifiable").content_type(ct).send().await.expect("mpu");
    let id = up.upload_id().expect("upload id").to_string();
    let mut parts = Vec::new();
    for (n, chunk) in [&multi[..5 * 1024 * 1024], &multi[5 * 1024 * 1024..]].into_iter().enumerate() {
        let n = n as i32 + 1;
        let p = s3
            .upload_part()
            .bucket(&src)
            .key("f/unverifiable")
            .upload_id(&id)
            .part_number(n)
            .body(chunk.to_vec().into())
            .send()
            .await
            .expect("part");
        parts.push(
            aws_sdk_s3::types::CompletedPart::builder().part_number(n).e_tag(p.e_tag().unwrap_or_default()).build(),
        );
    }
    let done = aws_sdk_s3::types::CompletedMultipartUpload::builder().set_parts(Some(parts)).build();
    s3.complete_multipart_upload()
        .bucket(&src)
        .key("f/unverifiable")
        .upload_id(&id)
        .multipart_upload(done)
        .send()
        .await
        .expect("complete mpu");
    gcs_put(stack, "f/unverifiable", multi.clone(), ct).await;

    for key in ["a/match-1", "a/match-2", "a/é-match", "c/corrupt", "d/metadata"] {
        let (code, _, err) = xcr(stack, &[], &["replicate", &format!("s3://{src}/{key}"), "--json"]);
        assert_eq!(code, 0, "{key}: {err}");
    }
    gcs_put(stack, "c/corrupt", bytes_of(2_000, 31), ct).await;
    s3.copy_object()
        .bucket(&src)
        .key("d/metadata")
        .copy_source(format!("{src}/d/metadata"))
        .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
        .content_type(ct)
        .metadata("owner", "audit")
        .send()
        .await
        .expect("self-copy");
    // In GCS only.
    gcs_put(stack, "e/extra", bytes_of(700, 60), ct).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_reports_each_kind_of_drift_and_repair_closes_it() {
    let stack = Stack::up();
    seed_drift(&stack).await;
    let src = stack.source_bucket().to_string();
    let deletes = [("XCR_REPLICATE_DELETES", "true")];

    // Two keys per page: every page boundary of both listings is crossed.
    let source = format!("s3://{}", stack.source_bucket());
    let audit = |extra: &[(&str, &str)], page: &str, more: &[&str]| {
        let mut args = vec!["audit", source.as_str(), "--json", "--page-size", page];
        args.extend_from_slice(more);
        xcr(&stack, extra, &args)
    };
    let (code, lines, err) = audit(&deletes, "2", &[]);
    let (found, counts) = findings(&lines);
    let expect: Vec<(String, String)> = [
        ("missing", "b/missing"),
        ("different", "c/corrupt"),
        ("different", "d/metadata"),
        ("extra", "e/extra"),
        ("unverifiable", "f/unverifiable"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(found, expect, "{err}");
    assert_eq!(code, 1, "drift found: exit 1; {err}");
    let reason = |key: &str| {
        lines.iter().find(|l| l["key"] == key).and_then(|l| l["reason"].as_str()).unwrap_or_default().to_string()
    };
    assert!(reason("c/corrupt").contains("md5"), "{}", reason("c/corrupt"));
    assert!(reason("d/metadata").contains("owner"), "{}", reason("d/metadata"));
    let dest = lines.iter().find(|l| l["key"] == "b/missing").expect("missing line");
    assert_eq!(dest["destination"], format!("gs://{}/b/missing", stack.dest_bucket()));
    assert_eq!(counts["compared"], 6, "{counts}");
    assert_eq!(counts["matching"], 3, "{counts}");
    assert_eq!(counts["drift"], 4, "{counts}");

    // Without deletes replicated an extra is reported but is not drift.
    let (code, lines, _) = audit(&[], "1000", &[]);
    assert_eq!(findings(&lines).1["drift"], 3);
    assert_eq!(code, 1);

    // The stack's bucket notifications queued an event per put: drop them, so that only the
    // repair's commands are on the queue and only they can close the drift.
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk().await);
    sqs.purge_queue().queue_url(stack.var("XCR_QUEUE_URL")).send().await.expect("purge the queue");
    let queue = xcr::adapters::aws::sqs::Queue::new(&stack.sdk().await, stack.var("XCR_QUEUE_URL"));
    assert_eq!(queue.depth().await.expect("depth"), (0, 0));

    // Repair: exactly the three copies and the delete.
    let (code, lines, err) = audit(&deletes, "2", &["--repair"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(findings(&lines).1["enqueued"], 4, "{err}");
    assert_eq!(queue.depth().await.expect("depth"), (4, 0));
    let (code, _, err) = xcr(&stack, &deletes, &["pump", "--until-idle", "2", "--json"]);
    assert_eq!(code, 0, "{err}");

    let (code, lines, err) = audit(&deletes, "2", &[]);
    let (found, counts) = findings(&lines);
    assert_eq!(found, vec![("unverifiable".to_string(), "f/unverifiable".to_string())], "{lines:?} {err}");
    assert_eq!(counts["drift"], 0, "{counts}");
    assert_eq!(code, 0, "{err}");
    // The repaired bytes are S3's, read back independently.
    let (got, meta) = gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), "c/corrupt").await.expect("repaired");
    assert!(got == bytes_of(2_000, 30));
    assert_eq!(meta["metadata"]["xcr-source-key"], "c/corrupt");
    assert!(gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), "e/extra").await.is_none(), "extra deleted");

    // Once xcr has copied the multipart object, the ledger's record of that verified copy (same
    // generation, size and CRC32C as GCS holds) vouches for it.
    let (code, _, err) = xcr(&stack, &[], &["replicate", &format!("s3://{src}/f/unverifiable"), "--json"]);
    assert_eq!(code, 0, "{err}");
    let (code, lines, err) = audit(&deletes, "1000", &[]);
    let (found, counts) = findings(&lines);
    assert!(found.is_empty(), "{found:?} {err}");
    assert_eq!((counts["matching"].as_u64(), code), (Some(7), 0), "{counts}");

    // A source prefix and a destination prefix: names are PREFIX + key, listed under both.
    let (code, lines, err) = xcr(
        &stack,
        &deletes,
        &["audit", &format!("s3://{src}/a/"), "--dest", &format!("gs://{}/copies/", stack.dest_bucket()), "--json"],
    );
    let (found, counts) = findings(&lines);
    assert_eq!(found.iter().filter(|(k, _)| k == "missing").count(), 3, "{found:?} {err}");
    assert_eq!((counts["compared"].as_u64(), code), (Some(0), 1), "{counts}");
    let copy = format!("gs://{}/copies/a/match-1", stack.dest_bucket());
    assert!(lines.iter().any(|l| l["destination"] == copy.as_str()), "{lines:?}");

    // Bad usage.
    let (code, _, err) = xcr(&stack, &[], &["audit", "gs://not-s3"]);
    assert_eq!(code, 2, "{err}");
}

/// An API over the stack (the api function's Router, in process).
async fn api(stack: &Stack) -> axum::Router {
    let cfg = xcr::config::Config::from_vars(stack.env.clone(), xcr::entry::api::Api::NEEDS).expect("config");
    let settings = xcr::entry::api::settings::ApiSettings::from_vars(&stack.env).expect("api settings");
    let api = xcr::entry::api::Api::new(&stack.sdk().await, &cfg, settings).expect("api");
    xcr::entry::api::router(std::sync::Arc::new(api))
}

/// POSTs a job spec: the status and the JSON answer.
async fn post_job(app: &axum::Router, spec: serde_json::Value) -> (u16, serde_json::Value) {
    use tower::ServiceExt;
    let req = axum::http::Request::post("/v1/jobs")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(spec.to_string()))
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("router answers");
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

/// Every object under `prefix` in S3 `bucket`, read back: (key, lines as JSON).
async fn s3_reports(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Vec<(String, Vec<serde_json::Value>)> {
    let listed = s3.list_objects_v2().bucket(bucket).prefix(prefix).send().await.expect("list reports");
    let mut out = Vec::new();
    for o in listed.contents() {
        let key = o.key().expect("key").to_string();
        let got = s3.get_object().bucket(bucket).key(&key).send().await.expect("get report");
        assert_eq!(got.content_type(), Some("application/x-ndjson"), "{key}");
        let bytes = got.body.collect().await.expect("report body").into_bytes();
        let lines = String::from_utf8_lossy(&bytes)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{key}: not JSON ({e}): {l}")))
            .collect();
        out.push((key, lines));
    }
    out
}

/// Runs an audit job created through the API to its end: the driver lists two keys per page
/// (so that the job has several page tasks), then `xcr pump` runs the page tasks, and the
/// repairs they enqueue. Returns the job as `xcr jobs show --json` prints it.
async fn run_audit_job(stack: &Stack, app: &axum::Router, spec: serde_json::Value) -> serde_json::Value {
    let (status, job) = post_job(app, spec).await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().expect("job id").to_string();
    let sdk = stack.sdk().await;
    let queue = xcr::adapters::aws::sqs::Queue::new(&sdk, stack.var("XCR_QUEUE_URL"));
    let jobs = xcr::adapters::aws::job_store::DynamoJobStore::new(&sdk, stack.var("XCR_JOBS_TABLE"));
    let mut driver = xcr::jobs::migrate::Driver::new(xcr::adapters::aws::s3::S3Source::new(&sdk), queue, jobs);
    driver.page_size = 2;
    while driver.step(&id).await.expect("driver step") == xcr::jobs::migrate::Step::Progress {}
    let deletes = [("XCR_REPLICATE_DELETES", "true")];
    let (code, _, err) = xcr(stack, &deletes, &["pump", "--until-idle", "2", "--json"]);
    assert_eq!(code, 0, "{err}");
    let (code, lines, err) = xcr(stack, &[], &["jobs", "show", &id, "--json"]);
    assert_eq!(code, 0, "{err}");
    lines.into_iter().next().expect("the job")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_audit_job_counts_and_reports_each_kind_of_drift_per_page_and_a_repair_job_closes_it() {
    let stack = Stack::up();
    seed_drift(&stack).await;
    // A name only in GCS that sorts between two S3 pages' keys ("b/missing" | "c/corrupt"):
    // the ranges leave no gap, so exactly one page reports it.
    gcs_put(&stack, "b/zz-extra", bytes_of(300, 70), "application/x-audit").await;
    let s3 = stack.s3().await;
    let reports = "xcr-audit-reports";
    let mut create = s3.create_bucket().bucket(reports);
    if stack.var("AWS_REGION") != "us-east-1" {
        create = create.create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(stack.var("AWS_REGION")))
                .build(),
        );
    }
    create.send().await.expect("create the report bucket");
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk().await);
    sqs.purge_queue().queue_url(stack.var("XCR_QUEUE_URL")).send().await.expect("purge the queue");
    let app = api(&stack).await;
    let src = stack.source_bucket().to_string();
    let dest = format!("gs://{}", stack.dest_bucket());

    // Malformed audit jobs: 400 with a message naming the problem, nothing created.
    for (spec, needle) in [
        (serde_json::json!({"kind": "audit", "source_bucket": src}), "destination"),
        (
            serde_json::json!({"kind": "audit", "source_bucket": src, "destination": dest, "report": "ftp://x/y"}),
            "report",
        ),
        (serde_json::json!({"kind": "audit", "source_bucket": src, "destination": dest, "dry_run": true}), "dry_run"),
        (serde_json::json!({"kind": "copy", "source_bucket": src, "repair": true}), "repair"),
        (serde_json::json!({"kind": "scan", "source_bucket": src}), "unknown variant"),
    ] {
        let (status, body) = post_job(&app, spec.clone()).await;
        assert_eq!(status, 400, "{spec}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{spec}: {message}");
    }

    // The audit job: every kind counted exactly, once, over four pages of two keys.
    let spec = serde_json::json!({"kind": "audit", "source_bucket": src, "destination": dest,
        "report": format!("s3://{reports}/audits/")});
    let job = run_audit_job(&stack, &app, spec).await;
    assert_eq!(job["status"], "SUCCEEDED", "{job}");
    let a = &job["audit"];
    let got: Vec<u64> = ["pages", "compared", "matching", "missing", "different", "extra", "unverifiable", "repaired"]
        .iter()
        .map(|k| a[*k].as_u64().unwrap_or(u64::MAX))
        .collect();
    assert_eq!(got, [4, 6, 3, 1, 2, 2, 1, 0], "{job}");
    assert_eq!((job["counters"]["listed"].as_u64(), job["counters"]["failed"].as_u64()), (Some(7), Some(0)), "{job}");

    // One report per page, read back; together they hold each finding once, with its reason.
    let id = job["id"].as_str().expect("id");
    let pages = s3_reports(&s3, reports, &format!("audits/{id}/")).await;
    let names: Vec<&str> = pages.iter().map(|(k, _)| k.rsplit('/').next().unwrap_or_default()).collect();
    assert_eq!(names, ["page-000000.jsonl", "page-000001.jsonl", "page-000002.jsonl", "page-000003.jsonl"]);
    let mut found = Vec::new();
    let mut compared = 0;
    for (key, lines) in &pages {
        let (f, counts) = findings(lines);
        assert_eq!(lines.last().and_then(|l| l.get("counts")), Some(&counts), "{key}: the counts come last");
        compared += counts["compared"].as_u64().unwrap_or_default();
        assert_eq!(counts["job_id"], id, "{key}");
        found.extend(f);
    }
    found.sort();
    let expect: Vec<(String, String)> = [
        ("different", "c/corrupt"),
        ("different", "d/metadata"),
        ("extra", "b/zz-extra"),
        ("extra", "e/extra"),
        ("missing", "b/missing"),
        ("unverifiable", "f/unverifiable"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(found, expect);
    assert_eq!(compared, 6);
    let lines: Vec<&serde_json::Value> = pages.iter().flat_map(|(_, l)| l).collect();
    let reason = |key: &str| lines.iter().find(|l| l["key"] == key).and_then(|l| l["reason"].as_str()).unwrap_or("");
    assert!(reason("c/corrupt").contains("md5"), "{}", reason("c/corrupt"));
    assert!(reason("d/metadata").contains("owner"), "{}", reason("d/metadata"));

    // A repair job enqueues exactly the five commands; a second audit job then finds no drift.
    let spec = serde_json::json!({"kind": "audit", "source_bucket": src, "destination": dest, "repair": true});
    let job = run_audit_job(&stack, &app, spec).await;
    assert_eq!((job["status"].as_str(), job["audit"]["repaired"].as_u64()), (Some("SUCCEEDED"), Some(5)), "{job}");
    let spec = serde_json::json!({"kind": "audit", "source_bucket": src, "destination": dest});
    let job = run_audit_job(&stack, &app, spec).await;
    let a = &job["audit"];
    let drift: Vec<u64> = ["missing", "different", "extra"].iter().map(|k| a[*k].as_u64().unwrap_or(9)).collect();
    assert_eq!(drift, [0, 0, 0], "{job}");
    assert_eq!((a["matching"].as_u64(), a["unverifiable"].as_u64()), (Some(6), Some(1)), "{job}");
    let (got, _) = gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), "c/corrupt").await.expect("repaired");
    assert!(got == bytes_of(2_000, 30), "the repaired bytes are S3's");

    // `xcr audit --report`: the same report as one object (here in GCS, read back), and a bad
    // report URL refused before anything is audited.
    let deletes = [("XCR_REPLICATE_DELETES", "true")];
    let report = format!("gs://{}/audit-report.jsonl", stack.dest_bucket());
    let (code, _, err) = xcr(&stack, &deletes, &["audit", &format!("s3://{src}"), "--report", &report]);
    assert_eq!(code, 0, "{err}");
    let (bytes, meta) =
        gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), "audit-report.jsonl").await.expect("report");
    assert_eq!(meta["contentType"], "application/x-ndjson");
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&bytes).lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    let (found, counts) = findings(&lines);
    assert_eq!(found, vec![("unverifiable".to_string(), "f/unverifiable".to_string())]);
    assert_eq!((counts["matching"].as_u64(), counts["drift"].as_u64()), (Some(6), Some(0)), "{counts}");
    for bad in ["s3://xcr-audit-reports", "ftp://x/y", "gs://BAD/x"] {
        let (code, _, err) = xcr(&stack, &[], &["audit", &format!("s3://{src}"), "--report", bad]);
        assert_eq!(code, 2, "{bad}: {err}");
        assert!(err.contains("--report"), "{bad}: {err}");
    }
    let (code, _, err) = xcr(&stack, &[], &["jobs", "create", "--kind", "audit", "--source-bucket", &src]);
    assert_ne!(code, 0);
    assert!(err.contains("destination"), "{err}");
}
