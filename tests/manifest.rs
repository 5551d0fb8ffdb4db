//! Manifest jobs read their manifest one window per step (a ranged GET from the checkpoint's
//! byte offset), never whole: a manifest of any length runs within the migrate function's
//! memory, a step costs the same at the end of the manifest as at its start, and a key listed
//! twice in two pages is two tasks, each counted, so the job ends.

mod common;

use common::*;
use std::time::Duration;
use xcr::adapters::aws::job_store::DynamoJobStore;
use xcr::adapters::aws::s3::S3Source;
use xcr::adapters::aws::sqs::Queue;
use xcr::entry::pump::{PumpOptions, pump};
use xcr::jobs::migrate::{Driver, Step};
use xcr::jobs::{Job, JobSpec, JobStatus, now_rfc3339};
use xcr::ports::JobStore;

async fn create(jobs: &DynamoJobStore, spec: JobSpec) -> Job {
    spec.validate().expect("valid spec");
    let job = Job::new(spec, &now_rfc3339());
    jobs.create(&job).await.expect("create job");
    job
}

async fn purge(sdk: &aws_config::SdkConfig, queue: &Queue) {
    aws_sdk_sqs::Client::new(sdk).purge_queue().queue_url(queue.url()).send().await.expect("purge");
}

/// Small pages over a manifest whose keys repeat far apart (in other pages) and close together
/// (in the same page): the job ends SUCCEEDED, every line counted once, every object in GCS.
#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_in_small_pages_ends_with_every_line_counted() {
    let stack = Stack::up();
    let sdk = stack.sdk().await;
    let queue = Queue::new(&sdk, stack.var("XCR_QUEUE_URL"));
    let jobs = DynamoJobStore::new(&sdk, stack.var("XCR_JOBS_TABLE"));
    let s3 = stack.s3().await;
    let bucket = stack.source_bucket().to_string();
    for i in 0..30 {
        put(&s3, &bucket, &format!("man/{i:03}.bin"), bytes_of(50 + i, i as u64)).await;
    }
    // 30 keys, then the first 10 again (other pages), then one repeated on the next line
    // (same page: one task).
    let mut lines: Vec<String> = (0..30).map(|i| format!("man/{i:03}.bin")).collect();
    lines.extend((0..10).map(|i| format!("man/{i:03}.bin")));
    lines.push("man/029.bin".into());
    lines.push("man/029.bin".into());
    let text = lines.join("\n");
    put(&s3, &bucket, "manifests/small-pages.txt", text.into_bytes()).await;
    purge(&sdk, &queue).await;
    let spec = JobSpec {
        source_bucket: bucket.clone(),
        manifest: Some(format!("s3://{bucket}/manifests/small-pages.txt")),
        ..Default::default()
    };
    let job = create(&jobs, spec).await;
    let mut driver = Driver::new(S3Source::new(&sdk), queue.clone(), jobs.clone());
    driver.page_size = 7;
    let handler =
        xcr::entry::handler::Handler::new(replicator(&stack, &[]).await, 8, Some(queue.clone()), Some(jobs.clone()))
            .with_retry_clock(fast_clock());
    let opts = PumpOptions {
        wait_secs: 1,
        visibility_secs: Some(5),
        until_idle: Some(Duration::from_secs(2)),
        ..Default::default()
    };
    pump(&handler, &queue, "us-east-1", Some(&driver), &opts).await.expect("pump");
    let done = jobs.get(&job.id).await.expect("read").expect("job");
    assert_eq!(done.status, JobStatus::Succeeded, "{done:?}");
    let c = done.counters;
    // 42 lines; the repeat on adjacent lines in one page is one task: 41 tasks.
    assert_eq!((c.listed, c.queued, c.pending, c.failed), (41, 41, 0, 0), "{c:?}");
    assert_eq!(c.replicated + c.skipped, 41, "{c:?}");
    assert!(done.checkpoint.as_deref().is_some_and(|cp| cp.starts_with('@')), "a byte offset: {:?}", done.checkpoint);
    for i in 0..30 {
        let key = format!("man/{i:03}.bin");
        let (bytes, _) = gcs_read(stack.gcs_endpoint(), stack.dest_bucket(), &key).await.expect("copied");
        assert_eq!(bytes, bytes_of(50 + i, i as u64), "{key}");
    }
}

/// Peak resident memory of this process since the last reset (Linux `VmHWM`), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .expect("VmHWM")
}

/// Resets the peak (writing 5 to clear_refs, Linux ≥ 4.0), so that what the driver uses is
/// measured, not the manifest's upload.
fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM");
}

/// A manifest of 1,000,000 lines (`XCR_TEST_MANIFEST_LINES` changes it), run as a dry run (every
/// line listed and counted, nothing queued) by the driver in this process: the peak resident
/// memory while it runs stays within the migrate function's memory setting (256 MB by default,
/// infra/template.yaml `MigrateMemory`) and grows by less than 64 MiB however long the manifest
/// (reading it whole at every step held the text and a million entries at once, ~150 MB).
#[tokio::test(flavor = "multi_thread")]
async fn a_million_line_manifest_runs_in_bounded_memory() {
    let lines: usize = std::env::var("XCR_TEST_MANIFEST_LINES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let stack = Stack::up();
    let sdk = stack.sdk().await;
    let queue = Queue::new(&sdk, stack.var("XCR_QUEUE_URL"));
    let jobs = DynamoJobStore::new(&sdk, stack.var("XCR_JOBS_TABLE"));
    let bucket = stack.source_bucket().to_string();
    {
        let mut text = String::with_capacity(lines * 24);
        for i in 0..lines {
            text.push_str(&format!("big/{:02}/{i:08}.parquet\n", i % 97));
        }
        put(&stack.s3().await, &bucket, "manifests/million.txt", text.into_bytes()).await;
    }
    let spec = JobSpec {
        source_bucket: bucket.clone(),
        manifest: Some(format!("s3://{bucket}/manifests/million.txt")),
        dry_run: true,
        ..Default::default()
    };
    let job = create(&jobs, spec).await;
    let driver = Driver::new(S3Source::new(&sdk), queue.clone(), jobs.clone());
    let before = {
        reset_peak_rss();
        peak_rss()
    };
    let started = std::time::Instant::now();
    let step = driver.run(&job.id, xcr::domain::replicate::now_ms() + 600_000, 1_000).await.expect("run");
    let peak = peak_rss();
    let done = jobs.get(&job.id).await.expect("read").expect("job");
    println!(
        "{lines} manifest lines in {:?}; peak RSS {} MiB (from {} MiB)",
        started.elapsed(),
        peak >> 20,
        before >> 20
    );
    assert_eq!(step, Step::Ended(JobStatus::Succeeded), "{done:?}");
    assert_eq!(done.counters.listed, lines as u64);
    assert_eq!(done.counters.queued, 0, "a dry run queues nothing");
    assert!(peak < 256 << 20, "peak RSS {} MiB is over the migrate function's 256 MB", peak >> 20);
    assert!(peak - before.min(peak) < 64 << 20, "the driver grew by {} MiB", (peak - before.min(peak)) >> 20);
}
