//! The `xcr` binary as a user runs it: environment from the stack's local.env, outcome on
//! stdout, exit code by result.

mod common;

use common::*;
use std::process::Command;

fn xcr(stack: &Stack, args: &[&str]) -> (i32, serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xcr"))
        .args(args)
        .env_clear()
        .envs(stack.command_env())
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .expect("run xcr");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let json = serde_json::from_str(stdout.trim()).unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap_or(-1), json, String::from_utf8_lossy(&out.stderr).to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn replicate_prints_the_outcome_and_exits_by_result() {
    let stack = Stack::up();
    let s3 = stack.s3().await;
    let data = bytes_of(70_000, 7);
    put(&s3, stack.source_bucket(), "cli/a b+c.bin", data.clone()).await;
    let src = format!("s3://{}/cli/a b+c.bin", stack.source_bucket());

    // Default destination: the same key in XCR_DEST_BUCKET.
    let (code, out, err) = xcr(&stack, &["replicate", &src, "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out["outcome"], "replicated");
    assert_eq!(out["destination"]["name"], "cli/a b+c.bin");
    assert_eq!(out["bytes"], 70_000);
    assert_eq!(out["crc32c"].as_str(), Some(crc32c_b64(&data).as_str()));
    let (got, _) = gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), "cli/a b+c.bin").await.expect("copied");
    assert!(got == data);
    // Logs are JSON lines on stderr, with the object in their span.
    let line = err.lines().find(|l| l.contains("\"task done\"")).expect("a 'task done' log line");
    let log: serde_json::Value = serde_json::from_str(line).expect("JSON log line");
    assert_eq!(log["level"], "INFO");
    assert_eq!(log["outcome"], "replicated");
    assert!(log["span"]["object"].as_str().is_some_and(|o| o.ends_with("cli/a b+c.bin")), "{log}");

    // Without a ledger table every call copies; with one, a repeat is a duplicate.
    let (code, out, err) = xcr(&stack, &["replicate", &src, "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out["outcome"], "already_replicated", "{out}");

    // An explicit destination prefix.
    let (code, out, err) =
        xcr(&stack, &["replicate", &src, "--dest", &format!("gs://{}/copies/", stack.dest_bucket()), "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out["destination"]["name"], "copies/cli/a b+c.bin");

    // A missing source: exit 3, a JSON failure naming the kind.
    let missing = format!("s3://{}/cli/nope", stack.source_bucket());
    let (code, out, _) = xcr(&stack, &["replicate", &missing, "--json"]);
    assert_eq!(code, 3);
    assert_eq!(out["outcome"], "failed");
    assert_eq!(out["error"]["kind"], "not_found");

    // Bad usage: exit 2 with a message.
    let (code, _, err) = xcr(&stack, &["replicate", "not-a-url"]);
    assert_eq!(code, 2);
    assert!(err.contains("s3://BUCKET/KEY"), "{err}");
}

#[test]
fn bad_configuration_lists_every_problem() {
    let out = Command::new(env!("CARGO_BIN_EXE_xcr"))
        .args(["replicate", "s3://b/k"])
        .env_clear()
        .env("XCR_CHUNK_SIZE", "12345")
        .output()
        .expect("run xcr");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for needle in ["XCR_CHUNK_SIZE", "no destination", "no GCS credentials"] {
        assert!(err.contains(needle), "missing {needle}: {err}");
    }
}

/// `xcr jobs cancel` answers as `POST /v1/jobs/{id}/cancel` does: cancelling is idempotent
/// (a cancelled job cancelled again: rc 0), a job that ended otherwise is refused (rc 1).
#[tokio::test(flavor = "multi_thread")]
async fn jobs_cancel_is_idempotent_and_refuses_an_ended_job() {
    let stack = Stack::up();
    let (code, job, err) =
        xcr(&stack, &["jobs", "create", "--source-bucket", stack.source_bucket(), "--prefix", "none/", "--json"]);
    assert_eq!(code, 0, "{err}");
    let id = job["id"].as_str().expect("job id").to_string();
    let (code, out, err) = xcr(&stack, &["jobs", "cancel", &id, "--json"]);
    assert_eq!((code, out["status"].as_str()), (0, Some("CANCELLED")), "{err}");
    let (code, out, err) = xcr(&stack, &["jobs", "cancel", &id, "--json"]);
    assert_eq!((code, out["status"].as_str()), (0, Some("CANCELLED")), "cancelling again: {err}");

    // A job over nothing ends SUCCEEDED once pumped; cancelling it then is refused.
    let (code, job, err) =
        xcr(&stack, &["jobs", "create", "--source-bucket", stack.source_bucket(), "--prefix", "none/", "--json"]);
    assert_eq!(code, 0, "{err}");
    let id = job["id"].as_str().expect("job id").to_string();
    let (code, _, err) = xcr(&stack, &["pump", "--until-idle", "2"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = xcr(&stack, &["jobs", "cancel", &id]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("already SUCCEEDED"), "{err}");
}
