//! The ledger in DynamoDB: one item per destination object, every write one conditional
//! UpdateItem.
//!
//! Item: `pk` = `gs://bucket/name`, `sk` = `object`. Lease attributes (`lease_owner`,
//! `lease_expires`) and the record of the last applied action (`done_*`) live
//! side by side, so a claim never erases what was done before and returns it (ALL_OLD) in the
//! same request, and a failed claim returns the current item (ReturnValuesOnConditionCheckFailure)
//! so the caller learns why without a second read. `hw_seq` is the key's ordering mark (the
//! highest S3 sequencer decided for it): set with the lease held, never removed, so that no
//! writer without a sequencer can erase it. `last_owner` names the last lease holder that
//! completed or released the item, so a late copy of its claim cannot take the lease again.
//!
//! An unfinished resumable upload is remembered in `upload_*` attributes (session URI, the
//! source version/ETag/size it carries, chunk size, a confirmed offset and the CRC32C up to
//! it): written by the lease holder when it opens a session and as chunks are confirmed,
//! removed on completion. A claim returns them with the rest of the old item, so the next
//! attempt after a crash can continue the session. The session URI is a bearer credential:
//! the table is encrypted at rest and the URI is never logged.

use super::attrs::{Item, get_n, get_s, n, s};
use super::classify;
use crate::domain::error::Result;
use crate::ports::{Claim, ClaimRequest, DoneRecord, FailureNote, Ledger, LedgerItem, UploadCheckpoint};
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};

const SK: &str = "object";

#[derive(Debug, Clone)]
/// The ledger in DynamoDB: one item per destination object, every write one conditional
/// update, so that two workers can never both hold or both record a destination.
pub struct DynamoLedger {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoLedger {
    /// A ledger on `table` (`XCR_LEDGER_TABLE`); no request is made until the first claim.
    pub fn new(sdk: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self { client: aws_sdk_dynamodb::Client::new(sdk), table: table.into() }
    }

    /// The SDK client, for the few reads outside the [`crate::ports::Ledger`] port (status reads,
    /// tests that inspect an item).
    pub fn client(&self) -> &aws_sdk_dynamodb::Client {
        &self.client
    }

    /// Reads one item (for tools and tests; the replication path never needs a read).
    pub async fn get(&self, key: &str) -> Result<Option<LedgerItem>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(key))
            .key("sk", s(SK))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify(e, "read ledger"))?;
        Ok(out.item().map(parse_item))
    }
}

fn parse_item(item: &Item) -> LedgerItem {
    let done = get_s(item, "done_action").map(|action| DoneRecord {
        action,
        sequencer: get_s(item, "done_seq"),
        last_modified_ms: get_n(item, "done_lm"),
        version_id: get_s(item, "done_version"),
        etag: get_s(item, "done_etag"),
        generation: get_s(item, "done_generation"),
        size: get_n(item, "done_size"),
        crc32c: get_s(item, "done_crc32c"),
        source_bucket: get_s(item, "source_bucket").unwrap_or_default(),
        source_key: get_s(item, "source_key").unwrap_or_default(),
        done_at_ms: get_n(item, "done_at").unwrap_or_default(),
        job_id: get_s(item, "done_job"),
        meta_digest: get_s(item, "done_meta"),
    });
    let upload = get_s(item, "upload_session").map(|session| UploadCheckpoint {
        session,
        version_id: get_s(item, "upload_version"),
        etag: get_s(item, "upload_etag").unwrap_or_default(),
        size: get_n(item, "upload_size").unwrap_or_default(),
        chunk_size: get_n(item, "upload_chunk").unwrap_or_default(),
        offset: get_n(item, "upload_offset").unwrap_or_default(),
        crc32c: get_n(item, "upload_crc").unwrap_or_default(),
    });
    // Items written before the mark existed carry only `done_seq`, which was raised the same way.
    let (high_water, high_water_source) = match get_s(item, "hw_seq") {
        Some(seq) => (Some(seq), get_s(item, "hw_src")),
        None => (get_s(item, "done_seq"), get_s(item, "source_bucket")),
    };
    LedgerItem {
        done,
        high_water,
        high_water_source,
        lease_owner: get_s(item, "lease_owner"),
        lease_expires_ms: get_n(item, "lease_expires"),
        upload,
        failure: get_s(item, "fail_kind").map(|kind| FailureNote {
            kind,
            message: get_s(item, "fail_msg").unwrap_or_default(),
            at_ms: get_n(item, "fail_at").unwrap_or_default(),
        }),
    }
}

/// The attributes of a failure note ([`Ledger::note_failure`]), removed together.
const FAILURE_ATTRS: [&str; 3] = ["fail_kind", "fail_msg", "fail_at"];

/// Longest failure message kept in the ledger (the whole chain is in the logs).
const MAX_FAILURE_MESSAGE: usize = 1_000;

/// Every attribute of a remembered upload, removed together.
const UPLOAD_ATTRS: [&str; 7] =
    ["upload_session", "upload_version", "upload_etag", "upload_size", "upload_chunk", "upload_offset", "upload_crc"];

/// The item a failed condition returned (ReturnValuesOnConditionCheckFailure = ALL_OLD).
fn condition_failure_item(
    e: &aws_sdk_dynamodb::error::SdkError<UpdateItemError, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> Option<LedgerItem> {
    match e.as_service_error() {
        Some(UpdateItemError::ConditionalCheckFailedException(c)) => c.item().map(parse_item),
        _ => None,
    }
}

fn is_condition_failure(
    e: &aws_sdk_dynamodb::error::SdkError<UpdateItemError, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> bool {
    matches!(e.as_service_error(), Some(UpdateItemError::ConditionalCheckFailedException(_)))
}

impl Ledger for DynamoLedger {
    async fn claim(&self, req: &ClaimRequest) -> Result<Claim> {
        // Free when: no lease, or the lease expired (its holder died: a lease outlives the
        // holder's invocation). And, for tasks with a sequencer: nothing at or after it applied.
        // And never by an owner that already finished with this item (`last_owner`, set by
        // completion and release). Why: an attempt the SDK gave up on (timed out) may still reach
        // DynamoDB after its retry succeeded and the task completed; applied then, it would take
        // a lease nobody holds, and the key would be `busy` until it expired (seen in the fault
        // tests when the emulator answered slower than the attempt timeout).
        let mut condition = String::from(
            "(attribute_not_exists(lease_expires) OR lease_expires < :now) \
             AND (attribute_not_exists(last_owner) OR last_owner <> :owner)",
        );
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&req.key))
            .key("sk", s(SK))
            .update_expression("SET lease_owner = :owner, lease_expires = :until")
            .expression_attribute_values(":owner", s(&req.owner))
            .expression_attribute_values(":until", n(req.lease_until_ms))
            .expression_attribute_values(":now", n(req.now_ms))
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if let Some(seq) = &req.sequencer {
            // Only a mark set by an event of the same source bucket orders this one (`<>` is
            // false when the attribute is missing); `done_seq` too, for items written before
            // `hw_seq` existed.
            condition.push_str(
                " AND (attribute_not_exists(hw_seq) OR hw_src <> :src OR hw_seq < :seq) \
                 AND (attribute_not_exists(done_seq) OR source_bucket <> :src OR done_seq < :seq)",
            );
            update = update
                .expression_attribute_values(":seq", s(seq))
                .expression_attribute_values(":src", s(&req.source_bucket));
        }
        match update.condition_expression(condition).send().await {
            Ok(out) => Ok(Claim::Acquired { previous: out.attributes().map(parse_item).unwrap_or_default() }),
            Err(e) if is_condition_failure(&e) => {
                let current = condition_failure_item(&e).unwrap_or_default();
                // Our own lease (owners are unique per claim): an earlier attempt of this very
                // call was applied and its answer lost, and the SDK's retry then found the lease
                // taken. Why it matters: reporting `busy` would block the key until the lease
                // expires. The claim only writes the lease, so the item is otherwise what the
                // lost answer would have returned (the fault tests lose DynamoDB answers).
                if current.lease_owner.as_deref() == Some(req.owner.as_str()) {
                    let previous = LedgerItem { lease_owner: None, lease_expires_ms: None, ..current };
                    return Ok(Claim::Acquired { previous });
                }
                Ok(Claim::Rejected { current })
            }
            Err(e) => Err(classify(e, &format!("claim {}", req.key))),
        }
    }

    async fn complete(&self, key: &str, owner: &str, done: &DoneRecord) -> Result<bool> {
        let mut sets = vec![
            "done_action = :action",
            "done_at = :at",
            "source_bucket = :sb",
            "source_key = :sk",
            "last_owner = :owner",
        ];
        // The copy is done: an unfinished upload recorded for this item is over.
        let mut removes = vec!["lease_owner", "lease_expires"];
        removes.extend(UPLOAD_ATTRS);
        // A failure noted by an earlier attempt is over too.
        removes.extend(FAILURE_ATTRS);
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(key))
            .key("sk", s(SK))
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":action", s(&done.action))
            .expression_attribute_values(":at", n(done.done_at_ms))
            .expression_attribute_values(":sb", s(&done.source_bucket))
            .expression_attribute_values(":sk", s(&done.source_key));
        let optional: [(&str, &str, &str, Option<AttributeValue>); 9] = [
            ("done_seq", ":seq", "done_seq = :seq", done.sequencer.clone().map(s)),
            ("done_lm", ":lm", "done_lm = :lm", done.last_modified_ms.map(n)),
            ("done_version", ":ver", "done_version = :ver", done.version_id.clone().map(s)),
            ("done_etag", ":etag", "done_etag = :etag", done.etag.clone().map(s)),
            ("done_generation", ":gen", "done_generation = :gen", done.generation.clone().map(s)),
            ("done_size", ":size", "done_size = :size", done.size.map(n)),
            ("done_crc32c", ":crc", "done_crc32c = :crc", done.crc32c.clone().map(s)),
            ("done_job", ":job", "done_job = :job", done.job_id.clone().map(s)),
            ("done_meta", ":meta", "done_meta = :meta", done.meta_digest.clone().map(s)),
        ];
        for (attr, placeholder, set, value) in optional {
            match value {
                Some(v) => {
                    sets.push(set);
                    req = req.expression_attribute_values(placeholder, v);
                }
                // A field this action does not have must not survive from an older record.
                None => removes.push(attr),
            }
        }
        // Still ours. Why nothing more: only the lease holder writes the item, so nothing can
        // have been recorded since the claim, which checked the ordering mark; what the holder
        // read from the source under the lease decides the rest (see replicate.rs). A
        // last-modified condition here would refuse a correct record: deleting S3's current
        // version makes an older one current again.
        let mut condition = String::from("lease_owner = :owner");
        if done.sequencer.is_some() {
            // The mark rises with the record; never removed when the record has no sequencer.
            sets.push("hw_seq = :seq");
            sets.push("hw_src = :sb");
            condition.push_str(" AND (attribute_not_exists(hw_seq) OR hw_src <> :sb OR hw_seq <= :seq)");
        }
        let expr = format!("SET {} REMOVE {}", sets.join(", "), removes.join(", "));
        let req = req.return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        match req.update_expression(expr).condition_expression(condition).send().await {
            Ok(_) => Ok(true),
            // Our own record, lease released: an earlier attempt of this call was applied and its
            // answer lost, then the SDK's retry found the lease gone. Why: answering `false`
            // would fail a copy that is recorded, and its redelivery would read the source again.
            Err(e) if is_condition_failure(&e) => Ok(condition_failure_item(&e).is_some_and(|item| {
                item.lease_owner.is_none()
                    && item.done.is_some_and(|d| {
                        d.done_at_ms == done.done_at_ms && d.generation == done.generation && d.action == done.action
                    })
            })),
            Err(e) => Err(classify(e, &format!("record {key}"))),
        }
    }

    async fn release(&self, key: &str, owner: &str, raise: Option<(&str, &str)>) -> Result<()> {
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(key))
            .key("sk", s(SK))
            .condition_expression("lease_owner = :owner")
            .expression_attribute_values(":owner", s(owner));
        // The claim checked that `raise` is above the mark, and only the holder writes it.
        let expr = match raise {
            Some((seq, source)) => {
                req = req.expression_attribute_values(":seq", s(seq)).expression_attribute_values(":src", s(source));
                "SET last_owner = :owner, hw_seq = :seq, hw_src = :src REMOVE lease_owner, lease_expires"
            }
            None => "SET last_owner = :owner REMOVE lease_owner, lease_expires",
        };
        let out = req.update_expression(expr).send().await;
        match out {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(classify(e, &format!("release {key}"))),
        }
    }

    async fn note_failure(&self, key: &str, owner: &str, note: &FailureNote) -> Result<()> {
        let message: String = note.message.chars().take(MAX_FAILURE_MESSAGE).collect();
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(key))
            .key("sk", s(SK))
            .condition_expression("lease_owner = :owner")
            .update_expression("SET fail_kind = :kind, fail_msg = :msg, fail_at = :at")
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":kind", s(&note.kind))
            .expression_attribute_values(":msg", s(message))
            .expression_attribute_values(":at", n(note.at_ms))
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            // The lease is gone: whoever holds it now writes its own story.
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(classify(e, &format!("note the failure of {key}"))),
        }
    }

    async fn checkpoint(
        &self,
        key: &str,
        owner: &str,
        upload: Option<&UploadCheckpoint>,
        lease_until_ms: i64,
    ) -> Result<bool> {
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(key))
            .key("sk", s(SK))
            .condition_expression("lease_owner = :owner")
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":until", n(lease_until_ms));
        let expr = match upload {
            Some(u) => {
                let mut sets = vec![
                    "lease_expires = :until",
                    "upload_session = :session",
                    "upload_etag = :etag",
                    "upload_size = :size",
                    "upload_chunk = :chunk",
                    "upload_offset = :offset",
                    "upload_crc = :crc",
                ];
                req = req
                    .expression_attribute_values(":session", s(&u.session))
                    .expression_attribute_values(":etag", s(&u.etag))
                    .expression_attribute_values(":size", n(u.size))
                    .expression_attribute_values(":chunk", n(u.chunk_size))
                    .expression_attribute_values(":offset", n(u.offset))
                    .expression_attribute_values(":crc", n(u.crc32c));
                match &u.version_id {
                    Some(v) => {
                        sets.push("upload_version = :ver");
                        req = req.expression_attribute_values(":ver", s(v));
                        format!("SET {}", sets.join(", "))
                    }
                    None => format!("SET {} REMOVE upload_version", sets.join(", ")),
                }
            }
            None => format!("SET lease_expires = :until REMOVE {}", UPLOAD_ATTRS.join(", ")),
        };
        match req.update_expression(expr).send().await {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            // The message names the key, never the session URI.
            Err(e) => Err(classify(e, &format!("checkpoint the upload of {key}"))),
        }
    }
}
