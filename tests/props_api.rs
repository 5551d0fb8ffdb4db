//! Property tests of the API's request bodies: whatever arrives — arbitrary JSON, arbitrary
//! bytes, near-valid requests with hostile strings — the Router answers a 4xx in the one error
//! shape, never a 5xx or a panic, and what it accepts is exactly what the documented rules allow.
//!
//! The API is built with an empty allowlist (default deny) and unreachable endpoints: a request
//! that passes validation is answered 403 before any network call, so these run offline.

use axum::body::Body;
use axum::http::Request;
use proptest::prelude::*;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use tower::ServiceExt;
use xcr::api::Api;
use xcr::api::settings::ApiSettings;

struct Fixture {
    rt: tokio::runtime::Runtime,
    app: axum::Router,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
        let app = rt.block_on(async {
            // Port 9 (discard): nothing may be called; if something were, it would fail, not hang.
            let vars: HashMap<String, String> = [
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
                ("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9"),
                ("XCR_DEST_BUCKET", "dest-bucket"),
                ("XCR_LEDGER_TABLE", "ledger"),
                ("XCR_JOBS_TABLE", "jobs"),
                ("XCR_QUEUE_URL", "http://127.0.0.1:9/000000000000/q"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            let cfg = xcr::config::Config::from_vars(vars.clone(), Api::NEEDS).expect("config");
            let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .endpoint_url("http://127.0.0.1:9")
                .region(aws_config::Region::new("us-east-1"))
                .credentials_provider(aws_sdk_s3::config::Credentials::new("t", "t", None, None, "props"))
                .load()
                .await;
            let settings = ApiSettings::from_vars(&vars).expect("settings");
            assert!(settings.allow.is_empty(), "these properties rely on default deny");
            xcr::api::router(Arc::new(Api::new(&sdk, &cfg, settings).expect("api")))
        });
        Fixture { rt, app }
    })
}

/// POSTs `body` as JSON; returns the status and the parsed body.
fn post(path: &str, body: Vec<u8>) -> (u16, Value) {
    let f = fixture();
    f.rt.block_on(async {
        let req =
            Request::post(path).header("content-type", "application/json").body(Body::from(body)).expect("request");
        let resp = f.app.clone().oneshot(req).await.expect("answer");
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    })
}

/// A 4xx in the error shape, with a message and a request id.
fn assert_clear_error(status: u16, body: &Value) -> Result<(), TestCaseError> {
    prop_assert!((400..500).contains(&status), "status {status}: {body}");
    prop_assert!(body["error"]["code"].as_str().is_some_and(|c| !c.is_empty()), "{body}");
    prop_assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    prop_assert!(body["error"]["request_id"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    Ok(())
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::from),
            prop::collection::hash_map(
                prop_oneof![
                    Just("bucket".to_string()),
                    Just("key".to_string()),
                    Just("keys".to_string()),
                    Just("source_bucket".to_string()),
                    Just("destination".to_string()),
                    Just("async".to_string()),
                    ".{0,12}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Strings with the characters that break naive validators: empty, long, control, multi-byte.
fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z0-9.-]{1,70}",
        ".{0,30}",
        "[\\x00-\\x1f\\r\\n]{1,5}",
        "é{500,520}",
        "[a-z]{1020,1030}",
        "gs://[a-z_.-]{0,70}(/.{0,10})?",
    ]
}

fn s3_bucket_ok(b: &str) -> bool {
    xcr::config::validate_s3_bucket(b).is_ok()
}

fn key_ok(k: &str) -> bool {
    !k.is_empty() && k.len() <= 1024 && !k.contains(['\r', '\n'])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn any_json_body_gets_a_clear_4xx(body in arb_json(), path in prop_oneof![Just("/v1/replicate"), Just("/v1/replicate/batch"), Just("/v1/jobs")]) {
        let (status, answer) = post(path, body.to_string().into_bytes());
        assert_clear_error(status, &answer)?;
    }

    #[test]
    fn any_bytes_get_a_clear_4xx(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let (status, answer) = post("/v1/replicate", bytes);
        assert_clear_error(status, &answer)?;
    }

    /// Near-valid single requests: accepted (403, default deny) exactly when the documented rules
    /// hold; otherwise a 400 naming the problem.
    #[test]
    fn replicate_validation_follows_the_documented_rules(
        bucket in hostile_string(),
        key in hostile_string(),
        version in proptest::option::of(hostile_string()),
    ) {
        let mut body = json!({"bucket": bucket, "key": key});
        if let Some(v) = &version {
            body["version_id"] = json!(v);
        }
        let (status, answer) = post("/v1/replicate", body.to_string().into_bytes());
        assert_clear_error(status, &answer)?;
        let version_ok = version.as_deref().is_none_or(|v| !v.is_empty() && v.len() <= 1024 && !v.chars().any(char::is_control));
        let valid = s3_bucket_ok(&bucket) && key_ok(&key) && version_ok;
        prop_assert_eq!(status, if valid { 403 } else { 400 }, "{}", answer);
    }

    #[test]
    fn batch_validation_follows_the_documented_rules(
        bucket in "[a-z0-9.-]{3,20}",
        keys in prop::collection::vec(hostile_string(), 0..6),
        destination in proptest::option::of(hostile_string()),
    ) {
        let mut body = json!({"bucket": bucket, "keys": keys});
        if let Some(d) = &destination {
            body["destination"] = json!(d);
        }
        let (status, answer) = post("/v1/replicate/batch", body.to_string().into_bytes());
        assert_clear_error(status, &answer)?;
        let unique = keys.iter().collect::<std::collections::HashSet<_>>().len() == keys.len();
        let dest_ok = destination.as_deref().is_none_or(|d| xcr::jobs::parse_gs_prefix(d).is_ok());
        let valid = s3_bucket_ok(&bucket) && !keys.is_empty() && unique && keys.iter().all(|k| key_ok(k)) && dest_ok;
        prop_assert_eq!(status, if valid { 403 } else { 400 }, "{}", answer);
    }

    #[test]
    fn job_specs_are_validated_before_anything_is_stored(
        bucket in hostile_string(),
        manifest in proptest::option::of(hostile_string()),
        overwrite in prop_oneof![Just("different"), Just("never"), Just("always"), Just("sometimes"), Just("")],
    ) {
        let mut body = json!({"source_bucket": bucket, "overwrite": overwrite});
        if let Some(m) = &manifest {
            body["manifest"] = json!(m);
        }
        let (status, answer) = post("/v1/jobs", body.to_string().into_bytes());
        assert_clear_error(status, &answer)?;
        let spec_ok = s3_bucket_ok(&bucket)
            && ["different", "never", "always"].contains(&overwrite)
            && manifest.as_deref().is_none_or(|m| xcr::jobs::parse_s3_url(m).is_ok());
        prop_assert_eq!(status, if spec_ok { 403 } else { 400 }, "{}", answer);
    }
}
