//! Routing: which GCS objects an S3 object is copied to. Pure once built: [`Router::route`] does no
//! I/O, so every entry point (events, API, migration jobs) routes the same key the same way.
//!
//! Two settings feed it, and both may be set:
//! * `XCR_DEST_BUCKET`: a GCS bucket that receives every object of every source bucket under the
//!   same name. It applies only when no rule matches.
//! * `XCR_RULES`: routing rules, as inline JSON (the value starts with `[` or `{`) or as the path
//!   of a JSON file holding them.
//!
//! # Rules
//!
//! Either a list of rules or `{"rules": [...]}`. Each rule:
//!
//! ```json
//! {
//!   "source_bucket": "my-s3-bucket",
//!   "prefix": "logs/",
//!   "suffix": ".gz",
//!   "exclude_prefixes": ["logs/tmp/"],
//!   "destinations": [
//!     {"bucket": "my-gcs-archive", "key_prefix": "archive/", "storage_class": "NEARLINE"},
//!     {"bucket": "my-gcs-mirror"}
//!   ]
//! }
//! ```
//!
//! * `source_bucket` (required): the S3 bucket the rule applies to; `"*"` matches any bucket.
//! * `prefix` (default `""`): the key must start with it.
//! * `suffix` (optional): the key must end with it.
//! * `exclude_prefixes` (optional): keys starting with any of these are not matched.
//! * `destinations` (at least one): where matching objects go.
//!   * `bucket` (required): the GCS bucket (a `gs://` prefix is accepted and dropped).
//!   * `key_prefix` (optional): replaces the rule's `prefix` at the start of the key, so with
//!     `"prefix": "logs/"` and `"key_prefix": "archive/"`, `logs/a.gz` becomes `archive/a.gz`
//!     (`""` strips the prefix). Absent: the key is kept unchanged.
//!   * `storage_class` (optional): `STANDARD`, `NEARLINE`, `COLDLINE` or `ARCHIVE` (any case);
//!     absent, the bucket's default class applies.
//!
//! Unknown fields are errors, so that a misspelt `prefx` does not silently widen a rule. Keys
//! are compared as raw (decoded) S3 keys, byte for byte: no globbing, no case folding.
//!
//! Every rule that matches contributes its destinations, so one object can fan out to several
//! buckets; a destination reached twice (same bucket and object name) is copied once, with the
//! settings of the first rule that produced it. An object name must be 1 to 1024 bytes, GCS's
//! limit; a rewrite that would produce an empty or longer name drops that destination (the others
//! still apply) rather than failing later in the upload. When nothing matches, and no default
//! bucket is set, [`Router::route`] returns no destination: the object is skipped, which is not an
//! error.
//!
//! # Two source buckets never share a destination name
//!
//! The ledger orders the writes to one destination object by the S3 sequencer (or version) of
//! its source; sequencers of two different buckets cannot be compared, and two buckets writing
//! one name would overwrite each other. So a configuration in which objects of two different
//! source buckets can reach the same GCS object name is refused when it is loaded
//! ([`Router::check_collisions`], run by [`crate::config::Config::from_vars`]), with a message
//! naming both sources and the destination. What is decided, conservatively:
//!
//! * A route for any bucket (`XCR_DEST_BUCKET`, or a rule with `"source_bucket": "*"`) keeps
//!   keys' names whatever their bucket. It is accepted only when the source buckets are known
//!   to be one: `XCR_ALLOWED_SOURCE_BUCKETS` names a single bucket (it is then that bucket's
//!   route). With two or more buckets allowed, a `prefix*` entry or `*`, it is refused: give each
//!   source bucket its own rule with its own `key_prefix` or destination bucket.
//! * Two routes from different source buckets into the same GCS bucket are refused when their
//!   destination names can overlap: one's name prefix (`key_prefix`, or the rule's `prefix`
//!   when the key is kept) starts with the other's, and their suffixes do not exclude each
//!   other. `XCR_DEST_BUCKET` can produce any name of its bucket. `exclude_prefixes` are not
//!   taken into account (the check stays simple and errs on the side of refusing).
//! * Without `XCR_ALLOWED_SOURCE_BUCKETS` the source buckets are not declared, and a route for
//!   any bucket is taken as the route of the deployment's one source bucket: the API then reads
//!   no bucket at all (default deny) and the deployed functions' role reads only the source
//!   bucket. Set the variable wherever more than one bucket can feed xcr.

use crate::config::validate_gcs_bucket;
use crate::error::{Error, ErrorKind, Result};
use crate::model::Destination;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashSet;

/// GCS's limit on object names, in bytes of UTF-8.
const MAX_NAME_BYTES: usize = 1024;

/// The storage classes a destination may ask for.
const STORAGE_CLASSES: [&str; 4] = ["STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE"];

/// (bucket, key) -> destinations, from the default bucket and the routing rules.
#[derive(Debug, Clone, Default)]
pub struct Router {
    rules: Vec<Rule>,
    default_bucket: Option<String>,
}

#[derive(Debug, Clone)]
struct Rule {
    /// `None` for `"*"`.
    source_bucket: Option<String>,
    prefix: String,
    suffix: Option<String>,
    exclude_prefixes: Vec<String>,
    destinations: Vec<RuleDestination>,
}

#[derive(Debug, Clone)]
struct RuleDestination {
    bucket: String,
    key_prefix: Option<String>,
    storage_class: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    source_bucket: String,
    #[serde(default)]
    prefix: String,
    suffix: Option<String>,
    #[serde(default)]
    exclude_prefixes: Vec<String>,
    /// Deserialised one by one in [`check_rule`], so that a bad destination does not hide the
    /// problems of the others.
    destinations: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DestinationSpec {
    bucket: String,
    key_prefix: Option<String>,
    storage_class: Option<String>,
}

impl Router {
    /// `dest_bucket` = XCR_DEST_BUCKET (same key into that bucket, for every source bucket),
    /// `rules` = XCR_RULES: inline JSON (starts with '[' or '{') or a path to a JSON file.
    /// Both may be set: rules first; if no rule matches, the default bucket applies.
    ///
    /// Fails with [`ErrorKind::Config`] listing every problem found, not just the first, so that
    /// one deployment fixes them all. Blank values count as unset.
    pub fn new(dest_bucket: Option<&str>, rules: Option<&str>) -> Result<Self> {
        let mut problems = Vec::new();
        let default_bucket =
            dest_bucket.map(str::trim).filter(|b| !b.is_empty()).and_then(|b| match validate_gcs_bucket(b) {
                Ok(()) => Some(strip_gs(b).to_owned()),
                Err(why) => {
                    problems.push(format!("XCR_DEST_BUCKET={b:?}: {why}"));
                    None
                }
            });
        let rules = match rules.map(str::trim).filter(|r| !r.is_empty()) {
            None => Vec::new(),
            Some(text) => parse_rules(text, &mut problems),
        };
        if problems.is_empty() {
            Ok(Self { rules, default_bucket })
        } else {
            Err(Error::new(ErrorKind::Config, format!("routing configuration: {}", problems.join("; "))))
        }
    }

    /// The destinations of one S3 object; empty = no route (skipped, not an error).
    pub fn route(&self, bucket: &str, key: &str) -> Vec<Destination> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut matched = false;
        for rule in self.rules.iter().filter(|r| r.matches(bucket, key)) {
            matched = true;
            for d in &rule.destinations {
                let name = match (&d.key_prefix, key.strip_prefix(rule.prefix.as_str())) {
                    (Some(new_prefix), Some(rest)) => format!("{new_prefix}{rest}"),
                    _ => key.to_owned(),
                };
                if !valid_name(&name) || !seen.insert((d.bucket.clone(), name.clone())) {
                    continue;
                }
                out.push(Destination { bucket: d.bucket.clone(), name, storage_class: d.storage_class.clone() });
            }
        }
        if !matched
            && let Some(b) = &self.default_bucket
            && valid_name(key)
        {
            out.push(Destination::new(b.clone(), key));
        }
        out
    }

    /// Every GCS bucket a route can write to (the default bucket first), once each: what a
    /// health check has to reach.
    pub fn buckets(&self) -> Vec<String> {
        let mut out: Vec<String> = self.default_bucket.iter().cloned().collect();
        for d in self.rules.iter().flat_map(|r| &r.destinations) {
            if !out.contains(&d.bucket) {
                out.push(d.bucket.clone());
            }
        }
        out
    }

    /// True when nothing can ever be routed: no default bucket and no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.default_bucket.is_none()
    }
}

/// The S3 buckets objects can come from, as configuration declares them
/// (`XCR_ALLOWED_SOURCE_BUCKETS`, see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sources<'a> {
    /// Not declared: a route for any bucket is the route of the deployment's one bucket.
    Undeclared,
    /// Exactly these buckets.
    Named(&'a [String]),
    /// A bucket-name prefix or `*`: any number of buckets.
    Unbounded,
}

/// One way objects reach a GCS bucket: from `source` (`None`: any bucket), under names that
/// start with `prefix` (and end with `suffix`, when set).
struct Producer<'a> {
    source: Option<&'a str>,
    bucket: &'a str,
    prefix: &'a str,
    suffix: Option<&'a str>,
    what: String,
}

impl Producer<'_> {
    fn describe(&self) -> String {
        let from = self.source.map_or_else(|| "any source bucket".to_string(), |b| format!("s3://{b}"));
        format!("{} ({from} -> gs://{}/{}*)", self.what, self.bucket, self.prefix)
    }

    /// Whether two producers can write the same object name.
    fn overlaps(&self, other: &Producer<'_>) -> bool {
        let suffixes_agree = match (self.suffix, other.suffix) {
            (Some(a), Some(b)) => a.ends_with(b) || b.ends_with(a),
            _ => true,
        };
        self.bucket == other.bucket
            && (self.prefix.starts_with(other.prefix) || other.prefix.starts_with(self.prefix))
            && suffixes_agree
    }
}

impl Router {
    /// Refuses a configuration in which objects of two different source buckets can reach the
    /// same GCS object name (the rules are in the module doc), with one line per collision
    /// naming both routes, their sources and the destination, and how to fix it.
    pub fn check_collisions(&self, sources: Sources<'_>) -> Result<()> {
        let mut producers: Vec<Producer<'_>> = Vec::new();
        if let Some(b) = &self.default_bucket {
            producers.push(Producer {
                source: None,
                bucket: b,
                prefix: "",
                suffix: None,
                what: "XCR_DEST_BUCKET".into(),
            });
        }
        for (i, rule) in self.rules.iter().enumerate() {
            for (j, d) in rule.destinations.iter().enumerate() {
                producers.push(Producer {
                    source: rule.source_bucket.as_deref(),
                    bucket: &d.bucket,
                    prefix: d.key_prefix.as_deref().unwrap_or(&rule.prefix),
                    suffix: rule.suffix.as_deref(),
                    what: format!("rules[{i}].destinations[{j}]"),
                });
            }
        }
        let mut problems = Vec::new();
        let fix = "give each source bucket its own rule with its own key_prefix or destination bucket";
        let any: Vec<&Producer<'_>> = producers.iter().filter(|p| p.source.is_none()).collect();
        match sources {
            Sources::Named([one]) => {
                for p in producers.iter_mut().filter(|p| p.source.is_none()) {
                    p.source = Some(one.as_str());
                }
            }
            Sources::Named(many) if many.len() > 1 => {
                for p in any {
                    problems.push(format!(
                        "{} keeps the same names for every source bucket, and XCR_ALLOWED_SOURCE_BUCKETS allows \
                         {} and {}: their objects would overwrite each other ({fix})",
                        p.describe(),
                        many[0],
                        many[1]
                    ));
                }
            }
            Sources::Unbounded => {
                for p in any {
                    problems.push(format!(
                        "{} keeps the same names for every source bucket, and XCR_ALLOWED_SOURCE_BUCKETS allows any \
                         number of buckets (a prefix* or *): two of them would overwrite each other ({fix})",
                        p.describe()
                    ));
                }
            }
            Sources::Named(_) | Sources::Undeclared => {}
        }
        for (i, a) in producers.iter().enumerate() {
            for b in &producers[i + 1..] {
                if let (Some(sa), Some(sb)) = (a.source, b.source)
                    && sa != sb
                    && a.overlaps(b)
                {
                    problems.push(format!(
                        "{} and {} can write the same object names of gs://{}: objects of s3://{sa} and s3://{sb} \
                         would overwrite each other ({fix})",
                        a.describe(),
                        b.describe(),
                        a.bucket
                    ));
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::new(ErrorKind::Config, format!("routing configuration: {}", problems.join("; "))))
        }
    }
}

impl Rule {
    fn matches(&self, bucket: &str, key: &str) -> bool {
        self.source_bucket.as_deref().is_none_or(|b| b == bucket)
            && key.starts_with(self.prefix.as_str())
            && self.suffix.as_deref().is_none_or(|s| key.ends_with(s))
            && !self.exclude_prefixes.iter().any(|p| key.starts_with(p.as_str()))
    }
}

fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME_BYTES).contains(&name.len())
}

fn strip_gs(bucket: &str) -> &str {
    bucket.strip_prefix("gs://").unwrap_or(bucket)
}

/// Reads and checks the rules, pushing one line per problem.
fn parse_rules(text: &str, problems: &mut Vec<String>) -> Vec<Rule> {
    let (origin, json) = if text.starts_with('[') || text.starts_with('{') {
        ("XCR_RULES".to_owned(), text.to_owned())
    } else {
        match std::fs::read_to_string(text) {
            Ok(json) => (format!("XCR_RULES file {text}"), json),
            Err(e) => {
                problems.push(format!(
                    "XCR_RULES: cannot read rules file {text:?} ({e}); inline JSON must start with '[' or '{{'"
                ));
                return Vec::new();
            }
        }
    };
    let value: Value = match serde_json::from_str(&json) {
        Ok(v) => v,
        Err(e) => {
            problems.push(format!("{origin}: not valid JSON: {e}"));
            return Vec::new();
        }
    };
    let specs = match value {
        Value::Array(list) => list,
        Value::Object(mut obj) => {
            let extra: Vec<String> = obj.keys().filter(|k| *k != "rules").cloned().collect();
            if !extra.is_empty() {
                problems.push(format!("{origin}: unknown field(s) {extra:?} next to \"rules\""));
            }
            match obj.remove("rules") {
                Some(Value::Array(list)) => list,
                _ => {
                    problems.push(format!("{origin}: expected a list of rules or {{\"rules\": [...]}}"));
                    return Vec::new();
                }
            }
        }
        _ => {
            problems.push(format!("{origin}: expected a list of rules or {{\"rules\": [...]}}"));
            return Vec::new();
        }
    };
    if specs.is_empty() {
        problems.push(format!("{origin}: no rules (unset XCR_RULES to route everything to XCR_DEST_BUCKET)"));
    }
    let mut rules = Vec::with_capacity(specs.len());
    for (i, spec) in specs.into_iter().enumerate() {
        let at = format!("{origin}: rules[{i}]");
        match RuleSpec::deserialize(&spec) {
            Ok(spec) => {
                if let Some(rule) = check_rule(spec, &at, problems) {
                    rules.push(rule);
                }
            }
            Err(e) => problems.push(format!("{at}: {e}")),
        }
    }
    rules
}

/// Validates one rule; `None` when it has problems (all of them pushed).
fn check_rule(spec: RuleSpec, at: &str, problems: &mut Vec<String>) -> Option<Rule> {
    let before = problems.len();
    let source_bucket = match spec.source_bucket.trim() {
        "" => {
            problems.push(format!("{at}.source_bucket: empty (use \"*\" for any bucket)"));
            None
        }
        "*" => None,
        b => Some(b.to_owned()),
    };
    if spec.prefix.len() > MAX_NAME_BYTES {
        problems.push(format!("{at}.prefix: longer than {MAX_NAME_BYTES} bytes, matches no S3 key"));
    }
    if spec.suffix.as_deref() == Some("") {
        problems.push(format!("{at}.suffix: empty (leave it out to match any ending)"));
    }
    for (j, p) in spec.exclude_prefixes.iter().enumerate() {
        if p.is_empty() {
            problems.push(format!("{at}.exclude_prefixes[{j}]: empty (it would exclude every key)"));
        }
    }
    if spec.destinations.is_empty() {
        problems.push(format!("{at}.destinations: at least one destination is needed"));
    }
    let mut destinations = Vec::with_capacity(spec.destinations.len());
    for (j, d) in spec.destinations.iter().enumerate() {
        let at = format!("{at}.destinations[{j}]");
        let d = match DestinationSpec::deserialize(d) {
            Ok(d) => d,
            Err(e) => {
                problems.push(format!("{at}: {e}"));
                continue;
            }
        };
        if let Err(why) = validate_gcs_bucket(&d.bucket) {
            problems.push(format!("{at}.bucket {:?}: {why}", d.bucket));
        }
        if let Some(p) = &d.key_prefix
            && p.len() > MAX_NAME_BYTES
        {
            problems.push(format!("{at}.key_prefix: longer than {MAX_NAME_BYTES} bytes"));
        }
        let storage_class = match d.storage_class.as_deref().map(str::to_ascii_uppercase) {
            None => None,
            Some(c) if STORAGE_CLASSES.contains(&c.as_str()) => Some(c),
            Some(c) => {
                problems.push(format!("{at}.storage_class {c:?}: expected one of {}", STORAGE_CLASSES.join(", ")));
                None
            }
        };
        destinations.push(RuleDestination {
            bucket: strip_gs(&d.bucket).to_owned(),
            key_prefix: d.key_prefix,
            storage_class,
        });
    }
    (problems.len() == before).then_some(Rule {
        source_bucket,
        prefix: spec.prefix,
        suffix: spec.suffix,
        exclude_prefixes: spec.exclude_prefixes,
        destinations,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn buckets_lists_every_destination_once() {
        let rules = r#"[{"source_bucket": "*", "destinations": [{"bucket": "b-one"}, {"bucket": "dflt"}]},
                        {"source_bucket": "x", "destinations": [{"bucket": "b-two"}, {"bucket": "b-one"}]}]"#;
        let r = Router::new(Some("dflt"), Some(rules)).expect("router");
        assert_eq!(r.buckets(), ["dflt", "b-one", "b-two"]);
        assert!(Router::new(None, None).expect("router").buckets().is_empty());
    }

    use super::*;
    use serde_json::json;

    fn router(dest: Option<&str>, rules: Value) -> Router {
        Router::new(dest, Some(&rules.to_string())).unwrap_or_else(|e| panic!("{e}"))
    }

    fn names(ds: &[Destination]) -> Vec<String> {
        ds.iter().map(|d| d.to_string()).collect()
    }

    #[test]
    fn default_bucket_only() {
        let r = Router::new(Some("gcs-dest"), None).unwrap_or_else(|e| panic!("{e}"));
        assert!(!r.is_empty());
        assert_eq!(r.route("any-src", "a/b c.txt"), vec![Destination::new("gcs-dest", "a/b c.txt")]);
        let r = Router::new(Some("gs://gcs-dest"), Some("  ")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(names(&r.route("s", "k")), ["gs://gcs-dest/k"]);
    }

    #[test]
    fn nothing_configured_routes_nothing() {
        let r = Router::new(None, None).unwrap_or_else(|e| panic!("{e}"));
        assert!(r.is_empty());
        assert!(r.route("b", "k").is_empty());
        assert!(Router::new(Some(""), None).is_ok_and(|r| r.is_empty()));
    }

    #[test]
    fn rules_only_and_no_match_is_empty() {
        let r = router(
            None,
            json!([{"source_bucket": "src", "prefix": "logs/", "destinations": [{"bucket": "logs-gcs"}]}]),
        );
        assert_eq!(names(&r.route("src", "logs/a.gz")), ["gs://logs-gcs/logs/a.gz"]);
        assert!(r.route("src", "data/a.gz").is_empty());
        assert!(r.route("other", "logs/a.gz").is_empty());
    }

    #[test]
    fn rules_first_then_default() {
        let r = router(
            Some("fallback"),
            json!({"rules": [{"source_bucket": "src", "prefix": "logs/", "destinations": [{"bucket": "logs-gcs"}]}]}),
        );
        assert_eq!(names(&r.route("src", "logs/a")), ["gs://logs-gcs/logs/a"]);
        assert_eq!(names(&r.route("src", "data/a")), ["gs://fallback/data/a"]);
        assert_eq!(names(&r.route("elsewhere", "logs/a")), ["gs://fallback/logs/a"]);
    }

    #[test]
    fn prefix_rewrite_and_storage_class() {
        let r = router(
            None,
            json!([{"source_bucket": "src", "prefix": "logs/", "destinations": [
                {"bucket": "archive", "key_prefix": "archive/2024/", "storage_class": "nearline"},
                {"bucket": "flat", "key_prefix": ""},
                {"bucket": "same"}
            ]}]),
        );
        let ds = r.route("src", "logs/app/é.gz");
        let want = ["gs://archive/archive/2024/app/é.gz", "gs://flat/app/é.gz", "gs://same/logs/app/é.gz"];
        assert_eq!(names(&ds), want);
        assert_eq!(ds[0].storage_class.as_deref(), Some("NEARLINE"));
        assert_eq!(ds[1].storage_class, None);
        // Stripping the whole key would leave an empty name: that destination is dropped.
        assert_eq!(names(&r.route("src", "logs/")), ["gs://archive/archive/2024/", "gs://same/logs/"]);
    }

    #[test]
    fn suffix_and_excludes() {
        let r = router(
            None,
            json!([{"source_bucket": "src", "prefix": "logs/", "suffix": ".gz",
                    "exclude_prefixes": ["logs/tmp/", "logs/private"], "destinations": [{"bucket": "gz-bucket"}]}]),
        );
        assert_eq!(r.route("src", "logs/a.gz").len(), 1);
        assert!(r.route("src", "logs/a.txt").is_empty());
        assert!(r.route("src", "logs/tmp/a.gz").is_empty());
        assert!(r.route("src", "logs/private-stuff/a.gz").is_empty());
    }

    #[test]
    fn fan_out_is_deduplicated() {
        let r = router(
            Some("fallback"),
            json!([
                {"source_bucket": "*", "destinations": [{"bucket": "everything"}]},
                {"source_bucket": "src", "prefix": "img/", "destinations": [
                    {"bucket": "images", "storage_class": "COLDLINE"}, {"bucket": "everything"}]},
                {"source_bucket": "src", "suffix": ".png",
                 "destinations": [{"bucket": "images", "storage_class": "ARCHIVE"}]}
            ]),
        );
        let ds = r.route("src", "img/a.png");
        assert_eq!(names(&ds), ["gs://everything/img/a.png", "gs://images/img/a.png"]);
        assert_eq!(ds[1].storage_class.as_deref(), Some("COLDLINE"), "the first rule's settings win");
        // "*" matched, so the default bucket does not apply.
        assert_eq!(names(&r.route("other-src", "x")), ["gs://everything/x"]);
    }

    #[test]
    fn long_names_are_dropped_not_fatal() {
        let r = router(
            None,
            json!([{"source_bucket": "*",
                    "destinations": [{"bucket": "long", "key_prefix": "p".repeat(1000)}, {"bucket": "same"}]}]),
        );
        let key = "k".repeat(100);
        assert_eq!(names(&r.route("s", &key)), [format!("gs://same/{key}")]);
    }

    #[test]
    fn rules_load_from_a_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("rules.json");
        let rules = json!({"rules": [{"source_bucket": "src", "destinations": [{"bucket": "from-file"}]}]});
        std::fs::write(&path, rules.to_string()).unwrap_or_else(|e| panic!("{e}"));
        let r = Router::new(None, path.to_str()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(names(&r.route("src", "k")), ["gs://from-file/k"]);

        let missing = dir.path().join("nope.json");
        let e = Router::new(None, missing.to_str()).err().map(|e| (e.kind(), e.to_string()));
        assert!(
            e.as_ref().is_some_and(|(k, m)| *k == ErrorKind::Config && m.contains("cannot read rules file")),
            "{e:?}"
        );
    }

    #[test]
    fn every_problem_is_listed_together() {
        let rules = json!([
            {"source_bucket": "", "destinations": []},
            {"source_bucket": "src", "prefx": "typo/", "destinations": [{"bucket": "ok"}]},
            {"source_bucket": "src", "suffix": "", "exclude_prefixes": [""], "destinations": [
                {"bucket": "Bad_Bucket"}, {"bucket": "ok", "storage_class": "GLACIER"}, {"bucket": "ok", "extra": 1}]}
        ]);
        let e = Router::new(Some("NOPE"), Some(&rules.to_string())).err().unwrap_or_else(|| panic!("accepted"));
        assert_eq!(e.kind(), ErrorKind::Config);
        let m = e.to_string();
        for want in [
            "XCR_DEST_BUCKET=\"NOPE\"",
            "rules[0].source_bucket: empty",
            "rules[0].destinations: at least one",
            "rules[1]: unknown field `prefx`",
            "rules[2].suffix: empty",
            "rules[2].exclude_prefixes[0]: empty",
            "rules[2].destinations[0].bucket \"Bad_Bucket\"",
            "rules[2].destinations[1].storage_class \"GLACIER\"",
            "rules[2].destinations[2]: unknown field `extra`",
        ] {
            assert!(m.contains(want), "missing {want:?} in: {m}");
        }
    }

    #[test]
    fn malformed_rule_documents_are_config_errors() {
        for text in ["[", "{\"rules\": 3}", "{\"rule\": []}", "[]", "{\"rules\": [], \"x\": 1}", "[1]"] {
            let e = Router::new(None, Some(text)).err();
            assert!(e.as_ref().is_some_and(|e| e.kind() == ErrorKind::Config), "{text}: {e:?}");
        }
    }
}
