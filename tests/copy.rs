//! `xcr copy` against the emulators, run as the binary a user runs: objects arrive byte for byte
//! with their metadata and provenance (read back over plain HTTP, not through xcr), a rerun
//! copies nothing (without the ledger: decided from GCS's listing; with it: ledger duplicates),
//! a changed object is the only one copied again, `--dry-run` writes nothing, `--json` prints
//! one parsable summary, and a failed object or a destination outside the allowlist make the
//! exit code say so.
//!
//! Emulator: gcp-storage-emulator (the stack's default). Nothing here needs a precondition
//! enforced: every write lands on a fresh name or on one the ledger fences at generation 0.

mod common;
mod fault_proxy;

use common::*;
use fault_proxy::{Fault, FaultProxy, Plan, Service};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

/// Runs `xcr copy ARGS` with the stack's environment, minus `drop`, plus `extra`: exit code,
/// the JSON summary (when stdout is one), stdout and stderr.
fn xcr_copy(
    stack: &Stack,
    drop: &[&str],
    extra: &[(&str, &str)],
    args: &[&str],
) -> (i32, serde_json::Value, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xcr"))
        .arg("copy")
        .args(args)
        .env_clear()
        .envs(stack.command_env().into_iter().filter(|(k, _)| !drop.contains(&k.as_str())))
        .envs(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("XCR_LOG", "warn")
        .output()
        .expect("run xcr copy");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let summary = serde_json::from_str(stdout.trim()).unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap_or(-1), summary, stdout, String::from_utf8_lossy(&out.stderr).to_string())
}

fn outcome(summary: &serde_json::Value, name: &str) -> u64 {
    summary["outcomes"][name].as_u64().unwrap_or(0)
}

/// Names under `prefix` in the destination bucket, listed over plain HTTP.
async fn gcs_names(stack: &Stack, prefix: &str) -> Vec<String> {
    let url = format!("{}/storage/v1/b/{}/o?prefix={}", stack.gcs_endpoint(), stack.dest_bucket(), prefix);
    let page: serde_json::Value = reqwest::get(url).await.expect("list").json().await.expect("list json");
    page["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["name"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// What the test puts in S3: key -> (bytes, content type, user metadata).
type Objects = BTreeMap<String, (Vec<u8>, &'static str, BTreeMap<String, String>)>;

async fn put_objects(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str, n: usize) -> Objects {
    let mut objects = Objects::new();
    for i in 0..n {
        // Sizes from empty to 70 KiB; names with spaces and non-ASCII characters among them.
        let key = match i % 4 {
            0 => format!("{prefix}plain-{i:02}.bin"),
            1 => format!("{prefix}dir {i:02}/été.txt"),
            2 => format!("{prefix}deep/a/b/{i:02}"),
            _ => format!("{prefix}x-{i:02}+y.csv"),
        };
        let data = bytes_of([0, 1, 1000, 16 * 1024, 70_000][i % 5], i as u64);
        let ct = ["text/plain", "application/x-copy-test", "text/csv"][i % 3];
        let mut meta = BTreeMap::new();
        meta.insert("owner".to_string(), format!("team-{i}"));
        s3.put_object()
            .bucket(bucket)
            .key(&key)
            .content_type(ct)
            .cache_control("max-age=60")
            .set_metadata(Some(meta.clone().into_iter().collect()))
            .body(data.clone().into())
            .send()
            .await
            .expect("put");
        objects.insert(key, (data, ct, meta));
    }
    objects
}

#[tokio::test(flavor = "multi_thread")]
async fn copy_is_byte_exact_with_metadata_and_a_rerun_copies_nothing() {
    let stack = Stack::up();
    let s3 = stack.s3().await;
    let src = stack.source_bucket().to_string();
    let dst = stack.dest_bucket().to_string();
    let objects = put_objects(&s3, &src, "data/", 24).await;
    // Outside the source prefix: never copied.
    put(&s3, &src, "other/outside.bin", bytes_of(10, 99)).await;
    let no_ledger = ["XCR_LEDGER_TABLE"];
    let (source, dest) = (format!("s3://{src}/data/"), format!("gs://{dst}/copy/"));

    // A dry run counts and writes nothing.
    let (rc, dry, _, err) = xcr_copy(&stack, &no_ledger, &[], &[&source, &dest, "--dry-run", "--json"]);
    assert_eq!(rc, 0, "dry run: {err}");
    assert_eq!((dry["dry_run"].as_bool(), dry["objects"].as_u64()), (Some(true), Some(24)), "{dry}");
    assert_eq!((outcome(&dry, "would_copy"), dry["copied"].as_u64()), (24, Some(0)), "{dry}");
    assert!(gcs_names(&stack, "copy/").await.is_empty(), "a dry run wrote to GCS");

    let (rc, first, _, err) = xcr_copy(&stack, &no_ledger, &[], &[&source, &dest, "--concurrency", "8", "--json"]);
    assert_eq!(rc, 0, "copy: {err}");
    assert_eq!((outcome(&first, "replicated"), first["failed"].as_u64()), (24, Some(0)), "{first}");
    let total: u64 = objects.values().map(|(d, _, _)| d.len() as u64).sum();
    assert_eq!((first["bytes"].as_u64(), first["copied_bytes"].as_u64()), (Some(total), Some(total)));
    assert!(first["elapsed_s"].as_f64().is_some() && first["objects_per_s"].as_f64().is_some(), "{first}");

    // Read back independently: the bytes, the content headers, user metadata and provenance.
    for (key, (data, ct, meta)) in &objects {
        let name = format!("copy/{key}");
        let (bytes, resource) =
            gcs_read(stack.gcs_endpoint(), &dst, &name).await.unwrap_or_else(|| panic!("{name} missing"));
        assert!(bytes == *data, "{name}: bytes differ ({} vs {} bytes)", bytes.len(), data.len());
        assert_eq!(resource["contentType"].as_str(), Some(*ct), "{name}");
        assert_eq!(resource["cacheControl"].as_str(), Some("max-age=60"), "{name}");
        assert_eq!(resource["crc32c"].as_str(), Some(crc32c_b64(data).as_str()), "{name}");
        let m = &resource["metadata"];
        assert_eq!(m["owner"].as_str(), meta.get("owner").map(String::as_str), "{name}");
        assert_eq!(m["xcr-source-bucket"].as_str(), Some(src.as_str()), "{name}");
        assert_eq!(m["xcr-source-key"].as_str(), Some(xcr::transfer::metadata::encode_key(key).as_str()), "{name}");
        assert!(m["xcr-source-etag"].as_str().is_some_and(|e| !e.is_empty()), "{name}: {m}");
    }
    assert!(gcs_read(stack.gcs_endpoint(), &dst, "copy/other/outside.bin").await.is_none(), "outside the prefix");
    let generations: BTreeMap<String, String> = {
        let mut g = BTreeMap::new();
        for key in objects.keys() {
            let (_, r) = gcs_read(stack.gcs_endpoint(), &dst, &format!("copy/{key}")).await.expect("read");
            g.insert(key.clone(), generation_of(&r));
        }
        g
    };

    // A rerun copies nothing, decided from the listings: no generation changes.
    let (rc, again, _, err) = xcr_copy(&stack, &no_ledger, &[], &[&source, &dest, "--json"]);
    assert_eq!(rc, 0, "rerun: {err}");
    assert_eq!((outcome(&again, "already_replicated"), again["copied"].as_u64()), (24, Some(0)), "{again}");
    for (key, generation) in &generations {
        let (_, r) = gcs_read(stack.gcs_endpoint(), &dst, &format!("copy/{key}")).await.expect("read");
        assert_eq!(&generation_of(&r), generation, "{key} was written again");
    }

    // A changed object, and one whose metadata alone was replaced (same bytes, same ETag): those
    // two are copied again, nothing else.
    let (changed, (_, ct, _)) = objects.iter().nth(3).expect("an object");
    let new_bytes = bytes_of(5_000, 777);
    s3.put_object()
        .bucket(&src)
        .key(changed)
        .content_type(*ct)
        .body(new_bytes.clone().into())
        .send()
        .await
        .expect("put");
    let (relabelled, _) = objects.iter().nth(5).expect("an object");
    s3.copy_object()
        .bucket(&src)
        .key(relabelled)
        .copy_source(format!("{src}/{}", urlencoding(relabelled)))
        .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
        .content_type("image/png")
        .send()
        .await
        .expect("self-copy");
    let (rc, _, out, err) = xcr_copy(&stack, &no_ledger, &[], &[&source, &dest]);
    assert_eq!(rc, 0, "third run: {err}");
    assert!(out.contains("24 objects") && out.contains("copied"), "a human summary: {out}");
    let (bytes, _) = gcs_read(stack.gcs_endpoint(), &dst, &format!("copy/{changed}")).await.expect("read");
    assert!(bytes == new_bytes, "the changed object was not copied again");
    let (_, r) = gcs_read(stack.gcs_endpoint(), &dst, &format!("copy/{relabelled}")).await.expect("read");
    assert_eq!(r["contentType"].as_str(), Some("image/png"), "the new metadata was not copied");
    for (key, generation) in &generations {
        if key != changed && key != relabelled {
            let (_, r) = gcs_read(stack.gcs_endpoint(), &dst, &format!("copy/{key}")).await.expect("read");
            assert_eq!(&generation_of(&r), generation, "{key} was written again");
        }
    }
}

/// The source key as a CopySource path segment.
fn urlencoding(key: &str) -> String {
    percent_encoding::utf8_percent_encode(key, percent_encoding::NON_ALPHANUMERIC).to_string().replace("%2F", "/")
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_ledger_failures_fail_the_run_and_a_rerun_copies_only_them() {
    let stack = Stack::up();
    let s3 = stack.s3().await;
    let src = stack.source_bucket().to_string();
    let dst = stack.dest_bucket().to_string();
    let objects = put_objects(&s3, &src, "led/", 12).await;
    let bad = objects.keys().nth(2).expect("a key").clone();
    let (source, dest) = (format!("s3://{src}/led/"), format!("gs://{dst}/"));

    // A destination outside XCR_ALLOWED_DESTINATIONS: refused before anything is listed.
    let (rc, refused, _, _) = xcr_copy(&stack, &[], &[], &[&source, "gs://not-allowed-bucket/x/", "--json"]);
    assert_eq!(rc, 2, "{refused}");
    assert_eq!(refused["error"]["kind"].as_str(), Some("refused"), "{refused}");
    // Without a default bucket the list alone says where writes may go.
    let elsewhere = format!("gs://{dst}/elsewhere/");
    let (rc, _, _, err) =
        xcr_copy(&stack, &["XCR_DEST_BUCKET"], &[("XCR_ALLOWED_DESTINATIONS", &elsewhere)], &[&source, &dest]);
    assert_eq!(rc, 2, "a destination outside the allowlist: {err}");
    assert!(err.contains("not in XCR_ALLOWED_DESTINATIONS"), "{err}");
    assert!(gcs_names(&stack, "led/").await.is_empty(), "a refused copy wrote");
    // Bad usage.
    let (rc, _, _, _) = xcr_copy(&stack, &[], &[], &["s3:/nope", &dest]);
    assert_eq!(rc, 2);

    // GCS refuses one object's upload for good (400: final, not retried).
    let proxy =
        FaultProxy::start(Service::Gcs, stack.gcs_endpoint(), Plan::script(Duration::from_secs(1), vec![])).await;
    proxy.fault_next("storage.objects.insert", &bad, Fault::BadRequest, 100);
    let url = proxy.url();
    let (rc, first, _, err) = xcr_copy(&stack, &[], &[("STORAGE_EMULATOR_HOST", &url)], &[&source, &dest, "--json"]);
    assert_eq!(rc, 1, "one object failed: {first} {err}");
    assert_eq!(
        (outcome(&first, "replicated"), outcome(&first, "failed"), first["failed"].as_u64()),
        (11, 1, Some(1)),
        "{first}"
    );
    assert_eq!(first["failures"][0]["key"].as_str(), Some(bad.as_str()), "{first}");
    assert!(gcs_read(stack.gcs_endpoint(), &dst, &bad).await.is_none(), "the refused object landed");

    // The rerun copies the failed object only; the others are the ledger's duplicates.
    let (rc, again, _, err) = xcr_copy(&stack, &[], &[], &[&source, &dest, "--json"]);
    assert_eq!(rc, 0, "rerun: {again} {err}");
    assert_eq!((outcome(&again, "replicated"), outcome(&again, "already_replicated")), (1, 11), "{again}");
    let (bytes, _) = gcs_read(stack.gcs_endpoint(), &dst, &bad).await.expect("copied on the rerun");
    assert!(bytes == objects[&bad].0);
    // The ledger recorded every copy.
    let sdk = stack.sdk().await;
    let ledger = xcr::wiring::ledger::AnyLedger::Dynamo(ledger(&sdk, &stack));
    for key in objects.keys() {
        let item = ledger.get(&format!("gs://{dst}/{key}")).await.expect("ledger read");
        let done = item.and_then(|i| i.done).unwrap_or_else(|| panic!("no ledger record for {key}"));
        assert_eq!(done.size, Some(objects[key].0.len() as u64), "{key}");
    }
}
