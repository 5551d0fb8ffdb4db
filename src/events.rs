//! Event payloads -> replication tasks. Pure code: no I/O, no SDK types.
//!
//! S3 URL-encodes object keys in notifications the way HTML forms do: `+` is a space and
//! everything else is `%XX` (emulators also encode `/`). Keys are decoded exactly once, here.

use crate::error::{Error, ErrorKind, Result};
use crate::model::ObjectRef;
use serde::Deserialize;

/// What a notification asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    /// Copy this object (ObjectCreated:*).
    Copy { object: ObjectRef, sequencer: Option<String> },
    /// This object was removed (ObjectRemoved:*).
    Delete { object: ObjectRef, sequencer: Option<String> },
}

#[derive(Deserialize)]
struct Notification {
    #[serde(rename = "Records", default)]
    records: Vec<Record>,
    #[serde(rename = "Event")]
    event: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    event_name: String,
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

/// Decodes an S3 event notification (as delivered to a Lambda or inside an SQS body).
/// `s3:TestEvent` yields no tasks.
pub fn decode_s3_notification(body: &serde_json::Value) -> Result<Vec<Task>> {
    let n: Notification = serde_json::from_value(body.clone())
        .map_err(|e| Error::new(ErrorKind::Invalid, format!("not an S3 event notification: {e}")))?;
    if n.event.as_deref() == Some("s3:TestEvent") {
        return Ok(Vec::new());
    }
    if n.records.is_empty() {
        return Err(Error::new(ErrorKind::Invalid, "S3 event notification without Records"));
    }
    n.records
        .into_iter()
        .map(|r| {
            let object =
                ObjectRef::new(r.s3.bucket.name, decode_key(&r.s3.object.key)?).with_version(r.s3.object.version_id);
            let sequencer = r.s3.object.sequencer.filter(|s| !s.is_empty());
            if r.event_name.starts_with("ObjectCreated:") {
                Ok(Task::Copy { object, sequencer })
            } else if r.event_name.starts_with("ObjectRemoved:") {
                Ok(Task::Delete { object, sequencer })
            } else {
                Err(Error::new(ErrorKind::Invalid, format!("unsupported S3 event {:?}", r.event_name)))
            }
        })
        .collect()
}

/// Decodes a key from an S3 notification: `+` is a space, `%XX` a byte; the bytes must be UTF-8.
pub fn decode_key(raw: &str) -> Result<String> {
    let spaced = raw.replace('+', " ");
    let decoded = percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map_err(|_| Error::new(ErrorKind::Invalid, format!("key {raw:?} does not decode to UTF-8")))?;
    if decoded.is_empty() {
        return Err(Error::new(ErrorKind::Invalid, "empty object key"));
    }
    Ok(decoded.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_decode_once_with_plus_as_space() {
        assert_eq!(decode_key("a+b%2Bc%25d").ok().as_deref(), Some("a b+c%d"));
        assert_eq!(decode_key("dir%2Fsub%2F%C3%A9t%C3%A9.txt").ok().as_deref(), Some("dir/sub/été.txt"));
        assert_eq!(decode_key("plain/key.txt").ok().as_deref(), Some("plain/key.txt"));
        assert!(decode_key("%FF%FE").is_err());
    }

    #[test]
    fn notification_becomes_tasks() {
        let ev = json!({"Records": [
            {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "src"},
              "object": {"key": "a+b.txt", "versionId": "v1", "sequencer": "0055AED6DCD90281E5"}}},
            {"eventName": "ObjectRemoved:Delete", "s3": {"bucket": {"name": "src"}, "object": {"key": "gone"}}}
        ]});
        let tasks = decode_s3_notification(&ev).expect("decodes");
        assert_eq!(tasks.len(), 2);
        assert_eq!(
            tasks[0],
            Task::Copy {
                object: ObjectRef::new("src", "a b.txt").with_version(Some("v1".into())),
                sequencer: Some("0055AED6DCD90281E5".into())
            }
        );
        assert!(matches!(&tasks[1], Task::Delete { object, .. } if object.key == "gone"));
    }

    #[test]
    fn test_event_is_ignored_and_garbage_is_an_error() {
        assert_eq!(
            decode_s3_notification(&json!({"Event": "s3:TestEvent", "Service": "Amazon S3"})).ok(),
            Some(vec![])
        );
        assert!(decode_s3_notification(&json!({"hello": 1})).is_err());
        assert!(decode_s3_notification(&json!([1, 2])).is_err());
    }
}
