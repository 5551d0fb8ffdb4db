//! Ledger choices for entry points: DynamoDB when a table is configured, or none at all for
//! one-off copies from the command line (every claim succeeds, nothing is recorded).

use crate::aws::dynamodb::DynamoLedger;
use crate::error::Result;
use crate::ports::{Claim, ClaimRequest, DoneRecord, Ledger, LedgerItem, UploadCheckpoint};

#[derive(Debug, Clone)]
pub enum AnyLedger {
    Dynamo(DynamoLedger),
    /// No idempotency store: `xcr replicate` without `XCR_LEDGER_TABLE` always copies.
    Disabled,
}

impl Ledger for AnyLedger {
    async fn claim(&self, req: &ClaimRequest) -> Result<Claim> {
        match self {
            Self::Dynamo(l) => l.claim(req).await,
            Self::Disabled => Ok(Claim::Acquired { previous: LedgerItem::default() }),
        }
    }

    async fn complete(&self, key: &str, owner: &str, done: &DoneRecord) -> Result<bool> {
        match self {
            Self::Dynamo(l) => l.complete(key, owner, done).await,
            Self::Disabled => Ok(true),
        }
    }

    async fn release(&self, key: &str, owner: &str, raise: Option<&str>) -> Result<()> {
        match self {
            Self::Dynamo(l) => l.release(key, owner, raise).await,
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
            Self::Dynamo(l) => l.checkpoint(key, owner, upload, lease_until_ms).await,
            // Nothing is remembered: a rerun starts over.
            Self::Disabled => Ok(true),
        }
    }
}
