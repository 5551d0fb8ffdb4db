//! Migration jobs against the emulators: the driver lists, `pump` runs the replicate tasks,
//! the jobs table counts. Objects are uploaded before the job and the notifications they
//! caused are purged, as for a bucket whose objects predate replication.

mod common;

use common::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use xcr::adapters::aws::job_store::DynamoJobStore;
use xcr::adapters::aws::s3::S3Source;
use xcr::adapters::aws::sqs::Queue;
use xcr::domain::model::Overwrite;
use xcr::domain::replicate::now_ms;
use xcr::entry::pump::{PumpOptions, pump};
use xcr::jobs::migrate::{Driver, Step};
use xcr::jobs::{Job, JobSpec, JobStatus, StagedPage, TaskTally, now_rfc3339};
use xcr::ports::JobStore;

struct Env {
    stack: Stack,
    sdk: aws_config::SdkConfig,
    queue: Queue,
    jobs: DynamoJobStore,
}

async fn env() -> Env {
    let stack = Stack::up();
    let sdk = stack.sdk().await;
    let queue = Queue::new(&sdk, stack.var("XCR_QUEUE_URL"));
    let jobs = DynamoJobStore::new(&sdk, stack.var("XCR_JOBS_TABLE"));
    Env { stack, sdk, queue, jobs }
}

impl Env {
    /// Uploads `n` objects under `prefix` (sizes vary), then drops their notifications.
    async fn seed(&self, prefix: &str, n: usize) -> HashMap<String, Vec<u8>> {
        let s3 = self.stack.s3().await;
        let bucket = self.stack.source_bucket().to_string();
        let objects: HashMap<String, Vec<u8>> =
            (0..n).map(|i| (format!("{prefix}{i:05}.bin"), bytes_of(100 + (i * 37) % 2000, i as u64))).collect();
        put_all(&s3, &bucket, &objects).await;
        self.purge().await;
        objects
    }

    async fn purge(&self) {
        aws_sdk_sqs::Client::new(&self.sdk).purge_queue().queue_url(self.queue.url()).send().await.expect("purge");
    }

    /// The driver as `xcr pump` and the function wire it: its sweep reads the stack's DLQ.
    fn driver(&self) -> Driver<S3Source, Queue, DynamoJobStore> {
        Driver::new(S3Source::new(&self.sdk), self.queue.clone(), self.jobs.clone()).with_dead_letters(self.dlq())
    }

    fn dlq(&self) -> Queue {
        Queue::new(&self.sdk, self.stack.var("XCR_DLQ_URL"))
    }

    async fn create(&self, spec: JobSpec) -> Job {
        spec.validate().expect("valid spec");
        let job = Job::new(spec, &now_rfc3339());
        self.jobs.create(&job).await.expect("create job");
        job
    }

    /// Stores `text` as the manifest `key` in the source bucket, drops the notifications the
    /// uploads so far caused, and creates a job over that manifest.
    async fn manifest_job(&self, key: &str, text: String) -> Job {
        let bucket = self.stack.source_bucket().to_string();
        put(&self.stack.s3().await, &bucket, key, text.into_bytes()).await;
        self.purge().await;
        self.create(JobSpec { manifest: Some(format!("s3://{bucket}/{key}")), ..spec(&bucket) }).await
    }

    /// Runs `xcr pump`'s loop (driver and replicate handler) until everything is idle.
    async fn pump(&self) {
        let handler = xcr::entry::handler::Handler::new(
            replicator(&self.stack, &[]).await,
            8,
            Some(self.queue.clone()),
            Some(self.jobs.clone()),
        )
        .with_retry_clock(fast_clock());
        let driver = self.driver();
        pump(&handler, &self.queue, "us-east-1", Some(&driver), &until_idle(5)).await.expect("pump");
    }

    async fn job(&self, id: &str) -> Job {
        self.jobs.get(id).await.expect("read job").expect("job exists")
    }

    /// Every object in the destination bucket: name -> (crc32c, generation).
    async fn gcs_listing(&self) -> HashMap<String, (String, String)> {
        let http = reqwest::Client::new();
        let mut out = HashMap::new();
        let mut token: Option<String> = None;
        loop {
            let mut url =
                format!("{}/storage/v1/b/{}/o?maxResults=1000", self.stack.gcs_endpoint(), self.stack.dest_bucket());
            if let Some(t) = &token {
                url.push_str(&format!("&pageToken={t}"));
            }
            let page: serde_json::Value = http.get(url).send().await.expect("list").json().await.expect("json");
            for item in page["items"].as_array().into_iter().flatten() {
                let name = item["name"].as_str().unwrap_or_default().to_string();
                out.insert(
                    name,
                    (
                        item["crc32c"].as_str().unwrap_or_default().into(),
                        item["generation"].as_str().unwrap_or_default().into(),
                    ),
                );
            }
            match page["nextPageToken"].as_str() {
                Some(t) => token = Some(t.to_string()),
                None => break,
            }
        }
        out
    }
}

/// `xcr pump --until-idle 2` with failed records back after `visibility_secs` (instead of the
/// queue's 90 minutes).
fn until_idle(visibility_secs: i32) -> PumpOptions {
    PumpOptions {
        wait_secs: 1,
        visibility_secs: Some(visibility_secs),
        until_idle: Some(Duration::from_secs(2)),
        ..Default::default()
    }
}

fn spec(bucket: &str) -> JobSpec {
    JobSpec { source_bucket: bucket.into(), ..Default::default() }
}

/// 2,000 objects, as the issue asks (`XCR_TEST_BULK_OBJECTS` changes the count).
#[tokio::test(flavor = "multi_thread")]
async fn a_bucket_migrates_exactly_and_a_second_run_moves_nothing() {
    let e = env().await;
    let n: usize = std::env::var("XCR_TEST_BULK_OBJECTS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let objects = e.seed("bulk/", n).await;
    let n = n as u64;
    let total_bytes: u64 = objects.values().map(|v| v.len() as u64).sum();

    let job = e.create(spec(e.stack.source_bucket())).await;
    e.pump().await;
    let done = e.job(&job.id).await;
    assert_eq!(done.status, JobStatus::Succeeded, "{done:?}");
    let c = done.counters;
    assert_eq!((c.listed, c.queued, c.replicated, c.skipped, c.failed, c.pending), (n, n, n, 0, 0, 0), "{c:?}");
    assert_eq!(c.bytes, total_bytes);
    let listing = e.gcs_listing().await;
    assert_eq!(listing.len() as u64, n);
    for (key, data) in &objects {
        let (crc, _) = listing.get(key).unwrap_or_else(|| panic!("{key} missing in GCS"));
        assert_eq!(crc, &crc32c_b64(data), "{key}");
    }

    // Again with overwrite=different: nothing moves, everything is counted skipped.
    let again = e.create(JobSpec { overwrite: Overwrite::Different, ..spec(e.stack.source_bucket()) }).await;
    e.pump().await;
    let done = e.job(&again.id).await;
    assert_eq!(done.status, JobStatus::Succeeded);
    let c = done.counters;
    assert_eq!((c.listed, c.replicated, c.skipped, c.bytes), (n, 0, n, 0), "{c:?}");
    assert_eq!(e.gcs_listing().await, listing, "no generation changed");
}

/// The job store with one `commit_page` that fails after the page was enqueued (a driver
/// crashing between its two writes), the first `lost_counts` task counts failing (a
/// DynamoDB error after the copy was done), and the first `lost_answers` task counts landing
/// but answering an error (the answer lost on the way back, or the process dying right after).
struct CrashingJobs {
    inner: DynamoJobStore,
    commits: AtomicU32,
    crash_at: u32,
    lost_counts: AtomicU32,
    lost_answers: AtomicU32,
}

impl CrashingJobs {
    fn new(inner: DynamoJobStore) -> Self {
        Self {
            inner,
            commits: AtomicU32::new(0),
            crash_at: 0,
            lost_counts: AtomicU32::new(0),
            lost_answers: AtomicU32::new(0),
        }
    }
}

impl JobStore for CrashingJobs {
    async fn create(&self, job: &Job) -> xcr::Result<()> {
        self.inner.create(job).await
    }
    async fn get(&self, id: &str) -> xcr::Result<Option<Job>> {
        self.inner.get(id).await
    }
    async fn list(&self, limit: usize) -> xcr::Result<Vec<Job>> {
        self.inner.list(limit).await
    }
    async fn start(&self, id: &str) -> xcr::Result<bool> {
        self.inner.start(id).await
    }
    async fn cancel(&self, id: &str) -> xcr::Result<bool> {
        self.inner.cancel(id).await
    }
    async fn commit_page(
        &self,
        id: &str,
        old: Option<&str>,
        new: Option<&str>,
        done: bool,
        listed: u64,
        queued: u64,
    ) -> xcr::Result<bool> {
        if self.commits.fetch_add(1, Ordering::SeqCst) + 1 == self.crash_at {
            return Err(xcr::Error::new(xcr::ErrorKind::Transient, "injected: the driver died before its checkpoint"));
        }
        self.inner.commit_page(id, old, new, done, listed, queued).await
    }
    async fn staged_page(&self, id: &str) -> xcr::Result<Option<StagedPage>> {
        self.inner.staged_page(id).await
    }
    async fn stage_page(&self, id: &str, page: &StagedPage) -> xcr::Result<bool> {
        self.inner.stage_page(id, page).await
    }
    async fn commit_staged_page(&self, id: &str, page: &StagedPage, queued: u64) -> xcr::Result<bool> {
        if self.commits.fetch_add(1, Ordering::SeqCst) + 1 == self.crash_at {
            return Err(xcr::Error::new(xcr::ErrorKind::Transient, "injected: the driver died before its checkpoint"));
        }
        self.inner.commit_staged_page(id, page, queued).await
    }
    async fn record_task(&self, id: &str, task_id: &str, tally: TaskTally) -> xcr::Result<bool> {
        if self.lost_counts.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(xcr::Error::new(xcr::ErrorKind::Transient, "injected: counting the task failed"));
        }
        let counted = self.inner.record_task(id, task_id, tally).await?;
        if self.lost_answers.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(xcr::Error::new(xcr::ErrorKind::Transient, "injected: the count landed, its answer was lost"));
        }
        Ok(counted)
    }
    async fn try_finish(&self, id: &str) -> xcr::Result<Option<JobStatus>> {
        self.inner.try_finish(id).await
    }
    async fn claim_driver(&self, id: &str, owner: &str, now: i64, until: i64) -> xcr::Result<bool> {
        self.inner.claim_driver(id, owner, now, until).await
    }
    async fn release_driver(&self, id: &str, owner: &str) -> xcr::Result<()> {
        self.inner.release_driver(id, owner).await
    }
    async fn fail(&self, id: &str, message: &str) -> xcr::Result<bool> {
        self.inner.fail(id, message).await
    }
    async fn set_error(&self, id: &str, message: &str) -> xcr::Result<()> {
        self.inner.set_error(id, message).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_driver_killed_mid_listing_resumes_with_exact_counters() {
    let e = env().await;
    let objects = e.seed("crash/", 300).await;
    let job = e.create(spec(e.stack.source_bucket())).await;
    let crashing = CrashingJobs { crash_at: 2, ..CrashingJobs::new(e.jobs.clone()) };
    let mut driver = Driver::new(S3Source::new(&e.sdk), e.queue.clone(), crashing);
    driver.page_size = 100;
    assert_eq!(driver.step(&job.id).await.expect("first page"), Step::Progress);
    assert!(driver.step(&job.id).await.is_err(), "the second page crashes after enqueueing");
    let mid = e.job(&job.id).await;
    assert_eq!(mid.counters.listed, 100, "only the committed page counts");
    // The queue holds 200 tasks: page 1, and page 2 which will be enqueued again on resume.
    e.pump().await;
    let done = e.job(&job.id).await;
    assert_eq!(done.status, JobStatus::Succeeded, "{done:?}");
    let c = done.counters;
    assert_eq!((c.listed, c.replicated, c.skipped, c.failed, c.pending), (300, 300, 0, 0, 0), "{c:?}");
    assert_eq!(e.gcs_listing().await.len(), objects.len());
}

/// A driver that dies after enqueueing a page and before committing it repeats that page from
/// what it staged, not from a new listing: when the bucket changed in between (a key of the
/// page deleted, another added in its range), the job still counts exactly the tasks it
/// queued, `pending` reaches zero only after the last of them, and the counters add up
/// (replicated + skipped = listed). Listing the page again would have queued the added key on
/// top of the first attempt's tasks, one task more than the committed page counts.
#[tokio::test(flavor = "multi_thread")]
async fn a_page_repeated_after_a_crash_is_the_page_first_listed() {
    let e = env().await;
    let objects = e.seed("relist/", 300).await;
    let job = e.create(JobSpec { prefix: "relist/".into(), ..spec(e.stack.source_bucket()) }).await;
    let crashing = CrashingJobs { crash_at: 2, ..CrashingJobs::new(e.jobs.clone()) };
    let mut driver = Driver::new(S3Source::new(&e.sdk), e.queue.clone(), crashing);
    driver.page_size = 100;
    assert_eq!(driver.step(&job.id).await.expect("first page"), Step::Progress);
    assert!(driver.step(&job.id).await.is_err(), "the second page crashes after enqueueing");
    let staged = e.jobs.staged_page(&job.id).await.expect("read staged").expect("the second page is staged");
    assert_eq!(staged.keys.len(), 100);

    // The bucket changes under the uncommitted page: one of its keys goes, one appears.
    let mut keys: Vec<&String> = objects.keys().collect();
    keys.sort();
    let (gone, added) = (keys[150].clone(), format!("{}-added", keys[150]));
    assert!(staged.keys.contains(&gone), "{gone} is on the staged page");
    let s3 = aws_sdk_s3::Client::new(&e.sdk);
    s3.delete_object().bucket(e.stack.source_bucket()).key(&gone).send().await.expect("delete");
    s3.put_object()
        .bucket(e.stack.source_bucket())
        .key(&added)
        .body(b"late".to_vec().into())
        .send()
        .await
        .expect("put");

    // The same driver resumes (its crash injection is spent) and enqueues the staged page again.
    assert_eq!(driver.step(&job.id).await.expect("the second page again"), Step::Progress);
    assert!(e.jobs.staged_page(&job.id).await.expect("read staged").is_none(), "the commit removed it");
    e.pump().await;
    let done = e.job(&job.id).await;
    // The deleted key's two tasks (one per enqueue) count once, as failed (a listed object the
    // job could not copy fails it, as any vanished source does); the key added after the page
    // was listed is not part of the job.
    assert_eq!(done.status, JobStatus::Failed, "{done:?}");
    let c = done.counters;
    assert_eq!((c.listed, c.queued, c.replicated, c.skipped, c.failed, c.pending), (300, 300, 299, 0, 1, 0), "{c:?}");
    // Every object the job listed and that still exists is in GCS, byte for byte (the added key
    // arrives there too, through its own S3 event, not through the job).
    let listing = e.gcs_listing().await;
    assert!(!listing.contains_key(&gone), "the deleted key was not copied");
    for (key, data) in objects.iter().filter(|(k, _)| **k != gone) {
        let (crc, _) = listing.get(key).unwrap_or_else(|| panic!("{key} missing in GCS"));
        assert_eq!(crc, &crc32c_b64(data), "{key}");
    }
}

/// A job that an older version checkpointed with S3's opaque continuation token (before
/// checkpoints became keys) goes on from that token after an upgrade: the rest of the bucket is
/// listed once, from where the token points, and the job ends with exact counters.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_checkpointed_with_a_continuation_token_resumes_from_it() {
    use xcr::ports::ObjectLister;
    let e = env().await;
    let objects = e.seed("legacy/", 250).await;
    let job = e.create(JobSpec { prefix: "legacy/".into(), ..spec(e.stack.source_bucket()) }).await;
    // What the older version left: the first 100 keys listed, queued and counted, the token of
    // the next page as the checkpoint.
    let (first, token) =
        S3Source::new(&e.sdk).list_page(e.stack.source_bucket(), "legacy/", None, 100).await.expect("list");
    let token = token.expect("a continuation token");
    assert!(!token.starts_with(xcr::jobs::AFTER_KEY));
    let n = |v: u64| aws_sdk_dynamodb::types::AttributeValue::N(v.to_string());
    aws_sdk_dynamodb::Client::new(&e.sdk)
        .update_item()
        .table_name(e.stack.var("XCR_JOBS_TABLE"))
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S("jobs".into()))
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S(format!("job#{}", job.id)))
        .update_expression(
            "SET #st = :running, list_checkpoint = :token, n_listed = :h, n_queued = :h, n_replicated = :h",
        )
        .expression_attribute_names("#st", "status")
        .expression_attribute_values(":running", aws_sdk_dynamodb::types::AttributeValue::S("RUNNING".into()))
        .expression_attribute_values(":token", aws_sdk_dynamodb::types::AttributeValue::S(token))
        .expression_attribute_values(":h", n(100))
        .send()
        .await
        .expect("write the old checkpoint");

    e.pump().await;
    let done = e.job(&job.id).await;
    assert_eq!(done.status, JobStatus::Succeeded, "{done:?}");
    let c = done.counters;
    assert_eq!((c.listed, c.queued, c.replicated, c.failed, c.pending), (250, 250, 250, 0, 0), "{c:?}");
    // Only what the token pointed at was copied now: the first page was the older version's.
    let listing = e.gcs_listing().await;
    assert_eq!(listing.len(), 150, "the rest of the bucket, once");
    assert!(first.iter().all(|o| !listing.contains_key(&o.key)), "the first page was not listed again");
    assert!(objects.keys().filter(|k| !first.iter().any(|o| &o.key == *k)).all(|k| listing.contains_key(k)));
}

/// A page of long keys is cut to what one staged page holds (a DynamoDB item is at most
/// 400 KB): the job lists it in more steps, resumes after the last key it kept, and copies and
/// counts every object exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn a_page_of_long_keys_is_cut_to_fit_and_resumed_after_its_last_key() {
    let e = env().await;
    let long = "k".repeat(900);
    let s3 = aws_sdk_s3::Client::new(&e.sdk);
    let n = 420;
    for i in 0..n {
        s3.put_object()
            .bucket(e.stack.source_bucket())
            .key(format!("long/{i:04}/{long}"))
            .body(format!("{i}").into_bytes().into())
            .send()
            .await
            .expect("put");
    }
    e.purge().await;
    let job = e.create(JobSpec { prefix: "long/".into(), ..spec(e.stack.source_bucket()) }).await;
    let driver = e.driver();
    assert_eq!(driver.step(&job.id).await.expect("first page"), Step::Progress);
    let first = e.job(&job.id).await;
    let per_page = first.counters.listed;
    assert!(per_page > 0 && per_page < n, "a page of {n} keys of ~910 bytes is cut: {per_page} kept");
    assert!(
        first.checkpoint.as_deref().is_some_and(|cp| cp.starts_with(xcr::jobs::AFTER_KEY)),
        "the checkpoint is the last key kept: {:?}",
        first.checkpoint
    );
    e.pump().await;
    let done = e.job(&job.id).await;
    assert_eq!(done.status, JobStatus::Succeeded, "{done:?}");
    let c = done.counters;
    assert_eq!((c.listed, c.replicated, c.skipped, c.failed, c.pending), (n, n, 0, 0, 0), "{c:?}");
    assert_eq!(e.gcs_listing().await.len() as u64, n);
}

/// A task whose copy landed but whose count failed is delivered again; that delivery finds the
/// copy its own job made (the ledger records the job) and counts it replicated, with its bytes,
/// not skipped. The same holds when SQS delivers a task twice at once and the twin that found
/// the other's copy happens to be counted first.
#[tokio::test(flavor = "multi_thread")]
async fn a_copy_whose_count_was_lost_still_counts_as_replicated() {
    let e = env().await;
    let objects = e.seed("lost/", 6).await;
    let total_bytes: u64 = objects.values().map(|v| v.len() as u64).sum();
    let job = e.create(JobSpec { prefix: "lost/".into(), ..spec(e.stack.source_bucket()) }).await;
    let flaky = CrashingJobs { lost_counts: AtomicU32::new(3), ..CrashingJobs::new(e.jobs.clone()) };
    let handler =
        xcr::entry::handler::Handler::new(replicator(&e.stack, &[]).await, 8, Some(e.queue.clone()), Some(flaky))
            .with_retry_clock(fast_clock());
    pump(&handler, &e.queue, "us-east-1", Some(&e.driver()), &until_idle(2)).await.expect("pump");
    let done = e.job(&job.id).await;
    assert_eq!(done.status, JobStatus::Succeeded, "{done:?}");
    let c = done.counters;
    assert_eq!((c.listed, c.replicated, c.skipped, c.failed, c.pending), (6, 6, 0, 0, 0), "{c:?}");
    assert_eq!(c.bytes, total_bytes);
    assert_eq!(handler.jobs().map(|j| j.lost_counts.load(Ordering::SeqCst)), Some(0), "three counts were lost");

    // A later job over the same objects did not copy them: for it they are skipped.
    let again = e.create(JobSpec { prefix: "lost/".into(), ..spec(e.stack.source_bucket()) }).await;
    e.pump().await;
    let c = e.job(&again.id).await.counters;
    assert_eq!((c.replicated, c.skipped, c.bytes), (0, 6, 0), "{c:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_part_way_stops_listing_and_turns_queued_tasks_into_no_ops() {
    let e = env().await;
    e.seed("cancel/", 300).await;
    let job = e.create(spec(e.stack.source_bucket())).await;
    let mut driver = e.driver();
    driver.page_size = 100;
    assert_eq!(driver.step(&job.id).await.expect("first page"), Step::Progress);
    assert!(e.jobs.cancel(&job.id).await.expect("cancel"));
    assert_eq!(driver.step(&job.id).await.expect("after cancel"), Step::Ended(JobStatus::Cancelled));
    e.pump().await;
    let done = e.job(&job.id).await;
    assert_eq!(done.status, JobStatus::Cancelled);
    assert_eq!(done.counters.listed, 100, "listing stopped at the cancel");
    assert_eq!(e.gcs_listing().await.len(), 0, "queued tasks of a cancelled job copy nothing");
    assert!(!e.jobs.cancel(&job.id).await.expect("second cancel"), "a cancelled job stays cancelled");
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_dry_run_filters_and_bad_manifests() {
    let e = env().await;
    let s3 = e.stack.s3().await;
    let bucket = e.stack.source_bucket().to_string();
    for key in ["m/a b.txt", "m/c+d.txt", "m/e.txt", "keep/1.txt", "keep/tmp/2.txt", "other/3.txt"] {
        put(&s3, &bucket, key, key.as_bytes().to_vec()).await;
    }
    // S3 Batch Operations style CSV: bucket,key with URL-encoded keys; one key does not exist.
    let csv = format!("{bucket},m/a%20b.txt\n{bucket},m/c%2Bd.txt\n{bucket},m/missing.txt\n");
    let manifest = e.manifest_job("manifests/list.csv", csv).await;
    e.pump().await;
    let done = e.job(&manifest.id).await;
    let c = done.counters;
    assert_eq!((c.listed, c.replicated, c.failed), (3, 2, 1), "{c:?}");
    assert_eq!(done.status, JobStatus::Failed, "a task that failed for good fails the job");
    let listing = e.gcs_listing().await;
    assert!(listing.contains_key("m/a b.txt") && listing.contains_key("m/c+d.txt") && !listing.contains_key("m/e.txt"));

    // A dry run lists and counts, and changes nothing.
    let before = e.gcs_listing().await;
    let dry = e.create(JobSpec { dry_run: true, ..spec(&bucket) }).await;
    e.pump().await;
    let done = e.job(&dry.id).await;
    assert_eq!(done.status, JobStatus::Succeeded);
    assert_eq!(
        (done.counters.listed, done.counters.queued, done.counters.replicated),
        (7, 0, 0),
        "{:?}",
        done.counters
    );
    assert_eq!(e.gcs_listing().await, before, "a dry run changes nothing in GCS");

    // Include and exclude prefixes.
    let filtered = e
        .create(JobSpec {
            include_prefixes: vec!["keep/".into(), "other/".into()],
            exclude_prefixes: vec!["keep/tmp/".into()],
            ..spec(&bucket)
        })
        .await;
    e.pump().await;
    let done = e.job(&filtered.id).await;
    assert_eq!((done.status, done.counters.listed, done.counters.replicated), (JobStatus::Succeeded, 2, 2), "{done:?}");
    let listing = e.gcs_listing().await;
    assert!(
        listing.contains_key("keep/1.txt")
            && listing.contains_key("other/3.txt")
            && !listing.contains_key("keep/tmp/2.txt")
    );

    // A manifest that does not exist fails the job with a readable reason.
    let missing =
        e.create(JobSpec { manifest: Some(format!("s3://{bucket}/manifests/nope.txt")), ..spec(&bucket) }).await;
    e.pump().await;
    let done = e.job(&missing.id).await;
    assert_eq!(done.status, JobStatus::Failed);
    assert!(done.last_error.as_deref().is_some_and(|m| m.contains("nope.txt")), "{done:?}");
}

/// A manifest may name two versions of one key: they are two tasks, each counted once, and
/// the job ends (were they counted as one object, the second would never be counted and the
/// job would wait for it forever). GCS ends at the newer version, whatever order they ran in.
#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_naming_two_versions_of_one_key_counts_both() {
    let e = env().await;
    let s3 = e.stack.s3().await;
    let bucket = e.stack.source_bucket().to_string();
    let old = put(&s3, &bucket, "v/doc.txt", b"first version".to_vec()).await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // S3 last-modified has whole seconds
    let new = put(&s3, &bucket, "v/doc.txt", b"second, newer version".to_vec()).await;
    let (v1, v2) = (old.version_id().expect("versioned bucket"), new.version_id().expect("versioned bucket"));
    assert_ne!(v1, v2);
    let csv = format!("{bucket},v/doc.txt,{v1}\n{bucket},v/doc.txt,{v2}\n");
    let job = e.manifest_job("manifests/versions.csv", csv).await;
    e.pump().await;
    let done = e.job(&job.id).await;
    assert_eq!(done.status, JobStatus::Succeeded, "{done:?}");
    let c = done.counters;
    assert_eq!((c.listed, c.replicated + c.skipped, c.failed, c.pending), (2, 2, 0, 0), "{c:?}");
    let (data, _) = gcs_read(e.stack.gcs_endpoint(), e.stack.dest_bucket(), "v/doc.txt").await.expect("in GCS");
    assert_eq!(data, b"second, newer version");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_that_ends_in_the_dlq_fails_its_job_instead_of_stalling_it() {
    let e = env().await;
    let objects = e.seed("dlq/", 3).await;
    let max = e.queue.max_receive_count().await.expect("redrive policy").expect("the queue has a DLQ");
    let job = e.create(JobSpec { prefix: "dlq/".into(), ..spec(e.stack.source_bucket()) }).await;

    // GCS unreachable: every copy fails retryably, on every delivery.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let gcs = format!("http://127.0.0.1:{dead}");
    let broken = replicator(&e.stack, &[("STORAGE_EMULATOR_HOST", gcs.as_str()), ("XCR_MAX_ATTEMPTS", "1")]).await;
    let handler = xcr::entry::handler::Handler::new(broken, 8, Some(e.queue.clone()), Some(e.jobs.clone()))
        .with_max_receives(Some(max))
        .with_retry_clock(fast_clock());
    pump(&handler, &e.queue, "us-east-1", Some(&e.driver()), &until_idle(1)).await.expect("pump");

    let failed = e.job(&job.id).await;
    assert_eq!(failed.status, JobStatus::Failed, "{failed:?}");
    let c = failed.counters;
    assert_eq!((c.listed, c.replicated, c.failed, c.pending), (3, 0, 3, 0), "{c:?}");
    assert!(failed.last_error.as_deref().unwrap_or("").contains("DLQ"), "{:?}", failed.last_error);
    let dlq = Queue::new(&e.sdk, e.stack.var("XCR_DLQ_URL"));
    assert_eq!(dlq.depth().await.expect("dlq depth").0, 3, "the tasks wait in the DLQ");

    // Redriven once GCS is back: the objects are copied, and the job is not counted twice.
    assert_eq!(xcr::entry::pump::redrive(&dlq, &e.queue, 100).await.expect("redrive"), 3);
    e.pump().await;
    assert_eq!(e.gcs_listing().await.len(), objects.len());
    let after = e.job(&job.id).await;
    assert_eq!(after.status, JobStatus::Failed);
    assert_eq!((after.counters.failed, after.counters.replicated), (3, 0));
}

/// Every task's count lands but its answer is lost, so each is delivered again and finds
/// itself already counted. The job still ends, by the delivery that found its task counted
/// (no later task comes to end it).
#[tokio::test(flavor = "multi_thread")]
async fn a_job_ends_when_the_last_count_landed_but_its_answer_was_lost() {
    let e = env().await;
    let objects = e.seed("answer/", 4).await;
    let total_bytes: u64 = objects.values().map(|v| v.len() as u64).sum();
    let job = e.create(JobSpec { prefix: "answer/".into(), ..spec(e.stack.source_bucket()) }).await;
    let lossy = CrashingJobs { lost_answers: AtomicU32::new(4), ..CrashingJobs::new(e.jobs.clone()) };
    let handler =
        xcr::entry::handler::Handler::new(replicator(&e.stack, &[]).await, 8, Some(e.queue.clone()), Some(lossy))
            .with_retry_clock(fast_clock());
    let (driver, opts) = (e.driver(), until_idle(2));
    let pumped = pump(&handler, &e.queue, "us-east-1", Some(&driver), &opts);
    tokio::time::timeout(Duration::from_secs(40), pumped).await.expect("the pump goes idle").expect("pump");
    assert_eq!(handler.jobs().map(|j| j.lost_answers.load(Ordering::SeqCst)), Some(0), "four answers were lost");
    let done = e.job(&job.id).await;
    assert_eq!(done.status, JobStatus::Succeeded, "{done:?}");
    let c = done.counters;
    assert_eq!((c.listed, c.queued, c.replicated, c.skipped, c.failed, c.pending), (4, 4, 4, 0, 0, 0), "{c:?}");
    assert_eq!(c.bytes, total_bytes);
}

/// A driver that finds the job's lease held returns at once, having done nothing, and says
/// so (`Held`): the function then does not re-invoke itself. The holder carries on and the job
/// ends exactly.
#[tokio::test(flavor = "multi_thread")]
async fn a_driver_that_finds_the_job_held_stops_instead_of_spinning() {
    let e = env().await;
    e.seed("held/", 5).await;
    let job = e.create(JobSpec { prefix: "held/".into(), ..spec(e.stack.source_bucket()) }).await;
    assert!(e.jobs.claim_driver(&job.id, "the-holder", now_ms(), now_ms() + 600_000).await.expect("claim"));
    let started = std::time::Instant::now();
    let step = e.driver().run(&job.id, now_ms() + 600_000, 60_000).await.expect("run");
    assert_eq!(step, Step::Held);
    assert!(started.elapsed() < Duration::from_secs(5), "returned at once: {:?}", started.elapsed());
    let untouched = e.job(&job.id).await;
    assert_eq!((untouched.status, untouched.counters.listed), (JobStatus::Pending, 0), "{untouched:?}");

    // The holder (here: a driver taking over the released lease) drives the job to its end.
    e.jobs.release_driver(&job.id, "the-holder").await.expect("release");
    assert_eq!(e.driver().run(&job.id, now_ms() + 600_000, 0).await.expect("run"), Step::ListingDone);
    e.pump().await;
    let done = e.job(&job.id).await;
    assert_eq!(done.status, JobStatus::Succeeded, "{done:?}");
    let c = done.counters;
    assert_eq!((c.listed, c.queued, c.replicated, c.skipped, c.failed, c.pending), (5, 5, 5, 0, 0, 0), "{c:?}");
}

/// A job whose driver chain died part-way (its lease lapses, nobody re-invokes it) is named by
/// the sweep once, and only once, its lease has lapsed; the driver started for it, as the
/// function starts one, completes the listing, and the job ends exactly.
#[tokio::test(flavor = "multi_thread")]
async fn the_sweep_resumes_a_job_whose_driver_died() {
    let e = env().await;
    e.seed("undriven/", 25).await;
    let job = e.create(JobSpec { prefix: "undriven/".into(), ..spec(e.stack.source_bucket()) }).await;
    let mut driver = e.driver();
    driver.page_size = 10;
    // The dead driver: it held the lease, listed one page, and was never heard of again.
    assert!(e.jobs.claim_driver(&job.id, "dead-driver", now_ms(), now_ms() + 1500).await.expect("claim"));
    assert_eq!(driver.step(&job.id).await.expect("one page"), Step::Progress);
    let swept = driver.sweep().await.expect("sweep");
    assert!(swept.resume.is_empty(), "its lease still runs: {swept:?}");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let swept = driver.sweep().await.expect("sweep");
    assert_eq!(swept.resume, vec![job.id.clone()], "{swept:?}");
    assert!(swept.finished.is_empty() && swept.dead_letters_counted == 0, "{swept:?}");

    for id in &swept.resume {
        assert_eq!(driver.run(id, now_ms() + 600_000, 0).await.expect("resumed driver"), Step::ListingDone);
    }
    assert!(driver.sweep().await.expect("sweep").resume.is_empty(), "the listing is done: nothing to resume");
    e.pump().await;
    let done = e.job(&job.id).await;
    assert_eq!(done.status, JobStatus::Succeeded, "{done:?}");
    let c = done.counters;
    assert_eq!((c.listed, c.queued, c.replicated, c.skipped, c.failed, c.pending), (25, 25, 25, 0, 0, 0), "{c:?}");
}

/// Jobs whose every task is counted but that nobody ended (the ending delivery died after its
/// count) are ended by the sweep, SUCCEEDED or FAILED by their counts; a second sweep changes
/// nothing.
#[tokio::test(flavor = "multi_thread")]
async fn the_sweep_ends_complete_jobs_left_running() {
    let e = env().await;
    let bucket = e.stack.source_bucket().to_string();
    let mut ids = Vec::new();
    for tallies in [
        vec![TaskTally::Replicated { bytes: 10 }, TaskTally::Skipped],
        vec![TaskTally::Replicated { bytes: 7 }, TaskTally::Failed],
    ] {
        let job = e.create(spec(&bucket)).await;
        assert!(e.jobs.start(&job.id).await.expect("start"));
        let n = tallies.len() as u64;
        assert!(e.jobs.commit_page(&job.id, None, None, true, n, n).await.expect("commit"));
        for (i, t) in tallies.into_iter().enumerate() {
            assert!(e.jobs.record_task(&job.id, &format!("{bucket}/k{i}"), t).await.expect("count"));
        }
        assert_eq!(e.job(&job.id).await.status, JobStatus::Running, "stuck: counted, never ended");
        ids.push(job.id);
    }
    let swept = e.driver().sweep().await.expect("sweep");
    let mut want = vec![(ids[0].clone(), JobStatus::Succeeded), (ids[1].clone(), JobStatus::Failed)];
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(swept.finished, want, "{swept:?}");
    let (ok, failed) = (e.job(&ids[0]).await.counters, e.job(&ids[1]).await.counters);
    assert_eq!((ok.listed, ok.replicated, ok.skipped, ok.failed, ok.bytes, ok.pending), (2, 1, 1, 0, 10, 0));
    assert_eq!(
        (failed.listed, failed.replicated, failed.skipped, failed.failed, failed.bytes, failed.pending),
        (2, 1, 0, 1, 7, 0)
    );
    assert_eq!(e.driver().sweep().await.expect("sweep again"), xcr::jobs::migrate::Swept::default());
}

/// A task killed on its last delivery (timeout, out of memory) never counts itself failed:
/// SQS moves it to the DLQ uncounted and its job would stay RUNNING forever. Here that is
/// done the way SQS does it (the message moved to the DLQ as it was). Without the sweep the job
/// stays RUNNING; the sweep of `xcr pump` counts the dead task failed, leaves it in the DLQ,
/// and the job ends FAILED with exact counters. A redrive then copies the object without
/// counting it again.
#[tokio::test(flavor = "multi_thread")]
async fn a_task_killed_on_its_last_delivery_is_counted_failed_from_the_dlq() {
    let e = env().await;
    let objects = e.seed("killed/", 3).await;
    let job = e.create(JobSpec { prefix: "killed/".into(), ..spec(e.stack.source_bucket()) }).await;
    assert_eq!(e.driver().step(&job.id).await.expect("list"), Step::ListingDone);
    let (dlq, taken) = (e.dlq(), e.queue.receive(1, 1, Some(60)).await.expect("receive"));
    let [dead] = taken.as_slice() else { panic!("one message: {taken:?}") };
    assert_eq!(dlq.send(&[dead.body.as_str()]).await.expect("to the DLQ").len(), 1);
    assert_eq!(e.queue.delete(&[dead]).await.expect("delete"), 1);

    let handler = xcr::entry::handler::Handler::new(
        replicator(&e.stack, &[]).await,
        8,
        Some(e.queue.clone()),
        Some(e.jobs.clone()),
    );
    let driver = e.driver();
    let no_sweep = PumpOptions { sweep_every: None, ..until_idle(2) };
    // Boxed: two pumps' futures inline overflow the test thread's stack.
    Box::pin(pump(&handler, &e.queue, "us-east-1", Some(&driver), &no_sweep)).await.expect("pump");
    let stuck = e.job(&job.id).await;
    assert_eq!((stuck.status, stuck.counters.replicated, stuck.counters.pending), (JobStatus::Running, 2, 1));

    Box::pin(pump(&handler, &e.queue, "us-east-1", Some(&driver), &until_idle(2))).await.expect("pump with its sweep");
    let done = e.job(&job.id).await;
    assert_eq!(done.status, JobStatus::Failed, "{done:?}");
    let c = done.counters;
    assert_eq!((c.listed, c.queued, c.replicated, c.skipped, c.failed, c.pending), (3, 3, 2, 0, 1, 0), "{c:?}");
    assert!(done.last_error.as_deref().unwrap_or("").contains("DLQ"), "{:?}", done.last_error);
    assert_eq!(dlq.depth().await.expect("dlq depth"), (1, 0), "the dead task waits in the DLQ, visible");
    assert_eq!(driver.sweep().await.expect("sweep again").dead_letters_counted, 0, "counted once");

    assert_eq!(xcr::entry::pump::redrive(&dlq, &e.queue, 10).await.expect("redrive"), 1);
    e.pump().await;
    assert_eq!(e.gcs_listing().await.len(), objects.len(), "the redriven task copied its object");
    let after = e.job(&job.id).await;
    assert_eq!((after.status, after.counters.replicated, after.counters.failed), (JobStatus::Failed, 2, 1));
}
