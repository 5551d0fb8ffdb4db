//! The HTTP API through its Router, in process, against the emulators: every endpoint and every
//! status code it documents, read back independently where a copy is claimed.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::*;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;
use xcr::adapters::aws::job_store::DynamoJobStore;
use xcr::adapters::aws::sqs::Queue;
use xcr::domain::replicate::now_ms;
use xcr::entry::api::Api;
use xcr::entry::api::settings::ApiSettings;
use xcr::entry::pump::{PumpOptions, pump};
use xcr::ports::{Claim, ClaimRequest, JobStore, Ledger};

/// An API over `stack`, with `extra` variables on top of its local.env.
async fn api(stack: &Stack, extra: &[(&str, &str)]) -> axum::Router {
    let mut vars = stack.env.clone();
    for (k, v) in extra {
        vars.insert(k.to_string(), v.to_string());
    }
    let cfg = xcr::config::Config::from_vars(vars.clone(), Api::NEEDS).expect("config");
    let settings = ApiSettings::from_vars(&vars).expect("api settings");
    xcr::entry::api::router(Arc::new(Api::new(&stack.sdk().await, &cfg, settings).expect("api")))
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
    text: String,
}

async fn call(app: &axum::Router, method: Method, uri: &str, body: Option<Value>) -> Answer {
    let mut req = Request::builder().method(method).uri(uri);
    let body = match body {
        Some(v) => {
            req = req.header("content-type", "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    send(app, req.body(body).expect("request")).await
}

async fn send(app: &axum::Router, req: Request<Body>) -> Answer {
    let resp = app.clone().oneshot(req).await.expect("router answers");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
    let text = String::from_utf8_lossy(&bytes).to_string();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer { status, headers, body, text }
}

/// Asserts the one error shape and returns its code.
fn error_code(a: &Answer) -> String {
    let e = &a.body["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "no message in {}", a.text);
    let rid = e["request_id"].as_str().expect("request_id");
    assert_eq!(Some(rid), a.headers.get("x-request-id").and_then(|v| v.to_str().ok()), "request id in body and header");
    assert!(!a.text.contains("panicked") && !a.text.contains("backtrace"), "{}", a.text);
    e["code"].as_str().expect("code").to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn service_endpoints_docs_and_routing_errors() {
    let stack = Stack::up();
    let app = api(&stack, &[]).await;

    let root = call(&app, Method::GET, "/", None).await;
    assert_eq!(root.status, 200);
    assert_eq!(root.body["service"], "xcr");
    assert_eq!(root.body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(root.body["targets"]["aws"], stack.var("AWS_ENDPOINT_URL"));
    assert!(
        root.body["targets"]["gcs"].as_str().unwrap_or("").contains(stack.gcs_endpoint().trim_start_matches("http://"))
    );

    let health = call(&app, Method::GET, "/v1/health", None).await;
    assert_eq!(health.status, 200, "{}", health.text);
    assert_eq!(health.body["status"], "pass");
    for dep in ["s3", "gcs", "dynamodb", "sqs"] {
        assert_eq!(health.body["checks"][dep]["status"], "pass", "{dep}: {}", health.text);
        assert!(health.body["checks"][dep]["latency_ms"].is_u64());
    }

    // With routing rules only (no XCR_DEST_BUCKET), GCS is checked on the rules' buckets.
    let rules = format!(r#"[{{"source_bucket": "*", "destinations": [{{"bucket": "{}"}}]}}]"#, stack.dest_bucket());
    let ruled = api(&stack, &[("XCR_DEST_BUCKET", ""), ("XCR_RULES", rules.as_str())]).await;
    let h = call(&ruled, Method::GET, "/v1/health", None).await;
    assert_eq!(h.status, 200, "{}", h.text);
    assert_eq!(h.body["checks"]["gcs"]["target"], format!("gs://{}", stack.dest_bucket()));

    let spec = call(&app, Method::GET, "/openapi.json", None).await;
    assert_eq!(spec.status, 200);
    let paths = spec.body["paths"].as_object().expect("paths");
    let expected = [
        ("/", "get"),
        ("/v1/health", "get"),
        ("/v1/replicate", "post"),
        ("/v1/replicate/batch", "post"),
        ("/v1/jobs", "post"),
        ("/v1/jobs", "get"),
        ("/v1/jobs/{id}", "get"),
        ("/v1/jobs/{id}/cancel", "post"),
        ("/openapi.json", "get"),
        ("/docs", "get"),
    ];
    for (path, method) in expected {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing from the OpenAPI document"
        );
    }
    // Unknown fields are refused, as the document says.
    assert_eq!(spec.body["components"]["schemas"]["ReplicateRequest"]["additionalProperties"], false);

    let docs = call(&app, Method::GET, "/docs", None).await;
    assert_eq!(docs.status, 200);
    assert!(docs.headers["content-type"].to_str().unwrap_or("").starts_with("text/html"));
    for (path, _) in expected {
        assert!(docs.text.contains(&format!("<code>{path}</code>")), "/docs lacks {path}");
    }

    let missing = call(&app, Method::GET, "/v2/nothing", None).await;
    assert_eq!(missing.status, 404);
    assert_eq!(error_code(&missing), "not_found");
    let wrong = call(&app, Method::DELETE, "/v1/replicate", None).await;
    assert_eq!(wrong.status, 405);
    assert_eq!(error_code(&wrong), "method_not_allowed");

    // A caller's request id is kept (API Gateway's, in the function); a hostile one is replaced.
    let req = Request::get("/nope").header("x-request-id", "req-123").body(Body::empty()).expect("request");
    let a = send(&app, req).await;
    assert_eq!(a.body["error"]["request_id"], "req-123");
    let req = Request::get("/nope").header("x-request-id", "bad id\"<script>").body(Body::empty()).expect("request");
    let a = send(&app, req).await;
    assert_ne!(a.body["error"]["request_id"], "bad id\"<script>");
    error_code(&a);
}

#[tokio::test(flavor = "multi_thread")]
async fn replicate_answers_200_and_each_documented_4xx() {
    let stack = Stack::up();
    let app = api(&stack, &[]).await;
    let s3 = stack.s3().await;
    let bucket = stack.source_bucket().to_string();
    let data = bytes_of(300_000, 7);
    s3.put_object()
        .bucket(&bucket)
        .key("api/one.bin")
        .body(data.clone().into())
        .content_type("application/x-test")
        .metadata("team", "data")
        .send()
        .await
        .expect("put");

    // 200 replicated, byte-exact with metadata in GCS.
    let r = call(&app, Method::POST, "/v1/replicate", Some(json!({"bucket": bucket, "key": "api/one.bin"}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["outcome"], "replicated");
    assert_eq!(r.body["source"]["size"], 300_000);
    let generation = r.body["destinations"][0]["generation"].as_str().expect("generation").to_string();
    let (bytes, meta) = gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), "api/one.bin").await.expect("in GCS");
    assert!(bytes == data, "bytes differ");
    assert_eq!(meta["contentType"], "application/x-test");
    assert_eq!(meta["metadata"]["team"], "data");
    assert_eq!(meta["generation"].as_str(), Some(generation.as_str()));

    // 200 already_replicated: nothing uploaded, same generation.
    let again = call(&app, Method::POST, "/v1/replicate", Some(json!({"bucket": bucket, "key": "api/one.bin"}))).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["outcome"], "already_replicated");
    assert_eq!(again.body["destinations"][0]["generation"].as_str(), Some(generation.as_str()));

    // 200 stale: an older version asked for after a newer one was copied.
    let v1 = put(&s3, &bucket, "api/versions.txt", b"first".to_vec()).await.version_id.expect("versioned bucket");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    put(&s3, &bucket, "api/versions.txt", b"second".to_vec()).await;
    let newest =
        call(&app, Method::POST, "/v1/replicate", Some(json!({"bucket": bucket, "key": "api/versions.txt"}))).await;
    assert_eq!(newest.body["outcome"], "replicated", "{}", newest.text);
    let old = json!({"bucket": bucket, "key": "api/versions.txt", "version_id": v1});
    let stale = call(&app, Method::POST, "/v1/replicate", Some(old)).await;
    assert_eq!(stale.status, 200, "{}", stale.text);
    assert_eq!(stale.body["outcome"], "stale");
    let (bytes, _) = gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), "api/versions.txt").await.expect("in GCS");
    assert_eq!(bytes, b"second");

    // An explicit destination name.
    let named = json!({"bucket": bucket, "key": "api/one.bin", "destination": format!("gs://{}/renamed/one.bin", stack.dest_bucket())});
    let r = call(&app, Method::POST, "/v1/replicate", Some(named)).await;
    assert_eq!(r.body["outcome"], "replicated", "{}", r.text);
    assert!(gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), "renamed/one.bin").await.is_some());

    // 400: each kind of bad input, with a message that names the problem.
    let long_key = "é".repeat(513); // 1,026 bytes in 513 characters
    for (body, needle) in [
        (json!({"bucket": "Not_A_Bucket", "key": "k"}), "bucket"),
        (json!({"bucket": bucket, "key": ""}), "1 to 1024 bytes"),
        (json!({"bucket": bucket, "key": long_key}), "1 to 1024 bytes"),
        (json!({"bucket": bucket, "key": "a\nb"}), "line feeds"),
        (json!({"bucket": bucket, "key": "k", "kee": 1}), "unknown field"),
        (json!({"bucket": bucket, "key": 5}), "invalid type"),
        (json!({"bucket": bucket}), "missing field `key`"),
        (json!({"bucket": bucket, "key": "k", "destination": "s3://x/y"}), "gs://"),
        (json!({"bucket": bucket, "key": "k", "version_id": ""}), "version_id"),
    ] {
        let a = call(&app, Method::POST, "/v1/replicate", Some(body.clone())).await;
        assert_eq!(a.status, 400, "{body}: {}", a.text);
        assert_eq!(error_code(&a), "invalid_request");
        assert!(a.body["error"]["message"].as_str().unwrap_or("").contains(needle), "{body}: {}", a.text);
    }
    let req =
        Request::post("/v1/replicate").header("content-type", "application/json").body(Body::from("{\"bucket\":"));
    let a = send(&app, req.expect("request")).await;
    assert_eq!(a.status, 400);
    assert!(a.body["error"]["message"].as_str().unwrap_or("").contains("not valid JSON"), "{}", a.text);

    // 403: a bucket outside the allowlist is refused before anything is read.
    let a =
        call(&app, Method::POST, "/v1/replicate", Some(json!({"bucket": "someone-elses-bucket", "key": "k"}))).await;
    assert_eq!(a.status, 403);
    assert_eq!(error_code(&a), "bucket_not_allowed");

    // 404: missing object, missing version.
    let a = call(&app, Method::POST, "/v1/replicate", Some(json!({"bucket": bucket, "key": "api/missing"}))).await;
    assert_eq!(a.status, 404, "{}", a.text);
    assert_eq!(error_code(&a), "not_found");
    let a = call(
        &app,
        Method::POST,
        "/v1/replicate",
        Some(json!({"bucket": bucket, "key": "api/one.bin", "version_id": "3HL4kqtJlcpXroDTDmjVBH40Nrjfkd"})),
    )
    .await;
    assert_eq!(a.status, 404, "{}", a.text);
    assert_eq!(error_code(&a), "not_found");

    // 409: another worker holds the destination's lease.
    put(&s3, &bucket, "api/busy.bin", b"busy".to_vec()).await;
    let ledger = ledger(&stack.sdk().await, &stack);
    let now = now_ms();
    let claim = ClaimRequest {
        key: format!("gs://{}/api/busy.bin", stack.dest_bucket()),
        owner: "someone-else".into(),
        now_ms: now,
        lease_until_ms: now + 120_000,
        sequencer: None,
        source_bucket: String::new(),
    };
    assert!(matches!(ledger.claim(&claim).await.expect("claim"), Claim::Acquired { .. }));
    let a = call(&app, Method::POST, "/v1/replicate", Some(json!({"bucket": bucket, "key": "api/busy.bin"}))).await;
    assert_eq!(a.status, 409, "{}", a.text);
    assert_eq!(error_code(&a), "busy");
    let wait: u64 = a.headers["retry-after"].to_str().expect("retry-after").parse().expect("seconds");
    assert!((100..=121).contains(&wait), "Retry-After {wait}");

    // 413 and 415.
    let huge = json!({"bucket": bucket, "key": "x".repeat(3 * 1024 * 1024)});
    let a = call(&app, Method::POST, "/v1/replicate", Some(huge)).await;
    assert_eq!(a.status, 413);
    assert_eq!(error_code(&a), "body_too_large");
    let req = Request::post("/v1/replicate").body(Body::from(json!({"bucket": bucket, "key": "k"}).to_string()));
    let a = send(&app, req.expect("request")).await;
    assert_eq!(a.status, 415);
    assert_eq!(error_code(&a), "unsupported_media_type");
}

#[tokio::test(flavor = "multi_thread")]
async fn large_objects_are_queued_with_202() {
    let stack = Stack::up();
    let app = api(&stack, &[("XCR_API_SYNC_MAX_BYTES", "1MiB")]).await;
    let s3 = stack.s3().await;
    let bucket = stack.source_bucket().to_string();
    put(&s3, &bucket, "api/large.bin", bytes_of(1024 * 1024 + 1, 3)).await;
    let sdk = stack.sdk().await;
    let queue = Queue::new(&sdk, stack.var("XCR_QUEUE_URL"));
    aws_sdk_sqs::Client::new(&sdk).purge_queue().queue_url(queue.url()).send().await.expect("purge");

    let a = call(&app, Method::POST, "/v1/replicate", Some(json!({"bucket": bucket, "key": "api/large.bin"}))).await;
    assert_eq!(a.status, 202, "{}", a.text);
    assert_eq!(a.body["outcome"], "queued");
    let id = a.body["message_id"].as_str().expect("message id").to_string();
    assert!(a.body["detail"].as_str().unwrap_or("").contains("XCR_API_SYNC_MAX_BYTES"));
    // Nothing copied yet; the queue holds a command the replicate function understands.
    assert!(gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), "api/large.bin").await.is_none());
    let got = queue.receive(10, 1, None).await.expect("receive");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, id);
    let task = xcr::domain::events::decode_body(&got[0].body).expect("a replicate command");
    assert_eq!(task[0].object.key, "api/large.bin");
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_copies_each_key_in_request_order_or_queues_them() {
    let stack = Stack::up();
    let app = api(&stack, &[]).await;
    let s3 = stack.s3().await;
    let bucket = stack.source_bucket().to_string();
    let keys: Vec<String> = (0..6).map(|i| format!("batch/{i}.txt")).collect();
    for (i, k) in keys.iter().enumerate() {
        put(&s3, &bucket, k, bytes_of(1000 + i, i as u64)).await;
    }
    let mut asked = keys.clone();
    asked.insert(2, "batch/missing.txt".into());

    let a = call(&app, Method::POST, "/v1/replicate/batch", Some(json!({"bucket": bucket, "keys": asked}))).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let results = a.body["results"].as_array().expect("results");
    assert_eq!(results.len(), 7);
    for (r, k) in results.iter().zip(&asked) {
        assert_eq!(r["key"], k.as_str(), "results keep the request's order");
        if k.ends_with("missing.txt") {
            assert_eq!((r["status"].as_u64(), r["outcome"].as_str()), (Some(404), Some("failed")));
            assert_eq!(r["error"]["code"], "not_found");
        } else {
            assert_eq!((r["status"].as_u64(), r["outcome"].as_str()), (Some(200), Some("replicated")), "{r}");
        }
    }
    assert_eq!(a.body["summary"], json!({"replicated": 6, "failed": 1}));
    for (i, k) in keys.iter().enumerate() {
        let (bytes, _) = gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), k).await.expect("in GCS");
        assert!(bytes == bytes_of(1000 + i, i as u64), "{k}");
    }
    let again = call(&app, Method::POST, "/v1/replicate/batch", Some(json!({"bucket": bucket, "keys": keys}))).await;
    assert_eq!(again.body["summary"], json!({"already_replicated": 6}), "{}", again.text);

    // A destination prefix applies to every key.
    let to = format!("gs://{}/copies/", stack.dest_bucket());
    let a = call(
        &app,
        Method::POST,
        "/v1/replicate/batch",
        Some(json!({"bucket": bucket, "keys": &keys[..2], "destination": to})),
    )
    .await;
    assert_eq!(a.body["summary"], json!({"replicated": 2}), "{}", a.text);
    assert!(gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), "copies/batch/0.txt").await.is_some());

    // Async: every key queued, with its message id.
    let sdk = stack.sdk().await;
    let queue = Queue::new(&sdk, stack.var("XCR_QUEUE_URL"));
    aws_sdk_sqs::Client::new(&sdk).purge_queue().queue_url(queue.url()).send().await.expect("purge");
    let a =
        call(&app, Method::POST, "/v1/replicate/batch", Some(json!({"bucket": bucket, "keys": keys, "async": true})))
            .await;
    assert_eq!(a.status, 202, "{}", a.text);
    assert_eq!(a.body["queued"], 6);
    let ids: Vec<&str> =
        a.body["messages"].as_array().expect("messages").iter().filter_map(|m| m["message_id"].as_str()).collect();
    assert_eq!(ids.len(), 6);
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.extend(queue.receive(10, 1, None).await.expect("receive").into_iter().map(|m| m.id));
        if seen.len() >= 6 {
            break;
        }
    }
    seen.sort();
    let mut want: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(seen, want);

    // Whole-request errors.
    let too_many: Vec<String> = (0..1001).map(|i| format!("k{i}")).collect();
    for (body, status, code) in [
        (json!({"bucket": bucket, "keys": too_many}), 400, "invalid_request"),
        (json!({"bucket": bucket, "keys": []}), 400, "invalid_request"),
        (json!({"bucket": bucket, "keys": ["a", "a"]}), 400, "invalid_request"),
        (json!({"bucket": bucket, "keys": ["ok", ""]}), 400, "invalid_request"),
        (json!({"bucket": "not-allowed-bucket", "keys": ["a"]}), 403, "bucket_not_allowed"),
    ] {
        let a = call(&app, Method::POST, "/v1/replicate/batch", Some(body)).await;
        assert_eq!(a.status, status, "{}", a.text);
        assert_eq!(error_code(&a), code);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_endpoints_create_list_show_cancel_and_run() {
    let stack = Stack::up();
    let app = api(&stack, &[]).await;
    let s3 = stack.s3().await;
    let bucket = stack.source_bucket().to_string();
    for i in 0..3 {
        put(&s3, &bucket, &format!("jobs/{i}.txt"), bytes_of(500, i)).await;
    }
    let sdk = stack.sdk().await;
    let queue = Queue::new(&sdk, stack.var("XCR_QUEUE_URL"));
    aws_sdk_sqs::Client::new(&sdk).purge_queue().queue_url(queue.url()).send().await.expect("purge");

    let created = call(&app, Method::POST, "/v1/jobs", Some(json!({"source_bucket": bucket, "prefix": "jobs/"}))).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["id"].as_str().expect("id").to_string();
    assert_eq!(created.body["status"], "PENDING");
    assert_eq!(created.headers["location"].to_str().ok(), Some(format!("/v1/jobs/{id}").as_str()));

    let listed = call(&app, Method::GET, "/v1/jobs?limit=5", None).await;
    assert_eq!(listed.status, 200);
    assert!(listed.body["jobs"].as_array().expect("jobs").iter().any(|j| j["id"] == id.as_str()));

    // The job runs (locally `xcr pump` drives it, as the migrate function does in the cloud).
    let jobs = DynamoJobStore::new(&sdk, stack.var("XCR_JOBS_TABLE"));
    let handler =
        xcr::entry::handler::Handler::new(replicator(&stack, &[]).await, 8, Some(queue.clone()), Some(jobs.clone()))
            .with_retry_clock(fast_clock());
    let driver =
        xcr::jobs::migrate::Driver::new(xcr::adapters::aws::s3::S3Source::new(&sdk), queue.clone(), jobs.clone());
    let opts = PumpOptions {
        wait_secs: 1,
        visibility_secs: Some(5),
        until_idle: Some(Duration::from_secs(2)),
        ..Default::default()
    };
    pump(&handler, &queue, "us-east-1", Some(&driver), &opts).await.expect("pump");
    let shown = call(&app, Method::GET, &format!("/v1/jobs/{id}"), None).await;
    assert_eq!(shown.status, 200);
    assert_eq!(shown.body["status"], "SUCCEEDED", "{}", shown.text);
    assert_eq!(shown.body["counters"]["replicated"], 3);
    assert!(gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), "jobs/2.txt").await.is_some());

    // Cancel: a finished job cannot be; a pending one can, and cancelling twice is harmless.
    let a = call(&app, Method::POST, &format!("/v1/jobs/{id}/cancel"), None).await;
    assert_eq!(a.status, 409, "{}", a.text);
    assert_eq!(error_code(&a), "job_ended");
    let other = call(&app, Method::POST, "/v1/jobs", Some(json!({"source_bucket": bucket, "dry_run": true}))).await;
    let other_id = other.body["id"].as_str().expect("id").to_string();
    for _ in 0..2 {
        let a = call(&app, Method::POST, &format!("/v1/jobs/{other_id}/cancel"), None).await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert_eq!(a.body["status"], "CANCELLED");
    }
    assert_eq!(jobs.get(&other_id).await.expect("get").expect("job").status, xcr::jobs::JobStatus::Cancelled);

    // Bad specs and ids.
    for (body, status, needle) in [
        (json!({"prefix": "x"}), 400, "source_bucket"),
        (json!({"source_bucket": bucket, "overwrite": "sometimes"}), 400, "unknown variant"),
        (json!({"source_bucket": bucket, "manifest": "manifest.csv"}), 400, "s3://bucket/key"),
        (json!({"source_bucket": bucket, "destination": "gs://UPPER"}), 400, "destination"),
        (json!({"source_bucket": bucket, "colour": "red"}), 400, "unknown field"),
        (json!({"source_bucket": "not-allowed-bucket"}), 403, "XCR_ALLOWED_SOURCE_BUCKETS"),
        (
            json!({"source_bucket": bucket, "manifest": "s3://not-allowed-bucket/m.txt"}),
            403,
            "XCR_ALLOWED_SOURCE_BUCKETS",
        ),
    ] {
        let a = call(&app, Method::POST, "/v1/jobs", Some(body.clone())).await;
        assert_eq!(a.status, status, "{body}: {}", a.text);
        assert!(a.body["error"]["message"].as_str().unwrap_or("").contains(needle), "{body}: {}", a.text);
    }
    let a = call(&app, Method::GET, "/v1/jobs/job-20990101t000000-00000000", None).await;
    assert_eq!(a.status, 404);
    let a = call(&app, Method::GET, "/v1/jobs/bad%20id", None).await;
    assert_eq!(a.status, 400);
    let a = call(&app, Method::POST, "/v1/jobs/job-20990101t000000-00000000/cancel", None).await;
    assert_eq!(a.status, 404);
    for q in ["limit=0", "limit=101", "limit=x", "colour=red"] {
        let a = call(&app, Method::GET, &format!("/v1/jobs?{q}"), None).await;
        assert_eq!(a.status, 400, "{q}: {}", a.text);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dependency_down_is_503_without_internal_detail() {
    let stack = Stack::up();
    // GCS on a port nobody listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let gcs = format!("http://127.0.0.1:{dead}");
    let app = api(&stack, &[("STORAGE_EMULATOR_HOST", gcs.as_str()), ("XCR_MAX_ATTEMPTS", "2")]).await;
    let bucket = stack.source_bucket().to_string();
    put(&stack.s3().await, &bucket, "api/down.txt", b"x".to_vec()).await;

    let h = call(&app, Method::GET, "/v1/health", None).await;
    assert_eq!(h.status, 503, "{}", h.text);
    assert_eq!(h.body["status"], "fail");
    assert_eq!(h.body["checks"]["gcs"]["status"], "fail");
    for dep in ["s3", "dynamodb", "sqs"] {
        assert_eq!(h.body["checks"][dep]["status"], "pass", "{dep}");
    }

    let a = call(&app, Method::POST, "/v1/replicate", Some(json!({"bucket": bucket, "key": "api/down.txt"}))).await;
    assert_eq!(a.status, 503, "{}", a.text);
    assert_eq!(error_code(&a), "unavailable");
    assert!(a.headers.contains_key("retry-after"));
    assert!(!a.text.contains("127.0.0.1"), "internal endpoints must not leak: {}", a.text);
    // The lease was released (or will lapse): a retry once GCS is back can copy.
    let ok = api(&stack, &[]).await;
    let b = call(&ok, Method::POST, "/v1/replicate", Some(json!({"bucket": bucket, "key": "api/down.txt"}))).await;
    assert_eq!(b.body["outcome"], "replicated", "{}", b.text);
}

#[tokio::test(flavor = "multi_thread")]
async fn default_deny_without_an_allowlist() {
    let stack = Stack::up();
    let app = api(&stack, &[("XCR_ALLOWED_SOURCE_BUCKETS", "")]).await;
    let bucket = stack.source_bucket().to_string();
    put(&stack.s3().await, &bucket, "api/secret.txt", b"x".to_vec()).await;
    for (uri, body) in [
        ("/v1/replicate", json!({"bucket": bucket, "key": "api/secret.txt"})),
        ("/v1/replicate/batch", json!({"bucket": bucket, "keys": ["api/secret.txt"]})),
        ("/v1/jobs", json!({"source_bucket": bucket})),
    ] {
        let a = call(&app, Method::POST, uri, Some(body)).await;
        assert_eq!(a.status, 403, "{uri}: {}", a.text);
        assert_eq!(error_code(&a), "bucket_not_allowed");
    }
    assert!(gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), "api/secret.txt").await.is_none());
}

/// A destination bucket that does not exist is the operator's (or the caller's) problem, named:
/// 503 `misconfigured` with the bucket in the message, never 500 "internal error".
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_destination_bucket_is_named_not_internal() {
    let stack = Stack::up();
    let app = api(&stack, &[("XCR_ALLOWED_DESTINATIONS", "gs://xcr-dest gs://no-such-bucket-xcr/copies/")]).await;
    let bucket = stack.source_bucket().to_string();
    put(&stack.s3().await, &bucket, "api/nodest.txt", b"x".to_vec()).await;
    let a = call(
        &app,
        Method::POST,
        "/v1/replicate",
        Some(json!({"bucket": bucket, "key": "api/nodest.txt", "destination": "gs://no-such-bucket-xcr/copies/"})),
    )
    .await;
    assert_eq!(a.status, 503, "{}", a.text);
    assert_eq!(error_code(&a), "misconfigured");
    let message = a.body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("gs://no-such-bucket-xcr does not exist"), "{message}");
    assert!(a.headers.get("retry-after").is_none(), "no retry fixes it");
}
