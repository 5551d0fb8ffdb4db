//! The upload journal of a lease holder: a resumable session and its confirmed offset,
//! checkpointed in the ledger item the lease is held on, so that the next claim after a crash
//! or a continuation resumes the session instead of sending the bytes again.

use super::clock::now_ms;
use crate::domain::error::{Error, ErrorKind, Result};
use crate::ports::{Ledger, UploadCheckpoint, UploadJournal};
use std::sync::Mutex;
use std::time::Duration;

/// How often a confirmed offset is written to the ledger at most (a renewable lease is written
/// at least every third of its time-to-live). After a crash, the bytes between the last such
/// write and what GCS confirms are read again from S3, never sent again to GCS.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);

/// Records a resumable upload in the ledger item on behalf of the lease holder, so that the next
/// attempt can continue it, and renews a time-to-live lease as the copy makes progress. Every
/// write is conditional on still holding the lease: when it fails, another worker may own the
/// destination, and the copy stops rather than race it.
pub struct LeaseJournal<'a, L> {
    ledger: &'a L,
    pub(super) key: &'a str,
    pub(super) owner: &'a str,
    ttl: Option<Duration>,
    state: Mutex<JournalState>,
}

struct JournalState {
    /// The session being written and the last offset reported (not necessarily written).
    upload: Option<UploadCheckpoint>,
    /// Tokio's clock (the same as std's outside tests), so that the journal's timing is tested
    /// with paused time instead of sleeps that a loaded machine can outlast.
    last_write: tokio::time::Instant,
    lease_until_ms: i64,
}

impl<'a, L: Ledger> LeaseJournal<'a, L> {
    /// A journal for the lease `owner` holds on ledger `key` until `lease_until_ms`; with `ttl`,
    /// every write also extends the lease to now + `ttl` (a lease renewed by progress).
    pub fn new(ledger: &'a L, key: &'a str, owner: &'a str, lease_until_ms: i64, ttl: Option<Duration>) -> Self {
        let state = JournalState { upload: None, last_write: tokio::time::Instant::now(), lease_until_ms };
        Self { ledger, key, owner, ttl, state: Mutex::new(state) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, JournalState> {
        // Nothing panics while holding it; a poisoned lock still holds consistent plain data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Time between progress writes: [`CHECKPOINT_EVERY`], or a third of a renewable lease.
    fn every(&self) -> Duration {
        self.ttl.map_or(CHECKPOINT_EVERY, |t| CHECKPOINT_EVERY.min(t / 3))
    }

    /// Writes `upload` (or forgets it) and, for a renewable lease, extends it from now.
    /// `Ok(false)`: the lease is no longer ours.
    async fn write(&self, upload: Option<&UploadCheckpoint>) -> Result<bool> {
        let until = {
            let mut st = self.state();
            if let Some(ttl) = self.ttl {
                st.lease_until_ms = st.lease_until_ms.max(now_ms() + ttl.as_millis() as i64);
            }
            st.last_write = tokio::time::Instant::now();
            st.lease_until_ms
        };
        self.ledger.checkpoint(self.key, self.owner, upload, until).await
    }

    pub(super) fn lease_lost(&self) -> Error {
        Error::new(
            ErrorKind::Transient,
            format!("the ledger lease on {} was lost (another worker may hold it now); stopping this copy", self.key),
        )
    }

    /// Whether the lease is still ours (one conditional write, which also forgets a recorded
    /// upload: it is asked after GCS refused a write, when no session can be finalized).
    pub(super) async fn still_held(&self) -> Result<bool> {
        self.state().upload = None;
        self.write(None).await
    }

    /// Writes the upload as last reported (its latest confirmed offset) now, whatever the
    /// interval: before a copy stops for a continuation. `Ok(false)`: the lease is lost.
    /// Nothing recorded yet (no session opened): nothing to write.
    pub(super) async fn flush(&self) -> Result<bool> {
        let upload = self.state().upload.clone();
        match upload {
            Some(cp) => self.write(Some(&cp)).await,
            None => Ok(true),
        }
    }

    /// Forgets the recorded upload, ours or an earlier attempt's (best effort).
    pub async fn forget(&self) {
        self.state().upload = None;
        if let Err(e) = self.write(None).await {
            tracing::warn!(error = %e.chain(), "could not forget the upload session in the ledger");
        }
    }
}

impl<L: Ledger> UploadJournal for LeaseJournal<'_, L> {
    async fn opened(&self, cp: &UploadCheckpoint) -> Result<()> {
        self.state().upload = Some(cp.clone());
        if self.write(Some(cp)).await? { Ok(()) } else { Err(self.lease_lost()) }
    }

    async fn confirmed(&self, offset: u64, crc32c: u32) -> Result<()> {
        let every = self.every();
        let due = {
            let mut st = self.state();
            let due = st.last_write.elapsed() >= every;
            let Some(up) = st.upload.as_mut() else { return Ok(()) };
            up.offset = offset;
            up.crc32c = crc32c;
            due.then(|| up.clone())
        };
        let Some(cp) = due else { return Ok(()) };
        match self.write(Some(&cp)).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(self.lease_lost()),
            // A progress write that failed costs only S3 re-reads after a crash; the copy goes
            // on (the next write, or the completion, re-checks the lease).
            Err(e) => {
                tracing::warn!(error = %e.chain(), "could not checkpoint the upload; continuing");
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::{Claim, ClaimRequest, DoneRecord, LedgerItem};

    /// Records the ledger writes a journal makes; `lost` makes them fail their condition.
    #[derive(Default)]
    struct Writes {
        log: Mutex<Vec<(Option<u64>, i64)>>,
        lost: std::sync::atomic::AtomicBool,
    }

    impl Ledger for Writes {
        async fn claim(&self, _: &ClaimRequest) -> Result<Claim> {
            Ok(Claim::Acquired { previous: LedgerItem::default() })
        }
        async fn complete(&self, _: &str, _: &str, _: &DoneRecord) -> Result<bool> {
            Ok(true)
        }
        async fn release(&self, _: &str, _: &str, _: Option<(&str, &str)>) -> Result<()> {
            Ok(())
        }
        async fn checkpoint(&self, _: &str, _: &str, up: Option<&UploadCheckpoint>, until: i64) -> Result<bool> {
            if self.lost.load(std::sync::atomic::Ordering::SeqCst) {
                return Ok(false);
            }
            self.log.lock().expect("lock").push((up.map(|u| u.offset), until));
            Ok(true)
        }
    }

    // Paused time: the interval is judged on tokio's clock, which only the sleeps below move, so
    // a loaded machine cannot make a write come "late" (#19: no timing a scheduler can break).
    #[tokio::test(start_paused = true)]
    async fn the_journal_records_the_session_then_progress_at_most_every_interval() {
        let ledger = Writes::default();
        let claimed_until = now_ms() + 1_000;
        // A renewable lease of 60 ms: progress is written at most every 20 ms.
        let journal = LeaseJournal::new(&ledger, "gs://b/k", "me", claimed_until, Some(Duration::from_millis(60)));
        let cp = UploadCheckpoint { session: "s".into(), etag: "e".into(), size: 100 << 20, ..Default::default() };
        journal.opened(&cp).await.expect("opened");
        journal.confirmed(1 << 20, 1).await.expect("confirmed");
        journal.confirmed(2 << 20, 2).await.expect("confirmed");
        assert_eq!(ledger.log.lock().expect("lock").len(), 1, "progress written before the interval");
        tokio::time::sleep(Duration::from_millis(25)).await;
        journal.confirmed(3 << 20, 3).await.expect("confirmed");
        {
            let log = ledger.log.lock().expect("lock");
            assert_eq!(log.iter().map(|w| w.0).collect::<Vec<_>>(), vec![Some(0), Some(3 << 20)]);
            // The lease never shrinks below the claim's, and a renewal moves it forward.
            assert!(log.iter().all(|w| w.1 >= claimed_until));
        }
        // A lost lease stops the copy.
        ledger.lost.store(true, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(25)).await;
        let e = journal.confirmed(4 << 20, 4).await.expect_err("lease lost");
        assert_eq!(e.kind(), ErrorKind::Transient);
        assert!(journal.opened(&cp).await.is_err());
        // Forgetting writes no session.
        ledger.lost.store(false, std::sync::atomic::Ordering::SeqCst);
        journal.forget().await;
        assert_eq!(ledger.log.lock().expect("lock").last().map(|w| w.0), Some(None));
    }

    #[tokio::test]
    async fn a_deadline_lease_is_not_extended_by_checkpoints() {
        let ledger = Writes::default();
        let journal = LeaseJournal::new(&ledger, "gs://b/k", "me", 12_345, None);
        let cp = UploadCheckpoint { session: "s".into(), etag: "e".into(), size: 100, ..Default::default() };
        journal.opened(&cp).await.expect("opened");
        assert_eq!(ledger.log.lock().expect("lock").as_slice(), &[(Some(0), 12_345)]);
    }
}
