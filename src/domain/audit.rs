//! Drift audit: does GCS hold what S3 holds?
//!
//! Both sides are listed page by page and merge-walked: S3's ListObjectsV2 returns general
//! purpose buckets' keys "in ascending order of the respective key names" (UTF-8 binary order,
//! per the S3 user guide; directory buckets list in no order and cannot be audited this way),
//! and GCS's objects.list orders names "lexicographically by name"; a destination name is a
//! constant prefix plus the source key, which keeps that order. So the walk holds one page of
//! each side, never the whole bucket. A listing found out of order stops the audit with an
//! error instead of reporting false drift.
//!
//! Each key present on both sides is compared (see [`compare`]): size first, then a checksum
//! both clouds share (S3's single-part MD5 ETag against GCS's md5Hash, or S3's stored
//! full-object CRC32C against GCS's crc32c), else the ledger's record of the verified copy
//! (same size, CRC32C and generation as GCS holds now, same source ETag); with none of these the
//! key is reported `unverifiable` rather than guessed. Content type and user metadata are
//! compared with what xcr writes ([`crate::transfer::metadata`]).
//!
//! `xcr audit` runs the walk over the whole prefix in one process; an audit job runs it once per
//! page of the S3 listing, over that page's key range ([`Scope::after`], [`Scope::through`]),
//! in parallel page tasks ([`crate::jobs::audit_page`]). The walk reads (one HEAD per key present on
//! both sides, for metadata and the stored checksum, and one ledger read where no checksum is
//! shared) and writes nothing. Repair is the caller's: it enqueues replicate commands for the findings.

use crate::adapters::gcs::GcsClient;
use crate::domain::error::{Error, ErrorKind, Result};
use crate::domain::model::StoredObject;
use crate::domain::model::{ContentHeaders, Destination};
use crate::ports::DoneRecord;
use crate::wiring::ledger::AnyLedger;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};

/// What GCS's listing says about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestEntry {
    /// Name, generation, size and checksums from the listing.
    pub object: StoredObject,
    /// The object's HTTP headers, compared with the source's.
    pub headers: ContentHeaders,
    /// The object's custom metadata, including the `xcr-source-*` provenance keys.
    pub metadata: BTreeMap<String, String>,
}

/// What S3 says about one object: size and ETag from the listing, the rest from a HEAD.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceEntry {
    /// The S3 key.
    pub key: String,
    /// Bytes, from the listing.
    pub size: u64,
    /// Without quotes.
    pub etag: String,
    /// The ETag is the MD5 of the bytes: single-part, not encrypted with a KMS or customer key.
    pub etag_is_md5: bool,
    /// The stored CRC32C when it describes the whole object (base64).
    pub crc32c: Option<String>,
    /// The HTTP headers from the HEAD.
    pub headers: ContentHeaders,
    /// `x-amz-meta-*` without the prefix, from the HEAD.
    pub user_metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
/// What kind of drift a finding reports.
pub enum Kind {
    /// In S3, not in GCS.
    Missing,
    /// In both, with different size, bytes, content type or user metadata.
    Different,
    /// In GCS, not in S3 (drift only when deletes are replicated).
    Extra,
    /// In both with the same size, but no shared checksum or ledger record proves the bytes.
    Unverifiable,
}

impl Kind {
    /// The name the report and the CLI use.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Missing => "missing",
            Kind::Different => "different",
            Kind::Extra => "extra",
            Kind::Unverifiable => "unverifiable",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Missing, different, extra or unverifiable.
    pub kind: Kind,
    /// The S3 key (for `extra`: the key the GCS name maps back to).
    pub key: String,
    /// `gs://bucket/name`.
    pub destination: String,
    /// Why, in words an operator can act on (which field differs, which side lacks a checksum).
    pub reason: String,
}

/// Counts of the report's final line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Keys compared, whatever the result.
    pub compared: u64,
    /// Keys whose copy is proven current.
    pub matching: u64,
    /// Findings of [`Kind::Missing`].
    pub missing: u64,
    /// Findings of [`Kind::Different`].
    pub different: u64,
    /// Findings of [`Kind::Extra`].
    pub extra: u64,
    /// Findings of [`Kind::Unverifiable`].
    pub unverifiable: u64,
}

impl Counts {
    /// Counts one finding of `kind`.
    pub fn add(&mut self, kind: Kind) {
        match kind {
            Kind::Missing => self.missing += 1,
            Kind::Different => self.different += 1,
            Kind::Extra => self.extra += 1,
            Kind::Unverifiable => self.unverifiable += 1,
        }
    }

    /// Drift is what a repair can close: missing, different, and extra when deletes are on.
    /// Unverifiable keys are not drift (nothing says they differ) but are reported.
    pub fn drift(&self, deletes: bool) -> u64 {
        self.missing + self.different + if deletes { self.extra } else { 0 }
    }
}

/// The content type xcr writes when S3 has none ([`crate::adapters::gcs`]).
const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// Is the provenance key one xcr adds (not user metadata)?
fn is_provenance(k: &str) -> bool {
    k.starts_with(PROVENANCE_PREFIX)
}

/// What every provenance key starts with ([`crate::transfer::metadata::PROV_BUCKET`] and others).
const PROVENANCE_PREFIX: &str = "xcr-source-";

/// Whether a ledger record proves that GCS holds a verified copy of this source version: xcr
/// verified the bytes when it made that copy (CRC32C end to end), and GCS still holds that very
/// generation, with the same size and CRC32C.
fn ledger_proves(src: &SourceEntry, dst: &StoredObject, done: &DoneRecord) -> bool {
    done.action == "copy"
        && done.generation.as_deref() == Some(dst.generation.as_str())
        && done.size == Some(dst.size)
        && done.crc32c.is_some()
        && done.crc32c == dst.crc32c
        && done.etag.as_deref() == Some(src.etag.as_str())
}

/// Compares one key present on both sides. `None`: it matches. Pure.
pub fn compare(src: &SourceEntry, dst: &DestEntry, done: Option<&DoneRecord>) -> Option<(Kind, String)> {
    let o = &dst.object;
    if src.size != o.size {
        return Some((Kind::Different, format!("size: S3 {} bytes, GCS {} bytes", src.size, o.size)));
    }
    let md5 = if src.etag_is_md5 { crate::transfer::checksum::md5_from_etag(&src.etag) } else { None };
    let content: Result<&str, &str> = match (md5, &o.md5, &src.crc32c, &o.crc32c) {
        (Some(m), Some(g), _, _) => {
            let s3 = crate::transfer::checksum::md5_b64(&m);
            if &s3 == g { Ok("md5") } else { Err("md5") }
        }
        (_, _, Some(s), Some(g)) => {
            if s == g {
                Ok("crc32c")
            } else {
                Err("crc32c")
            }
        }
        _ if done.is_some_and(|d| ledger_proves(src, o, d)) => Ok("ledger"),
        _ => Err(""),
    };
    if let Err(which) = content
        && !which.is_empty()
    {
        let (s3, gcs) = match which {
            "md5" => (src.etag.clone(), o.md5.clone().unwrap_or_default()),
            _ => (src.crc32c.clone().unwrap_or_default(), o.crc32c.clone().unwrap_or_default()),
        };
        return Some((Kind::Different, format!("bytes: {which} differs (S3 {s3}, GCS {gcs})")));
    }
    if let Some(why) = metadata_difference(src, dst) {
        return Some((Kind::Different, why));
    }
    match content {
        Ok(_) => None,
        Err(_) => Some((
            Kind::Unverifiable,
            "same size, but no checksum both clouds hold (multipart or KMS ETag, no stored CRC32C) and no ledger record of this generation".into(),
        )),
    }
}

/// How the GCS object's content type and user metadata differ from what xcr writes for the
/// source, if they do. Provenance keys (`xcr-source-*`) are xcr's own and not compared.
pub fn metadata_difference(src: &SourceEntry, dst: &DestEntry) -> Option<String> {
    let (s, d) = (&src.headers, &dst.headers);
    let headers = [
        (
            "content-type",
            Some(s.content_type.as_deref().unwrap_or(DEFAULT_CONTENT_TYPE)),
            Some(d.content_type.as_deref().unwrap_or(DEFAULT_CONTENT_TYPE)),
        ),
        ("content-encoding", s.content_encoding.as_deref(), d.content_encoding.as_deref()),
        ("content-language", s.content_language.as_deref(), d.content_language.as_deref()),
        ("content-disposition", s.content_disposition.as_deref(), d.content_disposition.as_deref()),
        ("cache-control", s.cache_control.as_deref(), d.cache_control.as_deref()),
    ];
    for (name, want, got) in headers {
        // An empty header is no header on either side.
        let (want, got) = (want.filter(|v| !v.is_empty()), got.filter(|v| !v.is_empty()));
        if want != got {
            return Some(format!("{name}: S3 {want:?}, GCS {got:?}"));
        }
    }
    let gcs_user: BTreeMap<&String, &String> = dst.metadata.iter().filter(|(k, _)| !is_provenance(k)).collect();
    let s3_user: BTreeMap<&String, &String> = src.user_metadata.iter().filter(|(k, _)| !is_provenance(k)).collect();
    if gcs_user != s3_user {
        let keys: Vec<&str> = s3_user
            .keys()
            .chain(gcs_user.keys())
            .filter(|k| s3_user.get(*k) != gcs_user.get(*k))
            .map(|k| k.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        return Some(format!("user metadata differs: {}", keys.join(", ")));
    }
    None
}

/// One step of the merge walk over two sorted listings: which side's head comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Only in S3 (or S3's head sorts first).
    SourceOnly,
    /// Only in GCS.
    DestOnly,
    /// In both: compare them.
    Both,
}

/// Orders the heads of the two listings by the UTF-8 bytes of the destination names (what both
/// clouds list by). `dest_name` is `prefix + key` of the source head.
pub fn step(source_name: Option<&str>, dest_name: Option<&str>) -> Option<Step> {
    match (source_name, dest_name) {
        (None, None) => None,
        (Some(_), None) => Some(Step::SourceOnly),
        (None, Some(_)) => Some(Step::DestOnly),
        (Some(s), Some(d)) => Some(match s.as_bytes().cmp(d.as_bytes()) {
            std::cmp::Ordering::Less => Step::SourceOnly,
            std::cmp::Ordering::Greater => Step::DestOnly,
            std::cmp::Ordering::Equal => Step::Both,
        }),
    }
}

/// What to audit: `s3://source_bucket/source_prefix` against `gs://dest_bucket/dest_prefix + key`.
#[derive(Debug, Clone)]
pub struct Scope {
    /// The S3 bucket walked.
    pub source_bucket: String,
    /// Only keys under this prefix (empty: the whole bucket).
    pub source_prefix: String,
    /// The GCS bucket compared with.
    pub dest_bucket: String,
    /// Prepended to each key to name its copy (empty: the same name).
    pub dest_prefix: String,
    /// Keys per listing page on each side (1 to 1000).
    pub page_size: u32,
    /// Only keys after this one (exclusive): an audit job's page starts after the previous
    /// page's last key ([`crate::jobs::audit_page`]). `None`: from the start of the prefix.
    pub after: Option<String>,
    /// Only keys up to this one (inclusive). `None`: to the end of the prefix. With `after`,
    /// consecutive pages' ranges cover the key space without gap or overlap, so a GCS-only name
    /// between two S3 pages' keys is reported by exactly one page.
    pub through: Option<String>,
}

impl Scope {
    /// Whether the destination name `name` (prefix + key) is past the range's lower bound.
    fn after_start(&self, name: &str) -> bool {
        self.after.as_ref().is_none_or(|a| name.as_bytes() > format!("{}{a}", self.dest_prefix).as_bytes())
    }

    /// Whether the destination name `name` is past the range's upper bound.
    fn past_end(&self, name: &str) -> bool {
        self.through.as_ref().is_some_and(|t| name.as_bytes() > format!("{}{t}", self.dest_prefix).as_bytes())
    }

    /// Keeps a listed page's names that fall in the range; `true` once a name past its end is
    /// seen (both listings are in order: nothing after it can be in range).
    fn clip<T>(&self, items: Vec<T>, name: impl Fn(&T) -> String, out: &mut VecDeque<T>) -> bool {
        for item in items {
            let n = name(&item);
            if self.past_end(&n) {
                return true;
            }
            if self.after_start(&n) {
                out.push_back(item);
            }
        }
        false
    }
}

/// The replicate command that closes one finding, if one does: a copy for `missing` and
/// `different` (`overwrite: always`: the ledger may remember a copy that GCS no longer holds
/// intact), a delete for `extra` when deletes are replicated. Shared by `xcr audit --repair`
/// and audit jobs, so both enqueue exactly the same commands.
pub fn repair_command(source_bucket: &str, f: &Finding, deletes: bool) -> Option<String> {
    let cmd = match f.kind {
        Kind::Missing | Kind::Different => serde_json::json!({
            "bucket": source_bucket, "key": f.key, "destination": f.destination, "overwrite": "always"}),
        Kind::Extra if deletes => serde_json::json!({
            "bucket": source_bucket, "key": f.key, "destination": f.destination, "action": "delete"}),
        _ => return None,
    };
    Some(cmd.to_string())
}

/// The merge walk: lists both sides page by page and calls `found` for each finding, in key
/// order. Returns the counts.
pub async fn walk(
    s3: &aws_sdk_s3::Client,
    gcs: &GcsClient,
    ledger: &AnyLedger,
    scope: &Scope,
    mut found: impl FnMut(&Finding),
) -> Result<Counts> {
    let mut counts = Counts::default();
    let (mut src_page, mut dst_page) = (VecDeque::new(), VecDeque::new());
    let (mut src_token, mut dst_token): (Option<String>, Option<String>) = (None, None);
    let (mut src_done, mut dst_done) = (false, false);
    let gcs_prefix = format!("{}{}", scope.dest_prefix, scope.source_prefix);
    let dest_url = |name: &str| format!("gs://{}/{}", scope.dest_bucket, name);
    let (mut last_src, mut last_dst): (Option<String>, Option<String>) = (None, None);
    // GCS lists from here (inclusive; the name equal to it is clipped off as out of range).
    let start_offset = scope.after.as_ref().map(|a| format!("{}{a}", scope.dest_prefix));
    loop {
        // Each side's page is clipped to the scope's range; a name past its end ends that side.
        if src_page.is_empty() && !src_done {
            let (items, next) = list_s3_page(
                s3,
                &scope.source_bucket,
                &scope.source_prefix,
                scope.after.as_deref(),
                src_token.as_deref(),
                scope.page_size,
            )
            .await?;
            let ended = scope.clip(items, |o: &S3Listed| format!("{}{}", scope.dest_prefix, o.key), &mut src_page);
            src_done = ended || next.is_none();
            src_token = next;
        }
        if dst_page.is_empty() && !dst_done {
            let (items, next) = gcs
                .list_page_from(
                    &scope.dest_bucket,
                    &gcs_prefix,
                    start_offset.as_deref(),
                    dst_token.as_deref(),
                    scope.page_size,
                )
                .await?;
            let ended = scope.clip(items, |d| d.object.name.clone(), &mut dst_page);
            dst_done = ended || next.is_none();
            dst_token = next;
        }
        let src_name = src_page.front().map(|s: &S3Listed| format!("{}{}", scope.dest_prefix, s.key));
        let dst_name = dst_page.front().map(|d: &DestEntry| d.object.name.clone());
        in_order(&mut last_src, src_name.as_deref(), "S3")?;
        in_order(&mut last_dst, dst_name.as_deref(), "GCS")?;
        let Some(step) = step(src_name.as_deref(), dst_name.as_deref()) else { break };
        let finding = match step {
            Step::SourceOnly => {
                let S3Listed { key, size, .. } = src_page.pop_front().expect("a source head");
                Some(Finding {
                    kind: Kind::Missing,
                    destination: dest_url(src_name.as_deref().unwrap_or_default()),
                    key,
                    reason: format!("not in GCS ({size} bytes in S3)"),
                })
            }
            Step::DestOnly => {
                let d = dst_page.pop_front().expect("a destination head");
                let key = d.object.name.strip_prefix(scope.dest_prefix.as_str()).unwrap_or(&d.object.name).to_string();
                Some(Finding {
                    kind: Kind::Extra,
                    destination: dest_url(&d.object.name),
                    key,
                    reason: format!("not in S3 ({} bytes in GCS)", d.object.size),
                })
            }
            Step::Both => {
                let S3Listed { key, size, etag, .. } = src_page.pop_front().expect("a source head");
                let d = dst_page.pop_front().expect("a destination head");
                counts.compared += 1;
                match head_s3(s3, &scope.source_bucket, &key, size, etag).await? {
                    // Deleted between the listing and the HEAD: GCS holds an extra.
                    None => Some(Finding {
                        kind: Kind::Extra,
                        destination: dest_url(&d.object.name),
                        reason: "deleted from S3 during the audit".into(),
                        key,
                    }),
                    Some(src) => {
                        let dest = Destination::new(scope.dest_bucket.clone(), d.object.name.clone());
                        let done = match (src.size == d.object.size, ledger) {
                            (true, AnyLedger::Dynamo(_)) => {
                                ledger.get(&crate::domain::replicate::ledger_key(&dest)).await?.and_then(|i| i.done)
                            }
                            _ => None,
                        };
                        compare(&src, &d, done.as_ref()).map(|(kind, reason)| Finding {
                            kind,
                            key,
                            destination: dest.to_string(),
                            reason,
                        })
                    }
                }
            }
        };
        match finding {
            Some(f) => {
                counts.add(f.kind);
                found(&f);
            }
            None => counts.matching += 1,
        }
    }
    Ok(counts)
}

/// Fails unless `next` sorts after the last head seen on that side (the merge walk's premise).
pub(crate) fn in_order(last: &mut Option<String>, next: Option<&str>, side: &str) -> Result<()> {
    if let Some(n) = next {
        if let Some(l) = last.as_deref()
            && n.as_bytes() < l.as_bytes()
        {
            return Err(Error::new(
                ErrorKind::Invalid,
                format!("the {side} listing is not in key order ({n:?} after {l:?}): it cannot be merge-walked"),
            ));
        }
        *last = Some(n.to_string());
    }
    Ok(())
}

/// One object of S3's listing, as ListObjectsV2 describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Listed {
    /// The S3 key.
    pub key: String,
    /// Bytes.
    pub size: u64,
    /// Without quotes.
    pub etag: String,
    /// RFC 3339, as the transfer engine writes it into provenance.
    pub last_modified: Option<String>,
}

/// One ListObjectsV2 page of `bucket` under `prefix`, after `token` (or, for the first page,
/// after the key `start_after`); the next token, if any. For the audit's merge walk (an audit
/// job's page starts after a key) and `xcr copy`'s ([`crate::entry::copy`]).
pub async fn list_s3_page(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    start_after: Option<&str>,
    token: Option<&str>,
    page_size: u32,
) -> Result<(Vec<S3Listed>, Option<String>)> {
    let mut req = s3.list_objects_v2().bucket(bucket).max_keys(page_size.clamp(1, 1000) as i32);
    if !prefix.is_empty() {
        req = req.prefix(prefix);
    }
    if let Some(t) = token {
        req = req.continuation_token(t);
    } else if let Some(after) = start_after {
        req = req.start_after(after);
    }
    let what = format!("list s3://{bucket}/{prefix}");
    let out = req.send().await.map_err(|e| crate::adapters::aws::classify(e, &what))?;
    let items = out
        .contents()
        .iter()
        .filter_map(|o| {
            Some(S3Listed {
                key: o.key()?.to_string(),
                size: o.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                etag: o.e_tag().unwrap_or("").trim_matches('"').to_string(),
                last_modified: o
                    .last_modified()
                    .and_then(|t| t.fmt(aws_smithy_types::date_time::Format::DateTime).ok()),
            })
        })
        .collect();
    let next = if out.is_truncated() == Some(true) {
        Some(out.next_continuation_token().map(str::to_string).ok_or_else(|| {
            Error::new(ErrorKind::Transient, format!("{what}: a truncated page without a continuation token"))
        })?)
    } else {
        None
    };
    Ok((items, next))
}

/// HEAD with the stored checksum: content type, user metadata, full-object CRC32C. `None` when
/// the object is gone.
async fn head_s3(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    listed_size: u64,
    listed_etag: String,
) -> Result<Option<SourceEntry>> {
    use aws_sdk_s3::types::ChecksumMode;
    let what = format!("head s3://{bucket}/{key}");
    let out = match s3.head_object().bucket(bucket).key(key).checksum_mode(ChecksumMode::Enabled).send().await {
        Ok(out) => out,
        Err(e) => {
            let e = crate::adapters::aws::classify(e, &what);
            return if e.kind() == ErrorKind::NotFound { Ok(None) } else { Err(e) };
        }
    };
    let etag = out.e_tag().map(|e| e.trim_matches('"').to_string()).unwrap_or(listed_etag);
    let multipart = etag.contains('-');
    let encrypted_with_key =
        crate::adapters::aws::s3::encrypted_with_key(out.server_side_encryption(), out.sse_customer_algorithm());
    // As the transfer engine reads it (crate::adapters::aws::s3): a composite checksum is no full-object one.
    let crc32c = crate::adapters::aws::s3::full_object_crc32c(out.checksum_crc32_c(), out.checksum_type(), &etag);
    Ok(Some(SourceEntry {
        key: key.to_string(),
        size: out.content_length().and_then(|l| u64::try_from(l).ok()).unwrap_or(listed_size),
        etag_is_md5: !multipart && !encrypted_with_key,
        etag,
        crc32c,
        headers: crate::adapters::aws::s3::content_headers!(out),
        user_metadata: out
            .metadata()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(size: u64, etag: &str) -> SourceEntry {
        SourceEntry {
            key: "k".into(),
            size,
            etag: etag.into(),
            etag_is_md5: !etag.contains('-'),
            headers: ContentHeaders { content_type: Some("text/plain".into()), ..Default::default() },
            ..Default::default()
        }
    }

    fn dst(size: u64, md5: Option<&str>, crc: Option<&str>) -> DestEntry {
        let mut metadata = BTreeMap::new();
        metadata.insert("xcr-source-bucket".to_string(), "b".to_string());
        DestEntry {
            object: StoredObject {
                bucket: "g".into(),
                name: "k".into(),
                generation: "7".into(),
                size,
                crc32c: crc.map(str::to_string),
                md5: md5.map(str::to_string),
                job_id: None,
            },
            headers: ContentHeaders { content_type: Some("text/plain".into()), ..Default::default() },
            metadata,
        }
    }

    // MD5 of "hello": 5d41402abc4b2a76b9719d911017c592, base64 XUFAKrxLKna5cZ2REBfFkg==
    const HELLO_HEX: &str = "5d41402abc4b2a76b9719d911017c592";
    const HELLO_B64: &str = "XUFAKrxLKna5cZ2REBfFkg==";

    #[test]
    fn size_then_md5_then_crc32c_then_ledger_else_unverifiable() {
        assert_eq!(compare(&src(5, HELLO_HEX), &dst(5, Some(HELLO_B64), None), None), None);
        let (k, why) = compare(&src(5, HELLO_HEX), &dst(6, Some(HELLO_B64), None), None).expect("size");
        assert_eq!((k, why.starts_with("size")), (Kind::Different, true));
        let (k, why) = compare(&src(5, HELLO_HEX), &dst(5, Some("AAAAAAAAAAAAAAAAAAAAAA=="), None), None).expect("md5");
        assert_eq!((k, why.contains("md5")), (Kind::Different, true));
        // A multipart ETag is no MD5: the stored CRC32C decides.
        let mut s = src(5, "abc-2");
        s.crc32c = Some("AAAAAQ==".into());
        assert_eq!(compare(&s, &dst(5, None, Some("AAAAAQ==")), None), None);
        assert_eq!(compare(&s, &dst(5, None, Some("AAAAAg==")), None).map(|f| f.0), Some(Kind::Different));
        // Nothing shared: the ledger's record of this very generation proves it, else unverifiable.
        let s = src(5, "abc-2");
        let d = dst(5, None, Some("AAAAAQ=="));
        assert_eq!(compare(&s, &d, None).map(|f| f.0), Some(Kind::Unverifiable));
        let mut done = DoneRecord {
            action: "copy".into(),
            generation: Some("7".into()),
            size: Some(5),
            crc32c: Some("AAAAAQ==".into()),
            etag: Some("abc-2".into()),
            ..Default::default()
        };
        assert_eq!(compare(&s, &d, Some(&done)), None);
        // A record of another generation (GCS was overwritten since) proves nothing.
        done.generation = Some("8".into());
        assert_eq!(compare(&s, &d, Some(&done)).map(|f| f.0), Some(Kind::Unverifiable));
    }

    #[test]
    fn metadata_is_compared_without_provenance() {
        let mut s = src(5, HELLO_HEX);
        s.user_metadata.insert("owner".into(), "ann".into());
        let mut d = dst(5, Some(HELLO_B64), None);
        let (k, why) = compare(&s, &d, None).expect("missing user key");
        assert_eq!(k, Kind::Different);
        assert!(why.contains("owner"), "{why}");
        d.metadata.insert("owner".into(), "ann".into());
        assert_eq!(compare(&s, &d, None), None);
        d.headers.content_type = Some("image/png".into());
        assert!(compare(&s, &d, None).expect("content type").1.contains("content-type"));
        // No content type in S3: xcr writes application/octet-stream.
        s.headers.content_type = None;
        d.headers.content_type = Some(DEFAULT_CONTENT_TYPE.into());
        assert_eq!(compare(&s, &d, None), None);
        d.headers.cache_control = Some("no-cache".into());
        assert!(compare(&s, &d, None).expect("cache-control").1.starts_with("cache-control"));
    }

    #[test]
    fn the_walk_orders_by_utf8_bytes() {
        assert_eq!(step(Some("a"), Some("b")), Some(Step::SourceOnly));
        assert_eq!(step(Some("b"), Some("a")), Some(Step::DestOnly));
        assert_eq!(step(Some("a"), Some("a")), Some(Step::Both));
        // 'é' (0xC3 0xA9) sorts after 'z' by bytes, and 'Z' before 'a'.
        assert_eq!(step(Some("é"), Some("z")), Some(Step::DestOnly));
        assert_eq!(step(Some("Z"), Some("a")), Some(Step::SourceOnly));
        assert_eq!(step(None, None), None);
        assert_eq!(step(None, Some("x")), Some(Step::DestOnly));
    }
}
