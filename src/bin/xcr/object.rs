//! `xcr replicate` and `xcr status`: one object.

use crate::exit::{Exit, Failure};
use std::time::Duration;
use xcr::config::{Config, Needs};
use xcr::domain::model::{Destination, ObjectRef};
use xcr::domain::names::{GsUrl, S3Url, UrlError};
use xcr::{ErrorKind, wiring};

#[derive(clap::Args)]
pub struct ReplicateArgs {
    /// The source, as s3://BUCKET/KEY (the key as it is, not URL-encoded).
    source: String,
    /// gs://BUCKET (same key), gs://BUCKET/NAME, or gs://BUCKET/PREFIX/ (prefix + key).
    /// Default: the same key in XCR_DEST_BUCKET.
    #[arg(long)]
    dest: Option<String>,
    /// Copy this version of the object (default: the current one).
    #[arg(long)]
    version_id: Option<String>,
    /// Print the outcome as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Seconds the ledger lease lasts past the claim and past each upload checkpoint. A run
    /// that dies (killed, crashed) blocks the destination this long; the next run then
    /// continues its upload. Must exceed the time one chunk takes to upload.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    lease: u64,
}

#[derive(clap::Args)]
pub struct StatusArgs {
    /// The object, as s3://BUCKET/KEY.
    source: String,
    /// Look at this destination (gs://BUCKET, gs://BUCKET/NAME or gs://BUCKET/PREFIX/)
    /// instead of the routing rules'.
    #[arg(long)]
    dest: Option<String>,
    /// Print the status as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Copies one object. Needs: S3, GCS, and a destination unless `--dest` names one; the
/// ledger only when `XCR_LEDGER_TABLE` is set (without it every run copies).
pub async fn replicate(args: ReplicateArgs) -> Result<Exit, Failure> {
    let (obj, dest) = parse_targets(&args.source, args.dest.as_deref(), args.version_id)?;
    let needs = Needs { destination: dest.is_none(), ..Needs::default() };
    let cfg = Config::from_env(needs)?;
    let lease = Duration::from_secs(args.lease);
    // A command has no deadline to bound its lease by: it holds the lease for `lease`, renewed
    // as the upload makes progress, so that a rerun after a crash waits at most that long.
    let replicator = wiring::replicator(&cfg).await?.with_lease_ttl(Some(lease));
    let deadline = xcr::domain::replicate::now_ms() + lease.as_millis() as i64;
    let r = replicator.replicate(&obj, dest, deadline).await.map_err(|e| {
        let not_found = e.kind() == ErrorKind::NotFound;
        let f = Failure::from(e);
        if not_found { f.exit(Exit::NotFound) } else { f }
    })?;
    if args.json {
        let line = serde_json::to_string(&r)
            .map_err(|e| Failure::new(Exit::Failed, "internal", format!("cannot encode the outcome: {e}")))?;
        println!("{line}");
    } else {
        let bytes = r.bytes.map(|b| format!(" ({b} bytes, crc32c {})", r.crc32c.as_deref().unwrap_or("?")));
        println!(
            "{} s3://{}/{} -> gs://{}/{}{}{} in {} ms",
            r.outcome.as_str(),
            r.source.bucket,
            r.source.key,
            r.destination.bucket,
            r.destination.name,
            bytes.unwrap_or_default(),
            r.detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default(),
            r.duration_ms
        );
    }
    Ok(match r.outcome {
        // Outside XCR_ALLOWED_DESTINATIONS: a configuration matter, like a bad --dest.
        xcr::domain::replicate::Outcome::Refused => Exit::Usage,
        o if o.needs_retry() => Exit::Failed,
        _ => Exit::Ok,
    })
}

/// What the ledger records for one object. Needs: the ledger table, and a destination
/// (routing) unless `--dest` names one; never GCS, a queue or the jobs table.
pub async fn status(args: StatusArgs) -> Result<Exit, Failure> {
    let (obj, dest) = parse_targets(&args.source, args.dest.as_deref(), None)?;
    let needs = Needs { ledger: true, destination: dest.is_none(), no_gcs: true, ..Needs::default() };
    let cfg = Config::from_env(needs)?;
    let destinations = match dest {
        Some(d) => vec![d],
        None => wiring::router(&cfg)?.route(&obj.bucket, &obj.key),
    };
    if destinations.is_empty() {
        return Err(Failure::usage(format!("no routing rule matches {obj}; name a destination with --dest")));
    }
    let sdk = xcr::adapters::aws::with_timeouts(&xcr::adapters::aws::sdk_config().await, cfg.transfer.request_timeout);
    let table = cfg.ledger_table.as_deref().unwrap_or_default();
    let ledger = xcr::wiring::ledger::AnyLedger::Dynamo(xcr::adapters::aws::ledger::DynamoLedger::new(&sdk, table));
    let now = xcr::domain::replicate::now_ms();
    let Some(st) = xcr::domain::status::object_status(&ledger, &obj.bucket, &obj.key, &destinations, now).await? else {
        return Err(Failure::new(Exit::NotFound, "not_found", format!("nothing is recorded for {obj}")));
    };
    if args.json {
        let line = serde_json::to_string(&st)
            .map_err(|e| Failure::new(Exit::Failed, "internal", format!("cannot encode the status: {e}")))?;
        println!("{line}");
        return Ok(Exit::Ok);
    }
    println!("s3://{}/{}", st.bucket, st.key);
    for d in &st.destinations {
        let mut line = format!("  {}: {}", d.destination, d.state);
        if let Some(done) = &d.done {
            line.push_str(&format!(" | last {} at {}", done.action, done.done_at));
            let fields = [
                ("generation", done.generation.clone()),
                ("bytes", done.size.map(|s| s.to_string())),
                ("crc32c", done.crc32c.clone()),
                ("version", done.source_version_id.clone()),
                ("etag", done.source_etag.clone()),
                ("lag", done.lag_seconds.map(|l| format!("{l:.1} s"))),
                ("job", done.job_id.clone()),
            ];
            for (name, v) in fields {
                if let Some(v) = v {
                    line.push_str(&format!(", {name} {v}"));
                }
            }
        }
        if let Some(f) = &d.failure {
            line.push_str(&format!(" | failed ({}) at {}: {}", f.kind, f.at, f.message));
        }
        if let Some(offset) = d.upload_offset {
            line.push_str(&format!(" | upload checkpoint at {offset} bytes"));
        }
        println!("{line}");
    }
    Ok(Exit::Ok)
}

/// Parses a `--dest` flag as a [`GsUrl`], with the usage messages the CLI has always given;
/// `shape` is the message for something that is not a `gs://` URL at all.
pub fn dest_url(d: &str, shape: &'static str) -> Result<GsUrl, Failure> {
    GsUrl::parse(d).map_err(|e| match e {
        UrlError::Shape(_) => Failure::usage(shape),
        UrlError::Bucket(why) => {
            let b = d.trim_start_matches("gs://").split('/').next().unwrap_or_default();
            Failure::usage(format!("--dest bucket {b:?}: {why}"))
        }
        other => Failure::usage(format!("--dest: {other}")),
    })
}

/// Parses `s3://BUCKET/KEY` and `gs://BUCKET[/NAME]`.
pub fn parse_targets(
    source: &str,
    dest: Option<&str>,
    version_id: Option<String>,
) -> Result<(ObjectRef, Option<Destination>), Failure> {
    let shape = || Failure::usage("the source must look like s3://BUCKET/KEY, with a bucket and a key");
    let src = S3Url::parse(source).map_err(|_| shape())?;
    let (bucket, key) = (src.bucket.as_str(), src.key.as_str());
    if key.is_empty() {
        return Err(shape());
    }
    let obj = ObjectRef::new(bucket, key).with_version(version_id);
    let dest = match dest {
        None => None,
        Some(d) => {
            let url = dest_url(d, "--dest must look like gs://BUCKET[/NAME]")?;
            let (b, name) = (url.bucket.as_str(), url.path.as_str());
            let name = if name.is_empty() {
                key.to_string()
            } else if name.ends_with('/') {
                format!("{name}{key}")
            } else {
                name.to_string()
            };
            Some(Destination::new(b, name))
        }
    };
    Ok((obj, dest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        let (o, d) = parse_targets("s3://src/a b/c+d.txt", Some("gs://dst/pre/"), None).expect("ok");
        assert_eq!((o.bucket.as_str(), o.key.as_str()), ("src", "a b/c+d.txt"));
        assert_eq!(d.map(|d| d.name), Some("pre/a b/c+d.txt".to_string()));
        let (_, d) = parse_targets("s3://src/k", Some("gs://dst"), None).expect("ok");
        assert_eq!(d.map(|d| d.name), Some("k".to_string()));
        assert!(parse_targets("src/k", None, None).is_err_and(|f| f.exit == Exit::Usage));
        assert!(parse_targets("s3://src/", None, None).is_err());
        assert!(parse_targets("s3://src/k", Some("gs://BAD"), None).is_err());
    }
}
