//! Plain data shared by every layer. No SDK types: adapters convert at the edge.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// An S3 object as a task names it. `version_id` is set when the event or caller knows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
}

impl ObjectRef {
    pub fn new(bucket: impl Into<String>, key: impl Into<String>) -> Self {
        Self { bucket: bucket.into(), key: key.into(), version_id: None }
    }

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
    pub bucket: String,
    pub name: String,
    /// GCS storage class for the new object; `None` keeps the bucket's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
}

impl Destination {
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
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub content_language: Option<String>,
    pub content_disposition: Option<String>,
    pub cache_control: Option<String>,
}

/// What a read of the source tells about the object, taken from the GetObject response so that
/// no separate HEAD request is needed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SourceMeta {
    /// Size of the whole object (not of a ranged read).
    pub size: u64,
    pub etag: String,
    pub version_id: Option<String>,
    /// RFC 3339, as S3 reports it.
    pub last_modified: Option<String>,
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
    pub bucket: String,
    pub name: String,
    pub generation: String,
    pub size: u64,
    /// Base64 of the big-endian CRC32C, as GCS reports it.
    pub crc32c: Option<String>,
    pub md5: Option<String>,
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
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Different => "different",
            Self::Never => "never",
            Self::Always => "always",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "different" => Some(Self::Different),
            "never" => Some(Self::Never),
            "always" => Some(Self::Always),
            _ => None,
        }
    }
}
