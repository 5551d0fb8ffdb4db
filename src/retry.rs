//! The one retry policy for calls the AWS SDK does not retry itself: every GCS request and
//! re-opening an S3 stream that broke mid-body.
//!
//! Exponential backoff with full jitter (sleep a random time in `[0, min(cap, base * 2^n))`), as
//! recommended by AWS's "Exponential Backoff And Jitter": it spreads retries from many
//! concurrent Lambdas instead of having them hammer a throttled endpoint in lockstep.

use crate::domain::error::{Error, ErrorKind, Result};
use std::future::Future;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// Exponential backoff with full jitter: attempt `n` waits a random time up to
/// `min(max_delay, base_delay × 2ⁿ)`, so that many workers failing together do not retry together.
pub struct RetryPolicy {
    /// Total attempts including the first one; at least 1.
    pub max_attempts: u32,
    /// The ceiling of the first wait; each further attempt doubles it.
    pub base_delay: Duration,
    /// No wait is drawn above this, however many attempts came before.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 6, base_delay: Duration::from_millis(200), max_delay: Duration::from_secs(10) }
    }
}

impl RetryPolicy {
    /// The sleep before retry number `retry` (0 for the first retry).
    pub fn delay(&self, retry: u32) -> Duration {
        let exp = self.base_delay.saturating_mul(1u32.checked_shl(retry.min(20)).unwrap_or(u32::MAX));
        let cap = exp.min(self.max_delay);
        let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(fastrand::u64(0..=nanos))
    }

    /// Runs `op` until it succeeds, fails with a non-retryable error, or attempts run out.
    /// `what` names the operation in the log line written before each retry.
    pub async fn run<T, F, Fut>(&self, what: &str, op: F) -> Result<T>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.run_if(what, Error::is_retryable, op).await
    }

    /// Like [`Self::run`], but retries only the retryable errors that `when` selects. Why: a
    /// call the AWS SDK already retries must not be retried again for the failures the SDK
    /// covers (attempts would multiply under throttling), only for those it leaves alone, such
    /// as a DynamoDB write refused because of a running transaction.
    pub async fn run_if<T, F, Fut, W>(&self, what: &str, when: W, mut op: F) -> Result<T>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T>>,
        W: Fn(&Error) -> bool,
    {
        let mut attempt = 0;
        loop {
            match op(attempt).await {
                Ok(v) => return Ok(v),
                // A precondition conflict is decided again by the caller: the same request with
                // the same precondition would only fail the same way. A request that was applied
                // but whose answer was unreadable is read back by the caller, never repeated.
                Err(e)
                    if e.is_retryable()
                        && e.kind() != ErrorKind::Conflict
                        && !e.was_applied()
                        && when(&e)
                        && attempt + 1 < self.max_attempts.max(1) =>
                {
                    let wait = self.delay(attempt);
                    tracing::warn!(op = what, attempt = attempt + 1, error = %e.chain(), wait_ms = wait.as_millis() as u64, "retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(e) => return Err(attempts_context(e, attempt + 1)),
            }
        }
    }
}

fn attempts_context(e: Error, attempts: u32) -> Error {
    if attempts > 1 && e.is_retryable() { e.context(format_args!("gave up after {attempts} attempts")) } else { e }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::error::ErrorKind;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn fast() -> RetryPolicy {
        RetryPolicy { max_attempts: 4, base_delay: Duration::from_millis(1), max_delay: Duration::from_millis(2) }
    }

    #[test]
    fn delay_is_bounded_by_cap_and_exponent() {
        let p =
            RetryPolicy { max_attempts: 10, base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(1) };
        for _ in 0..200 {
            assert!(p.delay(0) <= Duration::from_millis(100));
            assert!(p.delay(2) <= Duration::from_millis(400));
            assert!(p.delay(30) <= Duration::from_secs(1));
        }
    }

    #[tokio::test]
    async fn retries_transient_then_succeeds() {
        let calls = AtomicU32::new(0);
        let out = fast()
            .run("op", |_| async {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(Error::new(ErrorKind::Transient, "503"))
                } else {
                    Ok(7)
                }
            })
            .await;
        assert_eq!(out.ok(), Some(7));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn does_not_retry_permanent_errors() {
        let calls = AtomicU32::new(0);
        let out: Result<()> = fast()
            .run("op", |_| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(Error::new(ErrorKind::NotFound, "gone"))
            })
            .await;
        assert_eq!(out.map_err(|e| e.kind()).err(), Some(ErrorKind::NotFound));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_request_applied_with_an_unreadable_answer_is_not_repeated() {
        let calls = AtomicU32::new(0);
        let out: Result<()> = fast()
            .run("upload", |_| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(Error::new(ErrorKind::Transient, "answer cut off").applied())
            })
            .await;
        let e = out.expect_err("an error");
        assert!(e.was_applied() && e.kind() == ErrorKind::Transient, "kept as it was: {}", e.chain());
        assert_eq!(calls.load(Ordering::SeqCst), 1, "the write is read back by the caller, not sent again");
    }

    #[tokio::test]
    async fn run_if_retries_only_what_it_selects() {
        let calls = AtomicU32::new(0);
        let out: Result<()> = fast()
            .run_if(
                "op",
                |e| e.message() == "conflict",
                |_| async {
                    let n = calls.fetch_add(1, Ordering::SeqCst);
                    Err(Error::new(ErrorKind::Transient, if n < 2 { "conflict" } else { "503" }))
                },
            )
            .await;
        assert_eq!(out.map_err(|e| e.message().to_string()).err().as_deref(), Some("gave up after 3 attempts: 503"));
        assert_eq!(calls.load(Ordering::SeqCst), 3, "two conflicts retried, the 503 not");
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts() {
        let calls = AtomicU32::new(0);
        let out: Result<()> = fast()
            .run("op", |_| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(Error::new(ErrorKind::Transient, "503"))
            })
            .await;
        let e = out.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("gave up after 4 attempts"), "{e}");
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }
}
