//! Crash and resume: `xcr replicate` of a 64 MiB object is killed with SIGKILL part-way through
//! its resumable upload, then the task is delivered again (a second `xcr replicate`). The second
//! run continues the session recorded in the ledger from the offset GCS confirms, unless the
//! source changed meanwhile, in which case it starts over and copies the new bytes.

mod common;

use common::*;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use xcr::ports::{ObjectSink, UploadProgress};

const CHUNK: u64 = 2 << 20;
const SIZE: usize = 64 << 20;
/// The kill comes once GCS confirms at least this much (4 chunks).
const KILL_AFTER: u64 = 4 * CHUNK;
/// Lease of each run, seconds: the redelivery can claim this long after the kill. It also
/// sets how often a run records its confirmed offset in the ledger (every third of it).
const LEASE: &str = "1";

fn xcr(stack: &Stack, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xcr"));
    cmd.args(args)
        .args(["--lease", LEASE])
        .env_clear()
        .envs(stack.command_env())
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("XCR_CHUNK_SIZE", CHUNK.to_string())
        .env("XCR_RESUMABLE_THRESHOLD", "1MiB")
        .env("XCR_LOG", "debug");
    cmd
}

/// What the killed run left behind.
struct Killed {
    /// The session URI the ledger recorded (never printed by the tests).
    session: String,
    /// What GCS holds of the session once the process is dead.
    confirmed: u64,
    /// The confirmed offset the ledger recorded last (written every third of the lease).
    recorded: u64,
    log: String,
}

/// Starts `xcr replicate` and kills it with SIGKILL as soon as the session it recorded in the
/// ledger has at least `KILL_AFTER` bytes confirmed by GCS (asked independently of the process)
/// and the ledger has recorded a confirmed offset past the start.
async fn replicate_and_kill(stack: &Stack, key: &str) -> Killed {
    let src = format!("s3://{}/{key}", stack.source_bucket());
    let log_path = stack.dir().join(format!("killed-{}.log", key.replace('/', "_")));
    let log_file = std::fs::File::create(&log_path).expect("log file");
    let mut child: Child =
        xcr(stack, &["replicate", &src, "--json"]).stdout(Stdio::null()).stderr(log_file).spawn().expect("spawn xcr");
    let ledger = ledger(&stack.sdk().await, stack);
    let gcs = stack.gcs();
    let item_key = format!("gs://{}/{key}", stack.dest_bucket());
    let started = Instant::now();
    let session = loop {
        assert!(child.try_wait().expect("try_wait").is_none(), "xcr ended before killed");
        assert!(started.elapsed() < Duration::from_secs(120), "no upload session was recorded in the ledger");
        match ledger.get(&item_key).await.expect("read ledger").and_then(|i| i.upload) {
            Some(up) => break up.session,
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    loop {
        assert!(child.try_wait().expect("try_wait").is_none(), "xcr ended before killed");
        assert!(started.elapsed() < Duration::from_secs(300), "the upload made no progress");
        let recorded = ledger.get(&item_key).await.expect("read ledger").and_then(|i| i.upload).map_or(0, |u| u.offset);
        match gcs.session_status(&session, SIZE as u64).await.expect("session status") {
            UploadProgress::Persisted(p) if p >= KILL_AFTER && recorded > 0 => break,
            UploadProgress::Persisted(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            UploadProgress::Done(_) => panic!("the upload finished before it could be killed"),
        }
    }
    child.kill().expect("SIGKILL xcr");
    child.wait().expect("reap xcr");
    // A chunk in flight at the kill may or may not have landed: ask once the process is gone.
    let confirmed = match gcs.session_status(&session, SIZE as u64).await.expect("session status after kill") {
        UploadProgress::Persisted(p) => p,
        UploadProgress::Done(_) => panic!("the upload finished despite the kill"),
    };
    let recorded = ledger.get(&item_key).await.expect("read ledger").and_then(|i| i.upload).expect("upload recorded");
    assert_eq!(recorded.session, session, "the killed run's session is the one recorded");
    // The ledger never claims more than GCS confirmed: it is written after GCS confirms.
    assert!(recorded.offset <= confirmed, "recorded {} > confirmed {confirmed}", recorded.offset);
    let log = std::fs::read_to_string(&log_path).expect("the killed run's log");
    Killed { session, confirmed, recorded: recorded.offset, log }
}

/// Delivers the task again until the killed run's lease has run out (`busy` until then).
fn redeliver(stack: &Stack, key: &str) -> (serde_json::Value, String, Duration) {
    let src = format!("s3://{}/{key}", stack.source_bucket());
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let t = Instant::now();
        let out = xcr(stack, &["replicate", &src, "--json"]).output().expect("run xcr");
        let took = t.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let json: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or(serde_json::Value::Null);
        if json["outcome"] == "busy" && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
        return (json, stderr, took);
    }
}

/// The session URI is a bearer credential: no log line may carry it, nor its upload id. The
/// run logs at debug level (`XCR_LOG`), so an empty log means nothing was checked.
fn assert_no_session_in(log: &str, session: &str) {
    assert!(log.lines().count() > 0, "the run logged nothing: there is nothing to check");
    assert!(!log.contains(session), "a log line carries the session URI");
    if let Some(id) = session.split("upload_id=").nth(1) {
        assert!(!log.contains(id), "a log line carries the session's upload id");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_upload_resumes_from_the_offset_gcs_confirms() {
    let stack = Stack::up();
    let s3 = stack.s3().await;
    let key = "crash/big.bin";
    let data = bytes_of(SIZE, 48);
    let put_out = put(&s3, stack.source_bucket(), key, data.clone()).await;

    let killed = replicate_and_kill(&stack, key).await;
    assert!(killed.confirmed >= KILL_AFTER && killed.confirmed < SIZE as u64, "confirmed {}", killed.confirmed);

    // The ledger's offset is past the start, so the rerun re-reads S3 from there (a ranged,
    // version-pinned GET) to carry the CRC32C on.
    assert!(killed.recorded > 0, "no confirmed offset was recorded");

    let (out, log, took) = redeliver(&stack, key);
    assert_eq!(out["outcome"], "replicated", "{out}");
    assert!(log.contains("continuing the upload session an earlier attempt left"), "{log}");
    // It continued where GCS stood, and sent only the rest (at most one chunk more).
    let resumed_from = out["resumed_from"].as_u64().expect("resumed_from in the report");
    assert_eq!(resumed_from, killed.confirmed, "{out}");
    let sent = out["bytes_sent"].as_u64().expect("bytes_sent");
    let rest = SIZE as u64 - killed.confirmed;
    assert!(sent >= rest && sent <= rest + CHUNK, "sent {sent} bytes, the rest was {rest}: {out}");
    eprintln!(
        "killed at {} of {SIZE} bytes confirmed ({} recorded in the ledger); the redelivery sent {sent} bytes (rest {rest}, chunk {CHUNK}) in {took:?}",
        killed.confirmed, killed.recorded
    );

    // Byte-exact, read back over plain HTTP.
    let (got, meta) = gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), key).await.expect("object in GCS");
    assert!(got == data, "the object in GCS differs from the source");
    assert_eq!(meta["crc32c"].as_str(), Some(crc32c_b64(&data).as_str()));
    assert_eq!(out["crc32c"].as_str(), Some(crc32c_b64(&data).as_str()));

    // Completion recorded this version and forgot the session.
    let item = ledger_item(&stack, stack.dest_bucket(), key).await.expect("ledger item");
    assert!(item.upload.is_none(), "the upload session is still recorded: {item:?}");
    let done = item.done.expect("done record");
    assert_eq!(done.etag.as_deref(), put_out.e_tag().map(|e| e.trim_matches('"')));
    assert!(item.lease_owner.is_none());

    assert_no_session_in(&killed.log, &killed.session);
    assert_no_session_in(&log, &killed.session);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_changed_after_the_crash_is_copied_from_the_start() {
    let stack = Stack::up();
    let s3 = stack.s3().await;
    let key = "crash/changed.bin";
    put(&s3, stack.source_bucket(), key, bytes_of(SIZE, 1)).await;

    let killed = replicate_and_kill(&stack, key).await;
    assert!(killed.confirmed >= KILL_AFTER, "confirmed {}", killed.confirmed);

    // Overwritten between the crash and the redelivery: same size, other bytes, other ETag.
    let new_data = bytes_of(SIZE, 2);
    let new_put = put(&s3, stack.source_bucket(), key, new_data.clone()).await;

    let (out, log, _) = redeliver(&stack, key);
    assert_eq!(out["outcome"], "replicated", "{out}");
    assert!(out.get("resumed_from").is_none(), "the old version's session was continued: {out}");
    assert!(log.contains("an unfinished upload of another source version is recorded; starting over"), "{log}");
    assert_eq!(out["bytes_sent"].as_u64(), Some(SIZE as u64), "{out}");
    assert_eq!(out["source"]["etag"].as_str(), new_put.e_tag().map(|e| e.trim_matches('"')));

    let (got, _) = gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), key).await.expect("object in GCS");
    assert!(got == new_data, "GCS does not hold the new version's bytes");
    let item = ledger_item(&stack, stack.dest_bucket(), key).await.expect("ledger item");
    assert!(item.upload.is_none(), "the upload session is still recorded: {item:?}");
    assert_no_session_in(&log, &killed.session);
}

/// A session the ledger remembers but GCS no longer knows (expired, cancelled) is not an error:
/// the copy starts over with a new session.
#[tokio::test(flavor = "multi_thread")]
async fn a_session_gcs_no_longer_knows_is_started_over() {
    use xcr::ports::{ClaimRequest, Ledger, UploadCheckpoint};
    let stack = Stack::up();
    let s3 = stack.s3().await;
    let key = "crash/gone.bin";
    let data = bytes_of(8 << 20, 9);
    let put_out = put(&s3, stack.source_bucket(), key, data.clone()).await;

    // A crashed attempt on this very version left a session; its lease has run out.
    let ledger = ledger(&stack.sdk().await, &stack);
    let item_key = format!("gs://{}/{key}", stack.dest_bucket());
    let past = xcr::domain::replicate::now_ms() - 1;
    let claim = ClaimRequest {
        key: item_key.clone(),
        owner: "crashed".into(),
        now_ms: past,
        lease_until_ms: past,
        sequencer: None,
        source_bucket: String::new(),
    };
    ledger.claim(&claim).await.expect("claim");
    let gone = UploadCheckpoint {
        session: format!(
            "{}/upload/storage/v1/b/{}/o?uploadType=resumable&upload_id=gone-{:x}",
            stack.gcs_endpoint(),
            stack.dest_bucket(),
            fastrand::u64(..)
        ),
        version_id: put_out.version_id().map(str::to_string),
        etag: put_out.e_tag().unwrap_or_default().trim_matches('"').to_string(),
        size: data.len() as u64,
        chunk_size: CHUNK,
        offset: 2 * CHUNK,
        crc32c: 0,
    };
    assert!(ledger.checkpoint(&item_key, "crashed", Some(&gone), past).await.expect("checkpoint"));

    let (out, log, _) = redeliver(&stack, key);
    assert_eq!(out["outcome"], "replicated", "{out}");
    assert!(out.get("resumed_from").is_none(), "{out}");
    assert!(log.contains("the recorded upload session cannot be continued; starting over"), "{log}");
    assert_eq!(out["bytes_sent"].as_u64(), Some(data.len() as u64), "{out}");
    let (got, _) = gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), key).await.expect("object in GCS");
    assert!(got == data, "the object in GCS differs from the source");
    assert!(ledger.get(&item_key).await.expect("read").expect("item").upload.is_none());
    assert_no_session_in(&log, &gone.session);
}
