//! Seeing what xcr does: the EMF metric lines of a known run ([`xcr::metrics`]) and the
//! per-object status (`GET /v1/objects/{bucket}/{key}`, `xcr status`), against the emulators.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::Instant;
use xcr::aws::jobs::DynamoJobStore;
use xcr::aws::sqs::Queue;
use xcr::handler::Handler;
use xcr::metrics::Sink;
use xcr::pump::{PumpOptions, pump};
use xcr::replicate::now_ms;

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
