//! Source objects of the kinds real buckets hold and the other tests do not make: multipart
//! uploads (ETag `…-N`), `Content-Encoding: gzip` objects, SSE-C objects, objects fanned out to
//! several destinations with different storage classes, and a 0-byte object finalized through a
//! resumable session. Each on its own private stack (moto + gcp-storage-emulator); results read
//! back over the GCS JSON/XML API with plain HTTP, not xcr's code.

mod common;
mod fault_proxy;

use bytes::Bytes;
use common::*;
use fault_proxy::{Fault, FaultProxy, Plan, Service};
use md5::{Digest, Md5};
use std::time::Duration;
use xcr::ErrorKind;
use xcr::domain::events::{Action, Task};
use xcr::domain::model::{Destination, ObjectRef};
use xcr::domain::replicate::{Outcome, now_ms};
use xcr::ports::{ObjectSink, UploadProgress, UploadSpec};
use xcr::transfer::{Transfer, TransferConfig, UploadMethod};

fn md5_b64(data: &[u8]) -> String {
    xcr::transfer::checksum::md5_b64(&Md5::digest(data).into())
}

/// An object uploaded in two parts has an ETag `"<md5 of the part MD5s>-2"`, which is no MD5 of
/// its bytes. xcr must neither send it to GCS as `md5Hash` (GCS would refuse the object) nor
/// trust it: the copy is verified by the CRC32C of the bytes it read, which GCS checks on
/// upload, and that CRC32C and the multipart ETag are what the ledger records. Both upload paths
/// (one request; resumable chunks) are taken.
#[tokio::test(flavor = "multi_thread")]
async fn a_multipart_source_is_verified_by_the_crc32c_of_its_bytes_not_its_etag() {
    let stack = Stack::up();
    let s3 = stack.s3().await;
    let src = stack.source_bucket();
    // S3 (and moto) refuse parts under 5 MiB but the last.
    let part = 5 * 1024 * 1024;
    let data = bytes_of(part + 1000, 21);
    let key = "multipart/object.bin";
    let up = s3.create_multipart_upload().bucket(src).key(key).send().await.expect("create multipart upload");
    let id = up.upload_id().expect("upload id");
    let mut parts = Vec::new();
    for (n, chunk) in [(1, &data[..part]), (2, &data[part..])] {
        let p = s3
            .upload_part()
            .bucket(src)
            .key(key)
            .upload_id(id)
            .part_number(n)
            .body(chunk.to_vec().into())
            .send()
            .await
            .expect("upload part");
        parts.push(
            aws_sdk_s3::types::CompletedPart::builder().part_number(n).e_tag(p.e_tag().expect("part etag")).build(),
        );
    }
    let done = s3
        .complete_multipart_upload()
        .bucket(src)
        .key(key)
        .upload_id(id)
        .multipart_upload(aws_sdk_s3::types::CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
        .send()
        .await
        .expect("complete multipart upload");
    let etag = done.e_tag().expect("etag").trim_matches('"').to_string();
    assert!(etag.ends_with("-2"), "a two-part upload's ETag: {etag}");

    // The engine, on both paths: what it read and how it verified.
    for (cfg, method) in [(TransferConfig::default(), UploadMethod::Single), (small_chunks(), UploadMethod::Resumable)]
    {
        let name = format!("{method:?}/{key}");
        let report = engine(&stack, cfg)
            .await
            .copy(&ObjectRef::new(src, key), &Destination::new(stack.dest_bucket(), &name))
            .await
            .unwrap_or_else(|e| panic!("{method:?}: {}", e.chain()));
        assert_eq!(report.method, method);
        assert_eq!(report.source.etag, etag, "{method:?}");
        assert_eq!(report.source.md5, None, "{method:?}: a multipart ETag is not taken for an MD5");
        assert_eq!(report.source.crc32c, None, "{method:?}: no checksum was stored with the object");
        assert_eq!(report.crc32c, crc32c_b64(&data), "{method:?}: the CRC32C of the bytes read");
        let (got, meta) = gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), &name).await.expect("in GCS");
        assert!(got == data, "{method:?}: bytes differ");
        assert_eq!(meta["crc32c"].as_str(), Some(crc32c_b64(&data).as_str()), "{method:?}");
        // GCS computed its own MD5 of what it stored: the bytes', not the ETag's.
        assert_eq!(meta["md5Hash"].as_str(), Some(md5_b64(&data).as_str()), "{method:?}");
        assert_eq!(meta["metadata"]["xcr-source-etag"].as_str(), Some(etag.as_str()), "{method:?}");
    }

    // The replicator's ledger record: the multipart ETag names the source version, the CRC32C
    // vouches for the bytes (the audit later compares it with GCS's).
    let r = replicator(&stack, &[]).await;
    let done = r.replicate(&ObjectRef::new(src, key), None, now_ms() + 60_000).await.expect("replicate");
    assert_eq!(done.outcome, Outcome::Replicated, "{done:?}");
    let item = ledger_item(&stack, stack.dest_bucket(), key).await.expect("ledger item");
    let record = item.done.expect("done record");
    assert_eq!(record.etag.as_deref(), Some(etag.as_str()));
    assert_eq!(record.crc32c.as_deref(), Some(crc32c_b64(&data).as_str()));
    assert_eq!(record.size, Some(data.len() as u64));
}

/// CRC-32 (IEEE), for the gzip trailer.
fn crc32_ieee(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A valid gzip member holding `data` in stored (uncompressed) deflate blocks: a real gzip
/// stream without a compression dependency. Decompressing it gives `data` back, so a copy that
/// decompressed (as an HTTP client with transparent decoding would) is seen at once.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let blocks: Vec<&[u8]> = if data.is_empty() { vec![&[]] } else { data.chunks(65_535).collect() };
    for (i, block) in blocks.iter().enumerate() {
        out.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&crc32_ieee(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// An object stored gzip-compressed with `Content-Encoding: gzip` is copied as stored: the
/// compressed bytes, byte for byte (no decompression on the way, which would also break the
/// CRC32C GCS checks), with the encoding header kept, so that GCS serves it as S3 did. On both
/// upload paths.
#[tokio::test(flavor = "multi_thread")]
async fn a_gzip_encoded_source_is_copied_compressed_with_its_encoding() {
    let stack = Stack::up();
    let s3 = stack.s3().await;
    let src = stack.source_bucket();
    let plain = bytes_of(700_000, 5);
    let gz = gzip_stored(&plain);
    assert_ne!(gz, plain);
    let key = "encoded/data.json.gz";
    s3.put_object()
        .bucket(src)
        .key(key)
        .body(gz.clone().into())
        .content_type("application/json")
        .content_encoding("gzip")
        .send()
        .await
        .expect("put gzip object");
    for (cfg, method) in [(TransferConfig::default(), UploadMethod::Single), (small_chunks(), UploadMethod::Resumable)]
    {
        let name = format!("{method:?}/{key}");
        let report = engine(&stack, cfg)
            .await
            .copy(&ObjectRef::new(src, key), &Destination::new(stack.dest_bucket(), &name))
            .await
            .unwrap_or_else(|e| panic!("{method:?}: {}", e.chain()));
        assert_eq!(report.method, method);
        assert_eq!(report.stored.size, gz.len() as u64, "{method:?}: the compressed size");
        assert_eq!(report.crc32c, crc32c_b64(&gz), "{method:?}: the CRC32C of the compressed bytes");
        let (got, meta) = gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), &name).await.expect("in GCS");
        assert!(got == gz, "{method:?}: GCS holds the compressed bytes as S3 stored them ({} bytes)", got.len());
        assert_eq!(meta["contentEncoding"], "gzip", "{method:?}");
        assert_eq!(meta["contentType"], "application/json", "{method:?}");
        assert_eq!(meta["crc32c"].as_str(), Some(crc32c_b64(&gz).as_str()), "{method:?}");
    }
}

/// An SSE-C object can be read only with the customer's key, and xcr is given none: AWS answers
/// its GetObject `400 InvalidRequest`. xcr's behaviour: the copy fails at once as invalid (a
/// permanent failure: the record goes to the DLQ, not round a retry loop), naming the object
/// and S3's reason, with nothing written to GCS. moto ignores SSE-C (it serves the object
/// without the key), so the fault proxy gives AWS's answer. What an SSE-C *read* would change
/// (the ETag is then no MD5: `aws::s3::encrypted_with_key`) is covered by its unit rule; the
/// SSE-KMS read path is tests/replicate.rs's `an_sse_kms_object_is_replicated`.
#[tokio::test(flavor = "multi_thread")]
async fn an_sse_c_source_fails_at_once_as_invalid_naming_s3s_reason() {
    let stack = Stack::up();
    let s3 = stack.s3().await;
    let src = stack.source_bucket();
    let key = "sse-c/object.bin";
    let customer_key = [7u8; 32];
    let b64 = |b: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b);
    s3.put_object()
        .bucket(src)
        .key(key)
        .body(bytes_of(10_000, 9).into())
        .sse_customer_algorithm("AES256")
        .sse_customer_key(b64(&customer_key))
        .sse_customer_key_md5(b64(&Md5::digest(customer_key)))
        .send()
        .await
        .expect("put with SSE-C");

    let proxy =
        FaultProxy::start(Service::S3, stack.var("AWS_ENDPOINT_URL"), Plan::script(Duration::ZERO, vec![])).await;
    // Armed for more GETs than the retry policy allows: a retry would meet the same answer and
    // be counted below.
    proxy.fault_next("GetObject", "", Fault::SseCustomerKeyRequired, 10);
    let sdk = fault_proxy::sdk_via(&proxy.url(), stack.var("AWS_REGION")).await;
    let engine = Transfer::new(xcr::adapters::aws::s3::S3Source::new(&sdk), stack.gcs(), small_chunks(), fast_retry());
    let err = engine
        .copy(&ObjectRef::new(src, key), &Destination::new(stack.dest_bucket(), key))
        .await
        .expect_err("an SSE-C object cannot be read without its key");
    assert_eq!(err.kind(), ErrorKind::Invalid, "{}", err.chain());
    let chain = err.chain().to_string();
    assert!(chain.contains(key), "names the object: {chain}");
    assert!(chain.contains("InvalidRequest") && chain.contains("Server Side Encryption"), "S3's reason: {chain}");
    let gets = proxy.seen_since(0).iter().filter(|s| s.method == "GET").count();
    assert_eq!(gets, 1, "not retried");
    assert!(gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), key).await.is_none(), "nothing written to GCS");
}

/// One routing rule fanning an object out to three destinations: each copy lands with its own
/// storage class (`coldline` given in lower case), the one without a class gets the bucket's
/// default, and every copy has the same bytes. Read back from the JSON API's object resource.
#[tokio::test(flavor = "multi_thread")]
async fn fan_out_gives_each_destination_its_storage_class() {
    let stack = Stack::up();
    let s3 = stack.s3().await;
    let src = stack.source_bucket();
    let dest = stack.dest_bucket();
    let rules = serde_json::json!([{
        "source_bucket": src,
        "prefix": "fan/",
        "destinations": [
            {"bucket": dest, "key_prefix": "nearline/", "storage_class": "NEARLINE"},
            {"bucket": dest, "key_prefix": "coldline/", "storage_class": "coldline"},
            {"bucket": dest, "key_prefix": "default/"},
        ]
    }])
    .to_string();
    let data = bytes_of(40_000, 17);
    put(&s3, src, "fan/report.csv", data.clone()).await;
    let r = replicator(&stack, &[("XCR_RULES", rules.as_str())]).await;
    let task = Task {
        action: Action::Copy,
        object: ObjectRef::new(src, "fan/report.csv"),
        sequencer: None,
        event_time: None,
        job_id: None,
        job_task: None,
        destination: None,
        overwrite: None,
        event: None,
    };
    let results = r.apply(&task, now_ms() + 60_000).await;
    assert_eq!(results.len(), 3, "one result per destination");
    for res in &results {
        let rep = res.as_ref().unwrap_or_else(|e| panic!("{}", e.chain()));
        assert_eq!(rep.outcome, Outcome::Replicated, "{rep:?}");
    }
    let bucket_default = reqwest::get(format!("{}/storage/v1/b/{dest}", stack.gcs_endpoint()))
        .await
        .expect("GET bucket")
        .json::<serde_json::Value>()
        .await
        .expect("bucket json")["storageClass"]
        .as_str()
        .unwrap_or("STANDARD")
        .to_string();
    for (name, class) in [
        ("nearline/report.csv", "NEARLINE"),
        ("coldline/report.csv", "COLDLINE"),
        ("default/report.csv", bucket_default.as_str()),
    ] {
        let (got, meta) = gcs_read(stack.gcs_endpoint(), dest, name).await.unwrap_or_else(|| panic!("{name} in GCS"));
        assert!(got == data, "{name}: bytes differ");
        assert_eq!(meta["storageClass"].as_str(), Some(class), "{name}: {meta}");
    }
}

/// A 0-byte object through GCS's resumable protocol: a session opened for 0 bytes and
/// finalized by the one request xcr's adapter sends for an empty last chunk
/// (`Content-Range: bytes */0` with the CRC32C of nothing) creates the empty object. The engine
/// itself sends 0 bytes as one request (0 is never over the resumable threshold; see
/// tests/transfer.rs's size edges), so this drives the adapter's session primitives directly.
#[tokio::test(flavor = "multi_thread")]
async fn zero_bytes_finalize_through_a_resumable_session() {
    let stack = Stack::up();
    let gcs = stack.gcs();
    let empty_crc = crc32c_b64(&[]);
    let spec = UploadSpec {
        bucket: stack.dest_bucket().to_string(),
        name: "empty/resumable.bin".into(),
        size: 0,
        crc32c: Some(empty_crc.clone()),
        ..Default::default()
    };
    let session = gcs.start_session(&spec).await.unwrap_or_else(|e| panic!("{}", e.chain()));
    let progress = gcs
        .upload_chunk(&session, 0, Bytes::new(), 0, Some(&empty_crc))
        .await
        .unwrap_or_else(|e| panic!("{}", e.chain()));
    let UploadProgress::Done(stored) = progress else { panic!("the session is finalized: {progress:?}") };
    assert_eq!(stored.size, 0);
    assert_eq!(stored.name, "empty/resumable.bin");
    let (got, meta) = gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), "empty/resumable.bin").await.expect("in GCS");
    assert!(got.is_empty());
    assert!(meta["size"].as_str().is_none_or(|s| s == "0"), "{meta}");
    assert_eq!(meta["crc32c"].as_str(), Some(empty_crc.as_str()), "{meta}");
}
