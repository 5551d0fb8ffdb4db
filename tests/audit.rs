//! `xcr audit` against the emulators: a bucket seeded with every kind of drift is reported
//! exactly, `--repair` enqueues exactly what closes it, and after `xcr pump` a second audit finds
//! no drift.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::process::Command;
use xcr::ports::{ObjectSink, UploadSpec};

/// Runs xcr with the stack's environment plus `extra`: exit code, stdout lines as JSON, stderr.
fn xcr(stack: &Stack, extra: &[(&str, &str)], args: &[&str]) -> (i32, Vec<serde_json::Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xcr"))
        .args(args)
        .env_clear()
        .envs(stack.command_env())
        .envs(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .expect("run xcr");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let lines = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    (out.status.code().unwrap_or(-1), lines, String::from_utf8_lossy(&out.stderr).to_string())
}

/// The findings as (kind, key) pairs, and the counts line.
fn findings(lines: &[serde_json::Value]) -> (Vec<(String, String)>, serde_json::Value) {
    let mut out = Vec::new();
    let mut counts = serde_json::Value::Null;
    for l in lines {
        if let Some(c) = l.get("counts") {
            counts = c.clone();
        } else {
            out.push((l["kind"].as_str().unwrap_or("?").to_string(), l["key"].as_str().unwrap_or("?").to_string()));
        }
    }
    (out, counts)
}

/// Writes an object into GCS directly, as something other than xcr would.
async fn gcs_put(stack: &Stack, name: &str, data: Vec<u8>, content_type: &str) {
    let spec = UploadSpec {
        bucket: stack.dest_bucket().to_string(),
        name: name.to_string(),
        size: data.len() as u64,
        headers: xcr::model::ContentHeaders { content_type: Some(content_type.into()), ..Default::default() },
        metadata: BTreeMap::new(),
        ..Default::default()
    };
    stack.gcs().upload_single(&spec, data.into()).await.expect("direct GCS upload");
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_reports_each_kind_of_drift_and_repair_closes_it() {
    let stack = Stack::up();
    let s3 = stack.s3().await;
    let src = stack.source_bucket().to_string();
    let ct = "application/x-audit";
    let put_ct = |key: &'static str, data: Vec<u8>| {
        let s3 = s3.clone();
        let src = src.clone();
        async move {
            s3.put_object().bucket(&src).key(key).content_type(ct).body(data.into()).send().await.expect("put");
        }
    };
    let deletes = [("XCR_REPLICATE_DELETES", "true")];
    // Copied by xcr and untouched since (one with a name that sorts by its UTF-8 bytes).
    for (i, key) in ["a/match-1", "a/match-2", "a/é-match"].into_iter().enumerate() {
        put_ct(key, bytes_of(3_000 + i, i as u64)).await;
    }
    // In S3 only.
    put_ct("b/missing", bytes_of(1_000, 20)).await;
    // Copied, then GCS's bytes replaced by others of the same size.
    put_ct("c/corrupt", bytes_of(2_000, 30)).await;
    // Copied, then the S3 object's metadata replaced (a self-copy: same bytes, same ETag).
    put_ct("d/metadata", bytes_of(2_500, 40)).await;
    // Multipart in S3 (ETag "-2", no stored CRC32C), written to GCS by someone else: no shared
    // checksum and no ledger record.
    let multi = bytes_of(5 * 1024 * 1024 + 100, 50);
    let up =
        s3.create_multipart_upload().bucket(&src).key("f/unverifiable").content_type(ct).send().await.expect("mpu");
    let id = up.upload_id().expect("upload id").to_string();
    let mut parts = Vec::new();
    for (n, chunk) in [&multi[..5 * 1024 * 1024], &multi[5 * 1024 * 1024..]].into_iter().enumerate() {
        let n = n as i32 + 1;
        let p = s3
            .upload_part()
            .bucket(&src)
            .key("f/unverifiable")
            .upload_id(&id)
            .part_number(n)
            .body(chunk.to_vec().into())
            .send()
            .await
            .expect("part");
        parts.push(
            aws_sdk_s3::types::CompletedPart::builder().part_number(n).e_tag(p.e_tag().unwrap_or_default()).build(),
        );
    }
    let done = aws_sdk_s3::types::CompletedMultipartUpload::builder().set_parts(Some(parts)).build();
    s3.complete_multipart_upload()
        .bucket(&src)
        .key("f/unverifiable")
        .upload_id(&id)
        .multipart_upload(done)
        .send()
        .await
        .expect("complete mpu");
    gcs_put(&stack, "f/unverifiable", multi.clone(), ct).await;

    for key in ["a/match-1", "a/match-2", "a/é-match", "c/corrupt", "d/metadata"] {
        let (code, _, err) = xcr(&stack, &[], &["replicate", &format!("s3://{src}/{key}"), "--json"]);
        assert_eq!(code, 0, "{key}: {err}");
    }
    gcs_put(&stack, "c/corrupt", bytes_of(2_000, 31), ct).await;
    s3.copy_object()
        .bucket(&src)
        .key("d/metadata")
        .copy_source(format!("{src}/d/metadata"))
        .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
        .content_type(ct)
        .metadata("owner", "audit")
        .send()
        .await
        .expect("self-copy");
    // In GCS only.
    gcs_put(&stack, "e/extra", bytes_of(700, 60), ct).await;

    // Two keys per page: every page boundary of both listings is crossed.
    let source = format!("s3://{}", stack.source_bucket());
    let audit = |extra: &[(&str, &str)], page: &str, more: &[&str]| {
        let mut args = vec!["audit", source.as_str(), "--json", "--page-size", page];
        args.extend_from_slice(more);
        xcr(&stack, extra, &args)
    };
    let (code, lines, err) = audit(&deletes, "2", &[]);
    let (found, counts) = findings(&lines);
    let expect: Vec<(String, String)> = [
        ("missing", "b/missing"),
        ("different", "c/corrupt"),
        ("different", "d/metadata"),
        ("extra", "e/extra"),
        ("unverifiable", "f/unverifiable"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(found, expect, "{err}");
    assert_eq!(code, 1, "drift found: exit 1; {err}");
    let reason = |key: &str| {
        lines.iter().find(|l| l["key"] == key).and_then(|l| l["reason"].as_str()).unwrap_or_default().to_string()
    };
    assert!(reason("c/corrupt").contains("md5"), "{}", reason("c/corrupt"));
    assert!(reason("d/metadata").contains("owner"), "{}", reason("d/metadata"));
    let dest = lines.iter().find(|l| l["key"] == "b/missing").expect("missing line");
    assert_eq!(dest["destination"], format!("gs://{}/b/missing", stack.dest_bucket()));
    assert_eq!(counts["compared"], 6, "{counts}");
    assert_eq!(counts["matching"], 3, "{counts}");
    assert_eq!(counts["drift"], 4, "{counts}");

    // Without deletes replicated an extra is reported but is not drift.
    let (code, lines, _) = audit(&[], "1000", &[]);
    assert_eq!(findings(&lines).1["drift"], 3);
    assert_eq!(code, 1);

    // The stack's bucket notifications queued an event per put: drop them, so that only the
    // repair's commands are on the queue and only they can close the drift.
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk().await);
    sqs.purge_queue().queue_url(stack.var("XCR_QUEUE_URL")).send().await.expect("purge the queue");
    let queue = xcr::aws::sqs::Queue::new(&stack.sdk().await, stack.var("XCR_QUEUE_URL"));
    assert_eq!(queue.depth().await.expect("depth"), (0, 0));

    // Repair: exactly the three copies and the delete.
    let (code, lines, err) = audit(&deletes, "2", &["--repair"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(findings(&lines).1["enqueued"], 4, "{err}");
    assert_eq!(queue.depth().await.expect("depth"), (4, 0));
    let (code, _, err) = xcr(&stack, &deletes, &["pump", "--until-idle", "2", "--json"]);
    assert_eq!(code, 0, "{err}");

    let (code, lines, err) = audit(&deletes, "2", &[]);
    let (found, counts) = findings(&lines);
    assert_eq!(found, vec![("unverifiable".to_string(), "f/unverifiable".to_string())], "{lines:?} {err}");
    assert_eq!(counts["drift"], 0, "{counts}");
    assert_eq!(code, 0, "{err}");
    // The repaired bytes are S3's, read back independently.
    let (got, meta) = gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), "c/corrupt").await.expect("repaired");
    assert!(got == bytes_of(2_000, 30));
    assert_eq!(meta["metadata"]["xcr-source-key"], "c/corrupt");
    assert!(gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), "e/extra").await.is_none(), "extra deleted");

    // Once xcr has copied the multipart object, the ledger's record of that verified copy (same
    // generation, size and CRC32C as GCS holds) vouches for it.
    let (code, _, err) = xcr(&stack, &[], &["replicate", &format!("s3://{src}/f/unverifiable"), "--json"]);
    assert_eq!(code, 0, "{err}");
    let (code, lines, err) = audit(&deletes, "1000", &[]);
    let (found, counts) = findings(&lines);
    assert!(found.is_empty(), "{found:?} {err}");
    assert_eq!((counts["matching"].as_u64(), code), (Some(7), 0), "{counts}");

    // A source prefix and a destination prefix: names are PREFIX + key, listed under both.
    let (code, lines, err) = xcr(
        &stack,
        &deletes,
        &["audit", &format!("s3://{src}/a/"), "--dest", &format!("gs://{}/copies/", stack.dest_bucket()), "--json"],
    );
    let (found, counts) = findings(&lines);
    assert_eq!(found.iter().filter(|(k, _)| k == "missing").count(), 3, "{found:?} {err}");
    assert_eq!((counts["compared"].as_u64(), code), (Some(0), 1), "{counts}");
    let copy = format!("gs://{}/copies/a/match-1", stack.dest_bucket());
    assert!(lines.iter().any(|l| l["destination"] == copy.as_str()), "{lines:?}");

    // Bad usage.
    let (code, _, err) = xcr(&stack, &[], &["audit", "gs://not-s3"]);
    assert_eq!(code, 2, "{err}");
}
