//! Names and URLs as values: an `s3://` or `gs://` URL is parsed here once, with the bucket
//! naming rules, and every caller (job specs, replicate commands, the API, the CLI, audit
//! reports, the destination allowlist) holds the parsed value instead of splitting strings.
//!
//! Pure: no I/O, no configuration. These rules used to live in `config.rs`, which made every
//! domain module that checked a bucket name depend on the configuration module (and, through
//! it, on the transfer engine and the ports: a cycle).
//!
//! The URL types check what a typo gets wrong (scheme, bucket name, a name too long or holding
//! a line break); the clouds have the final word on everything else.

use std::fmt;
use std::str::FromStr;

/// The longest GCS object name, in bytes (also the longest S3 key).
pub const MAX_OBJECT_NAME_BYTES: usize = 1024;

/// S3 bucket naming rules: 3 to 63 lowercase letters, digits, dots and hyphens, starting and
/// ending with a letter or digit. The error names the bucket (cut to 80 characters).
pub fn validate_s3_bucket(name: &str) -> Result<(), String> {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !(3..=63).contains(&name.len())
        || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        || !edge(name.chars().next())
        || !edge(name.chars().last())
    {
        return Err(format!(
            "{:?} is not an S3 bucket name (3 to 63 lowercase letters, digits, dots and hyphens)",
            name.chars().take(80).collect::<String>()
        ));
    }
    Ok(())
}

/// GCS bucket naming rules (the subset that catches typos; GCS has the final word). A leading
/// `gs://` is tolerated, so a setting may name a bucket either way.
pub fn validate_gcs_bucket(name: &str) -> Result<(), String> {
    let name = name.strip_prefix("gs://").unwrap_or(name);
    if !(3..=222).contains(&name.len()) {
        return Err("a bucket name has 3 to 222 characters".into());
    }
    if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')) {
        return Err("use lowercase letters, digits, '-', '_' and '.' only".into());
    }
    let (first, last) = (name.as_bytes()[0], name.as_bytes()[name.len() - 1]);
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return Err("a bucket name starts and ends with a letter or digit".into());
    }
    Ok(())
}

/// Why a string is not the URL it should be. Each caller words the message for its own input
/// (a replicate command, a job spec, a CLI flag), so the reason is kept apart from the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not `s3://...` (or `gs://...`), or no bucket at all.
    #[error("expected {0}")]
    Shape(&'static str),
    /// The bucket breaks the naming rules; the text says which.
    #[error("{0}")]
    Bucket(String),
    /// The key or object name is longer than [`MAX_OBJECT_NAME_BYTES`].
    #[error("a GCS object name is at most 1024 bytes")]
    TooLong,
    /// A GCS object name with a line break, which GCS refuses and logs would split.
    #[error("a GCS object name cannot contain line breaks")]
    LineBreak,
}

/// `s3://BUCKET[/KEY]`: a bucket and a key, or a key prefix, or nothing after the bucket.
/// The key is kept as written (keys are not URL-encoded in these URLs).
///
/// The bucket is not held to [`validate_s3_bucket`] here: legacy us-east-1 buckets may have
/// names today's rules refuse, and where a bucket is checked against an allowlist, "not
/// allowed" is the answer users rely on. Callers that want the rule call it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct S3Url {
    /// A bucket name, not empty and without `/`.
    pub bucket: String,
    /// Everything after the first `/` past the bucket; empty when there is none.
    pub key: String,
}

impl S3Url {
    /// Parses the shape; any key (or none) is accepted.
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let rest = url.strip_prefix("s3://").ok_or(UrlError::Shape("s3://BUCKET[/KEY]"))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(UrlError::Shape("s3://BUCKET[/KEY]"));
        }
        Ok(Self { bucket: bucket.to_string(), key: key.to_string() })
    }

    /// Parses `s3://bucket/key` naming one object: the key is required. The message is the
    /// one job specs and manifests have always answered: `"URL": expected s3://bucket/key`.
    pub fn object(url: &str) -> Result<Self, String> {
        match Self::parse(url) {
            Ok(u) if !u.key.is_empty() => Ok(u),
            _ => Err(format!("{url:?}: expected s3://bucket/key")),
        }
    }
}

impl FromStr for S3Url {
    type Err = String;

    /// Like [`S3Url::parse`], with the URL quoted in the message.
    fn from_str(url: &str) -> Result<Self, String> {
        Self::parse(url).map_err(|e| format!("{url:?}: {e}"))
    }
}

impl fmt::Display for S3Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// `gs://BUCKET[/PATH]`: a bucket and an object name, or a name prefix, or nothing after the
/// bucket. What the path means (a whole name, a prefix, "the source key") is the caller's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GsUrl {
    /// A bucket that passed [`validate_gcs_bucket`].
    pub bucket: String,
    /// Everything after the first `/` past the bucket: at most 1024 bytes, no line breaks.
    pub path: String,
}

impl GsUrl {
    /// Parses and checks the bucket and the path.
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let rest = url.strip_prefix("gs://").ok_or(UrlError::Shape("gs://bucket/name"))?;
        let (bucket, path) = rest.split_once('/').unwrap_or((rest, ""));
        validate_gcs_bucket(bucket).map_err(UrlError::Bucket)?;
        check_gcs_name(path)?;
        Ok(Self { bucket: bucket.to_string(), path: path.to_string() })
    }

    /// The object `path` + `suffix` names: how a prefix destination places each key.
    pub fn join(&self, suffix: &str) -> String {
        format!("gs://{}/{}{}", self.bucket, self.path, suffix)
    }
}

/// The GCS object name rules [`GsUrl`] keeps: at most 1024 bytes, no line breaks.
pub fn check_gcs_name(name: &str) -> Result<(), UrlError> {
    if name.len() > MAX_OBJECT_NAME_BYTES {
        return Err(UrlError::TooLong);
    }
    if name.contains(['\r', '\n']) {
        return Err(UrlError::LineBreak);
    }
    Ok(())
}

impl FromStr for GsUrl {
    type Err = String;

    /// Parses `gs://bucket[/prefix/]` with the messages job specs and the API have always
    /// answered (the URL quoted, then the reason).
    fn from_str(url: &str) -> Result<Self, String> {
        Self::parse(url).map_err(|e| match e {
            UrlError::Shape(_) => format!("{url:?}: expected gs://bucket[/prefix/]"),
            UrlError::Bucket(why) => format!("{url:?}: {why}"),
            UrlError::TooLong | UrlError::LineBreak => {
                format!("{url:?}: a GCS object name prefix is at most 1024 bytes, without line breaks")
            }
        })
    }
}

impl fmt::Display for GsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gs://{}/{}", self.bucket, self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_parse_and_print_back() {
        let u: S3Url = "s3://raw-data/manifests/a.csv".parse().expect("valid");
        assert_eq!((u.bucket.as_str(), u.key.as_str()), ("raw-data", "manifests/a.csv"));
        assert_eq!(u.to_string(), "s3://raw-data/manifests/a.csv");
        assert_eq!(u.to_string().parse::<S3Url>(), Ok(u));
        assert_eq!(S3Url::parse("s3://bucket").map(|u| u.key), Ok(String::new()));
        assert_eq!(S3Url::parse("s3://Legacy_Bucket/k").map(|u| u.bucket), Ok("Legacy_Bucket".to_string()));
        assert!(matches!(S3Url::parse("gs://b/k"), Err(UrlError::Shape(_))));
        assert!(matches!(S3Url::parse("s3:///k"), Err(UrlError::Shape(_))));
    }

    #[test]
    fn an_object_url_needs_a_key() {
        assert_eq!(S3Url::object("s3://bkt/").unwrap_err(), r#""s3://bkt/": expected s3://bucket/key"#);
        assert_eq!(S3Url::object("x").unwrap_err(), r#""x": expected s3://bucket/key"#);
        assert_eq!(S3Url::object("s3://bkt/a/b").map(|u| u.key), Ok("a/b".to_string()));
    }

    #[test]
    fn gs_urls_parse_and_print_back() {
        let u: GsUrl = "gs://dst/copy/".parse().expect("valid");
        assert_eq!((u.bucket.as_str(), u.path.as_str()), ("dst", "copy/"));
        assert_eq!(u.join("a1"), "gs://dst/copy/a1");
        assert_eq!(u.to_string().parse::<GsUrl>(), Ok(u));
        assert_eq!(GsUrl::parse("gs://dst").map(|u| u.path), Ok(String::new()));
        assert_eq!(GsUrl::parse("gs://dst/a\nb"), Err(UrlError::LineBreak));
        assert_eq!(GsUrl::parse(&format!("gs://dst/{}", "x".repeat(1025))), Err(UrlError::TooLong));
        assert!("gs://BAD".parse::<GsUrl>().unwrap_err().contains("lowercase"));
        assert!("s3://x".parse::<GsUrl>().unwrap_err().contains("expected gs://bucket[/prefix/]"));
    }

    #[test]
    fn bucket_rules() {
        assert!(validate_s3_bucket("my-bucket.1").is_ok());
        for bad in ["ab", "My-Bucket", "-bucket", "bucket-", "a/b", ""] {
            assert!(validate_s3_bucket(bad).is_err(), "{bad}");
        }
        assert!(validate_gcs_bucket("gs://my_bucket").is_ok());
        assert!(validate_gcs_bucket("_x_").is_err());
    }
}
