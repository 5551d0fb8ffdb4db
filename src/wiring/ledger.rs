//! Ledger choices for entry points: DynamoDB when a table is configured, or none at all for
//! one-off copies from the command line (every claim succeeds, nothing is recorded).
//!
//! A DynamoDB write that a running transaction refused (`TransactionConflictException`) is
//! retried here, with [`TRANSACTION_RETRY`]: nothing was written, the SDK does not retry it, and
//! the use case would otherwise fail the whole task for a collision that clears in milliseconds.
//! xcr's own transactions touch only the jobs table, but a ledger shared with other writers, or
//! a table holding both, can meet one; every ledger write is conditional, so a retry is safe.

use crate::adapters::aws::ledger::DynamoLedger;
use crate::adapters::aws::{TRANSACTION_RETRY, is_transaction_conflict};
use crate::domain::error::Result;
use crate::ports::{Claim, ClaimRequest, DoneRecord, FailureNote, Ledger, LedgerItem, UploadCheckpoint};

#[derive(Debug, Clone)]
/// The ledger an entry point uses, chosen from the configuration: one type, so that the use
/// case is built the same way whether or not a table is configured.
pub enum AnyLedger {
    /// The DynamoDB ledger, its transaction conflicts retried here.
    Dynamo(DynamoLedger),
    /// No idempotency store: `xcr replicate` without `XCR_LEDGER_TABLE` always copies.
    Disabled,
}

impl AnyLedger {
    /// The item of one destination object (`gs://bucket/name`), as it is now; `None` when
    /// nothing is recorded or no ledger is configured. For `xcr status` and
    /// `GET /v1/objects/...`: the replication path never reads.
    pub async fn get(&self, key: &str) -> Result<Option<LedgerItem>> {
        match self {
            Self::Dynamo(l) => l.get(key).await,
            Self::Disabled => Ok(None),
        }
    }
}

impl Ledger for AnyLedger {
    async fn claim(&self, req: &ClaimRequest) -> Result<Claim> {
        match self {
            Self::Dynamo(l) => TRANSACTION_RETRY.run_if("claim", is_transaction_conflict, |_| l.claim(req)).await,
            Self::Disabled => Ok(Claim::Acquired { previous: LedgerItem::default() }),
        }
    }

    async fn complete(&self, key: &str, owner: &str, done: &DoneRecord) -> Result<bool> {
        match self {
            Self::Dynamo(l) => {
                TRANSACTION_RETRY.run_if("record", is_transaction_conflict, |_| l.complete(key, owner, done)).await
            }
            Self::Disabled => Ok(true),
        }
    }

    async fn release(&self, key: &str, owner: &str, raise: Option<(&str, &str)>) -> Result<()> {
        match self {
            Self::Dynamo(l) => {
                TRANSACTION_RETRY.run_if("release", is_transaction_conflict, |_| l.release(key, owner, raise)).await
            }
            Self::Disabled => Ok(()),
        }
    }

    async fn note_failure(&self, key: &str, owner: &str, note: &FailureNote) -> Result<()> {
        match self {
            Self::Dynamo(l) => {
                TRANSACTION_RETRY
                    .run_if("note failure", is_transaction_conflict, |_| l.note_failure(key, owner, note))
                    .await
            }
            Self::Disabled => Ok(()),
        }
    }

    async fn checkpoint(
        &self,
        key: &str,
        owner: &str,
        upload: Option<&UploadCheckpoint>,
        lease_until_ms: i64,
    ) -> Result<bool> {
        match self {
            Self::Dynamo(l) => {
                TRANSACTION_RETRY
                    .run_if("checkpoint", is_transaction_conflict, |_| l.checkpoint(key, owner, upload, lease_until_ms))
                    .await
            }
            // Nothing is remembered: a rerun starts over.
            Self::Disabled => Ok(true),
        }
    }
}
