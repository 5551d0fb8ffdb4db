//! Every fixture in examples/events/ through the real `replicate` and `api` binaries, run by
//! `cargo lambda watch` (the Lambda runtime API emulator) against a private local stack, invoked
//! over HTTP the way `cargo lambda invoke` does.

mod common;

use common::*;
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `cargo lambda watch` in its own process group, stopped with everything it started.
struct Watch {
    child: Child,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        std::thread::sleep(Duration::from_millis(300));
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

async fn invoke(http: &reqwest::Client, port: u16, fixture: &str) -> (u16, Value) {
    invoke_fn(http, port, "replicate", fixture).await
}

async fn invoke_fn(http: &reqwest::Client, port: u16, function: &str, fixture: &str) -> (u16, Value) {
    let body = std::fs::read(root().join("examples/events").join(fixture)).expect("fixture");
    let resp = http
        .post(format!("http://127.0.0.1:{port}/2015-03-31/functions/{function}/invocations"))
        .body(body)
        .send()
        .await
        .expect("invoke");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_fixture_through_the_real_function() {
    use std::os::unix::process::CommandExt;
    let stack = Stack::up();
    let s3 = stack.s3().await;
    let bucket = stack.source_bucket();
    for key in [
        "examples/hello world.txt",
        "examples/a.txt",
        "examples/b.txt",
        "examples/c.txt",
        "examples/sns.txt",
        "examples/eb.txt",
        "examples/api v2.txt",
        "examples/api v1.txt",
    ] {
        put(&s3, bucket, key, format!("contents of {key}").into_bytes()).await;
    }
    let port = free_port();
    let path = format!("{}:{}", root().join(".venv/bin").display(), std::env::var("PATH").unwrap_or_default());
    let child = Command::new(root().join(".venv/bin/cargo-lambda"))
        .args(["lambda", "watch", "-A", "127.0.0.1", "-P", &port.to_string()])
        .current_dir(root())
        .envs(stack.command_env())
        .env("PATH", path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start cargo lambda watch (pip package cargo-lambda in .venv)");
    let _watch = Watch { child };
    let http = reqwest::Client::builder().timeout(Duration::from_secs(600)).build().expect("client");

    // The first invocation waits for the function to build and start.
    let started = Instant::now();
    let (status, put_out) = loop {
        match http.get(format!("http://127.0.0.1:{port}/")).send().await {
            Ok(_) => break invoke(&http, port, "s3-put.json").await,
            Err(_) if started.elapsed() < Duration::from_secs(120) => {
                tokio::time::sleep(Duration::from_millis(300)).await
            }
            Err(e) => panic!("cargo lambda watch did not start: {e}"),
        }
    };
    assert_eq!(status, 200, "{put_out}");
    assert_eq!(put_out["results"][0]["outcome"], "replicated", "{put_out}");
    assert!(gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), "examples/hello world.txt").await.is_some());

    // The same notification again is a duplicate.
    let (_, again) = invoke(&http, port, "s3-put.json").await;
    assert_eq!(again["results"][0]["outcome"], "already_replicated", "{again}");

    // Deletes are off by default.
    let (status, del) = invoke(&http, port, "s3-delete.json").await;
    assert_eq!(status, 200, "{del}");
    assert_eq!(del["results"][0]["outcome"], "skipped", "{del}");

    for fixture in ["sqs-batch.json", "sns-wrapped.json"] {
        let (status, out) = invoke(&http, port, fixture).await;
        assert_eq!(status, 200, "{fixture}: {out}");
        assert_eq!(out["batchItemFailures"], serde_json::json!([]), "{fixture}: {out}");
    }
    let (status, eb) = invoke(&http, port, "eventbridge.json").await;
    assert_eq!(status, 200, "{eb}");
    assert_eq!(eb["results"][0]["outcome"], "replicated", "{eb}");
    for key in ["examples/a.txt", "examples/b.txt", "examples/c.txt", "examples/sns.txt", "examples/eb.txt"] {
        let (got, _) = gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), key)
            .await
            .unwrap_or_else(|| panic!("{key} not replicated"));
        assert_eq!(got, format!("contents of {key}").into_bytes(), "{key}");
    }

    let (status, test) = invoke(&http, port, "test-event.json").await;
    assert_eq!(status, 200, "{test}");
    assert_eq!(test["results"], serde_json::json!([]), "{test}");

    // An unreadable SQS body is reported as that record's failure, not a crash.
    let (status, bad) = invoke(&http, port, "malformed.json").await;
    assert_eq!(status, 200, "{bad}");
    let failures = bad["batchItemFailures"].as_array().expect("failures");
    assert_eq!(failures.len(), 1, "{bad}");

    // The api function: API Gateway events (HTTP API v2, REST API v1 with a stage) through
    // lambda_http into the Router, and its answers back in API Gateway's response format.
    let (status, health) = invoke_fn(&http, port, "api", "apigw-http-health.json").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["statusCode"], 200, "{health}");
    let body: Value = serde_json::from_str(health["body"].as_str().unwrap_or("")).expect("JSON body");
    assert_eq!(body["status"], "pass", "{body}");
    assert_eq!(health["headers"]["x-request-id"], "apigw-v2-health-0001", "{health}");
    for (fixture, key) in
        [("apigw-http-replicate.json", "examples/api v2.txt"), ("apigw-rest-replicate.json", "examples/api v1.txt")]
    {
        let (status, out) = invoke_fn(&http, port, "api", fixture).await;
        assert_eq!(status, 200, "{fixture}: {out}");
        assert_eq!(out["statusCode"], 200, "{fixture}: {out}");
        let body: Value = serde_json::from_str(out["body"].as_str().unwrap_or("")).expect("JSON body");
        assert_eq!(body["outcome"], "replicated", "{fixture}: {body}");
        let (got, _) = gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), key).await.expect("copied through the API");
        assert_eq!(got, format!("contents of {key}").into_bytes());
    }
}
