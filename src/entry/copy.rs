//! `xcr copy`: a bucket (or a prefix of one) copied from one machine, in one process: the
//! use case of rclone, done with the engine of the functions.
//!
//! **Why a path of its own.** Every other bulk path goes through SQS and DynamoDB (a migration
//! job lists into the queue and counts each task in the jobs table; the pump copies), which is
//! the architecture in the cloud but costs ~8 requests per object on one machine. Here the
//! listing feeds the copies directly: S3 and GCS are listed page by page and merge-walked (as
//! [`crate::domain::audit`] does, with its helpers), and each object is copied by the very
//! [`Replicator`](crate::domain::replicate::Replicator) the functions run: same streaming engine,
//! verification (CRC32C end to end, MD5 where S3 has one), metadata, provenance, destination
//! allowlist and, when `XCR_LEDGER_TABLE` is set, the same ledger claims, fencing and records,
//! so a copy stays idempotent and ordered against the functions writing the same bucket.
//!
//! **What a rerun copies: nothing.** The GCS listing says, for each key, whether the
//! destination exists and what xcr wrote there (the `xcr-source-*` provenance, size, MD5,
//! CRC32C). The decision per object ([`decide`]):
//! * `--overwrite always`: copy.
//! * absent from GCS: copy, without the engine's GCS lookup (the listing already answered it).
//! * present, `--overwrite never`: skip.
//! * present, `--overwrite different` (the default): with the ledger, the ledger decides (a
//!   duplicate is the same version, ETag, last-modified time and metadata digest as recorded);
//!   without one, the listing's provenance decides when it proves the version ([`in_place`]:
//!   same source bucket, key, ETag, last-modified second and size; an MD5 ETag must also equal
//!   GCS's MD5), and anything else goes to the engine, which compares size and checksum with
//!   what GCS holds before any byte is uploaded.
//!
//! **Memory.** One page of each listing and `concurrency` copies in flight, each with the
//! engine's bounded buffers: the bucket's size does not matter.

use crate::domain::audit::{DestEntry, S3Listed, Step, in_order, list_s3_page, step};
use crate::domain::error::{Error, ErrorKind, Result};
use crate::domain::events::{Action, Task};
use crate::domain::model::Overwrite;
use crate::domain::model::{Destination, ObjectRef};
use crate::domain::replicate::{Outcome, Replication};
use crate::transfer::metadata::{PROV_BUCKET, PROV_ETAG, PROV_KEY, PROV_LAST_MODIFIED, encode_key};
use crate::wiring::S3ToGcs;
use futures::StreamExt;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// What to copy, and how.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The S3 bucket listed.
    pub source_bucket: String,
    /// Only keys under this prefix (empty: the whole bucket).
    pub source_prefix: String,
    /// The GCS bucket written.
    pub dest_bucket: String,
    /// Names are `dest_prefix + key` (as migration jobs and `xcr audit` name them).
    pub dest_prefix: String,
    /// Copies in flight at once.
    pub concurrency: usize,
    /// What to do when the destination already holds an object.
    pub overwrite: Overwrite,
    /// List and decide, write nothing.
    pub dry_run: bool,
    /// Keys per listing page on each side.
    pub page_size: u32,
    /// How long a ledger lease lasts past the claim and past each upload checkpoint.
    pub lease: Duration,
}

/// What the walk decided for one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to write: the outcome and why.
    Skip(Outcome, String),
    /// Hand it to the engine with this overwrite policy.
    Copy(Overwrite),
}

/// Decides one object from the two listings (pure). `found`: the GCS listing's entry of the
/// destination name, if any. See the module doc.
pub fn decide(
    overwrite: Overwrite,
    ledger: bool,
    source_bucket: &str,
    src: &S3Listed,
    found: Option<&DestEntry>,
) -> Decision {
    match (overwrite, found) {
        (Overwrite::Always, _) => Decision::Copy(Overwrite::Always),
        // Nothing there to keep: `always` spares the engine a lookup of what GCS holds. The
        // ledger still refuses an older version than it recorded (stale), whatever the policy.
        (_, None) => Decision::Copy(Overwrite::Always),
        (Overwrite::Never, Some(_)) => {
            Decision::Skip(Outcome::AlreadyReplicated, "the destination exists (overwrite: never)".into())
        }
        (Overwrite::Different, Some(d)) if !ledger => match in_place(source_bucket, src, d) {
            Some(why) => Decision::Skip(Outcome::AlreadyReplicated, why),
            // xcr's copy of another version or of replaced metadata (the engine's content
            // comparison would keep a copy whose bytes match but whose metadata is old).
            None if copied_from(source_bucket, src, d) => Decision::Copy(Overwrite::Always),
            // Written by something else: the engine compares size and checksum.
            None => Decision::Copy(Overwrite::Different),
        },
        (Overwrite::Different, Some(_)) => Decision::Copy(Overwrite::Different),
    }
}

/// Whether the GCS object's provenance says xcr copied it from this bucket and key (any version).
fn copied_from(source_bucket: &str, src: &S3Listed, dst: &DestEntry) -> bool {
    dst.metadata.get(PROV_BUCKET).map(String::as_str) == Some(source_bucket)
        && dst.metadata.get(PROV_KEY).map(String::as_str) == Some(encode_key(&src.key).as_str())
}

/// Whether the GCS object, as listed, is xcr's copy of this very S3 version: its provenance
/// names the same bucket, key, ETag and last-modified time (to the second: S3's HEAD and GET
/// carry no more), and the sizes match; where the ETag is an MD5 (no `-`), GCS's MD5 must equal
/// it too. A metadata-only replacement in S3 keeps the ETag but changes the last-modified time,
/// so it is copied again. `None` when it does not prove it (the engine then decides).
pub fn in_place(source_bucket: &str, src: &S3Listed, dst: &DestEntry) -> Option<String> {
    let meta = |k: &str| dst.metadata.get(k).map(String::as_str);
    if dst.object.size != src.size
        || !copied_from(source_bucket, src, dst)
        || src.etag.is_empty()
        || meta(PROV_ETAG) != Some(src.etag.as_str())
    {
        return None;
    }
    let secs = |t: &str| crate::domain::replicate::rfc3339_ms(t).map(|ms| ms.div_euclid(1000));
    match (src.last_modified.as_deref().and_then(secs), meta(PROV_LAST_MODIFIED).and_then(secs)) {
        (Some(a), Some(b)) if a == b => {}
        _ => return None,
    }
    if !src.etag.contains('-')
        && let Some(md5) = crate::transfer::checksum::md5_from_etag(&src.etag)
        && dst.object.md5.as_deref().is_some_and(|g| g != crate::transfer::checksum::md5_b64(&md5))
    {
        return None;
    }
    Some("GCS holds this version (provenance: same ETag and last-modified time; same size)".into())
}

/// How one object ended.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// The S3 key.
    pub key: String,
    /// `gs://bucket/name` of its copy.
    pub destination: String,
    /// An [`Outcome`] name, `would_copy` (dry run) or `failed`.
    pub outcome: &'static str,
    /// Bytes of the source object.
    pub size: u64,
    /// Bytes uploaded (a copy only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copied_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Why, for anything but a plain copy.
    pub detail: Option<String>,
}

impl Item {
    /// Whether this object makes the command fail: an error, a refused destination, a lease
    /// held by someone else (`busy`: try again) or a copy that stopped (`continued`).
    pub fn failed(&self) -> bool {
        matches!(self.outcome, "failed" | "refused" | "busy" | "continued")
    }
}

/// What the run did, as `--json` prints it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// `s3://bucket/prefix` copied from.
    pub source: String,
    /// `gs://bucket/prefix` copied to.
    pub destination: String,
    /// True for `--dry-run`: nothing was written.
    pub dry_run: bool,
    /// Objects listed in S3 under the prefix, and their bytes.
    pub objects: u64,
    /// Bytes of the objects listed.
    pub bytes: u64,
    /// Objects and bytes uploaded.
    pub copied: u64,
    /// Bytes uploaded.
    pub copied_bytes: u64,
    /// Objects per outcome (`replicated`, `already_replicated`, `stale`, `refused`, `busy`,
    /// `failed`, `would_copy`...).
    pub outcomes: BTreeMap<&'static str, u64>,
    /// Objects that make the run fail (see [`Item::failed`]).
    pub failed: u64,
    /// Wall time of the run, in seconds.
    pub elapsed_s: f64,
    /// Listed objects per second, and uploaded MiB per second, over the whole run.
    pub objects_per_s: f64,
    /// Uploaded MiB per second over the whole run.
    pub mib_per_s: f64,
    /// The first failures (at most [`MAX_REPORTED_FAILURES`]), for the message.
    pub failures: Vec<Item>,
    /// Why the walk stopped before the end of the listing (a listing failed or was out of
    /// order); the objects counted were handled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incomplete: Option<String>,
}

/// How many failed objects the summary names; the rest are counted.
pub const MAX_REPORTED_FAILURES: usize = 100;

impl Summary {
    fn add(&mut self, item: &Item) {
        self.objects += 1;
        self.bytes += item.size;
        *self.outcomes.entry(item.outcome).or_default() += 1;
        if let Some(b) = item.copied_bytes {
            self.copied += 1;
            self.copied_bytes += b;
        }
        if item.failed() {
            self.failed += 1;
            if self.failures.len() < MAX_REPORTED_FAILURES {
                self.failures.push(item.clone());
            }
        }
    }

    fn finish(&mut self, elapsed: Duration) {
        let s = elapsed.as_secs_f64().max(1e-9);
        self.elapsed_s = elapsed.as_secs_f64();
        self.objects_per_s = self.objects as f64 / s;
        self.mib_per_s = self.copied_bytes as f64 / (1024.0 * 1024.0) / s;
    }
}

/// Runs a copy: lists both sides, decides each object, copies `concurrency` at a time (the
/// listing goes on while copies run, one page of each side ahead), and calls `listed` with each
/// S3 page's object count and bytes and `done` with each object's end. An object's failure is
/// counted, not fatal; a listing that fails or is out of order stops the walk: the copies in
/// flight finish, and the summary says why it is incomplete ([`Summary::incomplete`]).
pub async fn run(
    replicator: &S3ToGcs,
    plan: &Plan,
    listed: impl FnMut(u64, u64),
    mut done: impl FnMut(&Item),
) -> Summary {
    let started = Instant::now();
    let mut summary = Summary {
        source: format!("s3://{}/{}", plan.source_bucket, plan.source_prefix),
        destination: format!("gs://{}/{}", plan.dest_bucket, plan.dest_prefix),
        dry_run: plan.dry_run,
        ..Summary::default()
    };
    let stopped: std::sync::Mutex<Option<Error>> = std::sync::Mutex::new(None);
    let walker = Walker::new(replicator, plan, listed);
    let decisions = futures::stream::unfold(walker, |mut w| async {
        match w.next().await {
            Ok(Some(x)) => Some((x, w)),
            Ok(None) => None,
            Err(e) => {
                if let Ok(mut slot) = stopped.lock() {
                    *slot = Some(e);
                }
                None
            }
        }
    });
    let lease_ms = plan.lease.as_millis() as i64;
    let copies = decisions
        .map(|(src, dest, decision)| {
            copy_one(replicator, plan, src, dest, decision, crate::domain::replicate::now_ms() + lease_ms)
        })
        .buffer_unordered(plan.concurrency.max(1));
    futures::pin_mut!(copies);
    while let Some(item) = copies.next().await {
        summary.add(&item);
        done(&item);
    }
    summary.incomplete = stopped.lock().ok().and_then(|mut slot| slot.take()).map(|e| e.chain());
    summary.finish(started.elapsed());
    summary
}

/// The merge walk over both listings, one page of each side at a time.
struct Walker<'a, F> {
    s3: aws_sdk_s3::Client,
    gcs: &'a crate::adapters::gcs::GcsClient,
    plan: &'a Plan,
    ledger: bool,
    gcs_prefix: String,
    listed: F,
    src_page: VecDeque<S3Listed>,
    src_token: Option<String>,
    src_done: bool,
    dst_page: VecDeque<DestEntry>,
    dst_token: Option<String>,
    dst_done: bool,
    last_src: Option<String>,
    last_dst: Option<String>,
}

impl<'a, F: FnMut(u64, u64)> Walker<'a, F> {
    fn new(replicator: &'a S3ToGcs, plan: &'a Plan, listed: F) -> Self {
        Self {
            s3: replicator.transfer().source().client().clone(),
            gcs: replicator.transfer().sink(),
            plan,
            ledger: matches!(replicator.ledger(), crate::wiring::ledger::AnyLedger::Dynamo(_)),
            gcs_prefix: format!("{}{}", plan.dest_prefix, plan.source_prefix),
            listed,
            src_page: VecDeque::new(),
            src_token: None,
            src_done: false,
            dst_page: VecDeque::new(),
            dst_token: None,
            dst_done: false,
            last_src: None,
            last_dst: None,
        }
    }

    /// The next S3 object, its destination and what to do with it; `None` at the end.
    async fn next(&mut self) -> Result<Option<(S3Listed, Destination, Decision)>> {
        let plan = self.plan;
        if self.src_page.is_empty() && !self.src_done {
            let (page, next) = list_s3_page(
                &self.s3,
                &plan.source_bucket,
                &plan.source_prefix,
                None,
                self.src_token.as_deref(),
                plan.page_size,
            )
            .await?;
            (self.listed)(page.len() as u64, page.iter().map(|o| o.size).sum());
            self.src_page.extend(page);
            self.src_done = next.is_none();
            self.src_token = next;
        }
        let Some(src) = self.src_page.pop_front() else { return Ok(None) };
        let name = format!("{}{}", plan.dest_prefix, src.key);
        in_order(&mut self.last_src, Some(&name), "S3")?;
        // Advance GCS's side to this name: what sorts before it is not in S3 (left alone).
        let found = loop {
            if self.dst_page.is_empty() && !self.dst_done {
                let (items, next) = self
                    .gcs
                    .list_page(&plan.dest_bucket, &self.gcs_prefix, self.dst_token.as_deref(), plan.page_size)
                    .await?;
                self.dst_page.extend(items);
                self.dst_done = next.is_none();
                self.dst_token = next;
            }
            let head = self.dst_page.front().map(|d| d.object.name.clone());
            in_order(&mut self.last_dst, head.as_deref(), "GCS")?;
            match step(Some(&name), head.as_deref()) {
                Some(Step::DestOnly) => {
                    self.dst_page.pop_front();
                }
                Some(Step::Both) => break self.dst_page.pop_front(),
                _ => break None,
            }
        };
        let decision = decide(plan.overwrite, self.ledger, &plan.source_bucket, &src, found.as_ref());
        Ok(Some((src, Destination::new(plan.dest_bucket.clone(), name), decision)))
    }
}

async fn copy_one(
    replicator: &S3ToGcs,
    plan: &Plan,
    src: S3Listed,
    dest: Destination,
    decision: Decision,
    deadline_ms: i64,
) -> Item {
    let mut item = Item {
        destination: dest.to_string(),
        key: src.key.clone(),
        outcome: "would_copy",
        size: src.size,
        copied_bytes: None,
        detail: None,
    };
    let overwrite = match decision {
        Decision::Skip(outcome, why) => {
            item.outcome = outcome.as_str();
            item.detail = Some(why);
            return item;
        }
        Decision::Copy(o) => o,
    };
    if plan.dry_run {
        // Refused destinations are reported as such without writing: the allowlist is known.
        if !replicator.router().allows(&dest) {
            item.outcome = Outcome::Refused.as_str();
            item.detail = Some(format!("destination {dest} is not in XCR_ALLOWED_DESTINATIONS"));
        }
        return item;
    }
    let mut task = Task::new(Action::Copy, ObjectRef::new(&plan.source_bucket, &src.key));
    task.destination = Some(dest);
    task.overwrite = Some(overwrite);
    let mut results = replicator.apply(&task, deadline_ms).await;
    let result: Result<Replication> = match results.len() {
        1 => results.remove(0),
        n => Err(Error::new(ErrorKind::Invalid, format!("one destination gave {n} results"))),
    };
    match result {
        Ok(r) => {
            item.outcome = r.outcome.as_str();
            if r.outcome == Outcome::Replicated {
                item.copied_bytes = Some(r.bytes.unwrap_or(0));
            }
            item.detail = r.detail;
        }
        Err(e) => {
            item.outcome = "failed";
            item.detail = Some(format!("{}: {}", e.kind().as_str(), e.chain()));
        }
    }
    item
}

/// The command line of `xcr copy`: arguments, configuration, progress bar, summary and exit
/// code. Here rather than in the binary so that the binary only names the subcommand.
///
/// Exit codes: 0 every object copied or already in place; 1 some object failed (error,
/// refused, busy); 2 bad usage or configuration (a destination outside
/// `XCR_ALLOWED_DESTINATIONS` included); 4 the listing failed and the copy did not finish.
pub mod cli {
    use super::{Item, Plan, Summary};
    use crate::config::{Config, Needs};
    use crate::domain::model::Overwrite;
    use std::io::IsTerminal;
    use std::process::ExitCode;
    use std::time::Duration;

    /// Copy every object under an S3 prefix to GCS from this machine: listed and copied in one
    /// process with the replicate function's engine (streamed, verified, metadata and
    /// provenance), through the ledger when XCR_LEDGER_TABLE is set. A rerun copies nothing.
    /// Exit 0 all copied or in place, 1 some object failed, 2 bad usage or configuration, 4 the
    /// listing failed.
    #[derive(clap::Args, Debug)]
    pub struct CopyArgs {
        /// s3://BUCKET or s3://BUCKET/PREFIX (only keys starting with PREFIX).
        pub source: String,
        /// gs://BUCKET or gs://BUCKET/PREFIX: each object goes to PREFIX + key.
        pub dest: String,
        /// Copies in flight at once (1 to 1024). The default is rclone's transfers plus
        /// checkers; a GCS emulator that serves one request at a time (gcp-storage-emulator)
        /// refuses connections at 32 (measured), real GCS takes far more.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1024))]
        pub concurrency: u16,
        /// When the destination exists: `different` copies unless it holds this version (by the
        /// ledger, else by provenance, size and checksum); `never` skips it; `always` copies.
        #[arg(long, default_value = "different", value_parser = ["different", "never", "always"])]
        pub overwrite: String,
        /// List and decide, write nothing: counts what would be copied.
        #[arg(long)]
        pub dry_run: bool,
        /// Print one JSON object with the summary (and no progress bar).
        #[arg(long)]
        pub json: bool,
        /// Keys per listing page on each side (1 to 1000).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1000))]
        pub page_size: u32,
        /// Seconds a ledger lease lasts past the claim and past each upload checkpoint (as for
        /// `xcr replicate --lease`).
        #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
        pub lease: u64,
    }

    /// Parses `s3://BUCKET[/PREFIX]` and `gs://BUCKET[/PREFIX]`.
    pub fn targets(source: &str, dest: &str) -> Result<(String, String, String, String), String> {
        let s = crate::domain::names::S3Url::parse(source)
            .ok()
            .filter(|s| !s.bucket.contains(['?', '#']))
            .ok_or_else(|| format!("the source must look like s3://BUCKET or s3://BUCKET/PREFIX, not {source:?}"))?;
        let d: crate::domain::names::GsUrl = dest.parse()?;
        Ok((s.bucket, s.key, d.bucket, d.path))
    }

    fn fail(json: bool, kind: &str, message: &str, code: u8) -> ExitCode {
        if json {
            println!("{}", serde_json::json!({"outcome": "failed", "error": {"kind": kind, "message": message}}));
        } else {
            eprintln!("xcr: {message}");
        }
        ExitCode::from(code)
    }

    /// `xcr copy`.
    pub async fn command(args: CopyArgs) -> ExitCode {
        let json = args.json;
        let (source_bucket, source_prefix, dest_bucket, dest_prefix) = match targets(&args.source, &args.dest) {
            Ok(t) => t,
            Err(e) => return fail(json, "invalid", &e, 2),
        };
        let cfg = match Config::from_env(Needs::default()) {
            Ok(c) => c,
            Err(e) => return fail(json, "config", &e.to_string(), 2),
        };
        let replicator = match crate::wiring::replicator(&cfg).await {
            Ok(r) => r.with_lease_ttl(Some(Duration::from_secs(args.lease))),
            Err(e) => return fail(json, e.kind().as_str(), &e.chain(), 2),
        };
        // Each object would be refused (as `xcr replicate --dest` refuses it): say so at once.
        let names = format!("{dest_prefix}{source_prefix}");
        let allowed = replicator.router().allowed_destinations();
        if !allowed.permits_prefix(&dest_bucket, &names) {
            let why = format!(
                "destination gs://{dest_bucket}/{names} is not in XCR_ALLOWED_DESTINATIONS (allowed: {})",
                allowed.describe()
            );
            return fail(json, "refused", &why, 2);
        }
        let plan = Plan {
            source_bucket,
            source_prefix,
            dest_bucket,
            dest_prefix,
            concurrency: usize::from(args.concurrency),
            overwrite: Overwrite::parse(&args.overwrite).unwrap_or_default(),
            dry_run: args.dry_run,
            page_size: args.page_size,
            lease: Duration::from_secs(args.lease),
        };
        let bar = progress_bar(!json && std::io::stderr().is_terminal());
        let summary = super::run(
            &replicator,
            &plan,
            |n, _bytes| bar.inc_length(n),
            |item: &Item| {
                bar.inc(1);
                if item.failed() && !json {
                    bar.suspend(|| {
                        eprintln!("{:<10} {}: {}", item.outcome, item.destination, item.detail.as_deref().unwrap_or(""))
                    });
                }
            },
        )
        .await;
        bar.finish_and_clear();
        print_summary(&summary, json);
        if summary.incomplete.is_some() {
            ExitCode::from(4)
        } else if summary.failed > 0 {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    }

    /// A bar on the terminal only: never in logs, pipes or JSON output.
    fn progress_bar(visible: bool) -> indicatif::ProgressBar {
        if !visible {
            return indicatif::ProgressBar::hidden();
        }
        let bar = indicatif::ProgressBar::new(0);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} objects ({per_sec}, eta {eta})",
        ) {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }

    fn print_summary(s: &Summary, json: bool) {
        if json {
            match serde_json::to_string(s) {
                Ok(line) => println!("{line}"),
                Err(e) => eprintln!("xcr: cannot encode the summary: {e}"),
            }
            return;
        }
        let outcomes: Vec<String> = s.outcomes.iter().map(|(k, v)| format!("{v} {k}")).collect();
        println!(
            "{}{} -> {}: {} objects ({:.1} MiB) listed: {}; {} copied ({:.1} MiB) in {:.2} s ({:.1} objects/s, {:.1} MiB/s)",
            if s.dry_run { "dry run: " } else { "" },
            s.source,
            s.destination,
            s.objects,
            s.bytes as f64 / (1024.0 * 1024.0),
            if outcomes.is_empty() { "nothing to do".to_string() } else { outcomes.join(", ") },
            s.copied,
            s.copied_bytes as f64 / (1024.0 * 1024.0),
            s.elapsed_s,
            s.objects_per_s,
            s.mib_per_s,
        );
        if s.failed > 0 {
            println!("{} objects failed (rerun to retry them: what is in place is not copied again)", s.failed);
        }
        if let Some(why) = &s.incomplete {
            println!("the copy did not finish: {why}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::{ContentHeaders, StoredObject};

    fn listed(etag: &str) -> S3Listed {
        S3Listed {
            key: "a b/c".into(),
            size: 5,
            etag: etag.into(),
            last_modified: Some("2026-12-03T10:00:00.250Z".into()),
        }
    }

    fn ours(etag: &str, last_modified: &str, md5: Option<&str>) -> DestEntry {
        let mut metadata = BTreeMap::new();
        metadata.insert(PROV_BUCKET.to_string(), "src".to_string());
        metadata.insert(PROV_KEY.to_string(), "a%20b/c".to_string());
        metadata.insert(PROV_ETAG.to_string(), etag.to_string());
        metadata.insert(PROV_LAST_MODIFIED.to_string(), last_modified.to_string());
        DestEntry {
            object: StoredObject {
                bucket: "dst".into(),
                name: "a b/c".into(),
                generation: "1".into(),
                size: 5,
                crc32c: None,
                md5: md5.map(str::to_string),
                job_id: None,
            },
            headers: ContentHeaders::default(),
            metadata,
        }
    }

    // MD5 of "hello".
    const HELLO_HEX: &str = "5d41402abc4b2a76b9719d911017c592";
    const HELLO_B64: &str = "XUFAKrxLKna5cZ2REBfFkg==";

    #[test]
    fn provenance_of_this_version_is_in_place_to_the_second() {
        let d = ours(HELLO_HEX, "2026-12-03T10:00:00Z", Some(HELLO_B64));
        assert!(in_place("src", &listed(HELLO_HEX), &d).is_some());
        // Another bucket, another ETag, another second, another size, another MD5: not proven.
        assert!(in_place("other", &listed(HELLO_HEX), &d).is_none());
        assert!(in_place("src", &listed("abc-2"), &d).is_none());
        assert!(in_place("src", &listed(HELLO_HEX), &ours(HELLO_HEX, "2026-12-03T10:00:01Z", None)).is_none());
        assert!(in_place("src", &S3Listed { size: 6, ..listed(HELLO_HEX) }, &d).is_none());
        let wrong_md5 = ours(HELLO_HEX, "2026-12-03T10:00:00Z", Some("AAAAAAAAAAAAAAAAAAAAAA=="));
        assert!(in_place("src", &listed(HELLO_HEX), &wrong_md5).is_none());
        // A multipart ETag is no MD5: provenance and size decide.
        assert!(in_place("src", &listed("abc-2"), &ours("abc-2", "2026-12-03T10:00:00Z", Some(HELLO_B64))).is_some());
    }

    #[test]
    fn the_decision_follows_the_policy_the_listing_and_the_ledger() {
        let src = listed(HELLO_HEX);
        let same = ours(HELLO_HEX, "2026-12-03T10:00:00Z", None);
        let older = ours("0123", "2026-12-01T10:00:00Z", None);
        let mut foreign = same.clone();
        foreign.metadata.clear();
        let d = |o, ledger, found| decide(o, ledger, "src", &src, found);
        assert_eq!(d(Overwrite::Always, false, Some(&same)), Decision::Copy(Overwrite::Always));
        assert_eq!(d(Overwrite::Different, true, None), Decision::Copy(Overwrite::Always));
        assert!(matches!(d(Overwrite::Never, false, Some(&foreign)), Decision::Skip(Outcome::AlreadyReplicated, _)));
        assert!(matches!(d(Overwrite::Different, false, Some(&same)), Decision::Skip(Outcome::AlreadyReplicated, _)));
        assert_eq!(d(Overwrite::Different, false, Some(&older)), Decision::Copy(Overwrite::Always));
        assert_eq!(d(Overwrite::Different, false, Some(&foreign)), Decision::Copy(Overwrite::Different));
        // With the ledger, the ledger decides what is in place.
        assert_eq!(d(Overwrite::Different, true, Some(&same)), Decision::Copy(Overwrite::Different));
    }
}
