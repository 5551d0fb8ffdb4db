//! The destination allowlist (`XCR_ALLOWED_DESTINATIONS`, by default exactly where the routing
//! rules write) against the local stack: the API refuses a destination outside it with 403
//! before reading anything; a queued command naming one is refused (nothing read or written,
//! counted as `refused`, acknowledged rather than retried into the DLQ); a delete command is
//! honoured only inside the list; and a job whose spec names such a destination ends FAILED.

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
use xcr::entry::api::Api;
use xcr::entry::api::settings::ApiSettings;
use xcr::entry::handler::Handler;
use xcr::entry::pump::{PumpOptions, pump};
use xcr::jobs::{Job, JobSpec, JobStatus, now_rfc3339};
use xcr::ports::JobStore;

async fn api(stack: &Stack) -> axum::Router {
    let vars = stack.env.clone();
    let cfg = xcr::config::Config::from_vars(vars.clone(), Api::NEEDS).expect("config");
    let settings = ApiSettings::from_vars(&vars).expect("api settings");
    xcr::entry::api::router(Arc::new(Api::new(&stack.sdk().await, &cfg, settings).expect("api")))
}

async fn post(app: &axum::Router, uri: &str, body: Value) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("router answers");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_refuses_a_destination_outside_the_allowlist_with_403() {
    let stack = Stack::up();
    let app = api(&stack).await;
    let (src, dest) = (stack.source_bucket().to_string(), stack.dest_bucket().to_string());
    put(&stack.s3().await, &src, "allow/one.txt", b"one".to_vec()).await;

    for (uri, body) in [
        ("/v1/replicate", json!({"bucket": src, "key": "allow/one.txt", "destination": "gs://someone-elses/x"})),
        (
            "/v1/replicate/batch",
            json!({"bucket": src, "keys": ["allow/one.txt"], "destination": "gs://someone-elses/p/"}),
        ),
        (
            "/v1/replicate/batch",
            json!({"bucket": src, "keys": ["allow/one.txt"], "destination": "gs://someone-elses/p/", "async": true}),
        ),
        ("/v1/jobs", json!({"source_bucket": src, "destination": "gs://someone-elses/p/"})),
    ] {
        let (status, answer) = post(&app, uri, body.clone()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{uri} {body}: {answer}");
        assert_eq!(answer["error"]["code"], "destination_not_allowed", "{answer}");
        let message = answer["error"]["message"].as_str().unwrap_or("");
        assert!(
            message.contains("gs://someone-elses/") && message.contains(&format!("allowed: gs://{dest}/")),
            "the message names the destination and what is allowed: {message}"
        );
    }
    assert!(gcs_read(stack.gcs_endpoint(), "someone-elses", "x").await.is_none());
    // No job was created.
    let jobs = DynamoJobStore::new(&stack.sdk().await, stack.var("XCR_JOBS_TABLE"));
    assert!(jobs.list(10).await.expect("list jobs").is_empty());
    // Inside the list (the default: all of XCR_DEST_BUCKET) the same request goes through.
    let inside = json!({"bucket": src, "key": "allow/one.txt", "destination": format!("gs://{dest}/renamed/one.txt")});
    let (status, answer) = post(&app, "/v1/replicate", inside).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(gcs_read(stack.gcs_endpoint(), &dest, "renamed/one.txt").await.is_some());
}

/// Routes that write only `gs://DEST/ok/`: the default allowlist is then exactly that prefix.
fn narrow(stack: &Stack) -> Vec<(String, String)> {
    let rules = json!([{"source_bucket": stack.source_bucket(), "prefix": "ok/",
                        "destinations": [{"bucket": stack.dest_bucket()}]}]);
    vec![
        ("XCR_DEST_BUCKET".into(), String::new()),
        ("XCR_RULES".into(), rules.to_string()),
        ("XCR_REPLICATE_DELETES".into(), "true".into()),
    ]
}

async fn narrow_handler(stack: &Stack) -> xcr::wiring::S3ToGcsHandler {
    let extra = narrow(stack);
    let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Handler::new(
        replicator(stack, &extra).await,
        4,
        Some(Queue::new(&stack.sdk().await, stack.var("XCR_QUEUE_URL"))),
        Some(DynamoJobStore::new(&stack.sdk().await, stack.var("XCR_JOBS_TABLE"))),
    )
    .with_retry_clock(fast_clock())
    .with_max_receives(Some(5))
}

#[tokio::test(flavor = "multi_thread")]
async fn queued_commands_outside_the_allowlist_are_refused_and_not_retried() {
    let stack = Stack::up();
    let sdk = stack.sdk().await;
    let (src, dest) = (stack.source_bucket().to_string(), stack.dest_bucket().to_string());
    let s3 = stack.s3().await;
    // Two replicas already in GCS, copied under the stack's whole-bucket route: "victim.txt"
    // outside the narrow list, "ok/gone.txt" inside it. Their sources are then deleted in S3.
    let wide = replicator(&stack, &[]).await;
    for key in ["victim.txt", "ok/gone.txt"] {
        put(&s3, &src, key, b"replica".to_vec()).await;
        let r = wide
            .replicate(&xcr::domain::model::ObjectRef::new(&src, key), None, xcr::domain::replicate::now_ms() + 60_000)
            .await;
        assert_eq!(r.expect("seeded").outcome.as_str(), "replicated");
        s3.delete_object().bucket(&src).key(key).send().await.expect("delete source");
    }
    put(&s3, &src, "secret.txt", b"must not leave".to_vec()).await;
    let queue = Queue::new(&sdk, stack.var("XCR_QUEUE_URL"));
    aws_sdk_sqs::Client::new(&sdk).purge_queue().queue_url(queue.url()).send().await.expect("purge");

    let commands = [
        json!({"bucket": src, "key": "secret.txt", "destination": "gs://someone-elses/stolen.txt"}),
        json!({"bucket": src, "key": "secret.txt", "destination": format!("gs://{dest}/victim.txt")}),
        json!({"bucket": src, "key": "victim.txt", "destination": format!("gs://{dest}/victim.txt"), "action": "delete"}),
        json!({"bucket": src, "key": "ok/gone.txt", "destination": format!("gs://{dest}/ok/gone.txt"), "action": "delete"}),
    ]
    .map(|c| c.to_string());
    let bodies: Vec<&str> = commands.iter().map(String::as_str).collect();
    queue.send(&bodies).await.expect("send");

    let h = narrow_handler(&stack).await;
    let opts = PumpOptions { wait_secs: 1, until_idle: Some(Duration::from_secs(2)), ..Default::default() };
    let stats = pump(&h, &queue, "us-east-1", None::<&xcr::wiring::S3JobDriver>, &opts).await.expect("pump");
    // Each record acknowledged once: refused is final, not a failure SQS would deliver again.
    assert_eq!((stats.messages, stats.deleted, stats.failed), (4, 4, 0), "{stats:?}");
    let dlq = Queue::new(&sdk, stack.var("XCR_DLQ_URL"));
    assert_eq!(dlq.depth().await.expect("dlq depth"), (0, 0));
    assert!(gcs_read(stack.gcs_endpoint(), "someone-elses", "stolen.txt").await.is_none());
    let (victim, _) = gcs_read(stack.gcs_endpoint(), &dest, "victim.txt").await.expect("victim kept");
    assert_eq!(victim, b"replica", "neither overwritten nor deleted");
    // The delete inside the list, with deletes on, is honoured: the refusals were the list's.
    assert!(gcs_read(stack.gcs_endpoint(), &dest, "ok/gone.txt").await.is_none(), "allowed delete applied");

    // Counted: a direct invocation answers with the counts, and `refused` is not a failure.
    let answer = h
        .handle(&json!({"bucket": src, "key": "secret.txt", "destination": "gs://someone-elses/x"}), now_ms_plus(60))
        .await
        .expect("a refusal does not fail the invocation");
    assert_eq!(answer["counts"]["refused"], 1, "{answer}");
    assert_eq!(answer["results"][0]["outcome"], "refused", "{answer}");
    assert!(
        answer["results"][0]["detail"].as_str().is_some_and(|d| d.contains("XCR_ALLOWED_DESTINATIONS")),
        "{answer}"
    );
}

fn now_ms_plus(secs: i64) -> i64 {
    xcr::domain::replicate::now_ms() + secs * 1000
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_whose_destination_is_not_allowed_ends_failed() {
    let stack = Stack::up();
    let sdk = stack.sdk().await;
    let src = stack.source_bucket().to_string();
    let s3 = stack.s3().await;
    for i in 0..3 {
        put(&s3, &src, &format!("ok/job{i}.txt"), b"job".to_vec()).await;
    }
    let queue = Queue::new(&sdk, stack.var("XCR_QUEUE_URL"));
    aws_sdk_sqs::Client::new(&sdk).purge_queue().queue_url(queue.url()).send().await.expect("purge");
    // Written straight into the table, as a job created before the list narrowed (the API and
    // `xcr jobs create` refuse it up front).
    let jobs = DynamoJobStore::new(&sdk, stack.var("XCR_JOBS_TABLE"));
    let spec = JobSpec::from_json(
        &json!({"source_bucket": src, "prefix": "ok/", "destination": "gs://someone-elses/copy/"}).to_string(),
    )
    .expect("spec");
    let job = Job::new(spec, &now_rfc3339());
    jobs.create(&job).await.expect("create job");

    let h = narrow_handler(&stack).await;
    let driver =
        xcr::jobs::migrate::Driver::new(xcr::adapters::aws::s3::S3Source::new(&sdk), queue.clone(), jobs.clone());
    let opts = PumpOptions { wait_secs: 1, until_idle: Some(Duration::from_secs(3)), ..Default::default() };
    let stats = pump(&h, &queue, "us-east-1", Some(&driver), &opts).await.expect("pump");
    assert_eq!(stats.failed, 0, "refused tasks are not retried: {stats:?}");
    let done = jobs.get(&job.id).await.expect("read").expect("job");
    assert_eq!(done.status, JobStatus::Failed, "{done:?}");
    assert_eq!((done.counters.failed, done.counters.replicated), (3, 0), "{done:?}");
    assert!(gcs_read(stack.gcs_endpoint(), "someone-elses", "copy/ok/job0.txt").await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn xcr_jobs_create_refuses_a_destination_outside_the_allowlist() {
    let stack = Stack::up();
    let run = |dest: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_xcr"))
            .args(["jobs", "create", "--source-bucket", stack.source_bucket(), "--dest", dest, "--json"])
            .env_clear()
            .envs(stack.command_env())
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .output()
            .expect("run xcr")
    };
    let out = run("gs://someone-elses/p/");
    // With --json the error is the JSON on stdout.
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "refused: {said}");
    assert!(said.contains("gs://someone-elses/p/") && said.contains("XCR_ALLOWED_DESTINATIONS"), "{said}");
    let jobs = DynamoJobStore::new(&stack.sdk().await, stack.var("XCR_JOBS_TABLE"));
    assert!(jobs.list(10).await.expect("list jobs").is_empty(), "no job was stored");
    // Inside the default list (all of XCR_DEST_BUCKET) the job is created.
    let out = run(&format!("gs://{}/copy/", stack.dest_bucket()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(jobs.list(10).await.expect("list jobs").len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn xcr_replicate_to_a_destination_outside_the_allowlist_is_refused_with_exit_2() {
    let stack = Stack::up();
    put(&stack.s3().await, stack.source_bucket(), "cli/refused.txt", b"x".to_vec()).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xcr"))
        .args(["replicate", &format!("s3://{}/cli/refused.txt", stack.source_bucket())])
        .args(["--dest", "gs://someone-elses/stolen.txt", "--json"])
        .env_clear()
        .envs(stack.command_env())
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .expect("run xcr");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let answer: Value = serde_json::from_str(stdout.trim()).expect("json outcome");
    assert_eq!(answer["outcome"], "refused", "{answer}");
    assert!(gcs_read(stack.gcs_endpoint(), "someone-elses", "stolen.txt").await.is_none());
}
