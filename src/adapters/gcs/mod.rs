//! GCS adapter: the JSON API's upload protocols over reqwest.
//!
//! * single request: `uploadType=multipart` (metadata and bytes in one body);
//! * resumable: `uploadType=resumable` session, chunks with `Content-Range`, status queries
//!   with `Content-Range: bytes */TOTAL`.
//!
//! Checksums go where GCS enforces them: `crc32c` / `md5Hash` in the object resource (checked
//! at finalization, also by the emulator) and `X-Goog-Hash` on the last chunk (checked by GCS).
//! This module only speaks the protocol; retries, resumption and verification are the transfer
//! engine's.

pub mod auth;

use crate::domain::error::{Error, ErrorKind, Result, kind_for_status};
use crate::domain::model::StoredObject;
use crate::ports::{ObjectSink, UploadProgress, UploadSpec};
use auth::Auth;
use bytes::{BufMut, Bytes, BytesMut};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderMap, LOCATION, RANGE};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::time::Duration;

/// Characters left as they are in a path segment: RFC 3986 unreserved.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

const PUBLIC_ENDPOINT: &str = "https://storage.googleapis.com";

/// Fields asked back from every call that returns an object: what verification needs.
/// `metadata` for the provenance key naming the job that wrote the object (small: GCS caps
/// custom metadata at 8 KiB).
const OBJECT_FIELDS: &str = "bucket,name,generation,size,crc32c,md5Hash,metadata";

#[derive(Debug, Clone)]
/// GCS as an [`crate::ports::ObjectSink`] over the JSON API (reqwest): multipart and
/// resumable uploads, deletes and metadata reads, every write with `ifGenerationMatch`.
pub struct GcsClient {
    http: reqwest::Client,
    base: String,
    auth: Auth,
    /// Emulators answer with session URIs on their own address; when a proxy or another name
    /// stands in front of them, the URI is moved back onto `base`.
    rewrite_sessions: bool,
}

impl GcsClient {
    /// `emulator` is the base URL of a GCS emulator; `None` means the real service.
    pub fn new(emulator: Option<&str>, auth: Auth, request_timeout: Duration) -> Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(request_timeout)
            .tcp_nodelay(true)
            // A 308 from GCS means "resume incomplete", never "follow me".
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("xcr/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::new(ErrorKind::Config, "cannot build the HTTP client").with_source(e))?;
        Ok(Self {
            http,
            base: emulator.unwrap_or(PUBLIC_ENDPOINT).trim_end_matches('/').to_string(),
            auth,
            rewrite_sessions: emulator.is_some(),
        })
    }

    /// The base URL requests go to: the real GCS or an emulator.
    pub fn endpoint(&self) -> &str {
        &self.base
    }

    fn upload_url(&self, spec: &UploadSpec, upload_type: &str) -> String {
        let mut url = format!(
            "{}/upload/storage/v1/b/{}/o?uploadType={upload_type}&fields={OBJECT_FIELDS}",
            self.base,
            utf8_percent_encode(&spec.bucket, SEGMENT)
        );
        if let Some(g) = spec.if_generation_match {
            url.push_str(&format!("&ifGenerationMatch={g}"));
        }
        url
    }

    fn object_url(&self, bucket: &str, name: &str) -> String {
        format!(
            "{}/storage/v1/b/{}/o/{}",
            self.base,
            utf8_percent_encode(bucket, SEGMENT),
            utf8_percent_encode(name, SEGMENT)
        )
    }

    async fn send(&self, req: reqwest::RequestBuilder, what: &str) -> Result<reqwest::Response> {
        let headers = self.auth.headers().await?;
        req.headers(headers).send().await.map_err(|e| transport_error(e, what))
    }

    /// Checks that the bucket answers, for health checks and start-up diagnostics.
    pub async fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        let url = format!("{}/storage/v1/b/{}?fields=name", self.base, utf8_percent_encode(bucket, SEGMENT));
        let resp = self.send(self.http.get(url), "read bucket").await?;
        if resp.status().as_u16() == 404 {
            return Ok(false);
        }
        check(resp, "read bucket").await.map(|_| true)
    }

    /// Lists at most one object of `bucket`: a health probe that needs only `storage.objects.list`,
    /// which the replicator's role has (reading bucket metadata needs more than it is granted).
    pub async fn probe(&self, bucket: &str) -> Result<()> {
        let url =
            format!("{}/storage/v1/b/{}/o?maxResults=1&fields=kind", self.base, utf8_percent_encode(bucket, SEGMENT));
        let resp = self.send(self.http.get(url), "list the destination bucket").await?;
        check(resp, "list the destination bucket").await.map(|_| ())
    }

    /// One page of the objects whose names start with `prefix`, in the order GCS lists them
    /// (lexicographic by the UTF-8 bytes of the name), after `page_token`; the next token, if
    /// any. For the drift audit ([`crate::domain::audit`]), which merge-walks it against S3's listing.
    pub async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        page_token: Option<&str>,
        max_results: u32,
    ) -> Result<(Vec<crate::domain::audit::DestEntry>, Option<String>)> {
        self.list_page_from(bucket, prefix, None, page_token, max_results).await
    }

    /// [`Self::list_page`] from `start_offset` on (objects.list's `startOffset`: names at or
    /// after it). A lenient emulator may ignore it: callers still skip names before it.
    pub async fn list_page_from(
        &self,
        bucket: &str,
        prefix: &str,
        start_offset: Option<&str>,
        page_token: Option<&str>,
        max_results: u32,
    ) -> Result<(Vec<crate::domain::audit::DestEntry>, Option<String>)> {
        let mut url = format!(
            "{}/storage/v1/b/{}/o?maxResults={}&fields=items(name,generation,size,crc32c,md5Hash,contentType,contentEncoding,contentLanguage,contentDisposition,cacheControl,metadata),nextPageToken",
            self.base,
            utf8_percent_encode(bucket, SEGMENT),
            max_results.clamp(1, 1000)
        );
        if !prefix.is_empty() {
            url.push_str(&format!("&prefix={}", utf8_percent_encode(prefix, SEGMENT)));
        }
        if let Some(o) = start_offset {
            url.push_str(&format!("&startOffset={}", utf8_percent_encode(o, SEGMENT)));
        }
        if let Some(t) = page_token {
            url.push_str(&format!("&pageToken={}", utf8_percent_encode(t, SEGMENT)));
        }
        let what = format!("list gs://{bucket}/{prefix}");
        let resp = self.send(self.http.get(url), &what).await?;
        if resp.status().as_u16() == 404 {
            return Err(Error::new(ErrorKind::Config, format!("{what}: bucket gs://{bucket} does not exist")));
        }
        let resp = check(resp, &what).await?;
        let text = resp.text().await.map_err(|e| transport_error(e, &what))?;
        read_list(&text).map_err(|e| e.context(what))
    }

    /// A delete of exactly `generation`, or of the live object fenced on `if_generation_match`.
    fn delete_url(
        &self,
        bucket: &str,
        name: &str,
        generation: Option<&str>,
        if_generation_match: Option<u64>,
    ) -> String {
        let mut url = self.object_url(bucket, name);
        if let Some(g) = generation {
            url.push_str("?generation=");
            url.push_str(g);
        } else if let Some(g) = if_generation_match {
            url.push_str(&format!("?ifGenerationMatch={g}"));
        }
        url
    }

    fn session_url(&self, session: &str) -> String {
        if !self.rewrite_sessions {
            return session.to_string();
        }
        // Keep path and query, take scheme and authority from the configured endpoint.
        match url::Url::parse(session) {
            Ok(u) => {
                let mut s = self.base.clone();
                s.push_str(u.path());
                if let Some(q) = u.query() {
                    s.push('?');
                    s.push_str(q);
                }
                s
            }
            Err(_) => session.to_string(),
        }
    }
}

/// The object resource sent with a new object.
fn resource(spec: &UploadSpec) -> Value {
    let mut r = Map::new();
    r.insert("name".into(), json!(spec.name));
    let h = &spec.headers;
    for (field, value) in [
        ("contentType", &h.content_type),
        ("contentEncoding", &h.content_encoding),
        ("contentLanguage", &h.content_language),
        ("contentDisposition", &h.content_disposition),
        ("cacheControl", &h.cache_control),
        ("storageClass", &spec.storage_class),
        ("crc32c", &spec.crc32c),
        ("md5Hash", &spec.md5),
    ] {
        if let Some(v) = value {
            r.insert(field.into(), json!(v));
        }
    }
    if !spec.metadata.is_empty() {
        r.insert("metadata".into(), json!(spec.metadata));
    }
    Value::Object(r)
}

fn content_type(spec: &UploadSpec) -> &str {
    spec.headers.content_type.as_deref().unwrap_or("application/octet-stream")
}

impl ObjectSink for GcsClient {
    async fn upload_single(&self, spec: &UploadSpec, data: Bytes) -> Result<StoredObject> {
        let meta = serde_json::to_vec(&resource(spec))
            .map_err(|e| Error::new(ErrorKind::Invalid, "cannot encode object metadata").with_source(e))?;
        // A boundary that cannot occur in the data: 128 random bits, checked anyway.
        let mut boundary = format!("xcr-{:032x}", fastrand::u128(..));
        while data.windows(boundary.len()).any(|w| w == boundary.as_bytes()) {
            boundary = format!("xcr-{:032x}", fastrand::u128(..));
        }
        // One contiguous body: headers and body leave in one write, which single-threaded
        // HTTP/1.0 emulators need to avoid delayed-ACK stalls, and costs one memcpy of at most
        // the single-request threshold.
        let ctype = content_type(spec);
        let mut body = BytesMut::with_capacity(data.len() + meta.len() + 256 + ctype.len());
        body.put_slice(format!("--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n").as_bytes());
        body.put_slice(&meta);
        body.put_slice(format!("\r\n--{boundary}\r\nContent-Type: {ctype}\r\n\r\n").as_bytes());
        body.put_slice(&data);
        body.put_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let req = self
            .http
            .post(self.upload_url(spec, "multipart"))
            .header(CONTENT_TYPE, format!("multipart/related; boundary={boundary}"))
            .body(body.freeze());
        let resp = self.send(req, "upload object").await?;
        let resp = check_upload(resp, &spec.bucket, "upload object").await?;
        let mut stored = parse_written(resp).await?;
        // A partial answer may leave out what was asked for; the request named them.
        if stored.bucket.is_empty() {
            stored.bucket.clone_from(&spec.bucket);
        }
        if stored.name.is_empty() {
            stored.name.clone_from(&spec.name);
        }
        Ok(stored)
    }

    async fn start_session(&self, spec: &UploadSpec) -> Result<String> {
        let req = self
            .http
            .post(self.upload_url(spec, "resumable"))
            .header("X-Upload-Content-Type", content_type(spec))
            .header("X-Upload-Content-Length", spec.size)
            .json(&resource(spec));
        let resp = self.send(req, "start resumable upload").await?;
        let resp = check_upload(resp, &spec.bucket, "start resumable upload").await?;
        resp.headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| Error::new(ErrorKind::Transient, "GCS started a resumable upload without a session URI"))
    }

    async fn upload_chunk(
        &self,
        session: &str,
        offset: u64,
        data: Bytes,
        total: u64,
        final_crc32c: Option<&str>,
    ) -> Result<UploadProgress> {
        let len = data.len() as u64;
        let range =
            if len == 0 { format!("bytes */{total}") } else { format!("bytes {offset}-{}/{total}", offset + len - 1) };
        let mut req = self.http.put(self.session_url(session)).header(CONTENT_RANGE, range).header(CONTENT_LENGTH, len);
        if let Some(crc) = final_crc32c.filter(|_| offset + len == total) {
            req = req.header("X-Goog-Hash", format!("crc32c={crc}"));
        }
        let resp = self.send(req.body(data), "upload chunk").await?;
        progress(resp, "upload chunk").await
    }

    async fn session_status(&self, session: &str, total: u64) -> Result<UploadProgress> {
        let req = self
            .http
            .put(self.session_url(session))
            .header(CONTENT_RANGE, format!("bytes */{total}"))
            .header(CONTENT_LENGTH, 0);
        let resp = self.send(req, "query upload status").await?;
        progress(resp, "query upload status").await
    }

    async fn delete(
        &self,
        bucket: &str,
        name: &str,
        generation: Option<&str>,
        if_generation_match: Option<u64>,
    ) -> Result<()> {
        let url = self.delete_url(bucket, name, generation, if_generation_match);
        let resp = self.send(self.http.delete(url), "delete object").await?;
        if resp.status().as_u16() == 404 {
            return Ok(());
        }
        check(resp, "delete object").await.map(|_| ())
    }

    async fn stat(&self, bucket: &str, name: &str) -> Result<Option<StoredObject>> {
        let url = format!("{}?fields={OBJECT_FIELDS}", self.object_url(bucket, name));
        let resp = self.send(self.http.get(url), "read object metadata").await?;
        if resp.status().as_u16() == 404 {
            return Ok(None);
        }
        let resp = check(resp, "read object metadata").await?;
        parse_object(resp).await.map(Some)
    }
}

/// Interprets the answer to a chunk or a status query.
async fn progress(resp: reqwest::Response, what: &str) -> Result<UploadProgress> {
    match resp.status().as_u16() {
        308 => Ok(UploadProgress::Persisted(persisted(resp.headers()))),
        200 | 201 => parse_written(resp).await.map(UploadProgress::Done),
        // The session expired or was cancelled: only a new session can continue. Transient, so
        // the task is retried from the start rather than reported as a missing source.
        404 | 410 => {
            Err(Error::new(ErrorKind::Transient, format!("{what}: the upload session is gone ({})", resp.status())))
        }
        _ => check(resp, what).await.map(|_| UploadProgress::Persisted(0)),
    }
}

/// Bytes GCS holds according to a 308's `Range: bytes=0-N` header (none means zero).
fn persisted(headers: &HeaderMap) -> u64 {
    headers
        .get(RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
        .and_then(|v| v.split('-').nth(1))
        .and_then(|end| end.trim().parse::<u64>().ok())
        .map_or(0, |end| end + 1)
}

/// The object resource as GCS documents it: a JSON (proto3) answer leaves out fields that hold
/// their default value, so `size` is absent for an empty object, `crc32c` and `md5Hash` for
/// objects that have none (`md5Hash` for composite objects), and `bucket` / `name` when a
/// partial response was asked for without them. Each missing field reads as its documented
/// default; only `generation`, which no stored object lacks, is required.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectResource {
    #[serde(default)]
    bucket: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    generation: Value,
    #[serde(default)]
    size: Value,
    crc32c: Option<String>,
    md5_hash: Option<String>,
    /// Custom metadata; absent when the object has none.
    #[serde(default)]
    metadata: Option<serde_json::Map<String, Value>>,
}

/// GCS encodes 64-bit numbers as strings; emulators sometimes as numbers.
fn number_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A page of an objects.list answer. `items` is absent when the page is empty.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListPage {
    #[serde(default)]
    items: Vec<Value>,
    next_page_token: Option<String>,
}

/// Reads an objects.list page into audit entries.
fn read_list(text: &str) -> Result<(Vec<crate::domain::audit::DestEntry>, Option<String>)> {
    let page: ListPage = serde_json::from_str(text).map_err(|e| {
        Error::new(ErrorKind::Transient, format!("unexpected GCS list response: {}", truncate(text, 300)))
            .with_source(e)
    })?;
    let mut out = Vec::with_capacity(page.items.len());
    for item in page.items {
        let stored = read_object(&item.to_string())?;
        let text = |field: &str| item.get(field).and_then(Value::as_str).map(str::to_string);
        let headers = crate::domain::model::ContentHeaders {
            content_type: text("contentType"),
            content_encoding: text("contentEncoding"),
            content_language: text("contentLanguage"),
            content_disposition: text("contentDisposition"),
            cache_control: text("cacheControl"),
        };
        let metadata = item
            .get("metadata")
            .and_then(Value::as_object)
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
            .unwrap_or_default();
        out.push(crate::domain::audit::DestEntry { object: stored, headers, metadata });
    }
    Ok((out, page.next_page_token.filter(|t| !t.is_empty())))
}

/// Reads an object resource (see [`ObjectResource`] for the defaults).
fn read_object(text: &str) -> Result<StoredObject> {
    let o: ObjectResource = serde_json::from_str(text).map_err(|e| {
        Error::new(ErrorKind::Transient, format!("unexpected GCS object response: {}", truncate(text, 300)))
            .with_source(e)
    })?;
    let generation = match &o.generation {
        Value::Null => {
            return Err(Error::new(
                ErrorKind::Transient,
                format!("GCS object response without a generation: {}", truncate(text, 300)),
            ));
        }
        g => number_text(g),
    };
    let size = match &o.size {
        Value::Null => 0,
        s => number_text(s)
            .parse::<u64>()
            .map_err(|_| Error::new(ErrorKind::Transient, format!("GCS reported a non-numeric size: {s}")))?,
    };
    Ok(StoredObject {
        bucket: o.bucket,
        name: o.name,
        generation,
        size,
        crc32c: o.crc32c.filter(|c| !c.is_empty()),
        md5: o.md5_hash.filter(|m| !m.is_empty()),
        job_id: o
            .metadata
            .as_ref()
            .and_then(|m| m.get(crate::transfer::metadata::PROV_JOB))
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// Reads the object resource of a successful answer. A body that breaks off or cannot be read
/// is transient: the request that asked for it can be repeated. For a write, see
/// [`parse_written`].
async fn parse_object(resp: reqwest::Response) -> Result<StoredObject> {
    let text = resp.text().await.map_err(|e| transport_error(e, "read GCS response"))?;
    read_object(&text)
}

/// Like [`parse_object`], for the success answer to a write (an upload, a finalizing chunk, a
/// status query of a finished session): GCS has created the object, so an answer that cannot
/// be read is [`Error::applied`]. Sending the write again would create a second generation;
/// the transfer engine reads the object's metadata back instead.
async fn parse_written(resp: reqwest::Response) -> Result<StoredObject> {
    parse_object(resp).await.map_err(|e| e.context("GCS accepted the write but its answer is unreadable").applied())
}

/// Like [`check`], but a 404 on an upload means the destination bucket is missing: a
/// configuration problem, not a missing source.
async fn check_upload(resp: reqwest::Response, bucket: &str, what: &str) -> Result<reqwest::Response> {
    if resp.status().as_u16() == 404 {
        return Err(Error::new(ErrorKind::Config, format!("{what}: destination bucket gs://{bucket} does not exist")));
    }
    check(resp, what).await
}

/// Turns a non-success answer into a classified error carrying GCS's own message.
async fn check(resp: reqwest::Response, what: &str) -> Result<reqwest::Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.text().await.unwrap_or_default();
    let message = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v.pointer("/error/message").and_then(|m| m.as_str()).map(str::to_string))
        .unwrap_or_else(|| truncate(&body, 300).to_string());
    let lower = message.to_ascii_lowercase();
    let kind = if status.as_u16() == 400
        && (lower.contains("crc32c") || lower.contains("md5") || lower.contains("checksum") || lower.contains("hash"))
    {
        ErrorKind::Integrity
    } else if status.as_u16() == 412 {
        // Only preconditions xcr sends can fail: `ifGenerationMatch` on writes and deletes.
        ErrorKind::Conflict
    } else {
        kind_for_status(status.as_u16())
    };
    Err(Error::new(kind, format!("{what}: GCS answered {status}: {message}")))
}

fn transport_error(e: reqwest::Error, what: &str) -> Error {
    // Connection refused/reset, timeouts and broken bodies are all worth another try.
    let kind = if e.is_builder() { ErrorKind::Invalid } else { ErrorKind::Transient };
    let detail = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "transport error"
    };
    Error::new(kind, format!("{what}: {detail}")).with_source(e.without_url())
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn range_header_gives_persisted_bytes() {
        let mut h = HeaderMap::new();
        assert_eq!(persisted(&h), 0);
        h.insert(RANGE, HeaderValue::from_static("bytes=0-262143"));
        assert_eq!(persisted(&h), 262_144);
    }

    #[test]
    fn fields_gcs_leaves_out_read_as_their_documented_defaults() {
        // An empty object as a strict server answers it: `size` (zero) and the empty hashes
        // are not sent at all.
        let o = read_object(r#"{"bucket":"b","name":"k","generation":"17"}"#).expect("readable");
        assert_eq!((o.size, o.generation.as_str(), o.crc32c, o.md5), (0, "17", None, None));
        // Numbers as GCS sends them (strings) and as emulators do (numbers).
        let o = read_object(r#"{"bucket":"b","name":"k","generation":17,"size":"5","crc32c":"AAAAAA==","md5Hash":""}"#)
            .expect("readable");
        assert_eq!((o.size, o.generation.as_str(), o.crc32c.as_deref(), o.md5), (5, "17", Some("AAAAAA=="), None));
        // A partial response without bucket and name.
        let o = read_object(r#"{"generation":"3","size":"0"}"#).expect("readable");
        assert_eq!((o.bucket.as_str(), o.name.as_str(), o.size), ("", "", 0));
        // What cannot be read: no generation, a non-numeric size, not an object resource.
        for bad in [r#"{"bucket":"b","name":"k"}"#, r#"{"generation":"1","size":"x"}"#, "<html>", ""] {
            let e = read_object(bad).expect_err(bad);
            assert_eq!(e.kind(), ErrorKind::Transient, "{bad}");
            assert!(!e.was_applied(), "a read alone applies nothing: {bad}");
        }
    }

    #[test]
    fn a_list_page_reads_items_headers_metadata_and_the_next_token() {
        // An empty page: GCS leaves out `items` (and the token on the last page).
        let (items, next) = read_list("{}").expect("empty page");
        assert!(items.is_empty() && next.is_none());
        let text = r#"{"items":[{"name":"a/é","generation":"5","size":"3","crc32c":"AAAAAQ==","md5Hash":"bQ==",
            "contentType":"text/plain","cacheControl":"no-cache","metadata":{"owner":"ann","xcr-source-key":"a/%C3%A9"}},
            {"name":"b","generation":"6"}],"nextPageToken":"tok"}"#;
        let (items, next) = read_list(text).expect("page");
        assert_eq!(next.as_deref(), Some("tok"));
        assert_eq!((items[0].object.name.as_str(), items[0].object.size), ("a/é", 3));
        assert_eq!(items[0].headers.cache_control.as_deref(), Some("no-cache"));
        assert_eq!(items[0].metadata.get("owner").map(String::as_str), Some("ann"));
        assert_eq!((items[1].object.size, items[1].headers.content_type.as_deref()), (0, None));
        // An item without a generation is no object resource.
        assert!(read_list(r#"{"items":[{"name":"x"}]}"#).is_err());
    }

    #[test]
    fn object_names_are_one_encoded_segment() {
        let c = GcsClient::new(Some("http://127.0.0.1:1"), Auth::Anonymous, Duration::from_secs(1)).expect("client");
        assert_eq!(c.object_url("b", "a b/c+d%é"), "http://127.0.0.1:1/storage/v1/b/b/o/a%20b%2Fc%2Bd%25%C3%A9");
    }

    #[test]
    fn writes_and_deletes_carry_the_generation_precondition() {
        let c = GcsClient::new(Some("http://127.0.0.1:1"), Auth::Anonymous, Duration::from_secs(1)).expect("client");
        let mut spec = UploadSpec { bucket: "b".into(), name: "k".into(), ..Default::default() };
        assert!(!c.upload_url(&spec, "multipart").contains("ifGenerationMatch"));
        spec.if_generation_match = Some(0);
        assert!(c.upload_url(&spec, "multipart").ends_with("&ifGenerationMatch=0"));
        spec.if_generation_match = Some(1_700_000_000_000_001);
        assert!(c.upload_url(&spec, "resumable").contains("uploadType=resumable"));
        assert!(c.upload_url(&spec, "resumable").ends_with("&ifGenerationMatch=1700000000000001"));
        assert_eq!(c.delete_url("b", "k", None, Some(7)), "http://127.0.0.1:1/storage/v1/b/b/o/k?ifGenerationMatch=7");
        // Withdrawing a bad generation names it exactly, no precondition needed.
        assert_eq!(c.delete_url("b", "k", Some("9"), Some(7)), "http://127.0.0.1:1/storage/v1/b/b/o/k?generation=9");
    }

    #[test]
    fn session_uris_move_onto_the_configured_emulator() {
        let c = GcsClient::new(Some("http://127.0.0.1:9999"), Auth::Anonymous, Duration::from_secs(1)).expect("client");
        assert_eq!(
            c.session_url("http://localhost:1234/upload/storage/v1/b/x/o?uploadType=resumable&upload_id=abc"),
            "http://127.0.0.1:9999/upload/storage/v1/b/x/o?uploadType=resumable&upload_id=abc"
        );
    }
}
