//! Migration jobs in DynamoDB. One item per job (`pk = jobs`, `sk = job#ID`) holding the spec,
//! status, counters and checkpoint, so that listing jobs is one Query of one partition; one
//! small marker item per finished task (`pk = job#ID`, `sk = task#TASK_ID`, see
//! [`crate::jobs::task_id`]) so that a task delivered twice is counted once: the marker and the
//! counter update are one transaction.

use super::attrs::{Item, get_n, get_s, n, s};
use super::{TRANSACTION_RETRY, cancellation_reasons, classify, is_retryable_cancellation, is_transaction_conflict};
use crate::domain::error::{Error, ErrorKind, Result};
use crate::jobs::{
    AuditCounters, AuditTally, Counters, Job, JobKind, JobSpec, JobStatus, StagedPage, TaskTally, now_rfc3339,
};
use crate::ports::JobStore;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Delete, Put, TransactWriteItem, Update};

/// The partition holding every job item (jobs are few; their tasks' markers are not here).
const JOBS_PK: &str = "jobs";

#[derive(Debug, Clone)]
/// The [`crate::ports::JobStore`] in DynamoDB: one item per job under one partition key, so
/// that listing jobs is one query; counters move by transaction with a per-task marker.
pub struct DynamoJobStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

fn job_sk(id: &str) -> AttributeValue {
    s(format!("job#{id}"))
}

/// The sort key of a job's staged page, in the job's task partition (`pk = job#ID`): beside
/// the job item rather than in it, so that the job item every task reads stays small.
const PAGE_SK: &str = "page";

/// A checkpoint as stored in a staged page's `page_from` (the start of the listing is "").
fn page_from(cp: Option<&str>) -> AttributeValue {
    s(cp.unwrap_or_default())
}

/// The job item's condition that its checkpoint is still `old` and the job RUNNING, with the
/// values it needs (`#st` names `status`).
fn at_checkpoint(old: Option<&str>) -> (&'static str, Vec<(&'static str, AttributeValue)>) {
    let running = (":running", s(JobStatus::Running.as_str()));
    match old {
        Some(cp) => ("#st = :running AND list_checkpoint = :old", vec![running, (":old", s(cp))]),
        None => (
            "#st = :running AND attribute_not_exists(list_checkpoint) AND listing_done = :false",
            vec![running, (":false", AttributeValue::Bool(false))],
        ),
    }
}

fn build_err(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::new(ErrorKind::Invalid, format!("bad request: {what}")).with_source(e)
}

fn parse_job(item: &Item) -> Result<Job> {
    let bad = |what: &str| Error::new(ErrorKind::Transient, format!("jobs table item without a valid {what}"));
    let id = get_s(item, "sk").and_then(|p| p.strip_prefix("job#").map(str::to_string)).ok_or_else(|| bad("sk"))?;
    let spec: JobSpec = get_s(item, "spec").and_then(|t| serde_json::from_str(&t).ok()).ok_or_else(|| bad("spec"))?;
    let status = get_s(item, "status").and_then(|t| JobStatus::parse(&t)).ok_or_else(|| bad("status"))?;
    // Absent counters read as zero: a new audit job's item has none until its first page.
    let audit = (spec.kind == JobKind::Audit).then(|| AuditCounters {
        pages: get_n(item, "n_pages").unwrap_or_default(),
        compared: get_n(item, "n_compared").unwrap_or_default(),
        matching: get_n(item, "n_matching").unwrap_or_default(),
        missing: get_n(item, "n_missing").unwrap_or_default(),
        different: get_n(item, "n_different").unwrap_or_default(),
        extra: get_n(item, "n_extra").unwrap_or_default(),
        unverifiable: get_n(item, "n_unverifiable").unwrap_or_default(),
        repaired: get_n(item, "n_repaired").unwrap_or_default(),
    });
    Ok(Job {
        id,
        spec,
        audit,
        status,
        counters: Counters {
            listed: get_n(item, "n_listed").unwrap_or_default(),
            queued: get_n(item, "n_queued").unwrap_or_default(),
            replicated: get_n(item, "n_replicated").unwrap_or_default(),
            skipped: get_n(item, "n_skipped").unwrap_or_default(),
            failed: get_n(item, "n_failed").unwrap_or_default(),
            bytes: get_n(item, "n_bytes").unwrap_or_default(),
            pending: get_n(item, "n_pending").unwrap_or_default(),
        },
        checkpoint: get_s(item, "list_checkpoint"),
        listing_done: item.get("listing_done").and_then(|v| v.as_bool().ok()).copied().unwrap_or(false),
        created_at: get_s(item, "created_at").unwrap_or_default(),
        updated_at: get_s(item, "updated_at").unwrap_or_default(),
        finished_at: get_s(item, "finished_at"),
        last_error: get_s(item, "last_error"),
    })
}

impl DynamoJobStore {
    /// A store on `table` (the `XCR_JOBS_TABLE` the template creates); nothing is called until
    /// the first request, so a missing table shows as a `config` error then.
    pub fn new(sdk: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self { client: aws_sdk_dynamodb::Client::new(sdk), table: table.into() }
    }

    fn update(&self, id: &str) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client.update_item().table_name(&self.table).key("pk", s(JOBS_PK)).key("sk", job_sk(id))
    }

    /// Runs a conditional update; Ok(false) when its condition did not hold. An update that a
    /// running transaction refused (a task being counted in this very job item) is retried
    /// with [`TRANSACTION_RETRY`]: callers such as the job driver's page commit and the job's
    /// end do not retry by themselves.
    async fn conditional(
        &self,
        req: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
        what: &str,
    ) -> Result<bool> {
        TRANSACTION_RETRY
            .run_if(what, is_transaction_conflict, |_| {
                let req = req.clone();
                async move {
                    match req.send().await {
                        Ok(_) => Ok(true),
                        Err(e)
                            if matches!(
                                e.as_service_error(),
                                Some(UpdateItemError::ConditionalCheckFailedException(_))
                            ) =>
                        {
                            Ok(false)
                        }
                        Err(e) => Err(classify(e, what)),
                    }
                }
            })
            .await
    }

    /// One `TransactWriteItems`: true when written, false when a condition failed, retried
    /// while DynamoDB cancels it for a conflict with another transaction (every task count is
    /// one on the same job item) or a throttle.
    async fn transact(&self, what: &str, items: Vec<TransactWriteItem>) -> Result<bool> {
        TRANSACTION_RETRY
            .run_if(what, is_transaction_conflict, |_| {
                let req = self.client.transact_write_items().set_transact_items(Some(items.clone()));
                async move {
                    let e = match req.send().await {
                        Ok(_) => return Ok(true),
                        Err(e) => e,
                    };
                    let reasons = cancellation_reasons(&e);
                    if reasons.contains(&"ConditionalCheckFailed") {
                        return Ok(false);
                    }
                    let kind = if is_retryable_cancellation(&reasons) {
                        ErrorKind::Transient
                    } else if reasons.is_empty() {
                        return Err(classify(e, what));
                    } else {
                        ErrorKind::Invalid
                    };
                    let why = format!("{what}: transaction cancelled ({})", reasons.join(", "));
                    Err(Error::new(kind, why).with_source(e))
                }
            })
            .await
    }
    /// One transaction counting the tasks `which` (indices into `tasks`): a marker per task,
    /// each only if absent, and one update of the job's counters by their sum. When some
    /// markers exist already, DynamoDB cancels the whole transaction and names them (its
    /// cancellation reasons are in item order): nothing was counted, and the caller retries
    /// without them.
    async fn count_tasks(&self, id: &str, tasks: &[(String, TaskTally)], which: &[usize]) -> Result<Counted> {
        let mut items = Vec::with_capacity(which.len() + 1);
        let (mut replicated, mut skipped, mut failed, mut bytes) = (0u64, 0u64, 0u64, 0u64);
        for &i in which {
            let (task_id, tally) = &tasks[i];
            let name = match tally {
                TaskTally::Replicated { bytes: b } => {
                    replicated += 1;
                    bytes += b;
                    "replicated"
                }
                TaskTally::Skipped => {
                    skipped += 1;
                    "skipped"
                }
                TaskTally::Failed => {
                    failed += 1;
                    "failed"
                }
            };
            let marker = Put::builder()
                .table_name(&self.table)
                .item("pk", job_sk(id))
                .item("sk", s(format!("task#{task_id}")))
                .item("tally", s(name))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(|e| Error::new(ErrorKind::Invalid, "bad task marker").with_source(e))?;
            items.push(TransactWriteItem::builder().put(marker).build());
        }
        let counters = Update::builder()
            .table_name(&self.table)
            .key("pk", s(JOBS_PK))
            .key("sk", job_sk(id))
            .update_expression(
                "ADD n_replicated :r, n_skipped :s, n_failed :f, n_bytes :bytes, n_pending :minus SET updated_at = :now",
            )
            .expression_attribute_values(":r", n(replicated))
            .expression_attribute_values(":s", n(skipped))
            .expression_attribute_values(":f", n(failed))
            .expression_attribute_values(":bytes", n(bytes))
            .expression_attribute_values(":minus", AttributeValue::N(format!("-{}", which.len())))
            .expression_attribute_values(":now", s(now_rfc3339()))
            .build()
            .map_err(|e| Error::new(ErrorKind::Invalid, "bad counter update").with_source(e))?;
        items.push(TransactWriteItem::builder().update(counters).build());
        // The tasks of one job finish concurrently in many invocations and all update the job
        // item: DynamoDB cancels transactions that collide on it (TransactionConflict) or that
        // it throttles. Those are retried here, with jitter, rather than sending the tasks back
        // to the queue for a whole visibility timeout; when retries run out the error is still
        // retryable, so the tasks are delivered again and counted then.
        TRANSACTION_RETRY
            .run_if("count job tasks", is_transaction_conflict, |_| {
                let req = self.client.transact_write_items().set_transact_items(Some(items.clone()));
                async move {
                    let e = match req.send().await {
                        Ok(_) => return Ok(Counted::All),
                        Err(e) => e,
                    };
                    let reasons = cancellation_reasons(&e);
                    let before: Vec<usize> = reasons
                        .iter()
                        .zip(which)
                        .filter(|(r, _)| **r == "ConditionalCheckFailed")
                        .map(|(_, &i)| i)
                        .collect();
                    if !before.is_empty() {
                        return Ok(Counted::NoneAlreadyCounted(before));
                    }
                    let kind = if is_retryable_cancellation(&reasons) {
                        ErrorKind::Transient
                    } else if reasons.is_empty() {
                        return Err(classify(e, "count job tasks"));
                    } else {
                        // Includes a failed condition reported on no marker: nothing to drop,
                        // and retrying the same items would loop.
                        ErrorKind::Invalid
                    };
                    let why = format!("count job tasks: transaction cancelled ({})", reasons.join(", "));
                    Err(Error::new(kind, why).with_source(e))
                }
            })
            .await
    }
}

/// What one counting transaction did ([`DynamoJobStore::count_tasks`]).
enum Counted {
    /// Every task given was counted.
    All,
    /// Nothing was counted: these tasks (indices) were counted before.
    NoneAlreadyCounted(Vec<usize>),
}

/// Task markers per counting transaction: DynamoDB takes at most 100 items in one, and the job's
/// counter update is the last.
const MARKERS_PER_COUNT: usize = 99;

impl JobStore for DynamoJobStore {
    async fn create(&self, job: &Job) -> Result<()> {
        let spec = serde_json::to_string(&job.spec)
            .map_err(|e| Error::new(ErrorKind::Invalid, "cannot encode the job spec").with_source(e))?;
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(JOBS_PK))
            .item("sk", job_sk(&job.id))
            .item("spec", s(spec))
            .item("status", s(job.status.as_str()))
            .item("listing_done", AttributeValue::Bool(false))
            .item("created_at", s(&job.created_at))
            .item("updated_at", s(&job.updated_at))
            .condition_expression("attribute_not_exists(pk)");
        for k in ["n_listed", "n_queued", "n_replicated", "n_skipped", "n_failed", "n_bytes", "n_pending"] {
            put = put.item(k, n(0));
        }
        put.send().await.map_err(|e| classify(e, "create job"))?;
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<Job>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(JOBS_PK))
            .key("sk", job_sk(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify(e, "read job"))?;
        out.item().map(parse_job).transpose()
    }

    async fn list(&self, limit: usize) -> Result<Vec<Job>> {
        // Job ids start with their creation time, so the partition's sort order is age.
        let mut jobs = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :jobs")
                .expression_attribute_values(":jobs", s(JOBS_PK))
                .scan_index_forward(false)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| classify(e, "list jobs"))?;
            for item in out.items() {
                jobs.push(parse_job(item)?);
            }
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() && jobs.len() < limit => start = Some(k.clone()),
                _ => break,
            }
        }
        jobs.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.id.cmp(&a.id)));
        jobs.truncate(limit);
        Ok(jobs)
    }

    async fn start(&self, id: &str) -> Result<bool> {
        let req = self
            .update(id)
            .update_expression("SET #st = :running, updated_at = :now")
            .condition_expression("#st = :pending")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":running", s(JobStatus::Running.as_str()))
            .expression_attribute_values(":pending", s(JobStatus::Pending.as_str()))
            .expression_attribute_values(":now", s(now_rfc3339()));
        self.conditional(req, "start job").await
    }

    async fn cancel(&self, id: &str) -> Result<bool> {
        let now = now_rfc3339();
        let req = self
            .update(id)
            .update_expression("SET #st = :cancelled, updated_at = :now, finished_at = :now")
            .condition_expression("#st IN (:pending, :running)")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":cancelled", s(JobStatus::Cancelled.as_str()))
            .expression_attribute_values(":pending", s(JobStatus::Pending.as_str()))
            .expression_attribute_values(":running", s(JobStatus::Running.as_str()))
            .expression_attribute_values(":now", s(now));
        self.conditional(req, "cancel job").await
    }

    async fn commit_page(
        &self,
        id: &str,
        old: Option<&str>,
        new: Option<&str>,
        listing_done: bool,
        listed: u64,
        queued: u64,
    ) -> Result<bool> {
        let mut req = self
            .update(id)
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":running", s(JobStatus::Running.as_str()))
            .expression_attribute_values(":done", AttributeValue::Bool(listing_done))
            .expression_attribute_values(":listed", n(listed))
            .expression_attribute_values(":queued", n(queued))
            .expression_attribute_values(":now", s(now_rfc3339()));
        let set = match new {
            Some(cp) => {
                req = req.expression_attribute_values(":cp", s(cp));
                "SET list_checkpoint = :cp, listing_done = :done, updated_at = :now"
            }
            None => "SET listing_done = :done, updated_at = :now",
        };
        let remove = if new.is_none() { " REMOVE list_checkpoint" } else { "" };
        req = req.update_expression(format!("{set} ADD n_listed :listed, n_queued :queued, n_pending :queued{remove}"));
        let condition = match old {
            Some(cp) => {
                req = req.expression_attribute_values(":old", s(cp));
                "#st = :running AND list_checkpoint = :old"
            }
            None => "#st = :running AND attribute_not_exists(list_checkpoint) AND listing_done = :false",
        };
        if old.is_none() {
            req = req.expression_attribute_values(":false", AttributeValue::Bool(false));
        }
        self.conditional(req.condition_expression(condition), "commit job checkpoint").await
    }

    async fn staged_page(&self, id: &str) -> Result<Option<StagedPage>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", job_sk(id))
            .key("sk", s(PAGE_SK))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify(e, "read the job's staged page"))?;
        let Some(item) = out.item() else { return Ok(None) };
        let page = get_s(item, "page").and_then(|t| serde_json::from_str::<StagedPage>(&t).ok()).ok_or_else(|| {
            Error::new(ErrorKind::Transient, format!("job {id}: staged page item without a valid page"))
        })?;
        Ok(Some(page))
    }

    async fn stage_page(&self, id: &str, page: &StagedPage) -> Result<bool> {
        let text = serde_json::to_string(page)
            .map_err(|e| Error::new(ErrorKind::Invalid, "cannot encode the staged page").with_source(e))?;
        let (condition, values) = at_checkpoint(page.from.as_deref());
        let mut check = ConditionCheck::builder()
            .table_name(&self.table)
            .key("pk", s(JOBS_PK))
            .key("sk", job_sk(id))
            .condition_expression(condition)
            .expression_attribute_names("#st", "status");
        for (k, v) in values {
            check = check.expression_attribute_values(k, v);
        }
        let put = Put::builder()
            .table_name(&self.table)
            .item("pk", job_sk(id))
            .item("sk", s(PAGE_SK))
            .item("page_from", page_from(page.from.as_deref()))
            .item("page", s(text))
            .item("updated_at", s(now_rfc3339()))
            // A page staged for this very checkpoint is a concurrent driver's: it wins, and this
            // driver enqueues that page instead. One staged for an older checkpoint is stale.
            .condition_expression("attribute_not_exists(pk) OR page_from <> :from")
            .expression_attribute_values(":from", page_from(page.from.as_deref()))
            .build()
            .map_err(|e| build_err("stage page", e))?;
        let check = check.build().map_err(|e| build_err("stage page", e))?;
        self.transact(
            "stage the job's page",
            vec![
                TransactWriteItem::builder().condition_check(check).build(),
                TransactWriteItem::builder().put(put).build(),
            ],
        )
        .await
    }

    async fn commit_staged_page(&self, id: &str, page: &StagedPage, queued: u64) -> Result<bool> {
        let listed = page.keys.len() as u64;
        let (condition, values) = at_checkpoint(page.from.as_deref());
        let mut update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(JOBS_PK))
            .key("sk", job_sk(id))
            .condition_expression(condition)
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":done", AttributeValue::Bool(page.done))
            .expression_attribute_values(":listed", n(listed))
            .expression_attribute_values(":queued", n(queued))
            .expression_attribute_values(":now", s(now_rfc3339()));
        for (k, v) in values {
            update = update.expression_attribute_values(k, v);
        }
        let add = "ADD n_listed :listed, n_queued :queued, n_pending :queued";
        update = match page.next.as_deref() {
            Some(cp) => update
                .expression_attribute_values(":cp", s(cp))
                .update_expression(format!("SET list_checkpoint = :cp, listing_done = :done, updated_at = :now {add}")),
            None => update
                .update_expression(format!("SET listing_done = :done, updated_at = :now {add} REMOVE list_checkpoint")),
        };
        let delete = Delete::builder()
            .table_name(&self.table)
            .key("pk", job_sk(id))
            .key("sk", s(PAGE_SK))
            .condition_expression("page_from = :from")
            .expression_attribute_values(":from", page_from(page.from.as_deref()))
            .build()
            .map_err(|e| build_err("commit page", e))?;
        let update = update.build().map_err(|e| build_err("commit page", e))?;
        self.transact(
            "commit job checkpoint",
            vec![
                TransactWriteItem::builder().update(update).build(),
                TransactWriteItem::builder().delete(delete).build(),
            ],
        )
        .await
    }

    async fn record_task(&self, id: &str, task_id: &str, tally: TaskTally) -> Result<bool> {
        let counted = self.record_tasks(id, &[(task_id.to_string(), tally)]).await?;
        Ok(counted.first().copied().unwrap_or(false))
    }

    async fn record_tasks(&self, id: &str, tasks: &[(String, TaskTally)]) -> Result<Vec<bool>> {
        let mut counted = vec![false; tasks.len()];
        // A task twice in one call (SQS delivered a message twice in one batch) is counted
        // once: DynamoDB refuses a transaction that names one item twice.
        let mut seen = std::collections::HashSet::new();
        let todo: Vec<usize> = (0..tasks.len()).filter(|&i| seen.insert(tasks[i].0.as_str())).collect();
        for chunk in todo.chunks(MARKERS_PER_COUNT) {
            let mut left = chunk.to_vec();
            // Each round either counts every task left or drops those counted before (their
            // markers' conditions failed), so it ends within `chunk.len() + 1` rounds.
            while !left.is_empty() {
                match self.count_tasks(id, tasks, &left).await? {
                    Counted::All => {
                        left.iter().for_each(|&i| counted[i] = true);
                        break;
                    }
                    Counted::NoneAlreadyCounted(before) => left.retain(|i| !before.contains(i)),
                }
            }
        }
        Ok(counted)
    }

    async fn record_audit_page(&self, id: &str, task_id: &str, tally: AuditTally) -> Result<bool> {
        // The same shape as `record_task`: a marker per page task and the counters in one
        // transaction, so a page delivered twice is counted once.
        let (tally_name, adds): (&str, Vec<(&str, u64)>) = match tally {
            AuditTally::Audited { counts, repaired } => (
                "audited",
                vec![
                    ("n_pages", 1),
                    ("n_compared", counts.compared),
                    ("n_matching", counts.matching),
                    ("n_missing", counts.missing),
                    ("n_different", counts.different),
                    ("n_extra", counts.extra),
                    ("n_unverifiable", counts.unverifiable),
                    ("n_repaired", repaired),
                ],
            ),
            AuditTally::Failed => ("failed", vec![("n_failed", 1)]),
        };
        let marker = Put::builder()
            .table_name(&self.table)
            .item("pk", job_sk(id))
            .item("sk", s(format!("task#{task_id}")))
            .item("tally", s(tally_name))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| Error::new(ErrorKind::Invalid, "bad task marker").with_source(e))?;
        let mut counters = Update::builder()
            .table_name(&self.table)
            .key("pk", s(JOBS_PK))
            .key("sk", job_sk(id))
            .expression_attribute_values(":minus_one", n(-1))
            .expression_attribute_values(":now", s(now_rfc3339()));
        let mut add = vec!["n_pending :minus_one".to_string()];
        for (i, (name, by)) in adds.iter().enumerate() {
            add.push(format!("{name} :a{i}"));
            counters = counters.expression_attribute_values(format!(":a{i}"), n(*by));
        }
        let counters = counters
            .update_expression(format!("ADD {} SET updated_at = :now", add.join(", ")))
            .build()
            .map_err(|e| Error::new(ErrorKind::Invalid, "bad counter update").with_source(e))?;
        TRANSACTION_RETRY
            .run_if("count audit page", is_transaction_conflict, |_| {
                let req = self
                    .client
                    .transact_write_items()
                    .transact_items(TransactWriteItem::builder().put(marker.clone()).build())
                    .transact_items(TransactWriteItem::builder().update(counters.clone()).build());
                async move {
                    let e = match req.send().await {
                        Ok(_) => return Ok(true),
                        Err(e) => e,
                    };
                    let reasons = cancellation_reasons(&e);
                    if reasons.first() == Some(&"ConditionalCheckFailed") {
                        return Ok(false);
                    }
                    if reasons.is_empty() {
                        return Err(classify(e, "count audit page"));
                    }
                    let kind =
                        if is_retryable_cancellation(&reasons) { ErrorKind::Transient } else { ErrorKind::Invalid };
                    let why = format!("count audit page: transaction cancelled ({})", reasons.join(", "));
                    Err(Error::new(kind, why).with_source(e))
                }
            })
            .await
    }

    async fn try_finish(&self, id: &str) -> Result<Option<JobStatus>> {
        for (status, failed_condition) in
            [(JobStatus::Succeeded, "n_failed = :zero"), (JobStatus::Failed, "n_failed > :zero")]
        {
            let now = now_rfc3339();
            let req = self
                .update(id)
                .update_expression("SET #st = :to, finished_at = :now, updated_at = :now")
                .condition_expression(format!(
                    "#st = :running AND listing_done = :true AND n_pending <= :zero AND {failed_condition}"
                ))
                .expression_attribute_names("#st", "status")
                .expression_attribute_values(":to", s(status.as_str()))
                .expression_attribute_values(":running", s(JobStatus::Running.as_str()))
                .expression_attribute_values(":true", AttributeValue::Bool(true))
                .expression_attribute_values(":zero", n(0))
                .expression_attribute_values(":now", s(now));
            if self.conditional(req, "finish job").await? {
                return Ok(Some(status));
            }
        }
        Ok(None)
    }

    async fn claim_driver(&self, id: &str, owner: &str, now_ms: i64, until_ms: i64) -> Result<bool> {
        let req = self
            .update(id)
            .update_expression("SET driver_owner = :owner, driver_until = :until")
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(driver_until) OR driver_until < :now OR driver_owner = :owner)",
            )
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":until", n(until_ms))
            .expression_attribute_values(":now", n(now_ms));
        self.conditional(req, "claim job driver").await
    }

    async fn release_driver(&self, id: &str, owner: &str) -> Result<()> {
        let req = self
            .update(id)
            .update_expression("REMOVE driver_owner, driver_until")
            .condition_expression("driver_owner = :owner")
            .expression_attribute_values(":owner", s(owner));
        self.conditional(req, "release job driver").await.map(|_| ())
    }

    async fn fail(&self, id: &str, message: &str) -> Result<bool> {
        let now = now_rfc3339();
        let req = self
            .update(id)
            .update_expression("SET #st = :failed, last_error = :e, updated_at = :now, finished_at = :now")
            .condition_expression("#st IN (:pending, :running)")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":failed", s(JobStatus::Failed.as_str()))
            .expression_attribute_values(":pending", s(JobStatus::Pending.as_str()))
            .expression_attribute_values(":running", s(JobStatus::Running.as_str()))
            .expression_attribute_values(":e", s(message.chars().take(1000).collect::<String>()))
            .expression_attribute_values(":now", s(now));
        self.conditional(req, "fail job").await
    }

    async fn set_error(&self, id: &str, message: &str) -> Result<()> {
        let req = self
            .update(id)
            .update_expression("SET last_error = :e, updated_at = :now")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":e", s(message.chars().take(1000).collect::<String>()))
            .expression_attribute_values(":now", s(now_rfc3339()));
        self.conditional(req, "record job error").await.map(|_| ())
    }
}
