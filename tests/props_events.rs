//! Hostile input for event decoding (`src/domain/events.rs`), as property tests: whatever arrives —
//! arbitrary JSON, arbitrary text, real fixtures from `examples/events/` with parts deleted,
//! replaced or garbled, at any depth and inside JSON-in-a-string bodies — decoding never panics,
//! and its contract holds:
//! * a rejected payload is an `invalid` error (never retried) with a non-empty message of
//!   bounded length, so a 256 KiB body never ends up whole in a log line;
//! * in an SQS batch each record is decoded alone: it has its own result, an unreadable record
//!   is an error with a message, and garbling one record never changes another's tasks;
//! * every task decoded names a non-empty bucket and key;
//! * a key S3 form-encodes comes back exactly (`+` is a space, `%XX` a byte).
//!
//! Case counts are modest so the file runs in seconds; `PROPTEST_CASES` raises them.

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Map, Value, json};
use std::path::PathBuf;
use xcr::domain::error::ErrorKind;
use xcr::domain::events::{Incoming, Task, decode_body, decode_invocation, decode_key};

/// Error messages quote at most a short excerpt of foreign input (200 characters each).
const MAX_MESSAGE: usize = 4096;

fn fixtures() -> Vec<(String, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/events");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .expect("examples/events")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("fixture");
            (
                p.file_name().expect("name").to_string_lossy().into_owned(),
                serde_json::from_str(&text).expect("fixture JSON"),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 5, "expected the fixtures in {}", dir.display());
    out
}

/// Field names the decoder looks for, so generated objects reach deep into its branches.
const FIELDS: &[&str] = &[
    "Records",
    "eventSource",
    "eventName",
    "eventTime",
    "body",
    "messageId",
    "s3",
    "bucket",
    "name",
    "object",
    "key",
    "versionId",
    "sequencer",
    "Sns",
    "Message",
    "Type",
    "Event",
    "detail-type",
    "source",
    "detail",
    "version-id",
    "time",
    "requestPayload",
    "requestContext",
    "destination",
    "version_id",
    "action",
    "job_id",
    "overwrite",
];

/// Values the decoder gives meaning to.
const WORDS: &[&str] = &[
    "aws:sqs",
    "aws:s3",
    "aws.s3",
    "ObjectCreated:Put",
    "ObjectRemoved:Delete",
    "s3:ObjectCreated:Copy",
    "ObjectRestore:Post",
    "Nope:Thing",
    "s3:TestEvent",
    "Notification",
    "Object Created",
    "Object Deleted",
    "Object Tags Added",
    "gs://dest-bucket/name",
    "gs://",
    "gs://UPPER/x",
    "copy",
    "delete",
    "always",
    "sometimes",
    "%",
    "%zz",
    "%C3",
    "%C3%A9",
    "+",
    "a+b%2Bc",
    "",
    " ",
    "\u{0}",
    "é",
    "🚀",
    "{\"Records\": []}",
    "not json {",
];

fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(WORDS).prop_map(str::to_string),
        2 => any::<String>(),
        1 => "[a-zA-Z0-9%+/ ._-]{0,40}",
        // Long text: error messages must quote only an excerpt of it.
        1 => "[a-z%+]{300,3000}",
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        arb_string().prop_map(Value::String),
    ];
    let key = prop_oneof![3 => prop::sample::select(FIELDS).prop_map(str::to_string), 1 => any::<String>()];
    leaf.prop_recursive(5, 96, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner.clone()), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<String, Value>>())),
            // A JSON document inside a string, as SQS bodies and SNS messages carry them.
            inner.prop_map(|v| Value::String(v.to_string())),
        ]
    })
}

/// Checks the decoder's contract on one payload; panics (failing the property) otherwise.
fn check_invocation(payload: &Value) {
    match decode_invocation(payload) {
        Ok(Incoming::Direct(tasks)) => check_tasks(&tasks),
        Ok(Incoming::Sqs(items)) => {
            let records = payload["Records"].as_array().expect("an SQS batch has Records");
            assert_eq!(items.len(), records.len(), "one result per SQS record");
            for item in &items {
                match &item.tasks {
                    Ok(tasks) => {
                        assert!(!item.message_id.is_empty(), "a decoded record has its message id");
                        check_tasks(tasks);
                    }
                    Err(e) => check_error(e),
                }
            }
        }
        Err(e) => check_error(&e),
    }
}

fn check_tasks(tasks: &[Task]) {
    for t in tasks {
        assert!(!t.object.bucket.is_empty(), "a task with an empty bucket: {t:?}");
        assert!(!t.object.key.is_empty(), "a task with an empty key: {t:?}");
    }
}

fn check_error(e: &xcr::Error) {
    assert_eq!(e.kind(), ErrorKind::Invalid, "a decoding error is `invalid`: {e}");
    let message = e.chain();
    assert!(!message.trim().is_empty(), "an error without a message");
    let head: String = message.chars().take(200).collect();
    assert!(message.len() <= MAX_MESSAGE, "an error message of {} bytes: {head}...", message.len());
}

/// Every node of `v` by path (object keys and array indexes).
fn paths(v: &Value, here: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    out.push(here.clone());
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                here.push(Step::Key(k.clone()));
                paths(child, here, out);
                here.pop();
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                here.push(Step::Index(i));
                paths(child, here, out);
                here.pop();
            }
        }
        _ => {}
    }
}

#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

fn node<'a>(v: &'a mut Value, path: &[Step]) -> &'a mut Value {
    path.iter().fold(v, |v, step| match step {
        Step::Key(k) => &mut v[k.as_str()],
        Step::Index(i) => &mut v[*i],
    })
}

/// One structural mutation.
#[derive(Debug, Clone)]
enum Mutation {
    /// Remove the node (from its object or list).
    Delete,
    /// Replace the node with another value.
    Replace(Value),
    /// Garble a string node's text: cut it, or insert text into it.
    Garble(Index, String),
}

fn arb_mutation() -> impl Strategy<Value = (Index, Mutation)> {
    let m = prop_oneof![
        Just(Mutation::Delete),
        arb_json().prop_map(Mutation::Replace),
        (any::<Index>(), arb_string()).prop_map(|(i, s)| Mutation::Garble(i, s)),
    ];
    (any::<Index>(), m)
}

/// Applies `m` at the node `at` picks. A string holding JSON (an SQS body, an SNS message) is
/// mutated inside, half the time, and written back as text.
fn mutate(v: &mut Value, at: &Index, m: &Mutation, depth: usize) {
    let mut all = Vec::new();
    paths(v, &mut Vec::new(), &mut all);
    let path = at.get(&all).clone();
    let target = node(v, &path);
    if let Value::String(s) = target
        && depth < 3
        && at.index(2) == 0
        && let Ok(mut inner) = serde_json::from_str::<Value>(s)
        && inner.is_object()
    {
        mutate(&mut inner, at, m, depth + 1);
        *target = Value::String(inner.to_string());
        return;
    }
    match m {
        Mutation::Replace(new) => *target = new.clone(),
        Mutation::Garble(i, text) => {
            let s = match &*target {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let chars: Vec<char> = s.chars().collect();
            let cut = i.index(chars.len() + 1);
            let garbled: String = if text.len() % 2 == 0 {
                chars[..cut].iter().collect()
            } else {
                chars[..cut].iter().copied().chain(text.chars()).chain(chars[cut..].iter().copied()).collect()
            };
            *target = Value::String(garbled);
        }
        Mutation::Delete => {
            let Some((last, parent)) = path.split_last() else {
                *v = Value::Null;
                return;
            };
            match (node(v, parent), last) {
                (Value::Object(o), Step::Key(k)) => {
                    o.remove(k);
                }
                (Value::Array(a), Step::Index(i)) => {
                    a.remove(*i);
                }
                _ => {}
            }
        }
    }
}

/// S3's notification encoding of a key (form encoding: `+` for a space).
fn form_encode(key: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'*');
    percent_encoding::utf8_percent_encode(key, KEEP).to_string().replace("%20", "+")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_json_never_panics_and_rejections_say_why(payload in arb_json()) {
        check_invocation(&payload);
        // The same value as an SQS body, and wrapped in an SQS batch.
        if let Err(e) = decode_body(&payload.to_string()) {
            check_error(&e);
        }
        check_invocation(&json!({ "Records": [
            { "messageId": "m-1", "eventSource": "aws:sqs", "body": payload.to_string() },
            { "messageId": "m-2", "eventSource": "aws:sqs", "body": payload },
        ]}));
    }

    #[test]
    fn arbitrary_text_bodies_never_panic(body in prop_oneof![any::<String>(), "[\\[\\]{}\":,a-z0-9 \\\\]{0,200}"]) {
        if let Err(e) = decode_body(&body) {
            check_error(&e);
        }
        check_invocation(&json!({ "Records": [{ "messageId": "m", "eventSource": "aws:sqs", "body": body }] }));
        if let Err(e) = decode_key(&body) {
            check_error(&e);
        }
    }

    #[test]
    fn mutated_fixtures_never_panic(which in any::<Index>(), mutations in prop::collection::vec(arb_mutation(), 1..4)) {
        let all = fixtures();
        let (_, mut payload) = which.get(&all).clone();
        for (at, m) in &mutations {
            mutate(&mut payload, at, m, 0);
        }
        check_invocation(&payload);
        if let Err(e) = decode_body(&payload.to_string()) {
            check_error(&e);
        }
    }

    #[test]
    fn one_garbled_sqs_record_leaves_the_others_alone(pick in any::<Index>(), (at, mutation) in arb_mutation()) {
        let batch = fixtures().into_iter().find(|(n, _)| n == "sqs-batch.json").expect("sqs-batch.json").1;
        let records = batch["Records"].as_array().expect("Records").clone();
        prop_assume!(records.len() >= 2);
        let victim = pick.index(records.len());
        let before = match decode_invocation(&batch) {
            Ok(Incoming::Sqs(items)) => items,
            other => panic!("the fixture is an SQS batch: {other:?}"),
        };
        let mut garbled = batch.clone();
        mutate(&mut garbled["Records"][victim], &at, &mutation, 0);
        // A record garbled out of the batch shape is a different payload altogether.
        prop_assume!(garbled["Records"][0]["eventSource"] == "aws:sqs");
        check_invocation(&garbled);
        let after = match decode_invocation(&garbled) {
            Ok(Incoming::Sqs(items)) => items,
            other => panic!("still an SQS batch: {other:?}"),
        };
        prop_assert_eq!(after.len(), before.len());
        for (i, (a, b)) in after.iter().zip(&before).enumerate() {
            if i != victim {
                prop_assert_eq!(&a.message_id, &b.message_id);
                prop_assert_eq!(a.tasks.as_ref().ok(), b.tasks.as_ref().ok(), "record {} changed", i);
            }
        }
    }

    #[test]
    fn form_encoded_keys_decode_exactly(key in "\\PC{1,60}", bucket in "[a-z0-9][a-z0-9.-]{2,20}") {
        let event = json!({ "Records": [{
            "eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "eventTime": "2026-11-23T00:00:00Z",
            "s3": { "bucket": { "name": bucket }, "object": { "key": form_encode(&key), "sequencer": "00AB" } }
        }]});
        match decode_invocation(&event) {
            Ok(Incoming::Direct(tasks)) => {
                prop_assert_eq!(tasks.len(), 1);
                prop_assert_eq!(&tasks[0].object.key, &key);
                prop_assert_eq!(&tasks[0].object.bucket, &bucket);
            }
            other => panic!("a valid notification decodes: {other:?}"),
        }
        prop_assert_eq!(decode_key(&form_encode(&key)).ok(), Some(key));
    }
}

/// The mutations above are not all trivially rejected: over a fixed-seed sample, a fair share of
/// mutated fixtures still decodes to tasks and a fair share is refused, so both the accepting and
/// the refusing paths are exercised. And a 256 KiB body is refused with a short message.
#[test]
fn mutations_reach_both_accepted_and_rejected_paths() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let all = fixtures();
    let strategy = (any::<Index>(), prop::collection::vec(arb_mutation(), 1..3));
    let mut runner = TestRunner::deterministic();
    let (mut with_tasks, mut refused) = (0, 0);
    let n = 400;
    for _ in 0..n {
        let (which, mutations) = strategy.new_tree(&mut runner).expect("sample").current();
        let mut payload = which.get(&all).1.clone();
        for (at, m) in &mutations {
            mutate(&mut payload, at, m, 0);
        }
        check_invocation(&payload);
        match decode_invocation(&payload) {
            Ok(Incoming::Direct(t)) if !t.is_empty() => with_tasks += 1,
            Ok(Incoming::Sqs(items)) if items.iter().any(|i| i.tasks.as_ref().is_ok_and(|t| !t.is_empty())) => {
                with_tasks += 1;
            }
            Err(_) => refused += 1,
            Ok(Incoming::Sqs(items)) if items.iter().any(|i| i.tasks.is_err()) => refused += 1,
            _ => {}
        }
    }
    assert!(with_tasks > n / 10, "only {with_tasks} of {n} mutated fixtures still decoded to tasks");
    assert!(refused > n / 10, "only {refused} of {n} mutated fixtures were refused");

    let huge = format!("{{\"Records\": [{{\"s3\": \"{}\"}}]}}", "x".repeat(256 * 1024));
    let e = decode_body(&huge).expect_err("not an S3 record");
    check_error(&e);
    let e = decode_body(&"y".repeat(256 * 1024)).expect_err("not JSON");
    check_error(&e);
}
