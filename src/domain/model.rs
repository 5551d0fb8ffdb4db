//! Plain data shared by every layer. No SDK types: adapters convert at the edge.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// An S3 object as a task names it. `version_id` is set when the event or caller knows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ObjectRef {
    /// The source bucket.
    pub bucket: String,
    /// The object key, decoded (never URL-encoded past `domain::events`).
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The version to read; `None` reads the current one. S3's `"null"` version is `None`.
    pub version_id: Option<String>,
}

impl ObjectRef {
    /// The current version of `bucket`/`key`.
    pub fn new(bucket: impl Into<String>, key: impl Into<String>) -> Self {
        Self { bucket: bucket.into(), key: key.into(), version_id: None }
    }

    /// Pins a version; an empty id or S3's `"null"` (an unversioned bucket) pins none.
    pub fn with_version(mut self, version_id: Option<String>) -> Self {
        self.version_id = version_id.filter(|v| !v.is_empty() && v != "null");
        self
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)?;
        if let Some(v) = &self.version_id {
            write!(f, "?versionId={v}")?;
        }
        Ok(())
    }
}

/// Where one copy goes in GCS.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Destination {
    /// The GCS bucket.
    pub bucket: String,
    /// The object name in GCS.
    pub name: String,
    /// GCS storage class for the new object; `None` keeps the bucket's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
}

impl Destination {
    /// A destination with the bucket's default storage class.
    pub fn new(bucket: impl Into<String>, name: impl Into<String>) -> Self {
        Self { bucket: bucket.into(), name: name.into(), storage_class: None }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gs://{}/{}", self.bucket, self.name)
    }
}

/// HTTP metadata that travels with the bytes, in the vocabulary both clouds share.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ContentHeaders {
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Content-Encoding`.
    pub content_encoding: Option<String>,
    /// `Content-Language`.
    pub content_language: Option<String>,
    /// `Content-Disposition`.
    pub content_disposition: Option<String>,
    /// `Cache-Control`.
    pub cache_control: Option<String>,
}

/// What a read of the source tells about the object, taken from the GetObject response so that
/// no separate HEAD request is needed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SourceMeta {
    /// Size of the whole object (not of a ranged read).
    pub size: u64,
    /// The ETag, without quotes: with the version, what tells one state of the key from another.
    pub etag: String,
    /// The version read, when the bucket is versioned.
    pub version_id: Option<String>,
    /// RFC 3339, as S3 reports it.
    pub last_modified: Option<String>,
    /// The HTTP headers GCS is given for the new object.
    pub headers: ContentHeaders,
    /// `x-amz-meta-*` without the prefix.
    pub user_metadata: BTreeMap<String, String>,
    /// CRC32C of the whole object (base64, big-endian) when S3 stores a full-object one.
    pub crc32c: Option<String>,
    /// MD5 of the whole object when the ETag is one (single-part upload, no SSE-KMS/SSE-C).
    pub md5: Option<[u8; 16]>,
}

/// The object as GCS stored it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredObject {
    /// The GCS bucket.
    pub bucket: String,
    /// The object name.
    pub name: String,
    /// The generation GCS gave this write: what the ledger records and the next write is fenced with.
    pub generation: String,
    /// Bytes stored.
    pub size: u64,
    /// Base64 of the big-endian CRC32C, as GCS reports it.
    pub crc32c: Option<String>,
    /// Base64 MD5 as GCS reports it; absent for composite objects.
    pub md5: Option<String>,
    /// The migration job whose copy wrote this object (its `xcr-source-job-id` metadata), when
    /// a job's copy did: a later delivery of that job's task that finds the object in place but
    /// no ledger record of it (the record's write failed after the upload) still counts it as
    /// the job's copy, not as a skip.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
}

/// What to do when the destination already holds the object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Overwrite {
    /// Skip when the destination holds the same size and checksum (the ledger's record of this
    /// version, or GCS's own size and MD5/CRC32C): moves no bytes for what is already there.
    #[default]
    Different,
    /// Skip whenever the destination exists.
    Never,
    /// Copy even if an identical object is there.
    Always,
}

impl Overwrite {
    /// The name used in replicate commands, job specs and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Different => "different",
            Self::Never => "never",
            Self::Always => "always",
        }
    }

    /// The inverse of [`Overwrite::as_str`]; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "different" => Some(Self::Different),
            "never" => Some(Self::Never),
            "always" => Some(Self::Always),
            _ => None,
        }
    }
}
