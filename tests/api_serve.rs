//! `xcr serve` as a black box: the real binary on a free port, spoken to over HTTP; and
//! schemathesis (PyPI) generating requests from the served /openapi.json, every check on.

mod common;

use common::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `xcr serve`; killed if the test fails before stopping it.
struct Server {
    child: Child,
    base: String,
    log: std::path::PathBuf,
}

impl Server {
    fn start(stack: &Stack, extra: &[(&str, &str)]) -> Self {
        let log = stack.dir().join("serve.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_xcr"));
        cmd.args(["serve", "--port", "0"])
            .envs(stack.command_env())
            .envs(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"));
        let mut child = cmd.spawn().expect("start xcr serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read the address line");
        let base =
            line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        Self { base: base.to_string(), child, log }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGTERM, then the exit status (graceful shutdown must be quick).
    fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "xcr serve did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn xcr_serve_speaks_http_and_stops_on_sigterm() {
    let stack = Stack::up();
    let bucket = stack.source_bucket().to_string();
    let data = bytes_of(70_000, 11);
    put(&stack.s3().await, &bucket, "served/one.bin", data.clone()).await;
    let server = Server::start(&stack, &[]);
    let http = reqwest::Client::new();

    let root: Value = http.get(server.url("/")).send().await.expect("GET /").json().await.expect("json");
    assert_eq!(root["service"], "xcr");
    let health = http.get(server.url("/v1/health")).send().await.expect("GET /v1/health");
    assert_eq!(health.status(), 200);

    let resp = http
        .post(server.url("/v1/replicate"))
        .header("x-request-id", "black-box-1")
        .json(&json!({"bucket": bucket, "key": "served/one.bin"}))
        .send()
        .await
        .expect("POST /v1/replicate");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "black-box-1");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["outcome"], "replicated");
    let (bytes, _) = gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), "served/one.bin").await.expect("in GCS");
    assert!(bytes == data);

    let denied = http
        .post(server.url("/v1/replicate"))
        .json(&json!({"bucket": "elsewhere", "key": "k"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(denied.status(), 403);
    let body: Value = denied.json().await.expect("json");
    assert_eq!(body["error"]["code"], "bucket_not_allowed");

    let job = http
        .post(server.url("/v1/jobs"))
        .json(&json!({"source_bucket": bucket, "dry_run": true}))
        .send()
        .await
        .expect("POST /v1/jobs");
    assert_eq!(job.status(), 201);
    let openapi = http.get(server.url("/openapi.json")).send().await.expect("GET /openapi.json");
    assert_eq!(openapi.status(), 200);

    // One JSON log line per request, carrying its id; no credential in any line.
    let log_path = server.log.clone();
    let status = server.stop();
    assert!(status.success(), "exit status {status}");
    let log = std::fs::read_to_string(log_path).expect("log");
    let lines: Vec<Value> = log.lines().map(|l| serde_json::from_str(l).expect("every log line is JSON")).collect();
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "request" && l["span"]["request_id"] == "black-box-1" && l["status"] == 200),
        "no request line for black-box-1 in:\n{log}"
    );
    assert!(!log.contains(stack.var("AWS_SECRET_ACCESS_KEY")), "a secret reached the logs");
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_failure() {
    let stack = Stack::up();
    // The document's examples name `raw-data`, `logs/2026/11/23/app.json` and `gs://analytics-raw`:
    // make them exist so that generated requests also reach the success paths.
    let s3 = stack.s3().await;
    s3.create_bucket().bucket("raw-data").send().await.expect("create raw-data");
    for key in ["logs/2026/11/23/app.json", "a.csv", "b.csv"] {
        put(&s3, "raw-data", key, b"{\"example\": true}".to_vec()).await;
    }
    let created = reqwest::Client::new()
        .post(format!("{}/storage/v1/b?project=test", stack.gcs_endpoint()))
        .json(&json!({"name": "analytics-raw"}))
        .send()
        .await
        .expect("create the GCS bucket");
    assert!(created.status().is_success(), "{}", created.status());
    // Any bucket: generated names must reach S3 (and answer 404), not stop at the allowlist.
    // With any bucket allowed, a route for every bucket (XCR_DEST_BUCKET) is refused at load
    // (two buckets would share names): each bucket that exists gets a rule of its own.
    let rules = json!([
        {"source_bucket": stack.source_bucket(), "destinations": [{"bucket": stack.dest_bucket()}]},
        {"source_bucket": "raw-data", "destinations": [{"bucket": "analytics-raw"}]}
    ])
    .to_string();
    let server = Server::start(
        &stack,
        &[("XCR_ALLOWED_SOURCE_BUCKETS", "*"), ("XCR_DEST_BUCKET", ""), ("XCR_RULES", rules.as_str())],
    );
    let st = root().join(".venv/bin/schemathesis");
    assert!(st.exists(), "{} missing: run `make venv`", st.display());
    let seed = std::env::var("XCR_SCHEMATHESIS_SEED").unwrap_or_else(|_| "1".into());
    let examples = std::env::var("XCR_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "30".into());
    let out = Command::new(st)
        .arg("run")
        .arg(server.url("/openapi.json"))
        .args(["--checks", "all", "--workers", "1", "--max-examples", &examples, "--seed", &seed])
        // ASCII strings: a key's limit is 1,024 *bytes*, which JSON Schema's maxLength (in
        // characters) cannot state; the byte limit is covered by tests/api.rs.
        .args(["--generation-codec", "ascii", "--generation-database", "none"])
        // A batch may answer only after its 20 s start budget plus the copies under way: the
        // default 10 s client timeout would call a slow (loaded) machine's answer a failure.
        .args(["--request-timeout", "60"])
        .current_dir(stack.dir())
        .output()
        .expect("run schemathesis");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "schemathesis failed:\n{report}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(report.contains("passed"), "{report}");
    assert!(server.stop().success());
}
