//! When a failed SQS record comes back: the retry clock.
//!
//! A record reported in `batchItemFailures` is left on the queue, and by itself it becomes
//! visible again only when the queue's visibility timeout runs out. That timeout must be long (AWS
//! recommends six times the function's timeout, 5,400 s with the template's defaults) so that a
//! slow but live invocation never has its messages handed to a second one; but as a retry
//! delay it is far too long: a transient GCS blip would delay an object by 90 minutes, and a
//! poison message would reach the dead-letter queue after `maxReceiveCount` × 90 minutes.
//!
//! So the handler sets the visibility of each failed record itself (`ChangeMessageVisibility`)
//! before it answers, to a backoff that grows with the record's receive count: about
//! `base × 4^(n-1)` seconds after the n-th receive, capped, with "equal jitter" (a random
//! point in the upper half) so that records failing together do not come back together, and
//! never near zero. With the defaults (15 s base, 30 min cap) and the template's
//! `maxReceiveCount` of 5, a failing record is tried again after about 15 s, 1 min, 4 min and
//! 16 min, and reaches the dead-letter queue about 21 minutes after its first failure.

use std::time::Duration;

/// The backoff for failed records (`XCR_RETRY_BASE_SECS`, `XCR_RETRY_MAX_SECS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryClock {
    /// The delay after the first failed receive (before jitter).
    pub base: Duration,
    /// No delay is longer than this (before jitter).
    pub max: Duration,
}

impl Default for RetryClock {
    fn default() -> Self {
        Self { base: Duration::from_secs(15), max: Duration::from_secs(1800) }
    }
}

/// SQS refuses a visibility timeout above 12 hours.
const SQS_MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);

impl RetryClock {
    /// The delay before the next delivery of a record that failed on its `receive_count`-th
    /// receive (1 for the first), before jitter.
    pub fn ceiling(&self, receive_count: u32) -> Duration {
        let exp = receive_count.saturating_sub(1).min(16);
        let factor = 4u32.checked_pow(exp).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max).min(SQS_MAX_VISIBILITY)
    }

    /// The visibility to set, in whole seconds: a random point in the upper half of
    /// [`Self::ceiling`], at least 1 s.
    pub fn delay_secs(&self, receive_count: u32) -> u32 {
        let ceiling = self.ceiling(receive_count).as_secs().max(1);
        let low = ceiling.div_ceil(2);
        u32::try_from(fastrand::u64(low..=ceiling)).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_grows_fourfold_per_receive_up_to_the_cap() {
        let clock = RetryClock::default();
        let ceilings: Vec<u64> = (1..=7).map(|n| clock.ceiling(n).as_secs()).collect();
        assert_eq!(ceilings, vec![15, 60, 240, 960, 1800, 1800, 1800]);
        // A receive count of 0 (unknown) is treated as the first.
        assert_eq!(clock.ceiling(0).as_secs(), 15);
        // Huge counts neither overflow nor exceed what SQS accepts.
        let wide = RetryClock { base: Duration::from_secs(3600), max: Duration::from_secs(100_000) };
        assert_eq!(wide.ceiling(u32::MAX), SQS_MAX_VISIBILITY);
    }

    #[test]
    fn jitter_stays_in_the_upper_half_and_never_reaches_zero() {
        let clock = RetryClock { base: Duration::from_secs(10), max: Duration::from_secs(1000) };
        for n in 1..=5 {
            let ceiling = clock.ceiling(n).as_secs() as u32;
            let seen: Vec<u32> = (0..200).map(|_| clock.delay_secs(n)).collect();
            assert!(seen.iter().all(|d| *d >= ceiling.div_ceil(2) && *d <= ceiling), "{n}: {seen:?}");
            assert!(seen.iter().any(|d| *d != seen[0]), "jittered");
        }
        let tiny = RetryClock { base: Duration::from_millis(100), max: Duration::from_secs(1) };
        assert!((0..50).all(|_| tiny.delay_secs(1) == 1), "never zero");
    }
}
