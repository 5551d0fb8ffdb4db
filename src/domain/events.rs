//! Every payload the replicate Lambda can receive -> replication tasks. Pure code: no I/O, no SDK
//! types, only `serde_json`, so that emulator payloads with missing or extra fields decode the same
//! way real ones do.
//!
//! What arrives, and how it is recognised (first match wins):
//! * an SQS batch (`Records[0].eventSource == "aws:sqs"`): each record's `body` is decoded on its
//!   own by [`decode_body`], so one unreadable message fails alone ([`Incoming::Sqs`]);
//! * an S3 event notification (`{"Records": [{"s3": ...}]}`), sent directly, through SQS or inside
//!   an SNS envelope; an SNS-to-Lambda event (`Records[].Sns.Message`) is accepted as well;
//! * the `s3:TestEvent` S3 sends when a notification is configured: no tasks;
//! * an SNS envelope as SNS delivers it to SQS without raw message delivery
//!   (`{"Type": "Notification", "Message": "<json>"}`): the inner message is decoded in turn;
//! * an EventBridge event from S3 (`"source": "aws.s3"`, `detail-type` `Object Created` or
//!   `Object Deleted`);
//! * a replicate command (`{"bucket": "b", "key": "raw key"}`), as the CLI, the API and migration
//!   jobs send it.
//!
//! S3 URL-encodes object keys in notifications the way HTML forms do: `+` is a space and
//! everything else is `%XX` (emulators also encode `/`). Keys are decoded exactly once, here;
//! a command's key is taken as is.

use crate::domain::error::{Error, ErrorKind, Result};
use crate::domain::model::{Destination, ObjectRef};
use crate::domain::names::{GsUrl, UrlError, check_gcs_name};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::cmp::Ordering;

/// What a task asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Copy the object's current bytes (ObjectCreated:*, `Object Created`, a copy command).
    Copy,
    /// The object was removed (ObjectRemoved:*, LifecycleExpiration:*, `Object Deleted`).
    Delete,
}

/// One unit of work: an object to copy or a removal to mirror, with what is known about ordering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// Copy the object, or mirror its removal.
    pub action: Action,
    /// The source object; the key is already decoded.
    pub object: ObjectRef,
    /// S3's sequencer for this key's event, when the event has one (hex string as S3 sent it).
    pub sequencer: Option<String>,
    /// eventTime / EventBridge `time`, RFC 3339, when known.
    pub event_time: Option<String>,
    /// Set by migration jobs: the job this task belongs to.
    pub job_id: Option<String>,
    /// Set by migration jobs reading a manifest: the task's position in it, part of its task id
    /// ([`crate::jobs::task_id`]), so that a key listed twice is two tasks, each counted once.
    pub job_task: Option<String>,
    /// An explicit GCS destination (from a replicate command), overriding routing rules.
    pub destination: Option<Destination>,
    /// Set by migration jobs: what to do when the destination already holds the object.
    pub overwrite: Option<crate::domain::model::Overwrite>,
    /// The S3 event this task came from, as S3 named it (`ObjectRemoved:DeleteMarkerCreated`,
    /// `LifecycleExpiration:Delete`, `Object Deleted (Permanently Deleted)`...); `None` for a
    /// command (CLI, API, job). Why keep it: an event's version id only says which version
    /// changed, not what S3 serves now (deleting a noncurrent version, a delete marker or the
    /// current version all arrive as deletes with a version id), so with deletes replicated an
    /// event is decided by the source's current state ([`crate::domain::replicate`]), while a
    /// command's version id is what its caller asked for. It is also logged with the outcome.
    pub event: Option<String>,
}

impl Task {
    /// A task with nothing known but its action and object: no ordering, job or explicit destination.
    pub fn new(action: Action, object: ObjectRef) -> Self {
        Self {
            action,
            object,
            sequencer: None,
            event_time: None,
            job_id: None,
            job_task: None,
            destination: None,
            overwrite: None,
            event: None,
        }
    }
}

/// One SQS record's decoding: its message id and either its tasks or why it is unreadable.
#[derive(Debug)]
pub struct SqsItem {
    /// The SQS message id, which a partial batch failure names.
    pub message_id: String,
    /// The tasks the body holds, or why it cannot be read (then the record goes to the DLQ in time).
    pub tasks: Result<Vec<Task>>,
    /// `attributes.ApproximateReceiveCount`: which delivery of the message this is.
    pub receive_count: Option<u32>,
}

/// A whole Lambda invocation, decoded.
#[derive(Debug)]
pub enum Incoming {
    /// A direct invocation: S3 notification, EventBridge event or a replicate command.
    Direct(Vec<Task>),
    /// An SQS batch: one item per record, so failures can be reported per message.
    Sqs(Vec<SqsItem>),
}

/// Longest excerpt of foreign input quoted in an error message: enough to recognise the payload in
/// a log line, short enough that a 256 KiB body does not end up in every log and API response.
const EXCERPT_CHARS: usize = 200;

/// An SNS envelope may wrap another envelope; a bound keeps a hostile body from recursing forever.
const MAX_NESTING: usize = 4;

/// Longest S3 object key, in bytes (S3's own limit, which GCS shares for object names).
pub const MAX_KEY_BYTES: usize = 1024;

/// Width [`sequencer_order`] pads to: wider than any sequencer S3 has been seen to send (16 to 20
/// hex digits), so that padded values compare correctly as plain strings.
const SEQUENCER_WIDTH: usize = 32;

/// Decodes a top-level Lambda payload.
///
/// An SQS batch becomes [`Incoming::Sqs`] with one item per record, whatever the records hold;
/// anything else is decoded as a single message into [`Incoming::Direct`], and an unreadable
/// direct payload is an error for the whole invocation.
pub fn decode_invocation(payload: &Value) -> Result<Incoming> {
    if let Some(records) = sqs_records(payload) {
        return Ok(Incoming::Sqs(records.iter().enumerate().map(|(i, r)| decode_sqs_record(i, r)).collect()));
    }
    decode_value(payload, 0).map(Incoming::Direct)
}

/// Decodes one message body: an SQS message's `body`, or any payload a direct invocation carries.
pub fn decode_body(body: &str) -> Result<Vec<Task>> {
    let value: Value = serde_json::from_str(body)
        .map_err(|e| invalid(format!("message body is not JSON ({e}): {}", excerpt(body))))?;
    decode_value(&value, 0)
}

/// Normalises an S3 sequencer so that plain string comparison orders events of one key.
///
/// AWS's S3 event-structure documentation ("Event message structure", the `sequencer` note,
/// <https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html>) says:
/// the event with the greater sequencer hexadecimal value occurred later; sequencers can be of
/// different lengths, so to compare them, first right-pad the shorter value with zeros, then
/// compare lexicographically. This returns that padded form, upper-cased (EventBridge sends lower
/// case, notifications upper case) and padded to 32 characters, so a DynamoDB condition expression
/// (`seq < :new`) orders writes the same way [`compare_sequencers`] does.
///
/// Trailing zeros are insignificant under right-padding (`"AB"` and `"AB00"` are the same
/// point), so they are trimmed before padding; that keeps the result correct under plain string
/// comparison even for a value longer than 32 characters, which is returned longer rather than
/// cut. Surrounding whitespace is dropped. A sequencer that is not hex (only emulators send such
/// things) goes through the same steps: the order stays deterministic, byte-wise on the
/// upper-cased text, but means nothing about time.
pub fn sequencer_order(seq: &str) -> String {
    let upper = seq.trim().to_ascii_uppercase();
    let mut out = upper.trim_end_matches('0').to_owned();
    while out.len() < SEQUENCER_WIDTH {
        out.push('0');
    }
    out
}

/// Orders two sequencers of the same key as AWS documents (see [`sequencer_order`]):
/// `Greater` means `a` is the later event. Sequencers of different keys are not comparable.
pub fn compare_sequencers(a: &str, b: &str) -> Ordering {
    sequencer_order(a).cmp(&sequencer_order(b))
}

/// Decodes a key from an S3 notification: `+` is a space, `%XX` a byte; the bytes must be UTF-8.
pub fn decode_key(raw: &str) -> Result<String> {
    let spaced = raw.replace('+', " ");
    let decoded = percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map_err(|_| invalid(format!("key {} does not decode to UTF-8", quoted(raw))))?;
    if decoded.is_empty() {
        return Err(invalid("empty object key"));
    }
    Ok(decoded.into_owned())
}

/// The records of an SQS event, when `payload` is one.
fn sqs_records(payload: &Value) -> Option<&Vec<Value>> {
    let records = payload.get("Records")?.as_array()?;
    let source = records.first()?.get("eventSource")?.as_str()?;
    (source == "aws:sqs").then_some(records)
}

fn decode_sqs_record(index: usize, record: &Value) -> SqsItem {
    let message_id = record.get("messageId").and_then(Value::as_str).unwrap_or_default().to_owned();
    let tasks = if message_id.is_empty() {
        Err(invalid(format!("SQS record {index} has no messageId")))
    } else {
        match record.get("body") {
            Some(Value::String(body)) => decode_body(body),
            Some(_) => Err(invalid(format!("SQS message {message_id}: body is not a string"))),
            None => Err(invalid(format!("SQS message {message_id} has no body"))),
        }
    };
    let receive_count = record
        .get("attributes")
        .and_then(|a| a.get("ApproximateReceiveCount"))
        .and_then(Value::as_str)
        .and_then(|c| c.parse().ok());
    SqsItem { message_id, tasks, receive_count }
}

/// Decodes one message of any supported shape. `depth` counts SNS envelopes already opened.
fn decode_value(value: &Value, depth: usize) -> Result<Vec<Task>> {
    if depth > MAX_NESTING {
        return Err(invalid(format!("messages nested more than {MAX_NESTING} deep")));
    }
    let Some(obj) = value.as_object() else {
        return Err(invalid(format!(
            "expected a JSON object, got {}: {}",
            kind_of(value),
            excerpt(&value.to_string())
        )));
    };
    if let Some(records) = obj.get("Records") {
        return decode_records(records, depth);
    }
    if let Some(event) = obj.get("Event") {
        return match event.as_str() {
            Some("s3:TestEvent") => Ok(Vec::new()),
            _ => Err(invalid(format!("unsupported S3 message with Event {}", excerpt(&event.to_string())))),
        };
    }
    if obj.contains_key("Type") && obj.contains_key("Message") {
        return decode_sns_envelope(obj, depth);
    }
    if obj.contains_key("detail-type") {
        return decode_eventbridge(value);
    }
    // Lambda's on-failure destination wraps a failed asynchronous invocation as
    // {"requestContext", "requestPayload", "responsePayload"}: after `xcr dlq redrive` the
    // original event inside is what must be replicated.
    if let (Some(payload), true) = (obj.get("requestPayload"), obj.contains_key("requestContext")) {
        return decode_value(payload, depth + 1);
    }
    if obj.contains_key("bucket") || obj.contains_key("key") {
        return decode_command(value).map(|t| vec![t]);
    }
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.truncate(10);
    Err(invalid(format!(
        "unrecognised message (fields {}): expected an S3 event notification (Records), an s3:TestEvent, \
         an SNS envelope, an EventBridge aws.s3 event or a replicate command {{\"bucket\", \"key\"}}",
        excerpt(&format!("{keys:?}"))
    )))
}

/// `Records` of an S3 notification, or of an SNS-to-Lambda event whose messages are notifications.
fn decode_records(records: &Value, depth: usize) -> Result<Vec<Task>> {
    let Some(records) = records.as_array() else {
        return Err(invalid(format!("Records is {}, not a list", kind_of(records))));
    };
    if records.is_empty() {
        return Err(invalid("S3 event notification with an empty Records list"));
    }
    let mut tasks = Vec::new();
    for (i, record) in records.iter().enumerate() {
        if let Some(sns) = record.get("Sns") {
            let message = sns
                .get("Message")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(format!("SNS record {i} has no Message string")))?;
            tasks.extend(decode_nested(message, depth)?);
        } else {
            tasks.extend(decode_s3_record(record).map_err(|e| e.context(format!("S3 record {i}")))?);
        }
    }
    Ok(tasks)
}

/// What S3 reports about one record; everything beyond bucket name, key and event name is optional
/// because emulators leave it out (moto has no sequencer, versionId, userIdentity...).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct S3Record {
    event_name: String,
    event_time: Option<String>,
    s3: S3Entity,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: BucketEntity,
    object: ObjectEntity,
}

#[derive(Deserialize)]
struct BucketEntity {
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectEntity {
    key: String,
    version_id: Option<String>,
    sequencer: Option<String>,
}

fn decode_s3_record(record: &Value) -> Result<Vec<Task>> {
    let r = S3Record::deserialize(record)
        .map_err(|e| invalid(format!("not an S3 event record ({})", excerpt(&e.to_string()))))?;
    // MinIO and some emulators keep the "s3:" prefix that AWS strips from eventName.
    let name = r.event_name.strip_prefix("s3:").unwrap_or(&r.event_name);
    let Some(action) = s3_event_action(name)? else {
        return Ok(Vec::new());
    };
    if r.s3.bucket.name.is_empty() {
        return Err(invalid("S3 event record with an empty bucket name"));
    }
    let object = ObjectRef::new(r.s3.bucket.name, decode_key(&r.s3.object.key)?).with_version(r.s3.object.version_id);
    let mut task = Task::new(action, object);
    task.sequencer = non_empty(r.s3.object.sequencer);
    task.event_time = non_empty(r.event_time);
    task.event = Some(name.to_string());
    Ok(vec![task])
}

/// What an S3 `eventName` asks of a replicator. `Ok(None)`: the event changes nothing a copy
/// holds, so there is nothing to do: restores (a temporary readable copy of an archived object),
/// tagging and ACL changes (GCS copies carry neither), lifecycle transitions and Intelligent-Tiering
/// moves (storage class only), S3 replication status events and lost reduced-redundancy objects
/// (the GCS copy is then the one to keep). Unknown names are errors, so that a new S3 event type is
/// noticed instead of silently dropped.
fn s3_event_action(name: &str) -> Result<Option<Action>> {
    let family = name.split(':').next().unwrap_or_default();
    match family {
        "ObjectCreated" => Ok(Some(Action::Copy)),
        "ObjectRemoved" | "LifecycleExpiration" => Ok(Some(Action::Delete)),
        "ObjectRestore"
        | "ObjectTagging"
        | "ObjectAcl"
        | "LifecycleTransition"
        | "IntelligentTiering"
        | "Replication"
        | "ReducedRedundancyLostObject" => Ok(None),
        _ => Err(invalid(format!("unsupported S3 event {}", quoted(name)))),
    }
}

/// An SNS envelope, as SNS delivers to SQS (or HTTP) without raw message delivery.
fn decode_sns_envelope(obj: &Map<String, Value>, depth: usize) -> Result<Vec<Task>> {
    let kind = obj.get("Type").and_then(Value::as_str).unwrap_or_default();
    if kind != "Notification" {
        return Err(invalid(format!("SNS message of Type {} is not a notification", quoted(kind))));
    }
    let Some(message) = obj.get("Message").and_then(Value::as_str) else {
        return Err(invalid("SNS notification whose Message is not a string"));
    };
    decode_nested(message, depth).map_err(|e| e.context("SNS Message"))
}

fn decode_nested(message: &str, depth: usize) -> Result<Vec<Task>> {
    let value: Value = serde_json::from_str(message)
        .map_err(|e| invalid(format!("SNS Message is not JSON ({e}): {}", excerpt(message))))?;
    decode_value(&value, depth + 1)
}

#[derive(Deserialize)]
struct EventBridgeEvent {
    #[serde(rename = "detail-type")]
    detail_type: String,
    source: String,
    time: Option<String>,
    detail: EventBridgeDetail,
}

#[derive(Deserialize)]
struct EventBridgeDetail {
    bucket: BucketEntity,
    object: EventBridgeObject,
    /// `Object Deleted` only: `Delete Marker Created` or `Permanently Deleted`.
    #[serde(rename = "deletion-type")]
    deletion_type: Option<String>,
}

#[derive(Deserialize)]
struct EventBridgeObject {
    key: String,
    #[serde(rename = "version-id")]
    version_id: Option<String>,
    sequencer: Option<String>,
}

/// An S3 event delivered by EventBridge.
///
/// Key encoding: AWS's "EventBridge event message structure" page
/// (<https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html>) documents
/// `detail.object.key` without saying whether it is URL-encoded (its examples use plain keys).
/// AWS's own Powertools for Lambda (Python; `S3EventBridgeNotificationObject.key` in
/// `utilities/data_classes/s3_event.py`) decodes it with `unquote_plus`, exactly as for
/// notification keys, so the key is decoded here with [`decode_key`] too. Emulators (moto,
/// LocalStack) put the raw key in EventBridge events; that decodes unchanged unless it contains
/// `+` or `%XX`.
fn decode_eventbridge(value: &Value) -> Result<Vec<Task>> {
    let ev = EventBridgeEvent::deserialize(value)
        .map_err(|e| invalid(format!("not an EventBridge S3 event ({})", excerpt(&e.to_string()))))?;
    if ev.source != "aws.s3" {
        return Err(invalid(format!("EventBridge event from {}, expected aws.s3", quoted(&ev.source))));
    }
    let action = match ev.detail_type.as_str() {
        "Object Created" => Action::Copy,
        "Object Deleted" => Action::Delete,
        // Same reasoning as for notifications: these change nothing a GCS copy holds.
        "Object Restore Initiated"
        | "Object Restore Completed"
        | "Object Restore Expired"
        | "Object Tags Added"
        | "Object Tags Deleted"
        | "Object ACL Updated"
        | "Object Storage Class Changed"
        | "Object Access Tier Changed" => return Ok(Vec::new()),
        other => return Err(invalid(format!("unsupported EventBridge S3 detail-type {}", quoted(other)))),
    };
    if ev.detail.bucket.name.is_empty() {
        return Err(invalid("EventBridge S3 event with an empty bucket name"));
    }
    let object = ObjectRef::new(ev.detail.bucket.name, decode_key(&ev.detail.object.key)?)
        .with_version(ev.detail.object.version_id);
    let mut task = Task::new(action, object);
    task.sequencer = non_empty(ev.detail.object.sequencer);
    task.event_time = non_empty(ev.time);
    task.event = Some(match non_empty(ev.detail.deletion_type) {
        Some(kind) => format!("{} ({kind})", ev.detail_type),
        None => ev.detail_type,
    });
    Ok(vec![task])
}

/// A replicate command. Strict, unlike S3 payloads: a person or a program of ours wrote it, and a
/// misspelt field (`versionId` for `version_id`) must fail loudly rather than copy the wrong thing.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Command {
    bucket: String,
    /// The raw key, not URL-encoded.
    key: String,
    version_id: Option<String>,
    job_id: Option<String>,
    /// Migration jobs reading a manifest: the task's position in it (see [`Task::job_task`]).
    task: Option<String>,
    /// `gs://bucket/name`; `gs://bucket` or `gs://bucket/` keeps the source key as the name.
    destination: Option<String>,
    /// `copy` (default) or `delete`.
    action: Option<String>,
    /// Migration jobs: `different` (default), `never` or `always`.
    overwrite: Option<String>,
}

fn decode_command(value: &Value) -> Result<Task> {
    let c = Command::deserialize(value)
        .map_err(|e| invalid(format!("invalid replicate command: {}", excerpt(&e.to_string()))))?;
    let action = match c.action.as_deref() {
        None | Some("copy") => Action::Copy,
        Some("delete") => Action::Delete,
        Some(other) => {
            return Err(invalid(format!(
                "invalid replicate command: action {} (expected \"copy\" or \"delete\")",
                quoted(other)
            )));
        }
    };
    if c.bucket.is_empty() || c.bucket.contains('/') {
        return Err(invalid(format!(
            "invalid replicate command: bucket {} is not an S3 bucket name",
            quoted(&c.bucket)
        )));
    }
    if c.key.is_empty() || c.key.len() > MAX_KEY_BYTES {
        return Err(invalid(format!(
            "invalid replicate command: key must be 1 to {MAX_KEY_BYTES} bytes, got {}",
            c.key.len()
        )));
    }
    let destination = c.destination.as_deref().map(|d| parse_gs_url(d, &c.key)).transpose()?;
    let mut task = Task::new(action, ObjectRef::new(c.bucket, c.key).with_version(c.version_id));
    task.job_id = non_empty(c.job_id);
    task.job_task = non_empty(c.task);
    task.destination = destination;
    task.overwrite = match c.overwrite.as_deref() {
        None => None,
        Some(o) => Some(crate::domain::model::Overwrite::parse(o).ok_or_else(|| {
            invalid(format!("invalid replicate command: overwrite {} (expected different, never or always)", quoted(o)))
        })?),
    };
    Ok(task)
}

/// Parses `gs://bucket/name`; an absent or empty name means the source key.
pub fn parse_gs_url(url: &str, key: &str) -> Result<Destination> {
    let bad = |why: &str| invalid(format!("invalid replicate command: destination {}: {why}", quoted(url)));
    let GsUrl { bucket, path } = GsUrl::parse(url).map_err(|e| match e {
        UrlError::Shape(_) => bad("expected gs://bucket/name"),
        other => bad(&other.to_string()),
    })?;
    let name = if path.is_empty() { key } else { path.as_str() };
    // The source key stands in for an absent name, so it meets the GCS name rules too.
    check_gcs_name(name).map_err(|e| bad(&e.to_string()))?;
    Ok(Destination::new(bucket, name))
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Invalid, message)
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

/// At most [`EXCERPT_CHARS`] characters of foreign text, marked when cut.
fn excerpt(s: &str) -> String {
    match s.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}... ({} bytes)", &s[..cut], s.len()),
        None => s.to_owned(),
    }
}

/// A foreign string, debug-quoted and shortened.
fn quoted(s: &str) -> String {
    excerpt(&format!("{s:?}"))
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tasks(v: Value) -> Vec<Task> {
        match decode_invocation(&v) {
            Ok(Incoming::Direct(t)) => t,
            Ok(Incoming::Sqs(_)) => panic!("expected a direct invocation"),
            Err(e) => panic!("did not decode: {e}"),
        }
    }

    fn err(v: Value) -> Error {
        match decode_invocation(&v) {
            Err(e) => e,
            Ok(other) => panic!("expected an error, got {other:?}"),
        }
    }

    fn s3_record(event: &str, key: &str) -> Value {
        json!({"eventSource": "aws:s3", "eventName": event, "eventTime": "2024-05-01T12:00:00.000Z",
               "s3": {"bucket": {"name": "src"}, "object": {"key": key}}})
    }

    #[test]
    fn keys_decode_once_with_plus_as_space() {
        assert_eq!(decode_key("a+b%2Bc%25d").ok().as_deref(), Some("a b+c%d"));
        assert_eq!(decode_key("dir%2Fsub%2F%C3%A9t%C3%A9.txt").ok().as_deref(), Some("dir/sub/été.txt"));
        assert_eq!(decode_key("plain/key.txt").ok().as_deref(), Some("plain/key.txt"));
        assert_eq!(decode_key("%E6%97%A5%E6%9C%AC+%F0%9F%A6%80").ok().as_deref(), Some("日本 🦀"));
        assert!(decode_key("%FF%FE").is_err());
        assert!(decode_key("").is_err());
    }

    #[test]
    fn on_failure_destination_records_unwrap_to_the_original_event() {
        let wrapped = json!({
            "version": "1.0",
            "requestContext": {"requestId": "r", "condition": "RetriesExhausted", "approximateInvokeCount": 3},
            "requestPayload": {"Records": [{"eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": "src"}, "object": {"key": "a+b.txt"}}}]},
            "responseContext": {"statusCode": 200, "functionError": "Unhandled"},
            "responsePayload": {"errorMessage": "busy"}
        });
        let t = tasks(wrapped);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].object.key, "a b.txt");
    }

    #[test]
    fn s3_notification_becomes_tasks() {
        let ev = json!({"Records": [
            {"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "eventTime": "2024-05-01T12:00:00.000Z",
             "s3": {"bucket": {"name": "src"},
                    "object": {"key": "a+b.txt", "versionId": "v1", "sequencer": "0055AED6DCD90281E5", "size": 3}}},
            {"eventName": "ObjectRemoved:Delete", "s3": {"bucket": {"name": "src"}, "object": {"key": "gone"}}},
            {"eventName": "ObjectRemoved:DeleteMarkerCreated",
             "s3": {"bucket": {"name": "src"}, "object": {"key": "marked", "versionId": "null"}}}
        ]});
        let t = tasks(ev);
        assert_eq!(t.len(), 3);
        assert_eq!(
            t[0],
            Task {
                action: Action::Copy,
                object: ObjectRef::new("src", "a b.txt").with_version(Some("v1".into())),
                sequencer: Some("0055AED6DCD90281E5".into()),
                event_time: Some("2024-05-01T12:00:00.000Z".into()),
                job_id: None,
                job_task: None,
                destination: None,
                overwrite: None,
                event: Some("ObjectCreated:Put".into()),
            }
        );
        assert_eq!((t[1].action, t[1].object.key.as_str(), t[1].sequencer.as_ref()), (Action::Delete, "gone", None));
        assert_eq!((t[2].action, t[2].object.version_id.as_ref()), (Action::Delete, None), "\"null\" is no version");
    }

    #[test]
    fn moto_style_records_decode() {
        // moto: no sequencer, versionId, userIdentity or responseElements; '/' encoded; size as a number.
        let ev = json!({"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
            "eventTime": "2024-05-01T12:00:00.123456", "eventName": "ObjectCreated:Put",
            "s3": {"s3SchemaVersion": "1.0", "configurationId": "c",
                   "bucket": {"name": "src", "arn": "arn:aws:s3:::src"},
                   "object": {"key": "dir%2Fsub%2Fhello+world%21.txt", "size": 5, "eTag": "abc"}}}]});
        let t = tasks(ev);
        assert_eq!(t[0].object, ObjectRef::new("src", "dir/sub/hello world!.txt"));
        assert_eq!(t[0].sequencer, None);
        assert_eq!(t[0].event_time.as_deref(), Some("2024-05-01T12:00:00.123456"));
    }

    #[test]
    fn event_names_map_to_actions_or_nothing() {
        for (name, want) in [
            ("ObjectCreated:CompleteMultipartUpload", Some(Action::Copy)),
            ("s3:ObjectCreated:Copy", Some(Action::Copy)),
            ("LifecycleExpiration:Delete", Some(Action::Delete)),
            ("LifecycleExpiration:DeleteMarkerCreated", Some(Action::Delete)),
            ("ObjectRestore:Completed", None),
            ("ObjectTagging:Put", None),
            ("ObjectAcl:Put", None),
            ("LifecycleTransition", None),
            ("IntelligentTiering", None),
            ("Replication:OperationFailedReplication", None),
        ] {
            let t = tasks(json!({"Records": [s3_record(name, "k")]}));
            assert_eq!(t.first().map(|t| t.action), want, "{name}");
        }
        let e = err(json!({"Records": [s3_record("ObjectExploded:Boom", "k")]}));
        assert_eq!(e.kind(), ErrorKind::Invalid);
        assert!(e.message().contains("ObjectExploded:Boom"), "{e}");
    }

    #[test]
    fn test_events_yield_nothing_even_wrapped_in_sns() {
        let test_event = json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2024-05-01T12:00:00.000Z",
                                "Bucket": "src", "RequestId": "R", "HostId": "H"});
        assert!(tasks(test_event.clone()).is_empty());
        let sns = json!({"Type": "Notification", "MessageId": "m", "TopicArn": "arn:aws:sns:us-east-1:1:t",
                         "Subject": "Amazon S3 Notification", "Message": test_event.to_string()});
        assert!(tasks(sns).is_empty());
        assert!(err(json!({"Event": "s3:Other"})).message().contains("s3:Other"));
    }

    #[test]
    fn sns_envelope_is_opened() {
        let inner = json!({"Records": [s3_record("ObjectCreated:Put", "sns/a%2Bb+c.txt")]});
        let sns = json!({"Type": "Notification", "MessageId": "m", "TopicArn": "arn:aws:sns:us-east-1:1:t",
                         "Message": inner.to_string(), "Timestamp": "2024-05-01T12:00:00.000Z"});
        let t = tasks(sns);
        assert_eq!(t[0].object.key, "sns/a+b c.txt");
        // SNS -> Lambda directly.
        let lambda_sns = json!({"Records": [{"EventSource": "aws:sns", "Sns": {"Message": inner.to_string()}}]});
        assert_eq!(tasks(lambda_sns)[0].object.key, "sns/a+b c.txt");
        let confirm = json!({"Type": "SubscriptionConfirmation", "Message": "You have chosen..."});
        assert!(err(confirm).message().contains("SubscriptionConfirmation"));
        let garbage = json!({"Type": "Notification", "Message": "not json"});
        assert!(err(garbage).message().contains("SNS Message is not JSON"));
    }

    #[test]
    fn nesting_is_bounded() {
        let mut v = json!({"Event": "s3:TestEvent"});
        for _ in 0..=MAX_NESTING + 1 {
            v = json!({"Type": "Notification", "Message": v.to_string()});
        }
        assert!(err(v).message().contains("nested"));
    }

    #[test]
    fn eventbridge_created_and_deleted() {
        let created = json!({"version": "0", "id": "17793124-05d4-b198-2fde-7ededc63b103",
            "detail-type": "Object Created", "source": "aws.s3", "account": "111122223333",
            "time": "2021-11-12T00:00:00Z", "region": "ca-central-1", "resources": ["arn:aws:s3:::src"],
            "detail": {"version": "0", "bucket": {"name": "src"},
                       "object": {"key": "eb/hello+world.txt", "size": 5, "etag": "b1946ac92492d2347c6235b4d2611184",
                                  "version-id": "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e", "sequencer": "617f08299329d189"},
                       "request-id": "N4N7GDK58NMKJ12R", "requester": "123456789012", "reason": "PutObject"}});
        let t = tasks(created);
        assert_eq!(t[0].action, Action::Copy);
        assert_eq!(
            t[0].object,
            ObjectRef::new("src", "eb/hello world.txt").with_version(Some("IYV3p45BT0ac8hjHg1houSdS1a.Mro8e".into()))
        );
        assert_eq!(t[0].sequencer.as_deref(), Some("617f08299329d189"));
        assert_eq!(t[0].event_time.as_deref(), Some("2021-11-12T00:00:00Z"));

        let deleted = json!({"version": "0", "detail-type": "Object Deleted", "source": "aws.s3",
            "time": "2021-11-12T00:00:00Z",
            "detail": {"bucket": {"name": "src"}, "object": {"key": "eb/x", "sequencer": "617f0837b476e463"},
                       "reason": "DeleteObject", "deletion-type": "Delete Marker Created"}});
        assert_eq!(tasks(deleted)[0].action, Action::Delete);

        let restore = json!({"detail-type": "Object Restore Completed", "source": "aws.s3",
                             "detail": {"bucket": {"name": "src"}, "object": {"key": "k"}}});
        assert!(tasks(restore).is_empty());
        let other = json!({"detail-type": "Object Created", "source": "aws.ec2",
                           "detail": {"bucket": {"name": "src"}, "object": {"key": "k"}}});
        assert!(err(other).message().contains("aws.ec2"));
        let no_key = json!({"detail-type": "Object Created", "source": "aws.s3", "detail": {"bucket": {"name": "s"}}});
        assert!(err(no_key).message().contains("object"));
    }

    #[test]
    fn commands_with_and_without_version() {
        let t = tasks(json!({"bucket": "src", "key": "raw key+100%.txt"}));
        assert_eq!(t, vec![Task::new(Action::Copy, ObjectRef::new("src", "raw key+100%.txt"))]);

        let t = tasks(json!({"bucket": "src", "key": "k", "version_id": "v9", "job_id": "job-1",
                             "destination": "gs://dst-bucket/renamed/k", "action": "copy"}));
        assert_eq!(t[0].object.version_id.as_deref(), Some("v9"));
        assert_eq!(t[0].job_id.as_deref(), Some("job-1"));
        assert_eq!(t[0].destination, Some(Destination::new("dst-bucket", "renamed/k")));

        let t = tasks(json!({"bucket": "src", "key": "k/é", "destination": "gs://dst-bucket", "action": "delete"}));
        assert_eq!(t[0].action, Action::Delete);
        assert_eq!(t[0].destination, Some(Destination::new("dst-bucket", "k/é")));
    }

    #[test]
    fn bad_commands_are_rejected_clearly() {
        let e = err(json!({"bucket": "src", "key": "k", "versionId": "v"}));
        assert_eq!(e.kind(), ErrorKind::Invalid);
        assert!(e.message().contains("unknown field `versionId`"), "{e}");
        assert!(err(json!({"key": "k"})).message().contains("missing field `bucket`"));
        assert!(err(json!({"bucket": "src", "key": ""})).message().contains("1 to 1024 bytes"));
        assert!(err(json!({"bucket": "src", "key": "x".repeat(1025)})).message().contains("got 1025"));
        assert!(decode_body(&json!({"bucket": "src", "key": "é".repeat(512)}).to_string()).is_ok());
        assert!(err(json!({"bucket": "src", "key": "k", "action": "move"})).message().contains("\"move\""));
        assert!(err(json!({"bucket": "", "key": "k"})).message().contains("bucket"));
        assert!(err(json!({"bucket": "src", "key": "k", "destination": "s3://x/y"})).message().contains("gs://"));
        assert!(
            err(json!({"bucket": "src", "key": "k", "destination": "gs://Bad_Bucket/y"}))
                .message()
                .contains("lowercase")
        );
    }

    fn put_record(s3: Value) -> Value {
        json!({"Records": [{"eventName": "ObjectCreated:Put", "s3": s3}]})
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        for v in [
            json!(null),
            json!([1, 2]),
            json!("text"),
            json!({}),
            json!({"hello": 1}),
            json!({"Records": []}),
            json!({"Records": "x"}),
            json!({"Records": [{"eventName": "ObjectCreated:Put"}]}),
            put_record(json!({"bucket": {"name": "b"}, "object": {}})),
            put_record(json!({"bucket": {}, "object": {"key": "k"}})),
            put_record(json!({"bucket": {"name": ""}, "object": {"key": "k"}})),
            put_record(json!({"bucket": {"name": "b"}, "object": {"key": "%FF"}})),
            put_record(json!("s3")),
        ] {
            assert_eq!(err(v.clone()).kind(), ErrorKind::Invalid, "{v}");
        }
        for body in ["", "not json {", "{\"Records\": [", "42"] {
            assert!(decode_body(body).is_err(), "{body:?}");
        }
    }

    #[test]
    fn errors_do_not_echo_huge_bodies() {
        let huge = format!("not json {}", "x".repeat(100_000));
        let e = decode_body(&huge).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.len() < 600, "{} bytes", e.len());
        let e = err(json!({"bucket": "b", "key": "k", "x".repeat(100_000): 1})).to_string();
        assert!(e.len() < 600, "{} bytes", e.len());
        let e = err(json!({"x".repeat(100_000): 1})).to_string();
        assert!(e.len() < 600, "{} bytes", e.len());
    }

    #[test]
    fn sqs_batch_reports_per_message() {
        let good = json!({"Records": [s3_record("ObjectCreated:Put", "a.txt")]}).to_string();
        let cmd = json!({"bucket": "src", "key": "c.txt"}).to_string();
        let batch = json!({"Records": [
            {"messageId": "m1", "eventSource": "aws:sqs", "body": good},
            {"messageId": "m2", "eventSource": "aws:sqs", "body": "not json {"},
            {"messageId": "m3", "eventSource": "aws:sqs", "body": cmd},
            {"messageId": "m4", "eventSource": "aws:sqs"},
            {"eventSource": "aws:sqs", "body": "{}"}
        ]});
        let Ok(Incoming::Sqs(items)) = decode_invocation(&batch) else { panic!("expected an SQS batch") };
        let ids: Vec<&str> = items.iter().map(|i| i.message_id.as_str()).collect();
        assert_eq!(ids, ["m1", "m2", "m3", "m4", ""]);
        assert_eq!(items[0].tasks.as_ref().map(|t| t[0].object.key.clone()).ok().as_deref(), Some("a.txt"));
        assert!(items[1].tasks.as_ref().is_err_and(|e| e.message().contains("not JSON")));
        assert_eq!(items[2].tasks.as_ref().map(|t| t[0].object.key.clone()).ok().as_deref(), Some("c.txt"));
        assert!(items[3].tasks.as_ref().is_err_and(|e| e.message().contains("no body")));
        assert!(items[4].tasks.as_ref().is_err_and(|e| e.message().contains("messageId")));
    }

    #[test]
    fn sequencers_order_as_aws_documents() {
        // Right-padded with zeros, then compared: "A" is "A0000...", which is after "0FFF...".
        assert_eq!(compare_sequencers("0055AED6DCD90281E5", "0055AED6DCD90281E6"), Ordering::Less);
        assert_eq!(compare_sequencers("0055AED6DCD90281E5", "0055AED6DCD90281E5"), Ordering::Equal);
        assert_eq!(compare_sequencers("0055AED6DCD90281E5", "0055AED6DCD90281"), Ordering::Greater);
        assert_eq!(compare_sequencers("0055AED6DCD902", "0055AED6DCD90281"), Ordering::Less);
        assert_eq!(compare_sequencers("AB", "AB00"), Ordering::Equal);
        assert_eq!(compare_sequencers("A", "0FFFFFFFFFFFFFFFFF"), Ordering::Greater);
        // Case does not matter: EventBridge sends lower case.
        assert_eq!(compare_sequencers("617f08299329d189", "617F08299329D189"), Ordering::Equal);
        assert_eq!(compare_sequencers("617f08299329d189", "617f0837b476e463"), Ordering::Less);
        assert_eq!(sequencer_order("617f08299329d189"), "617F08299329D1890000000000000000");
        assert_eq!(sequencer_order("").len(), 32);
        // Longer than the pad width: still right under plain string comparison.
        let long = format!("{}1", "F".repeat(32));
        assert_eq!(compare_sequencers(&long, &"F".repeat(32)), Ordering::Greater);
        assert_eq!(compare_sequencers(&format!("{}0", "F".repeat(32)), &"F".repeat(32)), Ordering::Equal);
        // Not hex: deterministic.
        assert_eq!(compare_sequencers("zz", "zz"), Ordering::Equal);
        assert_eq!(compare_sequencers("moto-1", "moto-2"), Ordering::Less);
        // Plain string order of the normalised form agrees with compare_sequencers.
        let mut seqs = ["0055AED6DCD90281E5", "0055aed6dcd90281", "A", "0062E99A88DC407460", "617f0837b476e463", "1"];
        seqs.sort_by(|a, b| compare_sequencers(a, b));
        let normalised: Vec<String> = seqs.iter().map(|s| sequencer_order(s)).collect();
        assert!(normalised.windows(2).all(|w| w[0] <= w[1]), "{normalised:?}");
    }

    #[test]
    fn example_fixtures_decode_as_documented() {
        let load = |name: &str, text: &str| -> Incoming {
            let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
            decode_invocation(&v).unwrap_or_else(|e| panic!("{name}: {e}"))
        };
        let direct = |name: &str, text: &str| match load(name, text) {
            Incoming::Direct(t) => t,
            Incoming::Sqs(_) => panic!("{name}: expected a direct invocation"),
        };
        let sqs = |name: &str, text: &str| match load(name, text) {
            Incoming::Sqs(items) => items,
            Incoming::Direct(_) => panic!("{name}: expected an SQS batch"),
        };
        const BUCKET: &str = "xcr-source-123456789012-us-east-1";

        let put = direct("s3-put", include_str!("../../examples/events/s3-put.json"));
        assert_eq!(put.len(), 1);
        assert_eq!((put[0].action, put[0].object.bucket.as_str()), (Action::Copy, BUCKET));
        assert_eq!(put[0].object.key, "examples/hello world.txt");
        // No versionId: the fixtures are replayed against the local stack, where that version does not exist.
        assert!(put[0].sequencer.is_some() && put[0].object.version_id.is_none());

        let del = direct("s3-delete", include_str!("../../examples/events/s3-delete.json"));
        assert_eq!((del.len(), del[0].action), (1, Action::Delete));

        let batch = sqs("sqs-batch", include_str!("../../examples/events/sqs-batch.json"));
        let mut keys = Vec::new();
        for item in &batch {
            let t = item.tasks.as_ref().unwrap_or_else(|e| panic!("{}: {e}", item.message_id));
            keys.extend(t.iter().map(|t| t.object.key.clone()));
        }
        assert_eq!(keys, ["examples/a.txt", "examples/b.txt", "examples/c.txt"]);

        let sns = sqs("sns-wrapped", include_str!("../../examples/events/sns-wrapped.json"));
        assert_eq!(sns.len(), 1);
        assert_eq!(sns[0].tasks.as_ref().map(|t| t[0].object.key.clone()).ok().as_deref(), Some("examples/sns.txt"));

        let eb = direct("eventbridge", include_str!("../../examples/events/eventbridge.json"));
        assert_eq!((eb.len(), eb[0].action, eb[0].object.key.as_str()), (1, Action::Copy, "examples/eb.txt"));

        assert!(direct("test-event", include_str!("../../examples/events/test-event.json")).is_empty());

        let bad = sqs("malformed", include_str!("../../examples/events/malformed.json"));
        assert_eq!(bad.len(), 1);
        assert!(bad[0].tasks.as_ref().is_err_and(|e| e.kind() == ErrorKind::Invalid));
    }
}
