//! Where an audit's report goes: an object in S3 or GCS, written whole.
//!
//! A report is JSON lines: one [`crate::domain::audit::Finding`] per line (`kind`, `key`,
//! `destination`, `reason`), then one `{"counts": {...}}` line. `xcr audit --report URL` writes
//! one object at the end of its walk; an audit job writes one object per page task under its
//! report prefix (see [`crate::jobs::audit_page`]).

use crate::adapters::gcs::GcsClient;
use crate::domain::audit::Finding;
use crate::domain::error::{Error, ErrorKind, Result};
use crate::domain::names::{GsUrl, S3Url, UrlError, validate_s3_bucket};
use crate::ports::{ObjectSink, UploadSpec};

/// The content type of a report: JSON lines.
pub const CONTENT_TYPE: &str = "application/x-ndjson";

/// An S3 or GCS object (or, for a job's report prefix, the start of its name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportTarget {
    /// An S3 object (or key prefix).
    S3 {
        /// The bucket.
        bucket: String,
        /// The key, or key prefix.
        key: String,
    },
    /// A GCS object (or name prefix).
    Gcs {
        /// The bucket.
        bucket: String,
        /// The object name, or name prefix.
        name: String,
    },
}

impl ReportTarget {
    /// `s3://BUCKET/KEY` or `gs://BUCKET/NAME`: one object, so the key is required.
    pub fn parse_object(url: &str) -> std::result::Result<Self, String> {
        let t = Self::parse_prefix(url)?;
        if t.key().is_empty() || t.key().ends_with('/') {
            return Err(format!("{url:?}: expected s3://BUCKET/KEY or gs://BUCKET/NAME (an object, not a prefix)"));
        }
        Ok(t)
    }

    /// `s3://BUCKET[/PREFIX]` or `gs://BUCKET[/PREFIX]`: where a job's page reports go.
    pub fn parse_prefix(url: &str) -> std::result::Result<Self, String> {
        let expected = || format!("{url:?}: expected s3://BUCKET[/KEY] or gs://BUCKET[/NAME]");
        let too_long =
            || format!("{url:?}: the key is at most 900 bytes (room for the page's name), without line breaks");
        let why = |e: UrlError| match e {
            UrlError::Shape(_) => expected(),
            UrlError::Bucket(why) => format!("{url:?}: {why}"),
            UrlError::TooLong | UrlError::LineBreak => too_long(),
        };
        let target = if url.starts_with("s3://") {
            let u = S3Url::parse(url).map_err(why)?;
            validate_s3_bucket(&u.bucket).map_err(|e| why(UrlError::Bucket(e)))?;
            Self::S3 { bucket: u.bucket, key: u.key }
        } else if url.starts_with("gs://") {
            let u = GsUrl::parse(url).map_err(why)?;
            Self::Gcs { bucket: u.bucket, name: u.path }
        } else {
            return Err(expected());
        };
        if target.key().len() > 900 || target.key().contains(['\r', '\n']) {
            return Err(too_long());
        }
        Ok(target)
    }

    /// The bucket, in either cloud.
    pub fn bucket(&self) -> &str {
        match self {
            Self::S3 { bucket, .. } | Self::Gcs { bucket, .. } => bucket,
        }
    }

    /// The key (S3) or object name (GCS); for a prefix target, the prefix.
    pub fn key(&self) -> &str {
        match self {
            Self::S3 { key, .. } => key,
            Self::Gcs { name, .. } => name,
        }
    }

    /// The object named by this prefix plus `suffix`.
    pub fn child(&self, suffix: &str) -> Self {
        match self {
            Self::S3 { bucket, key } => Self::S3 { bucket: bucket.clone(), key: format!("{key}{suffix}") },
            Self::Gcs { bucket, name } => Self::Gcs { bucket: bucket.clone(), name: format!("{name}{suffix}") },
        }
    }

    /// The target as `s3://…` or `gs://…`, for logs and the job's report field.
    pub fn url(&self) -> String {
        match self {
            Self::S3 { bucket, key } => format!("s3://{bucket}/{key}"),
            Self::Gcs { bucket, name } => format!("gs://{bucket}/{name}"),
        }
    }

    /// Writes `body` as the whole object, replacing any before it: a page task delivered twice
    /// writes the same report twice.
    pub async fn write(&self, s3: &aws_sdk_s3::Client, gcs: &GcsClient, body: Vec<u8>) -> Result<()> {
        let what = format!("write the audit report {}", self.url());
        match self {
            Self::S3 { bucket, key } => {
                s3.put_object()
                    .bucket(bucket)
                    .key(key)
                    .content_type(CONTENT_TYPE)
                    .body(body.into())
                    .send()
                    .await
                    .map_err(|e| crate::adapters::aws::classify(e, &what))?;
            }
            Self::Gcs { bucket, name } => {
                let spec = UploadSpec {
                    bucket: bucket.clone(),
                    name: name.clone(),
                    size: body.len() as u64,
                    headers: crate::domain::model::ContentHeaders {
                        content_type: Some(CONTENT_TYPE.into()),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                gcs.upload_single(&spec, body.into()).await.map_err(|e| e.context(what))?;
            }
        }
        Ok(())
    }
}

/// The report's bytes: a line per finding, then `{"counts": counts}`.
pub fn render(findings: &[Finding], counts: &serde_json::Value) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let enc = |e: serde_json::Error| Error::new(ErrorKind::Invalid, "cannot encode the audit report").with_source(e);
    for f in findings {
        serde_json::to_writer(&mut out, f).map_err(enc)?;
        out.push(b'\n');
    }
    serde_json::to_writer(&mut out, &serde_json::json!({ "counts": counts })).map_err(enc)?;
    out.push(b'\n');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_urls_parse_or_say_why() {
        assert_eq!(
            ReportTarget::parse_object("s3://reports/a/b.jsonl"),
            Ok(ReportTarget::S3 { bucket: "reports".into(), key: "a/b.jsonl".into() })
        );
        assert_eq!(
            ReportTarget::parse_object("gs://reports/r.jsonl").map(|t| t.url()),
            Ok("gs://reports/r.jsonl".to_string())
        );
        for bad in ["reports/x", "http://reports/x", "s3://reports", "s3://reports/dir/", "gs://BAD/x", "s3:///x"] {
            assert!(ReportTarget::parse_object(bad).is_err(), "{bad}");
        }
        // A job's prefix may be empty or end in '/'.
        let p = ReportTarget::parse_prefix("gs://reports").expect("bucket only");
        assert_eq!(p.child("job-1/page-000000.jsonl").url(), "gs://reports/job-1/page-000000.jsonl");
        assert!(ReportTarget::parse_prefix("gs://reports/a\nb").is_err());
    }
}
