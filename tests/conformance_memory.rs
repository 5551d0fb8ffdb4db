//! The conformance suites (tests/common/conformance/) against the in-memory adapters
//! (`xcr::adapters::memory`): no emulator, no `.venv`, well under a second. Part of `make check`.
//! `tests/conformance_emulators.rs` runs the same suites against the real adapters.

mod common;
#[path = "common/conformance/mod.rs"]
mod conformance;

use conformance::{job_store, ledger, queue, sink, source};
use std::time::Duration;
use xcr::adapters::memory::{MemoryJobStore, MemoryLedger, MemoryQueue, MemorySink, MemorySource, Put};
use xcr::ports::LedgerItem;

impl source::SourceFixture for MemorySource {
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        data: Vec<u8>,
        content_type: &str,
        metadata: &[(&str, &str)],
    ) -> (Option<String>, String) {
        let put = Put {
            data: data.into(),
            headers: xcr::domain::model::ContentHeaders {
                content_type: Some(content_type.into()),
                ..Default::default()
            },
            user_metadata: metadata.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Put::default()
        };
        self.put_with(bucket, key, put).expect("put")
    }

    async fn delete(&self, bucket: &str, key: &str) {
        MemorySource::delete(self, bucket, key).expect("delete");
    }
}

impl ledger::LedgerFixture for MemoryLedger {
    async fn item(&self, key: &str) -> Option<LedgerItem> {
        self.get(key)
    }
}

impl queue::QueueFixture for MemoryQueue {
    async fn receive(&self, visibility_secs: u32) -> Vec<(String, String)> {
        MemoryQueue::receive(self, 10, Some(Duration::from_secs(visibility_secs.into())))
            .into_iter()
            .map(|m| (m.receipt_handle, m.body))
            .collect()
    }

    async fn delete(&self, receipt_handle: &str) {
        MemoryQueue::delete(self, receipt_handle).expect("delete");
    }

    async fn wait(&self, by: Duration) {
        self.advance(by);
    }
}

#[tokio::test]
async fn source_conformance() {
    let s = MemorySource::new();
    s.create_bucket("versioned", true);
    source::run(&s, &s, "versioned").await;
}

#[tokio::test]
async fn sink_conformance() {
    sink::run(&MemorySink::with_buckets(&["dst"]), "dst", sink::Gaps::NONE).await;
}

#[tokio::test]
async fn ledger_conformance() {
    ledger::run(&MemoryLedger::new()).await;
}

#[tokio::test]
async fn queue_conformance() {
    queue::run(&MemoryQueue::default()).await;
}

#[tokio::test]
async fn job_store_conformance() {
    job_store::run(&MemoryJobStore::new()).await;
}
