//! The conformance suites (tests/common/conformance/) against the real adapters on the
//! emulators: S3, DynamoDB and SQS on moto; GCS on both gcp-storage-emulator (the stack's) and
//! fake-gcs-server, because each enforces a part of GCS's contract the other ignores
//! (../shared/EMULATORS.md). One stack for the whole file, the suites run side by side: a few
//! seconds after the stack is up. `tests/conformance_memory.rs` runs the same suites against
//! the in-memory adapters.
//!
//! What the emulators cannot check, each suite skips by name, saying why (`--nocapture` shows
//! it): `ifGenerationMatch` on resumable uploads and on deletes (both GCS emulators ignore it),
//! the status of a finalized resumable session (both answer 404, GCS the object), a delete of
//! one generation (both delete the live object instead). Those parts
//! of the contract are held only by the in-memory sink's run, and by GCS itself.

mod common;
#[path = "common/conformance/mod.rs"]
mod conformance;

use common::*;
use conformance::{job_store, ledger, queue, sink, source};
use std::time::Duration;
use xcr::adapters::aws::job_store::DynamoJobStore;
use xcr::adapters::aws::ledger::DynamoLedger;
use xcr::adapters::aws::s3::S3Source;
use xcr::adapters::aws::sqs::{Message, Queue};
use xcr::ports::LedgerItem;

impl source::SourceFixture for aws_sdk_s3::Client {
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        data: Vec<u8>,
        content_type: &str,
        metadata: &[(&str, &str)],
    ) -> (Option<String>, String) {
        let mut req = self.put_object().bucket(bucket).key(key).content_type(content_type).body(data.into());
        for (k, v) in metadata {
            req = req.metadata(*k, *v);
        }
        let out = req.send().await.expect("put object");
        (out.version_id().map(str::to_string), out.e_tag().unwrap_or_default().trim_matches('"').to_string())
    }

    async fn delete(&self, bucket: &str, key: &str) {
        self.delete_object().bucket(bucket).key(key).send().await.expect("delete object");
    }
}

impl ledger::LedgerFixture for DynamoLedger {
    async fn item(&self, key: &str) -> Option<LedgerItem> {
        self.get(key).await.expect("read the ledger")
    }
}

impl queue::QueueFixture for Queue {
    async fn receive(&self, visibility_secs: u32) -> Vec<(String, String)> {
        let visibility = i32::try_from(visibility_secs).expect("seconds");
        let got = Queue::receive(self, 10, 0, Some(visibility)).await.expect("receive");
        got.into_iter().map(|m| (m.receipt_handle, m.body)).collect()
    }

    async fn delete(&self, receipt_handle: &str) {
        let m = Message {
            id: String::new(),
            receipt_handle: receipt_handle.to_string(),
            body: String::new(),
            receive_count: 1,
            sent_ms: None,
        };
        assert_eq!(Queue::delete(self, &[&m]).await.expect("delete"), 1, "deleted");
    }

    async fn wait(&self, by: Duration) {
        tokio::time::sleep(by).await;
    }
}

/// gcp-storage-emulator: verifies checksums, ignores every precondition.
const GCP_STORAGE_EMULATOR: sink::Gaps = sink::Gaps {
    multipart_preconditions_ignored: Some(
        "gcp-storage-emulator ignores ifGenerationMatch (EMULATORS.md); the fake-gcs-server run checks it",
    ),
    other_preconditions_ignored: Some(
        "gcp-storage-emulator ignores ifGenerationMatch on resumable uploads and deletes (EMULATORS.md)",
    ),
    delete_generation_ignored: Some("gcp-storage-emulator ignores `generation` on DELETE: it deletes the live object"),
    empty_session_reports_a_byte: Some(
        "gcp-storage-emulator answers a new session's status query with `Range: bytes=0-0` (one byte held)",
    ),
    checksums_ignored: None,
    status_after_final_gone: Some("gcp-storage-emulator answers 404 to a finalized session's status query"),
    resumable_broken: None,
};

/// fake-gcs-server: enforces ifGenerationMatch on multipart uploads, accepts wrong checksums,
/// breaks resumable recovery.
const FAKE_GCS_SERVER: sink::Gaps = sink::Gaps {
    multipart_preconditions_ignored: None,
    other_preconditions_ignored: Some(
        "fake-gcs-server ignores ifGenerationMatch on resumable uploads and deletes (EMULATORS.md)",
    ),
    delete_generation_ignored: Some("fake-gcs-server ignores `generation` on DELETE: it deletes the live object"),
    empty_session_reports_a_byte: None,
    checksums_ignored: Some(
        "fake-gcs-server accepts a wrong crc32c/md5Hash (EMULATORS.md); the gcp-storage-emulator run checks it",
    ),
    status_after_final_gone: Some("fake-gcs-server answers 404 to a finalized session's status query"),
    resumable_broken: Some(
        "fake-gcs-server commits a truncated object on a status query (EMULATORS.md); the gcp-storage-emulator run checks resumable sessions",
    ),
};

/// A fresh SQS queue of this stack's moto: the stack's own queue receives S3's notifications.
async fn fresh_queue(stack: &Stack) -> Queue {
    let sdk = stack.sdk().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let out = sqs
        .create_queue()
        .queue_name(conformance::unique("xcr-conformance"))
        .attributes(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout, "30")
        .send()
        .await
        .expect("create a queue");
    Queue::new(&sdk, out.queue_url().expect("queue url"))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_real_adapter_meets_its_port_contract() {
    let stack = Stack::up();
    let sdk = stack.sdk().await;
    let fake = FakeGcs::start("conformance").await;
    let (s3, source) = (stack.s3().await, S3Source::new(&sdk));
    let source_bucket = stack.source_bucket().to_string();
    let (gcs, dest_bucket, fake_gcs) = (stack.gcs(), stack.dest_bucket().to_string(), fake.client());
    let ledger = ledger(&sdk, &stack);
    let jobs = DynamoJobStore::new(&sdk, stack.var("XCR_JOBS_TABLE"));
    let queue = fresh_queue(&stack).await;

    let suites: Vec<(&str, tokio::task::JoinHandle<()>)> = vec![
        ("source (S3 on moto)", tokio::spawn(async move { source::run(&source, &s3, &source_bucket).await })),
        (
            "sink (gcp-storage-emulator)",
            tokio::spawn(async move { sink::run(&gcs, &dest_bucket, GCP_STORAGE_EMULATOR).await }),
        ),
        (
            "sink (fake-gcs-server)",
            tokio::spawn(async move { sink::run(&fake_gcs, "conformance", FAKE_GCS_SERVER).await }),
        ),
        ("ledger (DynamoDB on moto)", tokio::spawn(async move { ledger::run(&ledger).await })),
        ("queue (SQS on moto)", tokio::spawn(async move { queue::run(&queue).await })),
        ("job store (DynamoDB on moto)", tokio::spawn(async move { job_store::run(&jobs).await })),
    ];
    let mut failed = Vec::new();
    for (name, task) in suites {
        if let Err(e) = task.await {
            // The panic's message and location are printed above by the panic hook.
            failed.push(format!("{name}: {e}"));
        }
    }
    assert!(failed.is_empty(), "adapters that break their port's contract:\n{}", failed.join("\n"));
}
