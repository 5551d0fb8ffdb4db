//! One conformance suite per port, written once over the port's trait and run against both the
//! in-memory adapter (`tests/conformance_memory.rs`, no emulator) and the real one on the
//! emulators (`tests/conformance_emulators.rs`), so that both are held to one contract: the
//! behaviour of the real service that the real adapter relies on.
//!
//! A suite needs a little more than the port to set a case up and look at its effect (putting
//! an S3 object, receiving an SQS message, reading a ledger item): each says so in a fixture
//! trait that both runs implement. Where an emulator is known to be more lenient than the cloud
//! (../shared/EMULATORS.md), the suite takes a [`Gaps`]-style flag for it and says, when it
//! skips a case, which emulator defect stops it: never silently.
#![allow(dead_code)]

pub mod job_store;
pub mod ledger;
pub mod queue;
pub mod sink;
pub mod source;

/// A name no other case or run uses: cases share buckets, tables and queues.
pub fn unique(what: &str) -> String {
    format!("{what}-{:08x}", fastrand::u32(..))
}

/// Says that a case did not run on this adapter, and why (printed, so `--nocapture` and a
/// failing run's output show it).
pub fn skipped(case: &str, why: &str) {
    println!("conformance: skipped {case}: {why}");
}
