//! The transfer engine against real emulators: moto for S3, gcp-storage-emulator for GCS, each
//! test on a private stack deployed from infra/template.yaml. Results are read back over plain
//! HTTP, independently of xcr's upload code.

mod common;

use bytes::Bytes;
use common::*;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use xcr::ErrorKind;
use xcr::adapters::gcs::GcsClient;
use xcr::domain::model::{Destination, ObjectRef, StoredObject};
use xcr::ports::{ObjectSink, ObjectSource, ReadPin, SourceRead, UploadProgress, UploadSpec};
use xcr::transfer::{Transfer, TransferConfig, UploadMethod};

/// Every size edge: empty, one byte, around the 256 KiB chunk unit, around the threshold, and
/// several chunks with a ragged end. Small chunks make the resumable path run on small objects.
#[tokio::test(flavor = "multi_thread")]
async fn sizes_around_every_boundary_copy_byte_exact() {
    let stack = Stack::up();
    let s3 = stack.s3().await;
    let cfg = small_chunks();
    let engine = engine(&stack, cfg).await;
    let t = cfg.resumable_threshold as usize;
    let k = 256 * 1024;
    let sizes = [0, 1, k - 1, k, k + 1, t - 1, t, t + 1, 3 * k + 17];
    for (i, &size) in sizes.iter().enumerate() {
        let key = format!("sizes/{size}.bin");
        let data = bytes_of(size, i as u64);
        put(&s3, stack.source_bucket(), &key, data.clone()).await;
        let obj = ObjectRef::new(stack.source_bucket(), &key);
        let report = engine
            .copy(&obj, &Destination::new(stack.dest_bucket(), &key))
            .await
            .unwrap_or_else(|e| panic!("size {size}: {}", e.chain()));
        let expected_method =
            if size as u64 > cfg.resumable_threshold { UploadMethod::Resumable } else { UploadMethod::Single };
        assert_eq!(report.method, expected_method, "size {size}");
        assert_eq!(report.stored.size, size as u64);
        assert_eq!(report.crc32c, crc32c_b64(&data), "size {size}");
        let (got, meta) = gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), &key).await.expect("object in GCS");
        assert!(got == data, "size {size}: bytes differ");
        assert_eq!(meta["crc32c"].as_str(), Some(crc32c_b64(&data).as_str()), "size {size}");
        if size as u64 > cfg.resumable_threshold {
            assert_eq!(report.chunks as usize, size.div_ceil(k), "size {size}: one request per chunk");
            assert_eq!(report.bytes_sent, size as u64, "size {size}: nothing sent twice");
        }
    }
}

/// Over 100 MiB with the default 8 MiB chunks: one resumable session of thirteen chunks, byte-exact.
/// That memory stays bounded while it streams is measured by `make bench` (RSS), not here.
#[tokio::test(flavor = "multi_thread")]
async fn large_object_goes_up_through_one_resumable_session_in_8_mib_chunks() {
    let stack = Stack::up();
    let s3 = stack.s3().await;
    let engine = engine(&stack, TransferConfig::default()).await;
    let size = 100 * 1024 * 1024 + 12_345;
    let data = bytes_of(size, 42);
    put(&s3, stack.source_bucket(), "big/object.bin", data.clone()).await;
    let report = engine
        .copy(
            &ObjectRef::new(stack.source_bucket(), "big/object.bin"),
            &Destination::new(stack.dest_bucket(), "big/object.bin"),
        )
        .await
        .unwrap_or_else(|e| panic!("{}", e.chain()));
    assert_eq!(report.method, UploadMethod::Resumable);
    assert_eq!(report.chunks, 13);
    let (got, _) = gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), "big/object.bin").await.expect("object in GCS");
    assert_eq!(got.len(), size);
    assert!(got == data, "bytes differ");
}

/// Content headers and user metadata carry over; provenance names the exact source version.
#[tokio::test(flavor = "multi_thread")]
async fn metadata_and_provenance_carry_over() {
    let stack = Stack::up();
    let s3 = stack.s3().await;
    for (key, size, cfg) in
        [("meta/small.txt", 1000, TransferConfig::default()), ("meta/large.txt", 700_000, small_chunks())]
    {
        let put = s3
            .put_object()
            .bucket(stack.source_bucket())
            .key(key)
            .body(bytes_of(size, 3).into())
            .content_type("text/plain; charset=utf-8")
            .content_encoding("identity")
            .content_language("fr-CA")
            .content_disposition("attachment; filename=\"été.txt\"")
            .cache_control("public, max-age=60")
            .metadata("owner", "data-team")
            .metadata("pipeline", "nightly")
            .send()
            .await
            .expect("put");
        let engine = engine(&stack, cfg).await;
        engine
            .copy(&ObjectRef::new(stack.source_bucket(), key), &Destination::new(stack.dest_bucket(), key))
            .await
            .unwrap_or_else(|e| panic!("{key}: {}", e.chain()));
        let (_, meta) = gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), key).await.expect("object in GCS");
        assert_eq!(meta["contentType"], "text/plain; charset=utf-8", "{key}");
        assert_eq!(meta["contentEncoding"], "identity", "{key}");
        assert_eq!(meta["contentLanguage"], "fr-CA", "{key}");
        assert_eq!(meta["contentDisposition"], "attachment; filename=\"été.txt\"", "{key}");
        assert_eq!(meta["cacheControl"], "public, max-age=60", "{key}");
        let m = &meta["metadata"];
        assert_eq!(m["owner"], "data-team", "{key}");
        assert_eq!(m["pipeline"], "nightly", "{key}");
        assert_eq!(m["xcr-source-bucket"], stack.source_bucket(), "{key}");
        assert_eq!(m["xcr-source-key"], key, "{key}");
        assert_eq!(m["xcr-source-etag"].as_str(), put.e_tag().map(|e| e.trim_matches('"')), "{key}");
        assert_eq!(m["xcr-source-version-id"].as_str(), put.version_id(), "{key}");
        assert!(m["xcr-source-last-modified"].as_str().is_some_and(|t| t.ends_with('Z')), "{key}: {m}");
    }
}

/// Keys with spaces, `+`, `%`, unicode and deep paths land under exactly the same name.
#[tokio::test(flavor = "multi_thread")]
async fn tricky_keys_keep_their_exact_names() {
    let stack = Stack::up();
    let s3 = stack.s3().await;
    let engine = engine(&stack, TransferConfig::default()).await;
    let deep = (0..12).map(|i| format!("level{i}")).collect::<Vec<_>>().join("/") + "/leaf.bin";
    let keys = [
        "with space.txt",
        "plus+sign.txt",
        "percent%25literal%.txt",
        "données/été 2026/ünïcødé+%25 file.txt",
        "emoji/🚀.bin",
        "a//double/slash",
        &deep,
    ];
    for (i, key) in keys.iter().enumerate() {
        let data = bytes_of(100 + i, i as u64);
        put(&s3, stack.source_bucket(), key, data.clone()).await;
        engine
            .copy(&ObjectRef::new(stack.source_bucket(), *key), &Destination::new(stack.dest_bucket(), *key))
            .await
            .unwrap_or_else(|e| panic!("{key}: {}", e.chain()));
        let (got, meta) =
            gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), key).await.unwrap_or_else(|| panic!("{key} missing"));
        assert_eq!(meta["name"], *key);
        assert_eq!(
            meta["metadata"]["xcr-source-key"].as_str(),
            Some(xcr::transfer::metadata::encode_key(key).as_str())
        );
        assert!(got == data, "{key}: bytes differ");
    }
}

/// A source read that counts requests, around the real S3 adapter.
struct CountingSource<S> {
    inner: S,
    reads: AtomicU32,
}

impl<S: ObjectSource> ObjectSource for CountingSource<S> {
    async fn read(&self, obj: &ObjectRef, pin: &ReadPin, offset: u64) -> xcr::Result<SourceRead> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.read(obj, pin, offset).await
    }
    async fn exists(&self, obj: &ObjectRef) -> xcr::Result<bool> {
        self.inner.exists(obj).await
    }
}

/// A missing source is reported as not found after exactly one request: no retries.
#[tokio::test(flavor = "multi_thread")]
async fn missing_source_is_not_found_without_retries() {
    let stack = Stack::up();
    let source =
        CountingSource { inner: xcr::adapters::aws::s3::S3Source::new(&stack.sdk().await), reads: AtomicU32::new(0) };
    let engine = Transfer::new(source, stack.gcs(), TransferConfig::default(), fast_retry());
    for bucket in [stack.source_bucket(), "no-such-bucket-here"] {
        engine.source().reads.store(0, Ordering::SeqCst);
        let err = engine
            .copy(&ObjectRef::new(bucket, "never/written"), &Destination::new(stack.dest_bucket(), "x"))
            .await
            .expect_err("must fail");
        assert_eq!(err.kind(), ErrorKind::NotFound, "{}", err.chain());
        assert!(!err.is_retryable());
        assert_eq!(engine.source().reads.load(Ordering::SeqCst), 1, "exactly one request, no retries");
    }
    assert!(gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), "x").await.is_none());
}

/// The first read's body breaks after `break_after` bytes; before the re-open, `on_break` runs
/// (e.g. to overwrite the object in S3).
struct BreakingSource<S, F> {
    inner: S,
    break_after: usize,
    broke: AtomicBool,
    on_break: F,
}

impl<S: ObjectSource, F: Fn() -> futures::future::BoxFuture<'static, ()> + Send + Sync> ObjectSource
    for BreakingSource<S, F>
{
    async fn read(&self, obj: &ObjectRef, pin: &ReadPin, offset: u64) -> xcr::Result<SourceRead> {
        if offset > 0 && self.broke.load(Ordering::SeqCst) {
            (self.on_break)().await;
        }
        let mut read = self.inner.read(obj, pin, offset).await?;
        if offset == 0 && !self.broke.swap(true, Ordering::SeqCst) {
            use futures::StreamExt;
            let limit = self.break_after;
            let mut seen = 0usize;
            let body = read.body.flat_map(move |frame| {
                let out: Vec<xcr::Result<Bytes>> = match frame {
                    Ok(b) if seen + b.len() >= limit => {
                        let keep = b.slice(..limit - seen);
                        seen = limit;
                        vec![Ok(keep), Err(xcr::Error::new(ErrorKind::Transient, "injected: connection reset"))]
                    }
                    other => {
                        if let Ok(b) = &other {
                            seen += b.len();
                        }
                        vec![other]
                    }
                };
                futures::stream::iter(out)
            });
            // Stop after the injected error, as a broken connection would.
            let body = body.scan(false, |done, item| {
                if *done {
                    return futures::future::ready(None);
                }
                *done = item.is_err();
                futures::future::ready(Some(item))
            });
            read.body = Box::pin(body);
        }
        Ok(read)
    }
    async fn exists(&self, obj: &ObjectRef) -> xcr::Result<bool> {
        self.inner.exists(obj).await
    }
}

/// A broken S3 connection mid-body re-opens at the byte where it broke, pinned, and the copy is
/// byte-exact.
#[tokio::test(flavor = "multi_thread")]
async fn broken_source_stream_resumes_where_it_broke() {
    let stack = Stack::up();
    let s3 = stack.s3().await;
    let data = bytes_of(1_500_000, 9);
    put(&s3, stack.source_bucket(), "flaky.bin", data.clone()).await;
    let source = BreakingSource {
        inner: xcr::adapters::aws::s3::S3Source::new(&stack.sdk().await),
        break_after: 700_001,
        broke: AtomicBool::new(false),
        on_break: || Box::pin(async {}) as futures::future::BoxFuture<'static, ()>,
    };
    let engine = Transfer::new(source, stack.gcs(), small_chunks(), fast_retry());
    let report = engine
        .copy(&ObjectRef::new(stack.source_bucket(), "flaky.bin"), &Destination::new(stack.dest_bucket(), "flaky.bin"))
        .await
        .unwrap_or_else(|e| panic!("{}", e.chain()));
    assert_eq!(report.source_reopens, 1);
    let (got, _) = gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), "flaky.bin").await.expect("in GCS");
    assert!(got == data, "bytes differ");
}

/// An object overwritten while it is being copied never produces a torn copy. In an unversioned
/// bucket the pinned re-read fails (If-Match on the first ETag) and nothing is created; in a
/// versioned bucket the re-read follows the version id and the copy is the old version, whole.
#[tokio::test(flavor = "multi_thread")]
async fn overwrite_during_copy_never_tears() {
    let stack = Stack::up();
    let s3 = stack.s3().await;
    let unversioned = "plain-unversioned";
    s3.create_bucket().bucket(unversioned).send().await.expect("create bucket");
    let old = bytes_of(1_200_000, 1);
    let new = bytes_of(1_200_000, 2);
    for bucket in [unversioned, stack.source_bucket()] {
        let first = put(&s3, bucket, "moving.bin", old.clone()).await;
        let (s3b, bucket_s, new_b) = (s3.clone(), bucket.to_string(), new.clone());
        let source = BreakingSource {
            inner: xcr::adapters::aws::s3::S3Source::new(&stack.sdk().await),
            break_after: 600_000,
            broke: AtomicBool::new(false),
            on_break: move || {
                let (s3, b, data) = (s3b.clone(), bucket_s.clone(), new_b.clone());
                Box::pin(async move {
                    s3.put_object().bucket(b).key("moving.bin").body(data.into()).send().await.expect("overwrite");
                }) as futures::future::BoxFuture<'static, ()>
            },
        };
        let engine = Transfer::new(source, stack.gcs(), small_chunks(), fast_retry());
        let name = format!("{bucket}/moving.bin");
        let result =
            engine.copy(&ObjectRef::new(bucket, "moving.bin"), &Destination::new(stack.dest_bucket(), &name)).await;
        let stored = gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), &name).await;
        if bucket == unversioned {
            let err = result.expect_err("an overwrite mid-copy must fail the copy");
            assert_eq!(err.kind(), ErrorKind::SourceChanged, "{}", err.chain());
            assert!(err.is_retryable(), "the task is retried and then copies the new version");
            assert!(stored.is_none(), "no torn object may be created");
        } else {
            let report = result.unwrap_or_else(|e| panic!("{}", e.chain()));
            assert_eq!(report.source.version_id.as_deref(), first.version_id());
            let (got, meta) = stored.expect("old version copied");
            assert!(got == old, "the copy must be the old version, whole");
            assert_eq!(meta["metadata"]["xcr-source-version-id"].as_str(), first.version_id());
        }
    }
}

/// Flips one byte of everything it uploads, after the engine computed its checksum.
struct Corrupting;

fn flip(data: Bytes) -> Bytes {
    let mut v = data.to_vec();
    let mid = v.len() / 2;
    if let Some(b) = v.get_mut(mid) {
        *b ^= 0x01;
    }
    Bytes::from(v)
}

impl SinkHooks for Corrupting {
    async fn upload_single(&self, inner: &GcsClient, spec: &UploadSpec, data: Bytes) -> xcr::Result<StoredObject> {
        inner.upload_single(spec, flip(data)).await
    }
    async fn upload_chunk(
        &self,
        inner: &GcsClient,
        s: &str,
        off: u64,
        data: Bytes,
        total: u64,
        crc: Option<&str>,
    ) -> xcr::Result<UploadProgress> {
        inner.upload_chunk(s, off, flip(data), total, crc).await
    }
}

/// A byte corrupted on the way to GCS is caught: on a single request GCS itself refuses the
/// object (the CRC32C travels in the metadata); on a resumable upload the stored CRC32C is
/// compared with the one computed in flight and the bad generation is deleted. Either way no
/// object is left behind and the error says integrity.
#[tokio::test(flavor = "multi_thread")]
async fn corrupted_upload_is_rejected_and_nothing_is_left() {
    let stack = Stack::up();
    let s3 = stack.s3().await;
    for (key, size) in [("corrupt/small.bin", 100_000), ("corrupt/large.bin", 1_000_000)] {
        put(&s3, stack.source_bucket(), key, bytes_of(size, 5)).await;
        let engine = Transfer::new(
            xcr::adapters::aws::s3::S3Source::new(&stack.sdk().await),
            Around::new(stack.gcs(), Corrupting),
            small_chunks(),
            fast_retry(),
        );
        let err = engine
            .copy(&ObjectRef::new(stack.source_bucket(), key), &Destination::new(stack.dest_bucket(), key))
            .await
            .expect_err("corruption must be caught");
        assert_eq!(err.kind(), ErrorKind::Integrity, "{key}: {}", err.chain());
        assert!(gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), key).await.is_none(), "{key}: nothing may be left");
    }
}

/// Delivers every chunk to GCS but reports a reset for some of them, as when the response is
/// lost: the engine must ask GCS what it holds and continue from there, not start over.
struct Lossy {
    fail_every: u32,
    calls: AtomicU32,
    sent: AtomicU64,
}

impl SinkHooks for Lossy {
    async fn upload_chunk(
        &self,
        inner: &GcsClient,
        s: &str,
        off: u64,
        data: Bytes,
        total: u64,
        crc: Option<&str>,
    ) -> xcr::Result<UploadProgress> {
        let len = data.len() as u64;
        self.sent.fetch_add(len, Ordering::SeqCst);
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let result = inner.upload_chunk(s, off, data, total, crc).await;
        // Not the last chunk: the emulator forgets a finalized session (404) where GCS would
        // answer the status query with the object.
        if n % self.fail_every == 1 && off + len < total {
            return Err(xcr::Error::new(ErrorKind::Transient, "injected: response lost"));
        }
        result
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn lost_chunk_responses_resume_from_the_offset_gcs_confirms() {
    let stack = Stack::up();
    let s3 = stack.s3().await;
    let size = 10 * 256 * 1024 + 99;
    let data = bytes_of(size, 11);
    put(&s3, stack.source_bucket(), "lossy.bin", data.clone()).await;
    let sink = Around::new(stack.gcs(), Lossy { fail_every: 3, calls: AtomicU32::new(0), sent: AtomicU64::new(0) });
    let engine =
        Transfer::new(xcr::adapters::aws::s3::S3Source::new(&stack.sdk().await), sink, small_chunks(), fast_retry());
    let report = engine
        .copy(&ObjectRef::new(stack.source_bucket(), "lossy.bin"), &Destination::new(stack.dest_bucket(), "lossy.bin"))
        .await
        .unwrap_or_else(|e| panic!("{}", e.chain()));
    assert!(report.resumed_chunks >= 3, "faults were injected: {report:?}");
    assert_eq!(
        engine.sink().hooks.sent.load(Ordering::SeqCst),
        size as u64,
        "no byte was sent twice: GCS had them all"
    );
    let (got, _) = gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), "lossy.bin").await.expect("in GCS");
    assert!(got == data, "bytes differ");
}
