//! Secrets never reach the logs, at any level: every line written while a resumable copy runs
//! against the local stack (a session opened in GCS, its URI journaled in the DynamoDB ledger,
//! chunks sent, the ledger completed), with `XCR_LOG=trace` through the functions' own filter
//! ([`xcr::telemetry::filter`]), is read back, and none holds a resumable-session URI (a bearer
//! credential for the upload), an AWS secret or session token, or an Authorization header.
//! One test in its own binary: it installs the process-wide subscriber.

mod common;

use common::*;
use std::io::Write;
use std::sync::{Arc, Mutex};
use xcr::domain::model::ObjectRef;
use xcr::domain::replicate::{Outcome, now_ms};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_log_line_at_trace_holds_a_session_uri_or_a_credential() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_env_filter(xcr::telemetry::filter(Some("trace")))
        .with_writer(move || writer.clone())
        .try_init()
        .expect("the only subscriber of this test binary");

    let stack = Stack::up();
    let s3 = stack.s3().await;
    put(&s3, stack.source_bucket(), "logs/big.bin", bytes_of(1024 * 1024 + 17, 3)).await;
    // Resumable (above the threshold), four 256 KiB chunks: a session URI exists and is
    // journaled in the ledger while the copy runs.
    let r = replicator(&stack, &[("XCR_RESUMABLE_THRESHOLD", "256KiB"), ("XCR_CHUNK_SIZE", "256KiB")]).await;
    let done = r
        .replicate(&ObjectRef::new(stack.source_bucket(), "logs/big.bin"), None, now_ms() + 120_000)
        .await
        .expect("copied");
    assert_eq!(done.outcome, Outcome::Replicated);
    assert!(done.transfer.as_ref().is_some_and(|t| t.chunks > 1), "a resumable upload in chunks: {done:?}");

    let text = String::from_utf8(captured.0.lock().expect("log buffer").clone()).expect("utf-8 logs");
    let lines: Vec<&str> = text.lines().collect();
    // The capture works and reached xcr's own most detailed lines.
    assert!(lines.iter().any(|l| l.contains("task done")), "no task line captured:\n{text}");
    assert!(lines.iter().any(|l| l.contains("\"level\":\"DEBUG\"") || l.contains("\"level\":\"TRACE\"")), "{text}");
    // The local stack's AWS secret is "test", too common a word to look for; what a leaked
    // credential looks like in a line is looked for instead (a signature, a token header).
    for line in &lines {
        for needle in [
            "upload_id",
            "uploadId",
            "Authorization",
            "authorization",
            "x-amz-security-token",
            "AWS4-HMAC-SHA256",
            "Signature=",
            "Bearer ",
        ] {
            assert!(!line.contains(needle), "a log line holds {needle:?}: {line}");
        }
    }
}
