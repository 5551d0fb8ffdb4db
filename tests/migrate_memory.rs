//! The migration job driver (`xcr::jobs::migrate::Driver`) on the in-memory adapters (`xcr::adapters::memory`):
//! listing, staging, enqueueing and ending a job without an emulator, in milliseconds. Part of
//! `make check`. tests/migrate.rs runs jobs end to end on the emulators.

use std::collections::BTreeSet;
use xcr::adapters::memory::{MemoryJobStore, MemoryQueue, MemorySource};
use xcr::jobs::migrate::{Driver, Step};
use xcr::jobs::{Job, JobSpec, JobStatus, TaskTally, now_rfc3339, task_id};
use xcr::ports::JobStore;

const SRC: &str = "src";

fn setup(keys: &[&str]) -> (Driver<MemorySource, MemoryQueue, MemoryJobStore>, MemoryQueue, MemoryJobStore) {
    let source = MemorySource::new();
    source.create_bucket(SRC, false);
    for k in keys {
        source.put(SRC, k, k.as_bytes().to_vec()).expect("put");
    }
    let (queue, jobs) = (MemoryQueue::default(), MemoryJobStore::new());
    let mut driver = Driver::new(source, queue.clone(), jobs.clone());
    driver.page_size = 2;
    (driver, queue, jobs)
}

async fn new_job(jobs: &MemoryJobStore, prefix: &str) -> Job {
    let spec = JobSpec { source_bucket: SRC.into(), prefix: prefix.into(), ..JobSpec::default() };
    let job = Job::new(spec, &now_rfc3339());
    jobs.create(&job).await.expect("create");
    job
}

/// Every queued command's key, each receive deleted; the bodies name the job.
fn drain_keys(queue: &MemoryQueue, job_id: &str) -> Vec<String> {
    let mut keys = Vec::new();
    loop {
        let got = queue.receive(10, None);
        if got.is_empty() {
            return keys;
        }
        for m in got {
            let cmd: serde_json::Value = serde_json::from_str(&m.body).expect("a JSON command");
            assert_eq!(cmd["job_id"], job_id, "{cmd}");
            assert_eq!(cmd["bucket"], SRC, "{cmd}");
            keys.push(cmd["key"].as_str().expect("key").to_string());
            queue.delete(&m.receipt_handle).expect("delete");
        }
    }
}

#[tokio::test]
async fn a_job_lists_its_prefix_page_by_page_queues_each_key_once_and_ends_when_counted() {
    let (driver, queue, jobs) = setup(&["data/a", "data/b", "data/c", "data/d", "data/e", "other/x"]);
    let job = new_job(&jobs, "data/").await;
    let mut steps = Vec::new();
    loop {
        let step = driver.step(&job.id).await.expect("step");
        steps.push(step);
        if step != Step::Progress {
            break;
        }
    }
    assert_eq!(steps, [Step::Progress, Step::Progress, Step::ListingDone], "three pages of two");
    let queued = drain_keys(&queue, &job.id);
    assert_eq!(queued, ["data/a", "data/b", "data/c", "data/d", "data/e"], "each key under the prefix, once, in order");
    let got = jobs.get(&job.id).await.expect("get").expect("job");
    assert_eq!((got.status, got.listing_done), (JobStatus::Running, true));
    assert_eq!((got.counters.listed, got.counters.queued, got.counters.pending), (5, 5, 5));
    assert_eq!(jobs.staged_page(&job.id).await.expect("staged"), None, "every staged page committed");
    for (i, key) in queued.iter().enumerate() {
        let tally = if i == 0 { TaskTally::Skipped } else { TaskTally::Replicated { bytes: key.len() as u64 } };
        assert!(jobs.record_task(&job.id, &task_id(SRC, key, None), tally).await.expect("count"));
    }
    assert_eq!(driver.step(&job.id).await.expect("step"), Step::Ended(JobStatus::Succeeded));
    let got = jobs.get(&job.id).await.expect("get").expect("job");
    assert_eq!(
        (got.counters.replicated, got.counters.skipped, got.counters.bytes, got.counters.pending),
        (4, 1, 24, 0)
    );
    assert!(queue.is_empty(), "an ended job queues nothing more");
}

#[tokio::test]
async fn a_cancelled_job_stops_queueing_at_its_next_step() {
    let (driver, queue, jobs) = setup(&["k/1", "k/2", "k/3", "k/4"]);
    let job = new_job(&jobs, "k/").await;
    assert_eq!(driver.step(&job.id).await.expect("step"), Step::Progress);
    assert!(jobs.cancel(&job.id).await.expect("cancel"));
    assert_eq!(driver.step(&job.id).await.expect("step"), Step::Ended(JobStatus::Cancelled));
    let queued: BTreeSet<String> = drain_keys(&queue, &job.id).into_iter().collect();
    assert_eq!(queued, BTreeSet::from(["k/1".to_string(), "k/2".to_string()]), "only the page before the cancel");
}

#[tokio::test]
async fn a_staged_page_left_by_a_crash_is_queued_again_not_listed_again() {
    let (driver, queue, jobs) = setup(&["p/1", "p/2", "p/3"]);
    let job = new_job(&jobs, "p/").await;
    assert!(jobs.start(&job.id).await.expect("start"));
    // A driver staged the first page and died before enqueueing it: the page names keys the
    // listing no longer has (deleted since), which proves the next step does not list again.
    let staged = xcr::jobs::StagedPage {
        from: None,
        next: Some("after:p/2".into()),
        done: false,
        keys: vec!["p/1".into(), "p/gone".into()],
    };
    assert!(jobs.stage_page(&job.id, &staged).await.expect("stage"));
    assert_eq!(driver.step(&job.id).await.expect("step"), Step::Progress);
    assert_eq!(drain_keys(&queue, &job.id), ["p/1", "p/gone"], "the staged page, as staged");
    assert_eq!(driver.step(&job.id).await.expect("step"), Step::ListingDone);
    assert_eq!(drain_keys(&queue, &job.id), ["p/3"], "then the listing after the staged page's end");
    let c = jobs.get(&job.id).await.expect("get").expect("job").counters;
    assert_eq!((c.listed, c.queued, c.pending), (3, 3, 3));
}
