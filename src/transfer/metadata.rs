//! How an S3 object's metadata becomes a GCS object's metadata.
//!
//! The five content headers map one to one. `x-amz-meta-*` becomes GCS custom metadata under the
//! same keys. Provenance is added under `xcr-source-*` keys so that anyone looking at the GCS
//! object can tell exactly which S3 version it came from; provenance wins over a user key of the
//! same name, since a copy must never lie about its origin.

use crate::model::{Destination, ObjectRef, SourceMeta};
use crate::ports::UploadSpec;
use crate::transfer::checksum::md5_b64;

pub const PROV_BUCKET: &str = "xcr-source-bucket";
pub const PROV_KEY: &str = "xcr-source-key";
pub const PROV_VERSION: &str = "xcr-source-version-id";
pub const PROV_ETAG: &str = "xcr-source-etag";
pub const PROV_LAST_MODIFIED: &str = "xcr-source-last-modified";

/// Builds the GCS object description for `meta` read from `obj`. The caller fills `crc32c`
/// once it is known (before the upload for single requests, from S3 for resumable ones).
pub fn upload_spec(obj: &ObjectRef, meta: &SourceMeta, dest: &Destination) -> UploadSpec {
    let mut metadata = meta.user_metadata.clone();
    metadata.insert(PROV_BUCKET.into(), obj.bucket.clone());
    metadata.insert(PROV_KEY.into(), obj.key.clone());
    if let Some(v) = &meta.version_id {
        metadata.insert(PROV_VERSION.into(), v.clone());
    }
    if !meta.etag.is_empty() {
        metadata.insert(PROV_ETAG.into(), meta.etag.clone());
    }
    if let Some(t) = &meta.last_modified {
        metadata.insert(PROV_LAST_MODIFIED.into(), t.clone());
    }
    UploadSpec {
        bucket: dest.bucket.clone(),
        name: dest.name.clone(),
        size: meta.size,
        headers: meta.headers.clone(),
        metadata,
        storage_class: dest.storage_class.clone(),
        crc32c: meta.crc32c.clone(),
        md5: meta.md5.as_ref().map(md5_b64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ContentHeaders;

    #[test]
    fn provenance_is_added_and_wins_over_user_keys() {
        let obj = ObjectRef::new("src", "a b/c+d");
        let mut meta = SourceMeta {
            size: 3,
            etag: "abc".into(),
            version_id: Some("v1".into()),
            last_modified: Some("2026-11-23T00:00:00Z".into()),
            headers: ContentHeaders { content_type: Some("text/plain".into()), ..Default::default() },
            ..Default::default()
        };
        meta.user_metadata.insert("owner".into(), "data-team".into());
        meta.user_metadata.insert(PROV_KEY.into(), "forged".into());
        let spec = upload_spec(&obj, &meta, &Destination::new("dst", "x/y"));
        assert_eq!(spec.name, "x/y");
        assert_eq!(spec.headers.content_type.as_deref(), Some("text/plain"));
        assert_eq!(spec.metadata.get("owner").map(String::as_str), Some("data-team"));
        assert_eq!(spec.metadata.get(PROV_KEY).map(String::as_str), Some("a b/c+d"));
        assert_eq!(spec.metadata.get(PROV_VERSION).map(String::as_str), Some("v1"));
        assert_eq!(spec.metadata.get(PROV_ETAG).map(String::as_str), Some("abc"));
    }
}
