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

use crate::domain::error::{Error, ErrorKind, Result};
use crate::domain::model::Destination;
use crate::domain::names::{GsUrl, validate_gcs_bucket};
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
    /// Where an explicit destination (API request, job spec, queued command) may write
    /// (`XCR_ALLOWED_DESTINATIONS`; by default exactly where the routes write).
    allowed: DestAllowlist,
}

/// The variable that narrows or states where explicit destinations may write.
pub const ALLOWED_DESTINATIONS: &str = "XCR_ALLOWED_DESTINATIONS";

/// Where xcr may write in GCS: `(bucket, name prefix)` pairs; `""` is the whole bucket.
///
/// Why it exists: a caller of the API, the author of a job spec or anyone who can put a command
/// on the replicate queue names a `destination` of their own. Without a list, that is any object
/// name the Google service account can write, other replicas included. With it, an explicit
/// destination is honoured only inside what the deployment replicates to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestAllowlist {
    entries: Vec<(String, String)>,
}

impl DestAllowlist {
    /// Comma- or space-separated entries: `gs://bucket/prefix` (names starting with `prefix`),
    /// `gs://bucket` or `bucket` (the whole bucket). No wildcards: least privilege is spelt out.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let mut list = Self::default();
        for entry in text.split([',', ' ', '\n', '\t']).map(str::trim).filter(|e| !e.is_empty()) {
            // `gs://` is optional here: a bare bucket name is the whole bucket.
            let url = if entry.starts_with("gs://") { entry.to_string() } else { format!("gs://{entry}") };
            let GsUrl { bucket, path: prefix } = GsUrl::parse(&url)
                .map_err(|why| format!("{ALLOWED_DESTINATIONS}: {entry:?}: {why} (expected gs://bucket[/prefix])"))?;
            if prefix.contains('*') {
                return Err(format!(
                    "{ALLOWED_DESTINATIONS}: {entry:?}: no wildcards; a prefix already covers every name under it"
                ));
            }
            list.push(&bucket, &prefix);
        }
        Ok(list)
    }

    fn push(&mut self, bucket: &str, prefix: &str) {
        let entry = (bucket.to_owned(), prefix.to_owned());
        if !self.entries.contains(&entry) {
            self.entries.push(entry);
        }
    }

    /// Whether one destination object may be written.
    pub fn permits(&self, dest: &Destination) -> bool {
        self.permits_prefix(&dest.bucket, &dest.name)
    }

    /// Whether every name of `bucket` that starts with `prefix` may be written (a job's or a
    /// batch's `gs://bucket/prefix/` destination).
    pub fn permits_prefix(&self, bucket: &str, prefix: &str) -> bool {
        self.entries.iter().any(|(b, p)| b == bucket && prefix.starts_with(p.as_str()))
    }

    /// True when the list has no entry, so it permits no explicit destination.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries as `gs://bucket/prefix`, for messages.
    pub fn describe(&self) -> String {
        if self.entries.is_empty() {
            return "nothing".into();
        }
        self.entries.iter().map(|(b, p)| format!("gs://{b}/{p}")).collect::<Vec<_>>().join(", ")
    }
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
            let mut router = Self { rules, default_bucket, allowed: DestAllowlist::default() };
            router.allowed = router.routed_destinations();
            Ok(router)
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

    /// Exactly the names the routes write: the whole default bucket, and for each rule
    /// destination its bucket under its `key_prefix` (or the rule's `prefix` when the key is
    /// kept). The default of [`ALLOWED_DESTINATIONS`].
    pub fn routed_destinations(&self) -> DestAllowlist {
        let mut list = DestAllowlist::default();
        if let Some(b) = &self.default_bucket {
            list.push(b, "");
        }
        for rule in &self.rules {
            for d in &rule.destinations {
                list.push(&d.bucket, d.key_prefix.as_deref().unwrap_or(&rule.prefix));
            }
        }
        list
    }

    /// Replaces the default destination allowlist with `XCR_ALLOWED_DESTINATIONS` when it is
    /// set. Refused, at load, when a route writes outside it: the routes are the deployment's
    /// own writes, and a list that forbids them is a mistake no retry fixes.
    pub fn with_allowed_destinations(mut self, text: Option<&str>) -> Result<Self> {
        let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
            return Ok(self);
        };
        let list = DestAllowlist::parse(text).map_err(|why| Error::new(ErrorKind::Config, why))?;
        let outside: Vec<String> = self
            .routed_destinations()
            .entries
            .iter()
            .filter(|(b, p)| !list.permits_prefix(b, p))
            .map(|(b, p)| format!("gs://{b}/{p}"))
            .collect();
        if !outside.is_empty() {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "{ALLOWED_DESTINATIONS} ({}) does not cover where the routes write: {}; add them or change the routes",
                    list.describe(),
                    outside.join(", ")
                ),
            ));
        }
        self.allowed = list;
        Ok(self)
    }

    /// Where explicit destinations may write.
    pub fn allowed_destinations(&self) -> &DestAllowlist {
        &self.allowed
    }

    /// Whether `dest` may be written: what every entry point checks before it writes or queues.
    pub fn allows(&self, dest: &Destination) -> bool {
        self.allowed.permits(dest)
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
    use super::{DestAllowlist, Router};
    use crate::domain::model::Destination;

    #[test]
    fn destinations_default_to_exactly_where_the_routes_write() {
        let rules = r#"[{"source_bucket": "s", "prefix": "logs/", "destinations": [{"bucket": "arch", "key_prefix": "old/"}]},
                        {"source_bucket": "t", "prefix": "img/", "destinations": [{"bucket": "mirror"}]}]"#;
        let r = Router::new(None, Some(rules)).expect("router");
        assert!(r.allows(&Destination::new("arch", "old/x")));
        assert!(r.allows(&Destination::new("mirror", "img/a.png")));
        // Other names of a rule's bucket, other buckets: refused.
        assert!(!r.allows(&Destination::new("arch", "logs/x")));
        assert!(!r.allows(&Destination::new("mirror", "other/a.png")));
        assert!(!r.allows(&Destination::new("elsewhere", "img/a.png")));
        // XCR_DEST_BUCKET: the whole bucket.
        let d = Router::new(Some("gs://dflt"), None).expect("router");
        assert!(d.allows(&Destination::new("dflt", "any/name")));
        assert!(!d.allows(&Destination::new("dflt2", "any/name")));
        // Nothing configured: nothing allowed.
        assert!(!Router::new(None, None).expect("router").allows(&Destination::new("dflt", "x")));
    }

    #[test]
    fn an_explicit_destination_list_replaces_the_default_and_must_cover_the_routes() {
        let r = Router::new(Some("dflt"), None).expect("router");
        let wider = r.clone().with_allowed_destinations(Some("gs://dflt, gs://extra/copies/")).expect("covers");
        assert!(wider.allows(&Destination::new("extra", "copies/a")));
        assert!(!wider.allows(&Destination::new("extra", "a")));
        assert!(
            r.clone()
                .with_allowed_destinations(Some("  "))
                .expect("blank = default")
                .allows(&Destination::new("dflt", "a"))
        );
        let e = r.clone().with_allowed_destinations(Some("gs://dflt/only/")).expect_err("narrower than the route");
        assert!(
            e.to_string().contains("XCR_ALLOWED_DESTINATIONS (gs://dflt/only/) does not cover")
                && e.to_string().contains("gs://dflt/"),
            "{e}"
        );
        assert!(DestAllowlist::parse("gs://Bad_Bucket/x").is_err());
        assert!(DestAllowlist::parse("gs://b-1/logs/*").is_err_and(|e| e.contains("no wildcards")));
        let l = DestAllowlist::parse("plain-bucket gs://b-2/p/").expect("valid");
        assert!(
            l.permits_prefix("plain-bucket", "") && l.permits_prefix("b-2", "p/q/") && !l.permits_prefix("b-2", "q")
        );
    }

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
