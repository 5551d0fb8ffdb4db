//! Time as a budget: an invocation knows its deadline, and a copy that cannot finish before it
//! stops at a chunk boundary, checkpointed, so that the next invocation continues at once.
//!
//! Why: a Lambda invocation ends at its deadline whether or not the copy is done. Killed there,
//! a copy keeps its ledger lease until the deadline plus a margin, its SQS record spends one of
//! its receives and comes back only after the queue's visibility timeout, and an object that
//! needs more invocations than `maxReceiveCount` lands in the dead-letter queue although every
//! attempt made progress. Stopped a little before the deadline instead, the copy records the
//! offset GCS confirmed, releases the lease, and the handler sends the record again as a new
//! message with no delay (acknowledging the original): no receive is spent, no time is lost,
//! and an object of any size up to GCS's 5 TiB limit replicates through chained invocations.
//!
//! The pieces:
//! * [`Budget`]: the deadline one invocation's records run under ([`Budget::UNLIMITED`] for
//!   callers that cannot continue a copy elsewhere: the CLI, the API).
//! * [`Reserve`]: how much of it is kept back, in [`crate::transfer::TransferConfig`]; the
//!   decisions themselves are the pure [`may_start_task`] and [`may_start_chunk`].
//! * The transfer engine stops before a chunk ([`crate::transfer::Copy::Paused`]), the
//!   replicator records the checkpoint and answers `continued`
//!   ([`crate::domain::replicate::Outcome::Continued`]), and the handler hands the record on.

use std::time::{Duration, Instant};

/// What is kept back from a budget: not started is what could not end in time.
///
/// A new chunk starts only while the time left is at least
/// `max(slowest chunk so far, min_chunk) + handoff`:
/// * **One chunk**, because a chunk is the unit that cannot be cut short: the upload of a chunk
///   that Lambda kills half-way is lost, and with it the clean handoff. The time a chunk takes
///   is measured on this copy (the pipelined step: send one chunk while reading the next, plus
///   the journal's write), and the slowest one seen is used, not the average: a chunk that
///   needed a retry shows what the next one may need, and stopping one chunk early costs only
///   that chunk's time, once per invocation, while stopping late costs the whole handoff.
/// * **At least `min_chunk`**, because before the first chunk of a copy there is nothing to
///   measure, and connections are new: 5 s by default, the time an 8 MiB chunk takes at about
///   2 MB/s, well below what Lambda reaches to GCS.
/// * **Plus `handoff`**: the checkpoint write and the lease release (one conditional DynamoDB
///   write each), the `SendMessage` of the continuation and the batch's answer. Each normally
///   takes tens of milliseconds; 2 s by default leaves room for the SDK's own retries.
///
/// On a 60 to 900 s function timeout this keeps back about 1 to 12 % at most; tests shrink both
/// to run a continuation every few seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reserve {
    /// The least time one chunk is assumed to take (before any is measured, and as a floor).
    pub min_chunk: Duration,
    /// The time needed after the last chunk to record the checkpoint and hand the record on.
    pub handoff: Duration,
}

impl Default for Reserve {
    fn default() -> Self {
        Self { min_chunk: Duration::from_secs(5), handoff: Duration::from_secs(2) }
    }
}

impl Reserve {
    /// The time left below which no further chunk starts, given the slowest chunk measured.
    pub fn before_chunk(&self, slowest_chunk: Option<Duration>) -> Duration {
        slowest_chunk.unwrap_or_default().max(self.min_chunk) + self.handoff
    }
}

/// The deadline the records of one invocation run under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// `None`: no deadline to stop for.
    deadline: Option<Instant>,
}

impl Budget {
    /// No budget: copies run to their end (or until the process is killed).
    pub const UNLIMITED: Self = Self { deadline: None };

    /// The budget of an invocation whose deadline is `deadline_ms` (epoch ms), as of `now_ms`.
    ///
    /// When the whole invocation is shorter than what a task needs to start
    /// ([`may_start_task`]), there is no budget at all (with a warning): no record could ever
    /// start, and handing every record on would only loop. Such an invocation works as it did
    /// before budgets, until it is stopped.
    pub fn for_invocation(deadline_ms: i64, now_ms: i64, reserve: &Reserve) -> Self {
        let left = Duration::from_millis(u64::try_from(deadline_ms.saturating_sub(now_ms)).unwrap_or(0));
        if left < reserve.before_chunk(None) {
            tracing::warn!(
                left_ms = left.as_millis() as u64,
                reserve_ms = reserve.before_chunk(None).as_millis() as u64,
                "the invocation is shorter than the continuation reserve: copies run without a budget"
            );
            return Self::UNLIMITED;
        }
        Self::lasting(left)
    }

    /// A budget ending `left` from now; one too far to represent is no budget.
    pub fn lasting(left: Duration) -> Self {
        Self { deadline: Instant::now().checked_add(left) }
    }

    /// The time left, `None` without a budget.
    pub fn left(&self) -> Option<Duration> {
        self.deadline.map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// True when there is a deadline; an unlimited budget never pauses a copy.
    pub fn is_limited(&self) -> bool {
        self.deadline.is_some()
    }
}

/// Whether a task (one destination of it) may start with `left` time left: enough for one
/// chunk and the handoff. A task that may not is handed on unstarted (`continued`, with
/// nothing done), so that it does not spend its receive in an invocation about to end.
pub fn may_start_task(left: Option<Duration>, reserve: &Reserve) -> bool {
    left.is_none_or(|l| l >= reserve.before_chunk(None))
}

/// Whether a resumable copy sends its next chunk with `left` time left, having measured
/// `slowest_chunk` so far. `progressed`: this invocation already sent a chunk of this copy.
/// The first chunk of an invocation always goes (the task was only started with time for
/// one): every continuation then makes progress, so chained invocations cannot loop without
/// moving the offset.
pub fn may_start_chunk(
    left: Option<Duration>,
    slowest_chunk: Option<Duration>,
    progressed: bool,
    reserve: &Reserve,
) -> bool {
    !progressed || left.is_none_or(|l| l >= reserve.before_chunk(slowest_chunk))
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn the_reserve_is_the_slowest_chunk_at_least_the_floor_plus_the_handoff() {
        let r = Reserve::default();
        assert_eq!(r.before_chunk(None), s(7), "nothing measured: the floor");
        assert_eq!(r.before_chunk(Some(Duration::from_millis(300))), s(7), "fast chunks: still the floor");
        assert_eq!(r.before_chunk(Some(s(11))), s(13), "a slow chunk raises it");
    }

    #[test]
    fn a_chunk_starts_only_with_time_for_itself_and_the_handoff() {
        let r = Reserve::default();
        // Without a budget, always.
        assert!(may_start_chunk(None, Some(s(100)), true, &r));
        // With one: the slowest chunk so far (or the floor) plus the handoff must fit.
        assert!(may_start_chunk(Some(s(60)), Some(s(3)), true, &r));
        assert!(may_start_chunk(Some(s(7)), Some(s(3)), true, &r));
        assert!(!may_start_chunk(Some(Duration::from_millis(6_999)), Some(s(3)), true, &r));
        assert!(!may_start_chunk(Some(s(12)), Some(s(11)), true, &r), "a slow chunk stops earlier");
        assert!(may_start_chunk(Some(s(13)), Some(s(11)), true, &r));
        assert!(!may_start_chunk(Some(Duration::ZERO), None, true, &r));
        // The first chunk of an invocation always goes: every continuation makes progress.
        assert!(may_start_chunk(Some(Duration::ZERO), Some(s(11)), false, &r));
    }

    #[test]
    fn a_task_starts_only_with_time_for_one_chunk_and_the_handoff() {
        let r = Reserve { min_chunk: Duration::from_millis(500), handoff: Duration::from_millis(250) };
        assert!(may_start_task(None, &r));
        assert!(may_start_task(Some(Duration::from_millis(750)), &r));
        assert!(!may_start_task(Some(Duration::from_millis(749)), &r));
    }

    #[test]
    fn an_invocation_too_short_for_the_reserve_runs_without_a_budget() {
        let r = Reserve::default();
        let now = 1_000_000;
        assert_eq!(Budget::for_invocation(now + 6_000, now, &r), Budget::UNLIMITED);
        assert_eq!(Budget::for_invocation(now - 1, now, &r), Budget::UNLIMITED);
        let b = Budget::for_invocation(now + 60_000, now, &r);
        assert!(b.is_limited());
        let left = b.left().expect("limited");
        assert!(left <= s(60) && left > s(59), "{left:?}");
        assert_eq!(Budget::UNLIMITED.left(), None);
        // A deadline far beyond any clock (the function's `unwrap_or(i64::MAX)`) is no budget,
        // and never a panic.
        assert!(Budget::for_invocation(i64::MAX, 0, &r).left().is_none_or(|l| l > s(3600)));
    }
}
