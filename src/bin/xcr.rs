//! `xcr`: the command line. Runs the same use cases the Lambda functions run, against whatever
//! the environment points at (the local stack from `.xcr/local.env`, LocalStack, or real clouds).
//!
//! Exit codes: 0 success; 1 the operation failed; 2 bad usage or configuration; 3 the source
//! object does not exist.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use std::process::ExitCode;
use xcr::config::{Config, Needs};
use xcr::model::{Destination, ObjectRef};
use xcr::{ErrorKind, wiring};

#[derive(Parser)]
#[command(name = "xcr", version, about = "Replicate S3 objects into Google Cloud Storage", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Copy one S3 object to GCS, streamed and verified, and print the outcome.
    Replicate {
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
        json: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    xcr::telemetry::init();
    match cli.command {
        Command::Replicate { source, dest, version_id, json } => {
            replicate(&source, dest.as_deref(), version_id, json).await
        }
    }
}

async fn replicate(source: &str, dest: Option<&str>, version_id: Option<String>, json: bool) -> ExitCode {
    let fail = |kind: &str, message: String, code: u8| {
        if json {
            println!("{}", serde_json::json!({"outcome": "failed", "error": {"kind": kind, "message": message}}));
        } else {
            eprintln!("xcr: {message}");
        }
        ExitCode::from(code)
    };
    let (obj, dest) = match parse_targets(source, dest, version_id) {
        Ok(t) => t,
        Err(e) => return fail("invalid", format!("{e:#}"), 2),
    };
    // With an explicit --dest no default bucket is needed.
    let needs = if dest.is_some() { Needs::default() } else { Needs::ROUTED };
    let cfg = match Config::from_env(needs) {
        Ok(c) => c,
        Err(e) => return fail("config", e.to_string(), 2),
    };
    let replicator = match wiring::replicator(&cfg).await {
        Ok(r) => r,
        Err(e) => return fail(e.kind().as_str(), e.chain(), 2),
    };
    match replicator.replicate(&obj, dest).await {
        Ok(r) => {
            if json {
                match serde_json::to_string(&r) {
                    Ok(s) => println!("{s}"),
                    Err(e) => return fail("internal", format!("cannot encode the outcome: {e}"), 1),
                }
            } else {
                println!(
                    "replicated s3://{}/{} ({} bytes) -> gs://{}/{} generation {} crc32c {} in {} ms",
                    r.source.bucket,
                    r.source.key,
                    r.bytes,
                    r.destination.bucket,
                    r.destination.name,
                    r.destination.generation,
                    r.crc32c,
                    r.duration_ms
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let code = match e.kind() {
                ErrorKind::NotFound => 3,
                ErrorKind::Config => 2,
                _ => 1,
            };
            fail(e.kind().as_str(), e.chain(), code)
        }
    }
}

/// Parses `s3://BUCKET/KEY` and `gs://BUCKET[/NAME]`.
fn parse_targets(
    source: &str,
    dest: Option<&str>,
    version_id: Option<String>,
) -> anyhow::Result<(ObjectRef, Option<Destination>)> {
    let rest = source.strip_prefix("s3://").context("the source must look like s3://BUCKET/KEY")?;
    let (bucket, key) = rest.split_once('/').context("the source must look like s3://BUCKET/KEY")?;
    if bucket.is_empty() || key.is_empty() {
        bail!("the source must look like s3://BUCKET/KEY, with a bucket and a key");
    }
    let obj = ObjectRef::new(bucket, key).with_version(version_id);
    let dest = match dest {
        None => None,
        Some(d) => {
            let rest = d.strip_prefix("gs://").context("--dest must look like gs://BUCKET[/NAME]")?;
            let (b, name) = rest.split_once('/').unwrap_or((rest, ""));
            xcr::config::validate_gcs_bucket(b).map_err(|why| anyhow::anyhow!("--dest bucket {b:?}: {why}"))?;
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
        assert!(parse_targets("src/k", None, None).is_err());
        assert!(parse_targets("s3://src/", None, None).is_err());
        assert!(parse_targets("s3://src/k", Some("gs://BAD"), None).is_err());
    }
}
