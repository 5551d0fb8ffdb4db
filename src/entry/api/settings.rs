//! The API's own settings: the source-bucket allowlist and the size above which a copy is
//! queued instead of done inside the HTTP request. Parsed from variables that
//! [`crate::config::Config::api_settings_from_env`] reads (this module never reads the
//! environment itself).

use crate::domain::names::validate_s3_bucket;
use std::collections::HashMap;

/// The variable naming the source buckets the API may read.
pub const ALLOWED_SOURCE_BUCKETS: &str = "XCR_ALLOWED_SOURCE_BUCKETS";
/// The variable setting the size above which a copy is queued (`202`).
pub const SYNC_MAX_BYTES: &str = "XCR_API_SYNC_MAX_BYTES";

/// Default for [`SYNC_MAX_BYTES`]: 64 MiB. API Gateway gives an integration at most 30 s; a
/// Lambda copies S3 -> GCS at 50–100 MiB/s, and at a pessimistic 10 MiB/s 64 MiB still takes
/// under 7 s, leaving room for retries of a failed chunk. Larger objects are queued (202).
pub const DEFAULT_SYNC_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Which S3 buckets the API may read. Default deny: with nothing configured every request
/// naming a bucket is refused, so the API can never become a way to read whatever else the
/// function's role happens to reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    exact: Vec<String>,
    prefixes: Vec<String>,
    any: bool,
}

impl Allowlist {
    /// Comma- or space-separated entries: a bucket name, `prefix*` (every bucket whose name
    /// starts with `prefix`), or `*` alone (any bucket: an explicit, logged opt-in).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut list = Self::default();
        for entry in text.split([',', ' ', '\n', '\t']).map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "*" {
                list.any = true;
            } else if let Some(prefix) = entry.strip_suffix('*') {
                if prefix.contains('*') || !prefix.chars().all(bucket_char) {
                    return Err(format!("{ALLOWED_SOURCE_BUCKETS}: {entry:?} is not a bucket name or prefix*"));
                }
                list.prefixes.push(prefix.to_string());
            } else {
                validate_s3_bucket(entry).map_err(|why| format!("{ALLOWED_SOURCE_BUCKETS}: {why}"))?;
                list.exact.push(entry.to_string());
            }
        }
        Ok(list)
    }

    /// Whether the API may read `bucket`.
    pub fn allows(&self, bucket: &str) -> bool {
        self.any
            || self.exact.iter().any(|b| b == bucket)
            || self.prefixes.iter().any(|p| bucket.starts_with(p.as_str()))
    }

    /// True when nothing is allowed (nothing configured): every request naming a bucket is refused.
    pub fn is_empty(&self) -> bool {
        !self.any && self.exact.is_empty() && self.prefixes.is_empty()
    }

    /// True when `*` opened every bucket, which start-up logs as a warning.
    pub fn allows_any(&self) -> bool {
        self.any
    }

    /// The source buckets this list declares, for the routing collision check
    /// ([`crate::domain::routing::Router::check_collisions`]): an empty list declares none.
    pub fn sources(&self) -> crate::domain::routing::Sources<'_> {
        use crate::domain::routing::Sources;
        if self.any || !self.prefixes.is_empty() {
            Sources::Unbounded
        } else if self.exact.is_empty() {
            Sources::Undeclared
        } else {
            Sources::Named(&self.exact)
        }
    }

    /// The buckets named exactly (the health check reads the first).
    pub fn exact(&self) -> &[String] {
        &self.exact
    }
}

pub(crate) fn bucket_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-'
}

#[derive(Debug, Clone)]
/// What the API reads besides [`crate::config::Config`], parsed once at start-up.
pub struct ApiSettings {
    /// The source buckets requests may name.
    pub allow: Allowlist,
    /// Objects up to this size are copied inside the request; larger ones are queued.
    pub sync_max_bytes: u64,
}

impl ApiSettings {
    /// Parses the API's variables from `env` (what [`crate::config::Config::api_settings_from_env`]
    /// reads, or a test's map); the error names the variable and the problem.
    pub fn from_vars(env: &HashMap<String, String>) -> Result<Self, String> {
        let allow = Allowlist::parse(env.get(ALLOWED_SOURCE_BUCKETS).map(String::as_str).unwrap_or(""))?;
        let sync_max_bytes = match env.get(SYNC_MAX_BYTES).map(|v| v.trim()).filter(|v| !v.is_empty()) {
            None => DEFAULT_SYNC_MAX_BYTES,
            Some(v) => crate::config::parse_size_str(v)
                .ok_or_else(|| format!("{SYNC_MAX_BYTES}={v:?}: expected a size such as 67108864, 64MiB or 1GiB"))?,
        };
        Ok(Self { allow, sync_max_bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_is_default_deny() {
        let none = Allowlist::parse("").unwrap();
        assert!(none.is_empty());
        assert!(!none.allows("anything"));
    }

    #[test]
    fn allowlist_entries() {
        let l = Allowlist::parse("raw-data, logs-* ,reports").unwrap();
        assert!(l.allows("raw-data"));
        assert!(l.allows("reports"));
        assert!(l.allows("logs-2026"));
        assert!(!l.allows("raw-data2"));
        assert!(!l.allows("other"));
        assert!(Allowlist::parse("*").unwrap().allows("whatever"));
        assert!(Allowlist::parse("Bad_Bucket").is_err());
        assert!(Allowlist::parse("a*b*").is_err());
    }

    #[test]
    fn bucket_names() {
        assert!(validate_s3_bucket("my-bucket.1").is_ok());
        for bad in ["ab", "-ab", "ab-", "AB", "a_b", &"a".repeat(64), "a/b"] {
            assert!(validate_s3_bucket(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sync_limit() {
        let env = |v: &str| HashMap::from([(SYNC_MAX_BYTES.to_string(), v.to_string())]);
        assert_eq!(ApiSettings::from_vars(&HashMap::new()).unwrap().sync_max_bytes, DEFAULT_SYNC_MAX_BYTES);
        assert_eq!(ApiSettings::from_vars(&env("1MiB")).unwrap().sync_max_bytes, 1024 * 1024);
        assert!(ApiSettings::from_vars(&env("lots")).is_err());
    }
}
