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

/// `xcr pump` says what became of the objects, not only how many messages it deleted: a copied
/// object, one already copied, and a command for a key that does not exist (deleted from the
/// queue like the others, but counted as NotFound, neither replicated nor failed).
#[tokio::test(flavor = "multi_thread")]
async fn pump_totals_count_each_outcome() {
    let stack = Stack::up();
    let s3 = stack.s3().await;
    put(&s3, stack.source_bucket(), "pumped/a.bin", bytes_of(1000, 3)).await;
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk().await);
    let queue = stack.var("XCR_QUEUE_URL").to_string();
    for key in ["pumped/a.bin", "pumped/never-put.bin"] {
        let body = serde_json::json!({"bucket": stack.source_bucket(), "key": key}).to_string();
        sqs.send_message().queue_url(&queue).message_body(body).send().await.expect("send");
    }
    let (code, out, err) = xcr(&stack, &["pump", "--until-idle", "2", "--json"]);
    assert_eq!(code, 0, "{err}");
    let outcomes = &out["outcomes"];
    // The S3 notification and the command for a.bin: one copy, one duplicate (in either order).
    assert_eq!(outcomes["ObjectsReplicated"], 1, "{out}");
    assert_eq!(outcomes["Duplicates"], 1, "{out}");
    assert_eq!(outcomes["NotFound"], 1, "{out}");
    // (A claim that met the other delivery's lease answers Busy and is requeued: more messages
    // than three may pass, none failed.)
    assert_eq!(out["failed"], 0, "{out}");
    assert_eq!(outcomes["BytesReplicated"], 1000, "{out}");
    assert!(outcomes.get("Failures").is_none(), "{out}");
}

/// Runs xcr in `dir` with exactly `env` (plus PATH): exit code, stdout, stderr.
fn xcr_with(dir: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xcr"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().copied())
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .expect("run xcr");
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// AWS pointed at a port where nothing listens (connections are refused at once), with dummy
/// credentials and one attempt, so that a command that gets past its configuration fails fast
/// on the network instead of on a setting.
const NOTHING_LISTENS: [(&str, &str); 6] = [
    ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
    ("AWS_MAX_ATTEMPTS", "1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

/// A missing setting names `.xcr/local.env` and how to load it when a local stack's file is
/// there (here or in a parent directory), and only then.
#[test]
fn a_missing_setting_points_at_the_local_stack_settings() {
    let dir = tempfile::tempdir().expect("dir");
    let (code, _, err) = xcr_with(dir.path(), &[], &["--log-format", "human", "dlq", "count"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("XCR_DLQ_URL is required"), "{err}");
    assert!(!err.contains("local.env"), "no stack file here, no hint: {err}");

    std::fs::create_dir_all(dir.path().join(".xcr")).expect("mkdir");
    std::fs::write(dir.path().join(".xcr/local.env"), "XCR_DLQ_URL=http://127.0.0.1:9/q\n").expect("write");
    let sub = dir.path().join("sub");
    std::fs::create_dir_all(&sub).expect("mkdir");
    for cwd in [dir.path(), sub.as_path()] {
        let (code, _, err) = xcr_with(cwd, &[], &["--log-format", "human", "dlq", "count"]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("XCR_DLQ_URL is required"), "{err}");
        assert!(err.contains(".xcr/local.env") && err.contains("set -a; .") && err.contains("make local-up"), "{err}");
    }
    // A setting that is wrong, not missing: no hint about loading settings.
    let (code, _, err) = xcr_with(
        dir.path(),
        &[("XCR_DLQ_URL", "http://x"), ("XCR_CHUNK_SIZE", "7")],
        &["--log-format", "human", "dlq", "count"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("XCR_CHUNK_SIZE") && !err.contains("local.env"), "{err}");
}

/// A command's own settings and its arguments.
type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);

/// Each command asks for what it uses: the queue commands for their queue only (no Google
/// credential, no table), `status` for the ledger (no GCS, no queue), the job commands for the
/// jobs table. With those given they get past configuration and fail on the network (1), and
/// a refused connection with a local stack file around says the stack may have moved.
#[test]
fn commands_ask_only_for_the_settings_they_use() {
    let dir = tempfile::tempdir().expect("dir");
    let cases: [Case; 5] = [
        (&[("XCR_DLQ_URL", "http://127.0.0.1:9/000000000000/dlq")], &["dlq", "count"]),
        (
            &[
                ("XCR_DLQ_URL", "http://127.0.0.1:9/000000000000/dlq"),
                ("XCR_QUEUE_URL", "http://127.0.0.1:9/000000000000/q"),
            ],
            &["dlq", "redrive"],
        ),
        (&[("XCR_LEDGER_TABLE", "ledger")], &["status", "s3://src/k", "--dest", "gs://dst"]),
        (&[("XCR_LEDGER_TABLE", "ledger"), ("XCR_DEST_BUCKET", "dst")], &["status", "s3://src/k"]),
        (&[("XCR_JOBS_TABLE", "jobs")], &["jobs", "list"]),
    ];
    for (vars, args) in cases {
        let mut env: Vec<(&str, &str)> = NOTHING_LISTENS.to_vec();
        env.extend_from_slice(vars);
        let mut argv = vec!["--log-format", "human"];
        argv.extend_from_slice(args);
        let (code, _, err) = xcr_with(dir.path(), &env, &argv);
        assert_eq!(code, 1, "{args:?} gets past its configuration: {err}");
        assert!(!err.contains("invalid configuration"), "{args:?}: {err}");
        assert!(err.to_lowercase().contains("connection refused"), "{args:?}: {err}");
    }
    // `dlq count` without its queue: asks for that alone.
    let (code, _, err) = xcr_with(dir.path(), &NOTHING_LISTENS, &["--log-format", "human", "dlq", "count"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("XCR_DLQ_URL") && !err.contains("GCS") && !err.contains("XCR_QUEUE_URL"), "{err}");
    // A refused connection with a local stack file around: the stack's ports may have changed.
    std::fs::create_dir_all(dir.path().join(".xcr")).expect("mkdir");
    std::fs::write(dir.path().join(".xcr/local.env"), "").expect("write");
    let mut env = NOTHING_LISTENS.to_vec();
    env.push(("XCR_JOBS_TABLE", "jobs"));
    let (code, _, err) = xcr_with(dir.path(), &env, &["--log-format", "human", "jobs", "list"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("nothing listens there") && err.contains(".xcr/local.env"), "{err}");
}

/// The exit-code table (DOCS-PENDING.md, CLI) for what needs no stack: 2 usage (xcr's own and
/// clap's), 2 configuration, 4 an audit that could not finish.
#[test]
fn exit_codes_follow_one_table() {
    let dir = tempfile::tempdir().expect("dir");
    let (code, _, err) = xcr_with(dir.path(), &[], &["status", "not-a-url"]);
    assert_eq!(code, 2, "usage: {err}");
    let (code, _, err) = xcr_with(dir.path(), &[], &["pump", "--no-such-flag"]);
    assert_eq!(code, 2, "clap's usage error: {err}");
    let (code, _, err) = xcr_with(dir.path(), &[], &["jobs", "list"]);
    assert_eq!(code, 2, "configuration: {err}");
    let mut env = NOTHING_LISTENS.to_vec();
    env.push(("STORAGE_EMULATOR_HOST", "127.0.0.1:9"));
    let (code, _, err) = xcr_with(dir.path(), &env, &["audit", "s3://src", "--dest", "gs://dst"]);
    assert_eq!(code, 4, "the audit could not finish: {err}");
    let (code, _, err) = xcr_with(dir.path(), &[], &["--log-format", "loud", "jobs", "list"]);
    assert_eq!(code, 2, "an unknown log format is a usage error: {err}");
}

/// Logs: JSON lines when stderr is not a terminal (as here) or with `--log-format json`;
/// with `--log-format human` (or XCR_LOG_FORMAT=human) short lines, none of them JSON. An
/// error is said once, in words, without the SDK's debug dump; the JSON log keeps the chain.
#[tokio::test(flavor = "multi_thread")]
async fn errors_are_said_once_in_the_log_format_chosen() {
    let stack = Stack::up();
    let missing = "s3://xcr-no-such-bucket-here/some/key";
    let run = |extra: &[&str], env: &[(&str, &str)]| {
        let mut args: Vec<&str> = extra.to_vec();
        args.extend(["replicate", missing]);
        let out = Command::new(env!("CARGO_BIN_EXE_xcr"))
            .args(&args)
            .env_clear()
            .envs(stack.command_env())
            .envs(env.iter().copied())
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .output()
            .expect("run xcr");
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).to_string())
    };

    // Human: one line, in words.
    for (flags, env) in [(&["--log-format", "human"][..], &[][..]), (&[][..], &[("XCR_LOG_FORMAT", "human")][..])] {
        let (code, err) = run(flags, env);
        assert_eq!(code, 3, "the source does not exist: {err}");
        assert_eq!(err.matches("NoSuchBucket").count(), 1, "said once: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("xcr: ") && err.contains("xcr-no-such-bucket-here"), "{err}");
        for dump in ["Error {", "Caused by", "unhandled error", "service error", "{\""] {
            assert!(!err.contains(dump), "no {dump:?} in {err}");
        }
    }

    // Not a terminal, nothing asked: JSON lines only; the failure once, with its whole chain.
    for flags in [&[][..], &["--log-format", "json"][..]] {
        let (code, err) = run(flags, &[]);
        assert_eq!(code, 3, "{err}");
        let lines: Vec<serde_json::Value> =
            err.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}"))).collect();
        let failures: Vec<&serde_json::Value> = lines.iter().filter(|l| l["exit_code"] == 3).collect();
        assert_eq!(failures.len(), 1, "{err}");
        assert_eq!(failures[0]["level"], "ERROR");
        assert_eq!(failures[0]["kind"], "not_found");
        assert!(failures[0]["error"].as_str().is_some_and(|e| e.contains("NoSuchBucket")), "{err}");
    }

    // Human output of a command that works: its result on stdout, nothing on stderr.
    let out = Command::new(env!("CARGO_BIN_EXE_xcr"))
        .args(["--log-format", "human", "dlq", "count"])
        .env_clear()
        .envs(stack.command_env())
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .expect("run xcr");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("messages: 0"));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "a person sees the result alone");

    // A job that does not exist: 3.
    let (code, _, err) = xcr(&stack, &["jobs", "show", "job-nope"]);
    assert_eq!(code, 3, "{err}");
}
