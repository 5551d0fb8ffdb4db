//! The ledger in memory: the same item and the same conditions as
//! [`crate::adapters::aws::ledger::DynamoLedger`]'s conditional writes, evaluated under one lock (a
//! DynamoDB item is written atomically, one conditional write at a time).
//!
//! * a claim succeeds only while no lease is live (expired: `lease_expires < now`), never for an
//!   owner that already completed or released the item (`last_owner`), and, for a task with a
//!   sequencer, only if no mark of the same source bucket is at or above it; a claim that finds
//!   its own lease (a retried request whose answer was lost) is acquired;
//! * complete, release, checkpoint and note_failure write only while `owner` holds the lease;
//! * the ordering mark only rises, and only a write with a sequencer sets it.

use super::lock;
use crate::domain::error::Result;
use crate::ports::{Claim, ClaimRequest, DoneRecord, FailureNote, Ledger, LedgerItem, UploadCheckpoint};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Longest failure message kept, as in DynamoDB.
const MAX_FAILURE_MESSAGE: usize = 1_000;

#[derive(Debug, Clone, Default)]
struct Item {
    item: LedgerItem,
    /// The last lease holder that completed or released the item.
    last_owner: Option<String>,
}

/// The ledger in memory (see the module doc). A clone is another client of the same table.
#[derive(Debug, Clone, Default)]
pub struct MemoryLedger {
    items: Arc<Mutex<HashMap<String, Item>>>,
}

impl MemoryLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads one item, as [`crate::adapters::aws::ledger::DynamoLedger::get`] does.
    pub fn get(&self, key: &str) -> Option<LedgerItem> {
        lock(&self.items).get(key).map(|i| i.item.clone())
    }
}

/// Whether the mark (of `mark_source`) orders `seq` of `source` as already decided.
fn ordered_at_or_above(mark: Option<&str>, mark_source: Option<&str>, seq: &str, source: &str) -> bool {
    // DynamoDB compares strings by their UTF-8 bytes; the sequencers are normalized already.
    mark.is_some_and(|m| mark_source == Some(source) && m >= seq)
}

impl Ledger for MemoryLedger {
    async fn claim(&self, req: &ClaimRequest) -> Result<Claim> {
        let mut items = lock(&self.items);
        let entry = items.entry(req.key.clone()).or_default();
        let item = &entry.item;
        let lease_free = item.lease_expires_ms.is_none_or(|until| until < req.now_ms);
        let not_finished_by_us = entry.last_owner.as_deref() != Some(req.owner.as_str());
        let in_order = req.sequencer.as_deref().is_none_or(|seq| {
            !ordered_at_or_above(item.high_water.as_deref(), item.high_water_source.as_deref(), seq, &req.source_bucket)
                && !ordered_at_or_above(
                    item.done.as_ref().and_then(|d| d.sequencer.as_deref()),
                    item.done.as_ref().map(|d| d.source_bucket.as_str()),
                    seq,
                    &req.source_bucket,
                )
        });
        if lease_free && not_finished_by_us && in_order {
            let previous = item.clone();
            entry.item.lease_owner = Some(req.owner.clone());
            entry.item.lease_expires_ms = Some(req.lease_until_ms);
            return Ok(Claim::Acquired { previous });
        }
        let current = item.clone();
        if current.lease_owner.as_deref() == Some(req.owner.as_str()) {
            return Ok(Claim::Acquired {
                previous: LedgerItem { lease_owner: None, lease_expires_ms: None, ..current },
            });
        }
        Ok(Claim::Rejected { current })
    }

    async fn complete(&self, key: &str, owner: &str, done: &DoneRecord) -> Result<bool> {
        let mut items = lock(&self.items);
        // No item: DynamoDB's condition fails and nothing is created.
        let Some(entry) = items.get_mut(key) else { return Ok(false) };
        let holds = entry.item.lease_owner.as_deref() == Some(owner);
        let mark_allows = done.sequencer.as_deref().is_none_or(|seq| {
            entry.item.high_water.is_none()
                || entry.item.high_water_source.as_deref() != Some(done.source_bucket.as_str())
                || entry.item.high_water.as_deref().is_some_and(|m| m <= seq)
        });
        if !(holds && mark_allows) {
            // Our own record with the lease gone: an earlier attempt of this call was applied.
            let item = &entry.item;
            return Ok(item.lease_owner.is_none()
                && item.done.as_ref().is_some_and(|d| {
                    d.done_at_ms == done.done_at_ms && d.generation == done.generation && d.action == done.action
                }));
        }
        let item = &mut entry.item;
        item.done = Some(done.clone());
        if let Some(seq) = &done.sequencer {
            item.high_water = Some(seq.clone());
            item.high_water_source = Some(done.source_bucket.clone());
        }
        item.lease_owner = None;
        item.lease_expires_ms = None;
        item.upload = None;
        item.failure = None;
        entry.last_owner = Some(owner.to_string());
        Ok(true)
    }

    async fn release(&self, key: &str, owner: &str, raise: Option<(&str, &str)>) -> Result<()> {
        let mut items = lock(&self.items);
        let Some(entry) = items.get_mut(key) else { return Ok(()) };
        if entry.item.lease_owner.as_deref() != Some(owner) {
            return Ok(());
        }
        if let Some((seq, source)) = raise {
            entry.item.high_water = Some(seq.to_string());
            entry.item.high_water_source = Some(source.to_string());
        }
        entry.item.lease_owner = None;
        entry.item.lease_expires_ms = None;
        entry.last_owner = Some(owner.to_string());
        Ok(())
    }

    async fn note_failure(&self, key: &str, owner: &str, note: &FailureNote) -> Result<()> {
        let mut items = lock(&self.items);
        if let Some(entry) = items.get_mut(key)
            && entry.item.lease_owner.as_deref() == Some(owner)
        {
            let message = note.message.chars().take(MAX_FAILURE_MESSAGE).collect();
            entry.item.failure = Some(FailureNote { message, ..note.clone() });
        }
        Ok(())
    }

    async fn checkpoint(
        &self,
        key: &str,
        owner: &str,
        upload: Option<&UploadCheckpoint>,
        lease_until_ms: i64,
    ) -> Result<bool> {
        let mut items = lock(&self.items);
        let Some(entry) = items.get_mut(key) else { return Ok(false) };
        if entry.item.lease_owner.as_deref() != Some(owner) {
            return Ok(false);
        }
        entry.item.lease_expires_ms = Some(lease_until_ms);
        entry.item.upload = upload.cloned();
        Ok(true)
    }
}
