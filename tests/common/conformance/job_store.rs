//! The job store port ([`JobStore`]): the job states, checkpoints, staged pages, task markers
//! and driver lease as DynamoDB's conditional writes and transactions keep them.

use xcr::ErrorKind;
use xcr::jobs::{AuditTally, Job, JobKind, JobSpec, JobStatus, StagedPage, TaskTally};
use xcr::ports::JobStore;

fn new_job(kind: JobKind, created_at: &str) -> Job {
    Job::new(JobSpec { kind, source_bucket: "src".into(), ..JobSpec::default() }, created_at)
}

async fn running<J: JobStore>(j: &J, kind: JobKind) -> Job {
    let job = new_job(kind, &xcr::jobs::now_rfc3339());
    j.create(&job).await.expect("create");
    assert!(j.start(&job.id).await.expect("start"));
    job
}

async fn get<J: JobStore>(j: &J, id: &str) -> Job {
    j.get(id).await.expect("get").expect("the job exists")
}

fn page(from: Option<&str>, next: Option<&str>, done: bool, keys: &[&str]) -> StagedPage {
    StagedPage {
        from: from.map(str::to_string),
        next: next.map(str::to_string),
        done,
        keys: keys.iter().map(|k| k.to_string()).collect(),
    }
}

pub async fn run<J: JobStore>(j: &J) {
    a_job_is_created_once_and_listed_newest_first(j).await;
    states_change_only_from_the_states_they_leave(j).await;
    a_page_commits_only_at_the_checkpoint_it_was_listed_after(j).await;
    a_staged_page_is_staged_once_per_checkpoint_and_committed_once(j).await;
    a_task_is_counted_once_and_the_job_ends_when_none_is_pending(j).await;
    a_batch_counts_each_task_once_whatever_was_counted_before(j).await;
    one_driver_holds_a_job_until_its_lease_expires(j).await;
}

pub async fn a_job_is_created_once_and_listed_newest_first<J: JobStore>(j: &J) {
    let older = new_job(JobKind::Copy, "2031-01-01T00:00:00Z");
    let newer = new_job(JobKind::Audit, "2031-01-01T00:00:01Z");
    j.create(&older).await.expect("create");
    j.create(&newer).await.expect("create");
    let e = j.create(&older).await.expect_err("the same id twice");
    assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
    let got = get(j, &older.id).await;
    assert_eq!(got, older, "stored as given: pending, zero counters, no checkpoint");
    assert_eq!(get(j, &newer.id).await.audit, Some(Default::default()), "an audit job has audit counters");
    assert!(j.get("job-none").await.expect("get").is_none());
    let listed = j.list(100).await.expect("list");
    let at = |id: &str| listed.iter().position(|x| x.id == id).expect("listed");
    assert!(at(&newer.id) < at(&older.id), "newest first");
    assert!(listed.windows(2).all(|w| w[0].created_at >= w[1].created_at), "ordered by creation time");
    assert_eq!(j.list(1).await.expect("list").len(), 1, "at most `limit`");
}

pub async fn states_change_only_from_the_states_they_leave<J: JobStore>(j: &J) {
    let job = new_job(JobKind::Copy, &xcr::jobs::now_rfc3339());
    j.create(&job).await.expect("create");
    assert!(j.start(&job.id).await.expect("start"));
    assert!(!j.start(&job.id).await.expect("start again"), "only a pending job starts");
    assert!(j.cancel(&job.id).await.expect("cancel"));
    let got = get(j, &job.id).await;
    assert_eq!(got.status, JobStatus::Cancelled);
    assert!(got.finished_at.is_some());
    assert!(!j.cancel(&job.id).await.expect("cancel again"), "an ended job stays ended");
    assert!(!j.fail(&job.id, "late").await.expect("fail"), "an ended job does not fail");
    assert!(!j.start("job-none").await.expect("start a missing job"));
    let job = running(j, JobKind::Copy).await;
    j.set_error(&job.id, "a problem").await.expect("set error");
    assert_eq!(get(j, &job.id).await.last_error.as_deref(), Some("a problem"));
    j.set_error("job-none", "nothing").await.expect("an error for a missing job is dropped");
    assert!(j.get("job-none").await.expect("get").is_none(), "and creates nothing");
    assert!(j.fail(&job.id, &"m".repeat(1_200)).await.expect("fail"));
    let got = get(j, &job.id).await;
    assert_eq!((got.status, got.last_error.map(|e| e.len())), (JobStatus::Failed, Some(1_000)));
}

pub async fn a_page_commits_only_at_the_checkpoint_it_was_listed_after<J: JobStore>(j: &J) {
    let job = new_job(JobKind::Copy, &xcr::jobs::now_rfc3339());
    j.create(&job).await.expect("create");
    assert!(
        !j.commit_page(&job.id, None, Some("t1"), false, 5, 4).await.expect("commit"),
        "a pending job lists nothing"
    );
    assert!(j.start(&job.id).await.expect("start"));
    assert!(j.commit_page(&job.id, None, Some("t1"), false, 5, 4).await.expect("commit the first page"));
    assert!(!j.commit_page(&job.id, None, Some("t1"), false, 5, 4).await.expect("again"), "the checkpoint moved");
    assert!(!j.commit_page(&job.id, Some("t0"), Some("t2"), false, 5, 4).await.expect("stale"), "not at t0");
    assert!(j.commit_page(&job.id, Some("t1"), None, true, 2, 2).await.expect("the last page"));
    let got = get(j, &job.id).await;
    assert_eq!((got.checkpoint, got.listing_done), (None, true));
    assert_eq!((got.counters.listed, got.counters.queued, got.counters.pending), (7, 6, 6));
    assert!(
        !j.commit_page(&job.id, None, Some("t1"), false, 1, 1).await.expect("after the end"),
        "a finished listing does not restart"
    );
}

pub async fn a_staged_page_is_staged_once_per_checkpoint_and_committed_once<J: JobStore>(j: &J) {
    let job = running(j, JobKind::Copy).await;
    assert_eq!(j.staged_page(&job.id).await.expect("staged"), None);
    let first = page(None, Some("k2"), false, &["k1", "k2"]);
    assert!(j.stage_page(&job.id, &first).await.expect("stage"));
    assert!(
        !j.stage_page(&job.id, &page(None, Some("k9"), false, &["k9"])).await.expect("a twin"),
        "a concurrent driver's page wins"
    );
    assert_eq!(j.staged_page(&job.id).await.expect("staged"), Some(first.clone()));
    assert!(!j.stage_page(&job.id, &page(Some("k0"), None, true, &[])).await.expect("stale"), "not at that checkpoint");
    assert!(j.commit_staged_page(&job.id, &first, 2).await.expect("commit"));
    assert!(!j.commit_staged_page(&job.id, &first, 2).await.expect("again"), "committed once");
    assert_eq!(j.staged_page(&job.id).await.expect("staged"), None, "the commit removes it");
    let got = get(j, &job.id).await;
    assert_eq!((got.checkpoint.as_deref(), got.counters.listed, got.counters.pending), (Some("k2"), 2, 2));
    let last = page(Some("k2"), None, true, &["k3"]);
    assert!(!j.commit_staged_page(&job.id, &last, 1).await.expect("unstaged"), "only a staged page commits");
    assert!(j.stage_page(&job.id, &last).await.expect("stage the last page"));
    assert!(j.commit_staged_page(&job.id, &last, 1).await.expect("commit"));
    let got = get(j, &job.id).await;
    assert_eq!((got.checkpoint, got.listing_done, got.counters.listed), (None, true, 3));
}

pub async fn a_task_is_counted_once_and_the_job_ends_when_none_is_pending<J: JobStore>(j: &J) {
    let job = running(j, JobKind::Copy).await;
    assert!(j.commit_page(&job.id, None, None, true, 3, 3).await.expect("commit"));
    assert_eq!(j.try_finish(&job.id).await.expect("finish"), None, "tasks are pending");
    assert!(j.record_task(&job.id, "src/a", TaskTally::Replicated { bytes: 10 }).await.expect("count"));
    assert!(
        !j.record_task(&job.id, "src/a", TaskTally::Replicated { bytes: 10 }).await.expect("twice"),
        "counted once"
    );
    assert!(j.record_task(&job.id, "src/b", TaskTally::Skipped).await.expect("count"));
    assert!(j.record_task(&job.id, "@v1#src/b", TaskTally::Replicated { bytes: 5 }).await.expect("another version"));
    let c = get(j, &job.id).await.counters;
    assert_eq!((c.replicated, c.skipped, c.failed, c.bytes, c.pending), (2, 1, 0, 15, 0));
    assert_eq!(j.try_finish(&job.id).await.expect("finish"), Some(JobStatus::Succeeded));
    assert_eq!(j.try_finish(&job.id).await.expect("again"), None, "ended once");
    let job = running(j, JobKind::Audit).await;
    assert!(j.commit_page(&job.id, None, None, true, 2, 2).await.expect("commit"));
    let counts =
        xcr::domain::audit::Counts { compared: 4, matching: 2, missing: 1, different: 1, ..Default::default() };
    assert!(j.record_audit_page(&job.id, "page-1", AuditTally::Audited { counts, repaired: 2 }).await.expect("count"));
    assert!(!j.record_audit_page(&job.id, "page-1", AuditTally::Audited { counts, repaired: 2 }).await.expect("twice"));
    assert!(j.record_audit_page(&job.id, "page-2", AuditTally::Failed).await.expect("count"));
    let got = get(j, &job.id).await;
    let a = got.audit.expect("audit counters");
    assert_eq!(
        (a.pages, a.compared, a.missing, a.repaired, got.counters.failed, got.counters.pending),
        (1, 4, 1, 2, 1, 0)
    );
    assert_eq!(j.try_finish(&job.id).await.expect("finish"), Some(JobStatus::Failed), "a failed task fails the job");
}

/// `record_tasks`: a batch's tasks counted together (the DynamoDB store: one transaction per
/// 99), each once: one counted before is reported `false` and the rest still counted, a task
/// named twice in the batch counts at its first mention, and the whole batch again counts nothing.
pub async fn a_batch_counts_each_task_once_whatever_was_counted_before<J: JobStore>(j: &J) {
    let job = running(j, JobKind::Copy).await;
    assert!(j.commit_page(&job.id, None, None, true, 120, 120).await.expect("commit"));
    assert!(j.record_task(&job.id, "src/k003", TaskTally::Skipped).await.expect("count one"));
    let mut batch: Vec<(String, TaskTally)> =
        (0..120).map(|i| (format!("src/k{i:03}"), TaskTally::Replicated { bytes: 2 })).collect();
    batch.push(("src/k007".into(), TaskTally::Replicated { bytes: 2 }));
    batch[119].1 = TaskTally::Failed;
    let counted = j.record_tasks(&job.id, &batch).await.expect("count the batch");
    let want: Vec<bool> = (0..batch.len()).map(|i| i != 3 && i != 120).collect();
    assert_eq!(counted, want, "counted before (k003) and named twice (k007's second mention): false");
    let c = get(j, &job.id).await.counters;
    assert_eq!((c.replicated, c.skipped, c.failed, c.bytes, c.pending), (118, 1, 1, 236, 0), "{c:?}");
    let again = j.record_tasks(&job.id, &batch).await.expect("again");
    assert!(again.iter().all(|c| !c), "a redelivered batch counts nothing");
    assert_eq!(get(j, &job.id).await.counters.pending, 0);
    assert_eq!(j.try_finish(&job.id).await.expect("finish"), Some(JobStatus::Failed));
}

pub async fn one_driver_holds_a_job_until_its_lease_expires<J: JobStore>(j: &J) {
    let job = running(j, JobKind::Copy).await;
    assert!(j.claim_driver(&job.id, "a", 1_000, 2_000).await.expect("claim"));
    assert!(!j.claim_driver(&job.id, "b", 1_500, 2_500).await.expect("claim"), "held");
    assert!(j.claim_driver(&job.id, "a", 1_900, 3_000).await.expect("renew"), "the holder renews");
    assert!(!j.claim_driver(&job.id, "b", 2_500, 3_500).await.expect("claim"), "renewed");
    assert!(j.claim_driver(&job.id, "b", 3_001, 4_000).await.expect("after expiry"));
    j.release_driver(&job.id, "a").await.expect("release by another is a no-op");
    assert!(!j.claim_driver(&job.id, "a", 3_500, 4_500).await.expect("claim"), "b still holds it");
    j.release_driver(&job.id, "b").await.expect("release");
    assert!(j.claim_driver(&job.id, "a", 3_500, 4_500).await.expect("claim"), "free at once");
    assert!(!j.claim_driver("job-none", "a", 0, 1).await.expect("claim"), "no job, no driver");
}
