//! In-memory adapters for every port: [`MemorySource`] (S3 as [`crate::ports::ObjectSource`] and
//! [`crate::ports::ObjectLister`]), [`MemorySink`] (GCS as [`crate::ports::ObjectSink`]),
//! [`MemoryLedger`] ([`crate::ports::Ledger`]), [`MemoryQueue`] ([`crate::ports::TaskQueue`] and
//! [`crate::ports::DeadLetters`]) and [`MemoryJobStore`] ([`crate::ports::JobStore`]).
//!
//! What they are for: fast tests of the domain (the replicate use case, the job driver) without
//! an emulator, and a reference model of each port's contract. They are not lenient fakes: each
//! enforces the conditions the real service enforces and the real adapter relies on (GCS
//! generations and `ifGenerationMatch`, checksums checked at finalization; S3 versions and
//! `If-Match`; DynamoDB's conditional writes for leases, ordering marks and job states; SQS
//! visibility and receipt handles), and fails with the same [`crate::ErrorKind`] the real adapter
//! gives. The conformance suites (`tests/common/conformance/`) run the same cases against these
//! and against the real adapters on the emulators, so the two cannot drift apart unnoticed.
//!
//! Nothing here is used in production: no entry point wires them.
#![warn(missing_docs)]

mod jobs;
mod ledger;
mod queue;
mod sink;
mod source;

pub use jobs::MemoryJobStore;
pub use ledger::MemoryLedger;
pub use queue::{MemoryQueue, Received};
pub use sink::{MemorySink, StoredCopy};
pub use source::{MemorySource, Put};

use crate::domain::error::{Error, ErrorKind, Result};
use std::sync::{Mutex, MutexGuard};

/// Locks shared state. A panic while the lock was held (a test that failed mid-way) leaves the
/// state as it was written: the next test reads it rather than failing for the first's sake.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A failure a test asked an adapter to give on its next write ([`MemorySink::fail_next`]...):
/// taken once, so the retry that follows meets the normal behaviour.
#[derive(Debug, Default)]
struct Faults(Mutex<Vec<ErrorKind>>);

impl Faults {
    fn push(&self, kind: ErrorKind) {
        lock(&self.0).push(kind);
    }

    fn take(&self, what: &str) -> Result<()> {
        let mut faults = lock(&self.0);
        if faults.is_empty() {
            return Ok(());
        }
        let kind = faults.remove(0);
        Err(Error::new(kind, format!("{what}: injected failure ({kind})")))
    }
}
