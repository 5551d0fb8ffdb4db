//! Wall-clock milliseconds for leases and ledger records, and S3's timestamps in the same unit.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch; 0 if the clock is before it (it never is in practice).
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Parses S3's RFC 3339 timestamps (`2026-11-23T05:05:51Z`, optional fraction) to epoch ms.
pub fn rfc3339_ms(s: &str) -> Option<i64> {
    aws_smithy_types::DateTime::from_str(s, aws_smithy_types::date_time::Format::DateTime)
        .ok()
        .map(|t| t.secs() * 1000 + i64::from(t.subsec_nanos() / 1_000_000))
}
