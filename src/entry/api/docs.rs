//! `/openapi.json`, generated from the handlers' and types' annotations (never written by
//! hand), and `/docs`, a self-contained page rendered from that same document: it works
//! without a CDN, on an air-gapped network, and cannot drift from the code.

use super::{copy_requests, error, health, jobs, objects};
use axum::Json;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa::OpenApi;
use utoipa::openapi::path::Operation;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "xcr",
        description = "Replicates S3 objects into Google Cloud Storage. Every route is behind IAM \
            (SigV4) in the cloud; the function itself only reads buckets in XCR_ALLOWED_SOURCE_BUCKETS. \
            Errors are always {\"error\": {\"code\", \"message\", \"request_id\"}}."
    ),
    paths(
        health::root,
        health::health,
        copy_requests::replicate_one,
        copy_requests::replicate_batch,
        jobs::create_job,
        jobs::list_jobs,
        jobs::get_job,
        jobs::cancel_job,
        objects::object_status,
        openapi_json,
        docs_page,
    ),
    components(schemas(error::ErrorBody, error::ErrorDetail)),
    tags(
        (name = "service", description = "What this is and whether its dependencies answer"),
        (name = "replicate", description = "Copy named objects now, and see what was recorded for one"),
        (name = "jobs", description = "Migration (backfill) jobs and drift audit jobs"),
    )
)]
/// The OpenAPI document of every route, served as `/openapi.json` and rendered at `/docs`.
pub struct ApiDoc;

/// The OpenAPI document of this API.
#[utoipa::path(get, path = "/openapi.json", tag = "service", responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json", body = Object)))]
pub async fn openapi_json() -> impl IntoResponse {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    split_job_spec(&mut doc);
    Json(doc)
}

/// The job spec as the two shapes `JobSpec::validate` accepts, one per kind (`oneOf`), so that
/// a request the schema calls valid is one the API takes: a copy job (`kind` absent or `copy`;
/// no `repair`, no `report`) or an audit job (`kind: audit` with a `destination`; no manifest,
/// filters, dry run or overwrite policy). The derive describes one struct with every field;
/// these cross-field rules cannot be said in its attributes.
fn split_job_spec(doc: &mut serde_json::Value) {
    use serde_json::json;
    let Some(spec) = doc.pointer_mut("/components/schemas/JobSpec") else { return };
    let props = spec["properties"].clone();
    let Some(names) = props.as_object().map(|m| m.keys().cloned().collect::<Vec<_>>()) else { return };
    let mut copy = props.clone();
    copy["kind"] = json!({"type": "string", "enum": ["copy"], "description": "A copy job (the default)."});
    copy["repair"] = json!({"type": "boolean", "enum": [false]});
    copy["report"] = json!({"type": "null"});
    let mut audit = serde_json::Map::new();
    for name in names {
        let schema = match name.as_str() {
            "kind" => json!({"type": "string", "enum": ["audit"]}),
            "overwrite" => json!({"type": "string", "enum": ["different"]}),
            "dry_run" => json!({"type": "boolean", "enum": [false]}),
            "include_prefixes" | "exclude_prefixes" => json!({"type": "array", "maxItems": 0}),
            "manifest" => json!({"type": "null"}),
            "destination" => {
                let mut d = props["destination"].clone();
                d["type"] = json!("string");
                d
            }
            _ => props[&name].clone(),
        };
        audit.insert(name, schema);
    }
    let description = spec.get("description").cloned().unwrap_or(json!("A job spec."));
    *spec = json!({
        "description": description,
        "oneOf": [
            {"title": "copy job", "type": "object", "required": ["source_bucket"], "properties": copy,
             "additionalProperties": false},
            {"title": "audit job", "type": "object", "required": ["kind", "source_bucket", "destination"],
             "properties": audit, "additionalProperties": false},
        ],
    });
}

/// A human-readable page of every endpoint.
#[utoipa::path(get, path = "/docs", tag = "service", responses((status = 200, description = "HTML", content_type = "text/html", body = String)))]
pub async fn docs_page() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], render(&ApiDoc::openapi()))
}

fn render(doc: &utoipa::openapi::OpenApi) -> String {
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>xcr API</title><style>\
         body{font:15px/1.5 system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}\
         code,pre{background:#f4f4f4;padding:.1em .3em;border-radius:3px}h2{margin-top:2em;border-bottom:1px solid #ddd}\
         .m{display:inline-block;min-width:4em;font-weight:bold}td{padding:.1em .8em .1em 0;vertical-align:top}</style>\
         </head><body>",
    );
    html.push_str(&format!(
        "<h1>{} API <small>{}</small></h1><p>{}</p><p>Machine-readable: <a href=\"/openapi.json\">/openapi.json</a>.</p>",
        esc(&doc.info.title),
        esc(&doc.info.version),
        esc(doc.info.description.as_deref().unwrap_or(""))
    ));
    for (path, item) in &doc.paths.paths {
        let ops: [(&str, &Option<Operation>); 4] =
            [("GET", &item.get), ("POST", &item.post), ("PUT", &item.put), ("DELETE", &item.delete)];
        for (method, op) in ops {
            let Some(op) = op else { continue };
            html.push_str(&format!(
                "<h2><span class=\"m\">{method}</span> <code>{}</code></h2><p>{}</p>",
                esc(path),
                esc(op.summary.as_deref().unwrap_or(""))
            ));
            if let Some(d) = &op.description {
                html.push_str(&format!("<p>{}</p>", esc(d)));
            }
            if let Some(body) = &op.request_body
                && let Some(content) = body.content.get("application/json")
            {
                html.push_str(&format!("<p>Body: <code>{}</code></p>", esc(&schema_name(&content.schema))));
            }
            html.push_str("<table>");
            for (status, resp) in &op.responses.responses {
                let text = match resp {
                    utoipa::openapi::RefOr::T(r) => r.description.clone(),
                    utoipa::openapi::RefOr::Ref(r) => r.ref_location.clone(),
                };
                html.push_str(&format!("<tr><td><b>{}</b></td><td>{}</td></tr>", esc(status), esc(&text)));
            }
            html.push_str("</table>");
        }
    }
    html.push_str("</body></html>");
    html
}

fn schema_name(s: &Option<utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>>) -> String {
    match s {
        Some(utoipa::openapi::RefOr::Ref(r)) => r.ref_location.rsplit('/').next().unwrap_or("").to_string(),
        _ => "JSON".into(),
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
