//! Seeing what xcr does: the EMF metric lines of a known run ([`xcr::metrics`]) and the
//! per-object status (`GET /v1/objects/{bucket}/{key}`, `xcr status`), against the emulators.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::Instant;
use xcr::adapters::aws::job_store::DynamoJobStore;
use xcr::adapters::aws::sqs::Queue;
use xcr::domain::replicate::now_ms;
use xcr::entry::handler::Handler;
use xcr::entry::pump::{PumpOptions, pump};
use xcr::metrics::Sink;

/// The unit each metric must carry.
fn unit(name: &str) -> &'static str {
    match name {
        "BytesReplicated" => "Bytes",
        "ReplicationLatency" => "Seconds",
        "CopyDuration" => "Milliseconds",
        _ => "Count",
    }
}

/// Checks one line against the EMF specification and xcr's conventions; returns its dimension
/// names (besides `Function`).
fn check_line(line: &Value) -> Vec<String> {
    let aws = &line["_aws"];
    assert!(aws["Timestamp"].as_i64().is_some_and(|t| (now_ms() - t).abs() < 600_000), "timestamp: {line}");
    let directives = aws["CloudWatchMetrics"].as_array().expect("CloudWatchMetrics");
    assert_eq!(directives.len(), 1, "{line}");
    let d = &directives[0];
    assert_eq!(d["Namespace"], "xcr");
    let dims: Vec<String> = d["Dimensions"][0]
        .as_array()
        .expect("one dimension set")
        .iter()
        .map(|v| v.as_str().expect("dimension name").to_string())
        .collect();
    assert_eq!(dims[0], "Function", "{line}");
    assert_eq!(line["Function"], "replicate", "outside Lambda the function is named by its role");
    for dim in &dims {
        assert!(line[dim].is_string(), "dimension {dim} is a string member: {line}");
    }
    for m in d["Metrics"].as_array().expect("Metrics") {
        let name = m["Name"].as_str().expect("Name");
        assert_eq!(m["Unit"], unit(name), "{name}: {line}");
        match &line[name] {
            Value::Number(_) => {}
            Value::Array(values) => {
                assert!(!values.is_empty() && values.len() <= 100, "{name}: {line}");
                assert!(values.iter().all(Value::is_number), "{name}: {line}");
            }
            other => panic!("{name} has no value ({other}): {line}"),
        }
    }
    dims[1..].to_vec()
}

fn sum(lines: &[Value], dims: &[&str], name: &str) -> u64 {
    let of = |l: &&Value| check_line(l) == dims.iter().map(|d| d.to_string()).collect::<Vec<_>>();
    lines.iter().filter(of).filter_map(|l| l[name].as_u64()).sum()
}

fn samples(lines: &[Value], dims: &[&str], name: &str) -> Vec<f64> {
    let of = |l: &&Value| check_line(l) == dims.iter().map(|d| d.to_string()).collect::<Vec<_>>();
    lines
        .iter()
        .filter(of)
        .filter_map(|l| l[name].as_array())
        .flat_map(|a| a.iter().filter_map(Value::as_f64))
        .collect()
}

/// A known run through the queue: four S3 notifications copied by `pump` (latency from the
/// events' time); then a batch with a command (latency from `SentTimestamp`) and an unreadable
/// record. The lines say exactly that.
#[tokio::test(flavor = "multi_thread")]
async fn emf_lines_count_a_known_run() {
    let stack = Stack::up();
    let started = Instant::now();
    let s3 = stack.s3().await;
    let sizes = [10_000usize, 20_000, 30_000, 40_000];
    for (i, size) in sizes.iter().enumerate() {
        put(&s3, stack.source_bucket(), &format!("emf/{i}.bin"), bytes_of(*size, i as u64)).await;
    }
    let sdk = stack.sdk().await;
    let queue = Queue::new(&sdk, stack.var("XCR_QUEUE_URL"));

    let (sink, kept) = Sink::memory();
    let handler =
        Handler::new(replicator(&stack, &[]).await, 4, Some(queue.clone()), None::<DynamoJobStore>).with_metrics(sink);
    let opts = PumpOptions { wait_secs: 1, until_idle: Some(std::time::Duration::from_secs(2)), ..Default::default() };
    let stats = pump(&handler, &queue, "us-east-1", None::<&xcr::wiring::S3JobDriver>, &opts).await.expect("pump");
    assert_eq!(stats.failed, 0, "{stats:?}");
    let lines = kept.lock().expect("lines").clone();
    let elapsed = started.elapsed().as_secs_f64();

    // Four notifications, and the s3:TestEvent S3 sends when notifications are configured.
    assert!(sum(&lines, &[], "Records") >= 4, "{lines:?}");
    assert_eq!(sum(&lines, &[], "Tasks"), 4);
    assert_eq!(sum(&lines, &[], "ObjectsReplicated"), 4, "each object copied once: {lines:?}");
    assert_eq!(sum(&lines, &[], "BytesReplicated"), sizes.iter().sum::<usize>() as u64);
    assert_eq!(sum(&lines, &[], "Failures"), 0);
    assert_eq!(sum(&lines, &[], "FailedRecords"), 0);
    let latency = samples(&lines, &[], "ReplicationLatency");
    assert_eq!(latency.len(), 4, "one sample per verified copy: {latency:?}");
    assert!(
        latency.iter().all(|l| *l >= 0.0 && *l <= elapsed + 1.0),
        "0 <= latency <= the run's {elapsed} s: {latency:?}"
    );
    let copy = samples(&lines, &[], "CopyDuration");
    assert_eq!(copy.len(), 4);
    assert!(copy.iter().all(|ms| *ms >= 0.0 && *ms <= elapsed * 1000.0), "{copy:?}");
    // The same copies by destination bucket.
    let dest: Vec<&Value> =
        lines.iter().filter(|l| l["DestinationBucket"].as_str() == Some(stack.dest_bucket())).collect();
    assert!(!dest.is_empty(), "a DestinationBucket line: {lines:?}");
    assert_eq!(sum(&lines, &["DestinationBucket"], "ObjectsReplicated"), 4);
    assert_eq!(samples(&lines, &["DestinationBucket"], "ReplicationLatency").len(), 4);

    // A batch with a good record and an unreadable one: a per-record failure, by kind.
    put(&s3, stack.source_bucket(), "emf/late.bin", bytes_of(5_000, 9)).await;
    let (sink, kept) = Sink::memory();
    let handler =
        Handler::new(replicator(&stack, &[]).await, 4, None::<Queue>, None::<DynamoJobStore>).with_metrics(sink);
    let record = |id: &str, body: String, sent: i64| {
        json!({"messageId": id, "receiptHandle": "r", "body": body, "eventSource": "aws:sqs",
               "attributes": {"SentTimestamp": sent.to_string()}})
    };
    let sent = now_ms() - 3_000;
    let good = json!({"bucket": stack.source_bucket(), "key": "emf/late.bin"}).to_string();
    let event = json!({"Records": [record("m-good", good, sent), record("m-bad", "not json {".into(), sent)]});
    let answer = handler.handle(&event, now_ms() + 60_000).await.expect("handled");
    assert_eq!(answer["batchItemFailures"], json!([{"itemIdentifier": "m-bad"}]));
    let lines = kept.lock().expect("lines").clone();
    assert_eq!(sum(&lines, &[], "Records"), 2);
    assert_eq!(sum(&lines, &[], "FailedRecords"), 1);
    assert_eq!(sum(&lines, &[], "Failures"), 1);
    assert_eq!(sum(&lines, &["ErrorKind"], "Failures"), 1);
    assert!(lines.iter().any(|l| l["ErrorKind"] == "unreadable"), "{lines:?}");
    let latency = samples(&lines, &[], "ReplicationLatency");
    assert_eq!(latency.len(), 1, "{lines:?}");
    assert!(latency[0] >= 3.0 && latency[0] < 60.0, "from SentTimestamp, 3 s ago: {latency:?}");
}

/// An API over `stack`, with `extra` variables on top of its local.env.
async fn api(stack: &Stack, extra: &[(&str, &str)]) -> axum::Router {
    let mut vars = stack.env.clone();
    for (k, v) in extra {
        vars.insert(k.to_string(), v.to_string());
    }
    let cfg = xcr::config::Config::from_vars(vars.clone(), xcr::entry::api::Api::NEEDS).expect("config");
    let settings = xcr::entry::api::settings::ApiSettings::from_vars(&vars).expect("api settings");
    xcr::entry::api::router(std::sync::Arc::new(
        xcr::entry::api::Api::new(&stack.sdk().await, &cfg, settings).expect("api"),
    ))
}

async fn get(app: &axum::Router, uri: &str) -> (axum::http::StatusCode, Value) {
    use tower::ServiceExt;
    let req = axum::http::Request::get(uri).body(axum::body::Body::empty()).expect("request");
    let resp = app.clone().oneshot(req).await.expect("router answers");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn xcr_cli(stack: &Stack, extra: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xcr"))
        .args(args)
        .env_clear()
        .envs(stack.command_env())
        .envs(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .expect("run xcr");
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// `GET /v1/objects/{bucket}/{key}` and `xcr status` for a replicated object (every recorded
/// field, read back against GCS), a never-seen one (404, exit 3) and a failed one (its failure).
#[tokio::test(flavor = "multi_thread")]
async fn status_tells_replicated_never_seen_and_failed_objects_apart() {
    let stack = Stack::up();
    let s3 = stack.s3().await;
    let bucket = stack.source_bucket().to_string();
    let data = bytes_of(50_000, 3);
    let key = "status/dir/a b+c.bin";
    put(&s3, &bucket, key, data.clone()).await;
    put(&s3, &bucket, "status/broken.bin", bytes_of(1_000, 4)).await;
    let replicated = replicator(&stack, &[])
        .await
        .replicate(&xcr::domain::model::ObjectRef::new(&bucket, key), None, now_ms() + 60_000)
        .await
        .expect("copy");
    let generation = replicated.destination.generation.clone().expect("generation");
    // The broken object routes to a GCS bucket that does not exist: its copy fails.
    let missing = [("XCR_DEST_BUCKET", "xcr-no-such-dest")];
    let failed = replicator(&stack, &missing)
        .await
        .replicate(&xcr::domain::model::ObjectRef::new(&bucket, "status/broken.bin"), None, now_ms() + 60_000)
        .await;
    let kind = failed.expect_err("a copy into a missing bucket fails").kind().as_str().to_string();

    let app = api(&stack, &[]).await;
    let (code, body) = get(&app, &format!("/v1/objects/{bucket}/status/dir/a%20b%2Bc.bin")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["bucket"], bucket);
    assert_eq!(body["key"], key);
    let dest = &body["destinations"][0];
    assert_eq!(dest["destination"], format!("gs://{}/{key}", stack.dest_bucket()));
    assert_eq!(dest["state"], "replicated", "{body}");
    let done = &dest["done"];
    assert_eq!(done["action"], "copy");
    assert_eq!(done["generation"], generation.as_str());
    assert_eq!(done["size"], 50_000);
    assert_eq!(done["crc32c"].as_str(), Some(crc32c_b64(&data).as_str()));
    let head = s3.head_object().bucket(&bucket).key(key).send().await.expect("head");
    assert_eq!(done["source_etag"].as_str(), head.e_tag().map(|e| e.trim_matches('"')), "{body}");
    assert!(done["done_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{body}");
    let lag = done["lag_seconds"].as_f64().expect("lag");
    assert!((0.0..120.0).contains(&lag), "{lag}");
    assert!(dest.get("failure").is_none(), "{body}");
    // What GCS holds is what the ledger says.
    let (_, meta) = gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), key).await.expect("in GCS");
    assert_eq!(meta["generation"].as_str(), Some(generation.as_str()), "{meta}");

    let (code, body) = get(&app, &format!("/v1/objects/{bucket}/status/never-seen.bin")).await;
    assert_eq!(code, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    let (code, body) = get(&app, "/v1/objects/not-an-allowed-bucket/k").await;
    assert_eq!(code, 403, "{body}");

    let broken = api(&stack, &missing).await;
    let (code, body) = get(&broken, &format!("/v1/objects/{bucket}/status/broken.bin")).await;
    assert_eq!(code, 200, "{body}");
    let dest = &body["destinations"][0];
    assert_eq!(dest["state"], "failed", "{body}");
    assert_eq!(dest["failure"]["kind"], kind.as_str());
    assert!(dest["failure"]["message"].as_str().is_some_and(|m| m.contains("xcr-no-such-dest")), "{body}");
    assert!(dest.get("done").is_none(), "{body}");

    // The OpenAPI document describes the route.
    let (_, doc) = get(&app, "/openapi.json").await;
    assert!(doc["paths"]["/v1/objects/{bucket}/{key}"]["get"].is_object(), "documented");

    // The CLI: the same answers, JSON and human.
    let (code, out, err) = xcr_cli(&stack, &[], &["status", &format!("s3://{bucket}/{key}"), "--json"]);
    assert_eq!(code, 0, "{err}");
    let cli: Value = serde_json::from_str(out.trim()).expect("JSON");
    assert_eq!(cli["destinations"][0]["done"]["generation"], generation.as_str());
    assert_eq!(cli["destinations"][0]["state"], "replicated");
    let (code, out, err) = xcr_cli(&stack, &[], &["status", &format!("s3://{bucket}/{key}")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("replicated") && out.contains(&format!("generation {generation}")), "{out}");
    let (code, _, err) = xcr_cli(&stack, &[], &["status", &format!("s3://{bucket}/status/never-seen.bin")]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("nothing is recorded"), "{err}");
    let (code, out, err) = xcr_cli(&stack, &missing, &["status", &format!("s3://{bucket}/status/broken.bin")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("failed ({kind})")), "{out}");

    // `xcr pump` writes the same EMF lines (here to a file), its stdout stays its own JSON. The
    // queue holds the two uploads' notifications: one duplicate, and broken.bin now copied into
    // the real destination, which clears its failure.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("metrics.jsonl");
    let file_var = file.to_string_lossy().to_string();
    let (code, out, err) =
        xcr_cli(&stack, &[("XCR_METRICS", file_var.as_str())], &["pump", "--until-idle", "2", "--json"]);
    assert_eq!(code, 0, "{err}");
    let totals: Value = serde_json::from_str(out.trim()).expect("stdout is the pump's JSON alone");
    assert_eq!(totals["failed"], 0, "{totals}");
    let lines: Vec<Value> = std::fs::read_to_string(&file)
        .expect("metrics file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    // The pump sweeps jobs too, and writes the migrate function's line for it.
    let (lines, sweeps): (Vec<Value>, Vec<Value>) = lines.into_iter().partition(|l| l["Function"] == "replicate");
    assert!(
        !sweeps.is_empty() && sweeps.iter().all(|l| l["Function"] == "migrate" && l["Invocations"] == 1),
        "{sweeps:?}"
    );
    assert_eq!(sum(&lines, &[], "ObjectsReplicated"), 1, "{lines:?}");
    assert_eq!(sum(&lines, &[], "Duplicates"), 1, "{lines:?}");
    assert_eq!(sum(&lines, &[], "BytesReplicated"), 1_000);
    assert!(!err.contains("\"_aws\""), "with XCR_METRICS set, no metric line on stderr");
    let (_, out, _) = xcr_cli(&stack, &[], &["status", &format!("s3://{bucket}/status/broken.bin"), "--json"]);
    let cli: Value = serde_json::from_str(out.trim()).expect("JSON");
    assert_eq!(cli["destinations"][0]["state"], "replicated", "a completed copy clears the failure: {cli}");
    assert!(cli["destinations"][0].get("failure").is_none(), "{cli}");
}
