//! How an S3 object's metadata becomes a GCS object's metadata.
//!
//! The five content headers map one to one. `x-amz-meta-*` becomes GCS custom metadata under the
//! same keys. Provenance is added under `xcr-source-*` keys so that anyone looking at the GCS
//! object can tell exactly which S3 version it came from; provenance wins over a user key of the
//! same name, since a copy must never lie about its origin.
//!
//! The source key is stored percent-encoded (RFC 3986, `/` kept): GCS returns custom metadata
//! as `x-goog-meta-*` HTTP headers on XML API reads, and headers carry ASCII safely, keys
//! do not have to be ASCII. An ASCII key without spaces or reserved characters reads as is.

use crate::domain::model::{Destination, ObjectRef, SourceMeta};
use crate::ports::UploadSpec;
use crate::transfer::checksum::md5_b64;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Provenance key: the S3 bucket the object was copied from.
pub const PROV_BUCKET: &str = "xcr-source-bucket";
/// Provenance key: the S3 key, percent-encoded where GCS metadata needs it.
pub const PROV_KEY: &str = "xcr-source-key";
/// Provenance key: the S3 version id copied, when the bucket is versioned.
pub const PROV_VERSION: &str = "xcr-source-version-id";
/// Provenance key: the S3 ETag copied; the audit and `xcr copy` compare it to tell a stale copy.
pub const PROV_ETAG: &str = "xcr-source-etag";
/// Provenance key: the S3 last-modified time copied (RFC 3339).
pub const PROV_LAST_MODIFIED: &str = "xcr-source-last-modified";
/// The migration job a copy was made for ([`crate::domain::model::StoredObject::job_id`]).
pub const PROV_JOB: &str = "xcr-source-job-id";

/// Builds the GCS object description for `meta` read from `obj`. The caller fills `crc32c`
/// once it is known (before the upload for single requests, from S3 for resumable ones).
pub fn upload_spec(obj: &ObjectRef, meta: &SourceMeta, dest: &Destination) -> UploadSpec {
    let mut metadata = meta.user_metadata.clone();
    // Only a job's copy names its job (the caller adds it): a source object carrying the key
    // must not pass for one.
    metadata.remove(PROV_JOB);
    metadata.insert(PROV_BUCKET.into(), obj.bucket.clone());
    metadata.insert(PROV_KEY.into(), encode_key(&obj.key));
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
        if_generation_match: None,
    }
}

/// A digest of what a metadata-only change alters: the five content headers and the user
/// metadata (not provenance, not the bytes). Base64 of an MD5 over a length-prefixed encoding,
/// so that no two different sets of fields encode alike; MD5 is a change detector here, not a
/// security boundary. Stored in the ledger to tell a metadata-only update from a duplicate.
pub fn digest(meta: &SourceMeta) -> String {
    use md5::{Digest, Md5};
    let mut h = Md5::new();
    let mut field = |name: &str, value: Option<&str>| {
        for part in [Some(name), value] {
            match part {
                Some(p) => {
                    h.update((p.len() as u64).to_be_bytes());
                    h.update(p.as_bytes());
                }
                None => h.update(u64::MAX.to_be_bytes()),
            }
        }
    };
    let c = &meta.headers;
    field("content-type", c.content_type.as_deref());
    field("content-encoding", c.content_encoding.as_deref());
    field("content-language", c.content_language.as_deref());
    field("content-disposition", c.content_disposition.as_deref());
    field("cache-control", c.cache_control.as_deref());
    for (k, v) in &meta.user_metadata {
        field(&format!("meta:{k}"), Some(v));
    }
    crate::transfer::checksum::md5_b64(&h.finalize().into())
}

/// Characters kept as they are in the provenance key: unreserved plus `/`.
const KEY_SAFE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'/');

/// The source key as stored in `xcr-source-key`.
pub fn encode_key(key: &str) -> String {
    utf8_percent_encode(key, KEY_SAFE).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::ContentHeaders;

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
        assert_eq!(spec.metadata.get(PROV_KEY).map(String::as_str), Some("a%20b/c%2Bd"));
        assert_eq!(encode_key("données/été 2026/🚀"), "donn%C3%A9es/%C3%A9t%C3%A9%202026/%F0%9F%9A%80");
        assert_eq!(encode_key("plain/key-1_2.txt"), "plain/key-1_2.txt");
        assert_eq!(spec.metadata.get(PROV_VERSION).map(String::as_str), Some("v1"));
        assert_eq!(spec.metadata.get(PROV_ETAG).map(String::as_str), Some("abc"));
    }

    #[test]
    fn the_digest_changes_with_any_header_or_user_key_and_only_with_them() {
        let base = SourceMeta {
            size: 3,
            etag: "abc".into(),
            headers: ContentHeaders { content_type: Some("text/plain".into()), ..Default::default() },
            ..Default::default()
        };
        let d = digest(&base);
        // The bytes' identity and provenance are not part of it.
        assert_eq!(digest(&SourceMeta { etag: "other".into(), size: 9, ..base.clone() }), d);
        let mut typed = base.clone();
        typed.headers.content_type = Some("text/csv".into());
        let mut cached = base.clone();
        cached.headers.cache_control = Some("no-cache".into());
        let mut tagged = base.clone();
        tagged.user_metadata.insert("owner".into(), "x".into());
        // A value moved from one field to another is a change too.
        let mut moved = base.clone();
        moved.headers.content_type = None;
        moved.headers.content_language = Some("text/plain".into());
        let all = [digest(&typed), digest(&cached), digest(&tagged), digest(&moved)];
        for (i, a) in all.iter().enumerate() {
            assert_ne!(a, &d, "change {i} not seen");
            assert!(all.iter().filter(|b| *b == a).count() == 1, "two changes digest alike");
        }
    }
}
