//! The source port ([`ObjectSource`], [`ObjectLister`]): S3's contract as the S3 adapter relies
//! on it. Needs a versioned bucket.

use super::unique;
use bytes::Bytes;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::future::Future;
use xcr::ErrorKind;
use xcr::domain::model::ObjectRef;
use xcr::ports::{ObjectLister, ObjectSource, ReadPin};

/// What the suite needs besides the port: writing to the source.
pub trait SourceFixture {
    /// Stores an object; returns its version id and ETag (without quotes).
    fn put(
        &self,
        bucket: &str,
        key: &str,
        data: Vec<u8>,
        content_type: &str,
        metadata: &[(&str, &str)],
    ) -> impl Future<Output = (Option<String>, String)>;
    /// Deletes the current object (a delete marker in a versioned bucket).
    fn delete(&self, bucket: &str, key: &str) -> impl Future<Output = ()>;
}

async fn read_all<S: ObjectSource>(
    s: &S,
    obj: &ObjectRef,
    pin: &ReadPin,
    offset: u64,
) -> xcr::Result<(xcr::domain::model::SourceMeta, Vec<u8>)> {
    let read = s.read(obj, pin, offset).await?;
    let mut body = read.body;
    let mut out = Vec::new();
    while let Some(frame) = body.next().await {
        out.extend_from_slice(&frame?);
    }
    Ok((read.meta, out))
}

fn md5_hex(data: &[u8]) -> String {
    use md5::{Digest, Md5};
    format!("{:x}", Md5::digest(data))
}

/// Every case, in turn, in `bucket` (versioned).
pub async fn run<S: ObjectSource + ObjectLister, F: SourceFixture>(s: &S, f: &F, bucket: &str) {
    reads_return_the_bytes_and_metadata_of_one_version(s, f, bucket).await;
    a_read_from_an_offset_returns_the_rest_and_the_whole_size(s, f, bucket).await;
    a_pinned_read_returns_that_version_or_fails(s, f, bucket).await;
    deletes_hide_the_object_but_keep_its_versions(s, f, bucket).await;
    listings_are_ordered_paged_and_resumable_after_a_key(s, f, bucket).await;
    fetches_read_ranges_and_small_texts(s, f, bucket).await;
}

pub async fn reads_return_the_bytes_and_metadata_of_one_version<S: ObjectSource, F: SourceFixture>(
    s: &S,
    f: &F,
    bucket: &str,
) {
    let key = unique("src/read/é ü");
    let data = crate::common::bytes_of(200_000, 1);
    let (version, etag) = f.put(bucket, &key, data.clone(), "text/plain", &[("owner", "ann")]).await;
    assert!(version.is_some(), "a versioned bucket gives a version id");
    assert_eq!(etag, md5_hex(&data), "a single-part upload's ETag is the MD5 of its bytes");
    let (meta, got) = read_all(s, &ObjectRef::new(bucket, &key), &ReadPin::default(), 0).await.expect("read");
    assert!(got == data, "the bytes");
    assert_eq!(
        (meta.size, meta.etag.as_str(), meta.version_id.as_deref()),
        (data.len() as u64, etag.as_str(), version.as_deref())
    );
    {
        use md5::{Digest, Md5};
        assert_eq!(meta.md5, Some(<[u8; 16]>::from(Md5::digest(&data))), "the MD5 the ETag carries");
    }
    assert_eq!(meta.headers.content_type.as_deref(), Some("text/plain"));
    assert_eq!(meta.user_metadata, BTreeMap::from([("owner".to_string(), "ann".to_string())]));
    let lm = meta.last_modified.expect("last-modified");
    assert!(xcr::domain::replicate::rfc3339_ms(&lm).is_some_and(|ms| ms % 1000 == 0), "whole seconds: {lm}");
    assert!(s.exists(&ObjectRef::new(bucket, &key)).await.expect("head"));
    let missing = ObjectRef::new(bucket, unique("src/missing"));
    assert!(!s.exists(&missing).await.expect("head of a missing key"));
    let e = read_all(s, &missing, &ReadPin::default(), 0).await.expect_err("a missing key cannot be read");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

pub async fn a_read_from_an_offset_returns_the_rest_and_the_whole_size<S: ObjectSource, F: SourceFixture>(
    s: &S,
    f: &F,
    bucket: &str,
) {
    let key = unique("src/offset");
    let data = crate::common::bytes_of(100_000, 2);
    f.put(bucket, &key, data.clone(), "application/octet-stream", &[]).await;
    let obj = ObjectRef::new(bucket, &key);
    let (meta, got) = read_all(s, &obj, &ReadPin::default(), 70_000).await.expect("ranged read");
    assert!(got == data[70_000..], "the bytes from the offset");
    assert_eq!(meta.size, 100_000, "the size is the whole object's");
    let e = read_all(s, &obj, &ReadPin::default(), 100_001).await.expect_err("past the end");
    assert_eq!(e.kind(), ErrorKind::Invalid, "a range past the end is S3's 416: {e}");
}

pub async fn a_pinned_read_returns_that_version_or_fails<S: ObjectSource, F: SourceFixture>(
    s: &S,
    f: &F,
    bucket: &str,
) {
    let key = unique("src/pinned");
    let (v1, etag1) = f.put(bucket, &key, b"first".to_vec(), "text/plain", &[]).await;
    let (v2, etag2) = f.put(bucket, &key, b"second!".to_vec(), "text/plain", &[]).await;
    let obj = ObjectRef::new(bucket, &key);
    let pin = |v: &Option<String>, e: Option<&str>| ReadPin { version_id: v.clone(), etag: e.map(str::to_string) };
    let (meta, got) = read_all(s, &obj, &pin(&v1, None), 0).await.expect("read v1");
    assert_eq!(
        (got.as_slice(), meta.version_id.clone()),
        (&b"first"[..], v1.clone()),
        "a version pin reads that version"
    );
    let (_, got) = read_all(s, &obj, &ReadPin::default(), 0).await.expect("read current");
    assert_eq!(got, b"second!", "unpinned reads the current version");
    let (_, got) = read_all(s, &obj, &pin(&None, Some(&etag2)), 0).await.expect("read if-match current");
    assert_eq!(got, b"second!");
    let e = read_all(s, &obj, &pin(&None, Some(&etag1)), 0).await.expect_err("If-Match of an older ETag");
    assert_eq!(e.kind(), ErrorKind::SourceChanged, "an ETag pin that no longer matches is a changed source: {e}");
    let gone = ObjectRef { version_id: Some(v1.clone().expect("v1")), ..obj.clone() };
    assert!(s.exists(&gone).await.expect("head of v1"), "an old version exists");
    let _ = v2;
}

pub async fn deletes_hide_the_object_but_keep_its_versions<S: ObjectSource, F: SourceFixture>(
    s: &S,
    f: &F,
    bucket: &str,
) {
    let key = unique("src/deleted");
    let (v1, _) = f.put(bucket, &key, b"kept".to_vec(), "text/plain", &[]).await;
    f.delete(bucket, &key).await;
    let obj = ObjectRef::new(bucket, &key);
    assert!(!s.exists(&obj).await.expect("head"), "a delete marker hides the object");
    let e = read_all(s, &obj, &ReadPin::default(), 0).await.expect_err("the current version is a delete marker");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let pinned = ReadPin { version_id: v1, etag: None };
    let (_, got) = read_all(s, &obj, &pinned, 0).await.expect("the old version stays readable");
    assert_eq!(got, b"kept");
}

pub async fn listings_are_ordered_paged_and_resumable_after_a_key<S: ObjectLister, F: SourceFixture>(
    s: &S,
    f: &F,
    bucket: &str,
) {
    let prefix = format!("{}/", unique("src/list"));
    for (k, len) in [("d", 4), ("a", 1), ("c", 3), ("b", 2), ("gone", 5)] {
        f.put(bucket, &format!("{prefix}{k}"), vec![b'x'; len], "text/plain", &[]).await;
    }
    f.delete(bucket, &format!("{prefix}gone")).await;
    let names = |page: &[xcr::ports::Listed]| {
        page.iter().map(|l| (l.key.trim_start_matches(&prefix).to_string(), l.size)).collect::<Vec<_>>()
    };
    let (page, more) = s.list_after(bucket, &prefix, None, 2).await.expect("list");
    assert_eq!((names(&page), more), (vec![("a".into(), 1), ("b".into(), 2)], true), "key order, sizes, more to come");
    let after = format!("{prefix}b");
    let (page, more) = s.list_after(bucket, &prefix, Some(&after), 2).await.expect("list after b");
    assert_eq!((names(&page), more), (vec![("c".into(), 3), ("d".into(), 4)], false), "a deleted key is not listed");
    let mut all = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let (page, next) = s.list_page(bucket, &prefix, token.as_deref(), 3).await.expect("list page");
        all.extend(names(&page));
        match next {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(
        all.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["a", "b", "c", "d"],
        "pages cover the listing once"
    );
    let (page, more) = s.list_after(bucket, &format!("{prefix}none/"), None, 10).await.expect("empty prefix");
    assert!(page.is_empty() && !more);
}

pub async fn fetches_read_ranges_and_small_texts<S: ObjectLister, F: SourceFixture>(s: &S, f: &F, bucket: &str) {
    let key = unique("src/fetch");
    f.put(bucket, &key, b"line one\nline two\n".to_vec(), "text/plain", &[]).await;
    assert_eq!(s.fetch_text(bucket, &key, 1024).await.expect("text"), "line one\nline two\n");
    let e = s.fetch_text(bucket, &key, 4).await.expect_err("larger than the limit");
    assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
    let (bytes, total) = s.fetch_range(bucket, &key, 5, 3).await.expect("range");
    assert_eq!((bytes, total), (Bytes::from_static(b"one"), 18));
    let (bytes, total) = s.fetch_range(bucket, &key, 14, 100).await.expect("range to the end");
    assert_eq!((bytes, total), (Bytes::from_static(b"two\n"), 18));
    let (bytes, _) = s.fetch_range(bucket, &key, 18, 10).await.expect("at the end");
    assert!(bytes.is_empty(), "no bytes at or past the end");
    let e = s.fetch_text(bucket, &unique("src/none"), 10).await.expect_err("missing");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}
