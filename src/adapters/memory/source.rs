//! S3 in memory: [`ObjectSource`] and [`ObjectLister`] over buckets of versioned keys.
//!
//! What it keeps of S3's contract, as [`crate::adapters::aws::s3::S3Source`] relies on it:
//! * a versioned bucket keeps every version and a delete adds a delete marker; an unversioned
//!   one keeps one object per key (version id `null`, reported as none);
//! * a read pinned to a version returns exactly that version or fails `not_found`
//!   (`NoSuchVersion`); a read pinned to an ETag (`If-Match`) of another object fails
//!   `source_changed` (412); a range starting past the end is `invalid` (416);
//! * the ETag of a single-part upload is the MD5 of its bytes, a stored CRC32C comes back only
//!   when the uploader sent one, and only on whole-object reads;
//! * `Last-Modified` has whole seconds;
//! * listings are in UTF-8 byte order of the keys, at most 1,000 per page.

use super::lock;
use crate::domain::error::{Error, ErrorKind, Result};
use crate::domain::model::{ContentHeaders, ObjectRef, SourceMeta};
use crate::ports::{Listed, ObjectLister, ObjectSource, ReadPin, SourceRead};
use crate::transfer::checksum::crc32c_b64;
use bytes::Bytes;
use md5::{Digest, Md5};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// Frames a read is cut into, like a transport's: the transfer engine must not assume one.
const FRAME: usize = 64 * 1024;

/// An object to store with [`MemorySource::put_with`].
#[derive(Debug, Clone, Default)]
pub struct Put {
    /// The object's bytes.
    pub data: Bytes,
    /// Its content headers.
    pub headers: ContentHeaders,
    /// `x-amz-meta-*` without the prefix.
    pub user_metadata: BTreeMap<String, String>,
    /// RFC 3339 with whole seconds; now when not given.
    pub last_modified: Option<String>,
    /// Store a full-object CRC32C, as S3 does when the uploader sends one.
    pub with_crc32c: bool,
}

#[derive(Debug, Clone)]
struct Version {
    /// `None` in an unversioned bucket (S3's `null` version).
    id: Option<String>,
    /// `None`: a delete marker.
    object: Option<Stored>,
}

#[derive(Debug, Clone)]
struct Stored {
    put: Put,
    etag: String,
    last_modified: String,
}

#[derive(Debug, Default)]
struct Bucket {
    versioned: bool,
    /// Every key's versions, oldest first.
    keys: BTreeMap<String, Vec<Version>>,
}

impl Bucket {
    fn current(&self, key: &str) -> Option<&Version> {
        self.keys.get(key).and_then(|v| v.last()).filter(|v| v.object.is_some())
    }
}

/// S3 in memory (see the module doc). A clone is another client of the same S3.
#[derive(Debug, Clone, Default)]
pub struct MemorySource {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    buckets: Mutex<HashMap<String, Bucket>>,
    versions: std::sync::atomic::AtomicU64,
}

fn now_seconds() -> String {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
    aws_smithy_types::DateTime::from_secs(i64::try_from(now).unwrap_or(i64::MAX))
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_default()
}

fn no_bucket(bucket: &str, what: &str) -> Error {
    Error::new(ErrorKind::NotFound, format!("{what}: 404 NoSuchBucket: s3://{bucket} does not exist"))
}

impl MemorySource {
    /// An S3 without buckets.
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates a bucket (versioned or not); an existing one keeps its objects.
    pub fn create_bucket(&self, bucket: &str, versioned: bool) {
        lock(&self.inner.buckets).entry(bucket.to_string()).or_default().versioned |= versioned;
    }

    /// Stores `data` under `key` with no metadata; returns the new version id (none when the
    /// bucket is unversioned) and the ETag.
    pub fn put(&self, bucket: &str, key: &str, data: impl Into<Bytes>) -> Result<(Option<String>, String)> {
        self.put_with(bucket, key, Put { data: data.into(), ..Put::default() })
    }

    /// Stores an object: a new version in a versioned bucket, a replacement otherwise.
    pub fn put_with(&self, bucket: &str, key: &str, put: Put) -> Result<(Option<String>, String)> {
        let mut buckets = lock(&self.inner.buckets);
        let b = buckets.get_mut(bucket).ok_or_else(|| no_bucket(bucket, "put"))?;
        let etag = format!("{:x}", Md5::digest(&put.data));
        let last_modified = put.last_modified.clone().unwrap_or_else(now_seconds);
        let id = self.next_version(b.versioned);
        let version = Version { id: id.clone(), object: Some(Stored { put, etag: etag.clone(), last_modified }) };
        let versions = b.keys.entry(key.to_string()).or_default();
        if !b.versioned {
            versions.clear();
        }
        versions.push(version);
        Ok((id, etag))
    }

    /// Deletes the current object: a delete marker in a versioned bucket (returned: its version
    /// id), the object itself otherwise. A key that has none is fine, as in S3.
    pub fn delete(&self, bucket: &str, key: &str) -> Result<Option<String>> {
        let mut buckets = lock(&self.inner.buckets);
        let b = buckets.get_mut(bucket).ok_or_else(|| no_bucket(bucket, "delete"))?;
        if !b.versioned {
            b.keys.remove(key);
            return Ok(None);
        }
        let id = self.next_version(true);
        b.keys.entry(key.to_string()).or_default().push(Version { id: id.clone(), object: None });
        Ok(id)
    }

    /// Deletes one version for good (S3's `DeleteObject` with a version id): the previous one
    /// becomes current again when it was the current one.
    pub fn delete_version(&self, bucket: &str, key: &str, version_id: &str) -> Result<()> {
        let mut buckets = lock(&self.inner.buckets);
        let b = buckets.get_mut(bucket).ok_or_else(|| no_bucket(bucket, "delete"))?;
        if let Some(versions) = b.keys.get_mut(key) {
            versions.retain(|v| v.id.as_deref() != Some(version_id));
            if versions.is_empty() {
                b.keys.remove(key);
            }
        }
        Ok(())
    }

    fn next_version(&self, versioned: bool) -> Option<String> {
        versioned.then(|| {
            let n = self.inner.versions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // Opaque like S3's, and sorting says nothing about age (S3's do not either).
            format!("v{:08x}.{n}", fastrand::u32(..))
        })
    }

    /// The version a read of `obj` under `pin` returns, or the error S3 answers.
    fn resolve(&self, obj: &ObjectRef, pin: &ReadPin) -> Result<(Option<String>, Stored)> {
        let buckets = lock(&self.inner.buckets);
        let what = format!("read {obj}");
        let b = buckets.get(&obj.bucket).ok_or_else(|| no_bucket(&obj.bucket, &what))?;
        let version = match pin.version_id.as_ref().or(obj.version_id.as_ref()) {
            Some(v) => {
                let found = b.keys.get(&obj.key).and_then(|vs| vs.iter().find(|x| x.id.as_deref() == Some(v)));
                match found {
                    Some(x) if x.object.is_some() => x,
                    // GET of a delete marker's version: 405 in S3, not an object either way.
                    Some(_) => return Err(Error::new(ErrorKind::Invalid, format!("{what}: 405 MethodNotAllowed"))),
                    None => return Err(Error::new(ErrorKind::NotFound, format!("{what}: 404 NoSuchVersion"))),
                }
            }
            None => {
                b.current(&obj.key).ok_or_else(|| Error::new(ErrorKind::NotFound, format!("{what}: 404 NoSuchKey")))?
            }
        };
        let stored = version.object.clone().ok_or_else(|| Error::new(ErrorKind::NotFound, what.clone()))?;
        // S3 evaluates If-Match only when no version is named (the adapter sends one or the other).
        if pin.version_id.is_none()
            && obj.version_id.is_none()
            && let Some(etag) = &pin.etag
            && *etag != stored.etag
        {
            return Err(Error::new(ErrorKind::SourceChanged, format!("{what}: 412 PreconditionFailed")));
        }
        Ok((version.id.clone(), stored))
    }

    fn object(&self, bucket: &str, key: &str, what: &str) -> Result<Stored> {
        let buckets = lock(&self.inner.buckets);
        let b = buckets.get(bucket).ok_or_else(|| no_bucket(bucket, what))?;
        b.current(key)
            .and_then(|v| v.object.clone())
            .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("{what}: 404 NoSuchKey")))
    }

    fn listing(&self, bucket: &str, prefix: &str, after: Option<&str>, max_keys: i32) -> Result<(Vec<Listed>, bool)> {
        let buckets = lock(&self.inner.buckets);
        let b = buckets.get(bucket).ok_or_else(|| no_bucket(bucket, &format!("list s3://{bucket}/{prefix}")))?;
        let max = usize::try_from(max_keys.clamp(1, 1000)).unwrap_or(1000);
        let mut current =
            b.keys.iter().filter(|(k, _)| k.starts_with(prefix) && after.is_none_or(|a| k.as_str() > a)).filter_map(
                |(k, vs)| {
                    let o = vs.last()?.object.as_ref()?;
                    Some(Listed { key: k.clone(), size: o.put.data.len() as u64 })
                },
            );
        let page: Vec<Listed> = current.by_ref().take(max).collect();
        let more = current.next().is_some();
        Ok((page, more))
    }
}

impl ObjectSource for MemorySource {
    async fn read(&self, obj: &ObjectRef, pin: &ReadPin, offset: u64) -> Result<SourceRead> {
        let (version_id, stored) = self.resolve(obj, pin)?;
        let size = stored.put.data.len() as u64;
        if offset > 0 && offset >= size {
            return Err(Error::new(ErrorKind::Invalid, format!("read {obj}: 416 InvalidRange")));
        }
        let crc32c = (offset == 0 && stored.put.with_crc32c).then(|| crc32c_b64(crc32c::crc32c(&stored.put.data)));
        let meta = SourceMeta {
            size,
            etag: stored.etag.clone(),
            version_id,
            last_modified: Some(stored.last_modified.clone()),
            headers: stored.put.headers.clone(),
            user_metadata: stored.put.user_metadata.clone(),
            crc32c,
            md5: crate::transfer::checksum::md5_from_etag(&stored.etag),
        };
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(stored.put.data.len());
        let rest = stored.put.data.slice(start..);
        let frames: Vec<Result<Bytes>> =
            (0..rest.len()).step_by(FRAME).map(|i| Ok(rest.slice(i..(i + FRAME).min(rest.len())))).collect();
        Ok(SourceRead { meta, body: Box::pin(futures::stream::iter(frames)) })
    }

    async fn exists(&self, obj: &ObjectRef) -> Result<bool> {
        match self.resolve(obj, &ReadPin::default()) {
            Ok(_) => Ok(true),
            // As the adapter reads a HEAD: any 404 (no key, no version, no bucket) is "no".
            // A delete marker's version stays an error: S3 answers its HEAD with 405.
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl ObjectLister for MemorySource {
    async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        token: Option<&str>,
        max_keys: i32,
    ) -> Result<(Vec<Listed>, Option<String>)> {
        // The token is opaque to callers; here it is the last key of the previous page.
        let (page, more) = self.listing(bucket, prefix, token, max_keys)?;
        let next = if more { page.last().map(|l| l.key.clone()) } else { None };
        Ok((page, next))
    }

    async fn list_after(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        max_keys: i32,
    ) -> Result<(Vec<Listed>, bool)> {
        self.listing(bucket, prefix, start_after, max_keys)
    }

    async fn fetch_text(&self, bucket: &str, key: &str, max_bytes: u64) -> Result<String> {
        let what = format!("read s3://{bucket}/{key}");
        let o = self.object(bucket, key, &what)?;
        if o.put.data.len() as u64 > max_bytes {
            return Err(Error::new(ErrorKind::Invalid, format!("{what}: larger than {max_bytes} bytes")));
        }
        String::from_utf8(o.put.data.to_vec())
            .map_err(|_| Error::new(ErrorKind::Invalid, format!("{what}: not UTF-8 text")))
    }

    async fn fetch_range(&self, bucket: &str, key: &str, offset: u64, len: u64) -> Result<(Bytes, u64)> {
        let what = format!("read s3://{bucket}/{key} from byte {offset}");
        let o = self.object(bucket, key, &what)?;
        let total = o.put.data.len() as u64;
        if offset >= total {
            // S3 answers 416 InvalidRange; the adapter reads it as nothing left.
            return Ok((Bytes::new(), offset));
        }
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let end = usize::try_from(offset.saturating_add(len.max(1)).min(total)).unwrap_or(usize::MAX);
        Ok((o.put.data.slice(start..end), total))
    }
}
