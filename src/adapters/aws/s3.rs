//! S3 as an [`ObjectSource`]: one GetObject per read, metadata from the same response.

use super::classify;
use crate::domain::error::{Error, ErrorKind, Result};
use crate::domain::model::{ObjectRef, SourceMeta};
use crate::ports::{Listed, ObjectLister, ObjectSource, ReadPin, SourceRead};
use crate::transfer::checksum::md5_from_etag;
use aws_sdk_s3::types::{ChecksumMode, ChecksumType, ServerSideEncryption};
use aws_smithy_types::date_time::Format;
use futures::stream;
/// The five content headers of a `GetObject` or `HeadObject` answer (the SDK gives the two
/// operations distinct output types with the same accessors).
macro_rules! content_headers {
    ($out:expr) => {
        crate::domain::model::ContentHeaders {
            content_type: $out.content_type().map(str::to_string),
            content_encoding: $out.content_encoding().map(str::to_string),
            content_language: $out.content_language().map(str::to_string),
            content_disposition: $out.content_disposition().map(str::to_string),
            cache_control: $out.cache_control().map(str::to_string),
        }
    };
}
pub(crate) use content_headers;

/// Whether the object is encrypted with a key S3 does not own (SSE-KMS, DSSE-KMS, SSE-C): then
/// its ETag is not the MD5 of its bytes.
pub(crate) fn encrypted_with_key(sse: Option<&ServerSideEncryption>, sse_customer_algorithm: Option<&str>) -> bool {
    matches!(sse, Some(ServerSideEncryption::AwsKms | ServerSideEncryption::AwsKmsDsse))
        || sse_customer_algorithm.is_some()
}

/// The stored CRC32C when it describes the whole object: S3 says FULL_OBJECT, or says nothing
/// and the object was a single-part upload (ETag without `-N`). A composite (multipart)
/// checksum is a checksum of part checksums and cannot be compared with GCS's.
pub(crate) fn full_object_crc32c(crc: Option<&str>, kind: Option<&ChecksumType>, etag: &str) -> Option<String> {
    let multipart = etag.contains('-');
    crc.filter(|c| !c.contains('-'))
        .filter(|_| match kind {
            Some(ChecksumType::FullObject) => true,
            Some(_) => false,
            None => !multipart,
        })
        .map(str::to_string)
}

#[derive(Debug, Clone)]
/// S3 as an [`crate::ports::ObjectSource`]: one GetObject per read, the metadata taken from
/// the same answer so that bytes and metadata always describe one version.
pub struct S3Source {
    client: aws_sdk_s3::Client,
}

impl S3Source {
    /// Path-style addressing whenever an endpoint override is set: emulators and LocalStack
    /// serve buckets under the path, not as DNS names.
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        let path_style = sdk.endpoint_url().is_some();
        let conf = aws_sdk_s3::config::Builder::from(sdk).force_path_style(path_style).build();
        Self { client: aws_sdk_s3::Client::from_conf(conf) }
    }

    /// The SDK client with the addressing chosen in [`S3Source::new`], for the listings and
    /// HEADs that the audit and `xcr copy` make outside the port.
    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }
}

impl ObjectSource for S3Source {
    async fn exists(&self, obj: &ObjectRef) -> Result<bool> {
        let mut req = self.client.head_object().bucket(&obj.bucket).key(&obj.key);
        if let Some(v) = &obj.version_id {
            req = req.version_id(v);
        }
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) => {
                let e = classify(e, &format!("head {obj}"));
                if e.kind() == ErrorKind::NotFound { Ok(false) } else { Err(e) }
            }
        }
    }

    async fn read(&self, obj: &ObjectRef, pin: &ReadPin, offset: u64) -> Result<SourceRead> {
        let mut req = self.client.get_object().bucket(&obj.bucket).key(&obj.key);
        if let Some(v) = pin.version_id.as_ref().or(obj.version_id.as_ref()) {
            req = req.version_id(v);
        } else if let Some(etag) = &pin.etag {
            req = req.if_match(format!("\"{etag}\""));
        }
        if offset > 0 {
            req = req.range(format!("bytes={offset}-"));
        } else {
            // Ask for the stored checksum; S3 returns one only for whole-object reads.
            req = req.checksum_mode(ChecksumMode::Enabled);
        }
        let out = req.send().await.map_err(|e| classify(e, &format!("read {obj}")))?;

        let size = match out.content_range() {
            // "bytes 100-199/200": the total is after the slash.
            Some(r) => r.rsplit('/').next().and_then(|t| t.parse::<u64>().ok()),
            None => out.content_length().and_then(|l| u64::try_from(l).ok()),
        }
        .ok_or_else(|| Error::new(ErrorKind::Transient, format!("read {obj}: S3 sent no usable length")))?;
        let etag = out.e_tag().unwrap_or("").trim_matches('"').to_string();
        let encrypted_with_key = encrypted_with_key(out.server_side_encryption(), out.sse_customer_algorithm());
        let full_object_crc = full_object_crc32c(out.checksum_crc32_c(), out.checksum_type(), &etag);
        let meta = SourceMeta {
            size,
            md5: if encrypted_with_key { None } else { md5_from_etag(&etag) },
            etag,
            version_id: out.version_id().filter(|v| *v != "null").map(str::to_string),
            last_modified: out.last_modified().and_then(|t| t.fmt(Format::DateTime).ok()),
            headers: content_headers!(out),
            user_metadata: out
                .metadata()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
            crc32c: if offset == 0 { full_object_crc } else { None },
        };
        let what = obj.to_string();
        let body = stream::unfold(Some(out.body), move |state| {
            let what = what.clone();
            async move {
                let mut body = state?;
                match body.next().await {
                    Some(Ok(bytes)) => Some((Ok(bytes), Some(body))),
                    Some(Err(e)) => Some((
                        Err(Error::new(ErrorKind::Transient, format!("read {what}: body broke")).with_source(e)),
                        None,
                    )),
                    None => None,
                }
            }
        });
        Ok(SourceRead { meta, body: Box::pin(body) })
    }
}

/// The objects of one ListObjectsV2 answer.
fn listed(out: &aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output) -> Vec<Listed> {
    out.contents()
        .iter()
        .filter_map(|o| {
            Some(Listed { key: o.key()?.to_string(), size: o.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0) })
        })
        .collect()
}

impl ObjectLister for S3Source {
    async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        token: Option<&str>,
        max_keys: i32,
    ) -> Result<(Vec<Listed>, Option<String>)> {
        let mut req = self.client.list_objects_v2().bucket(bucket).max_keys(max_keys.clamp(1, 1000));
        if !prefix.is_empty() {
            req = req.prefix(prefix);
        }
        if let Some(t) = token {
            req = req.continuation_token(t);
        }
        let out = req.send().await.map_err(|e| classify(e, &format!("list s3://{bucket}/{prefix}")))?;
        let next =
            if out.is_truncated() == Some(true) { out.next_continuation_token().map(str::to_string) } else { None };
        Ok((listed(&out), next))
    }

    async fn list_after(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        max_keys: i32,
    ) -> Result<(Vec<Listed>, bool)> {
        let mut req = self.client.list_objects_v2().bucket(bucket).max_keys(max_keys.clamp(1, 1000));
        if !prefix.is_empty() {
            req = req.prefix(prefix);
        }
        if let Some(k) = start_after {
            req = req.start_after(k);
        }
        let out = req.send().await.map_err(|e| classify(e, &format!("list s3://{bucket}/{prefix}")))?;
        Ok((listed(&out), out.is_truncated() == Some(true)))
    }

    async fn fetch_range(&self, bucket: &str, key: &str, offset: u64, len: u64) -> Result<(bytes::Bytes, u64)> {
        let what = format!("read s3://{bucket}/{key} from byte {offset}");
        let range = format!("bytes={offset}-{}", offset + len.max(1) - 1);
        let out = match self.client.get_object().bucket(bucket).key(key).range(range).send().await {
            Ok(out) => out,
            // Past the end (or an empty object): S3 answers 416 InvalidRange.
            Err(e)
                if e.as_service_error().and_then(aws_sdk_s3::error::ProvideErrorMetadata::code)
                    == Some("InvalidRange") =>
            {
                return Ok((bytes::Bytes::new(), offset));
            }
            Err(e) => return Err(classify(e, &what)),
        };
        // `Content-Range: bytes FIRST-LAST/TOTAL`; without one the whole object came back.
        let total = out
            .content_range()
            .and_then(|r| r.rsplit('/').next())
            .and_then(|t| t.parse::<u64>().ok())
            .or_else(|| out.content_length().and_then(|l| u64::try_from(l).ok()))
            .unwrap_or(0);
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| Error::new(ErrorKind::Transient, format!("{what}: body broke")).with_source(e))?
            .into_bytes();
        Ok((body, total))
    }

    async fn fetch_text(&self, bucket: &str, key: &str, max_bytes: u64) -> Result<String> {
        let what = format!("read s3://{bucket}/{key}");
        let out = self.client.get_object().bucket(bucket).key(key).send().await.map_err(|e| classify(e, &what))?;
        if out.content_length().and_then(|l| u64::try_from(l).ok()).unwrap_or(0) > max_bytes {
            return Err(Error::new(ErrorKind::Invalid, format!("{what}: larger than {max_bytes} bytes")));
        }
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| Error::new(ErrorKind::Transient, format!("{what}: body broke")).with_source(e))?
            .into_bytes();
        String::from_utf8(bytes.to_vec()).map_err(|_| Error::new(ErrorKind::Invalid, format!("{what}: not UTF-8 text")))
    }
}
