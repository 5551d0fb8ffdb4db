//! The use case every entry point shares: copy one S3 object to its GCS destination, verified.
//!
//! The S3 trigger, the SQS trigger, the CLI, the API and migration jobs all end up here, so the
//! rules about what a copy is (streamed, pinned, checksummed, with metadata and provenance) live
//! in one place.

use crate::error::{Error, ErrorKind, Result};
use crate::model::{Destination, ObjectRef};
use crate::ports::{ObjectSink, ObjectSource};
use crate::transfer::{Transfer, TransferReport};
use serde::Serialize;
use tracing::Instrument;

/// How a replication ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The object was copied and verified.
    Replicated,
}

/// The result of one replication, as the CLI prints it and the API returns it.
#[derive(Debug, Clone, Serialize)]
pub struct Replication {
    pub outcome: Outcome,
    pub source: SourceSummary,
    pub destination: DestinationSummary,
    pub bytes: u64,
    pub crc32c: String,
    #[serde(flatten)]
    pub report: TransferReport,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SourceSummary {
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
    pub etag: String,
    pub size: u64,
    pub last_modified: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DestinationSummary {
    pub bucket: String,
    pub name: String,
    pub generation: String,
}

pub struct Replicator<S, K> {
    transfer: Transfer<S, K>,
    default_bucket: Option<String>,
}

impl<S: ObjectSource, K: ObjectSink> Replicator<S, K> {
    pub fn new(transfer: Transfer<S, K>, default_bucket: Option<String>) -> Self {
        Self { transfer, default_bucket }
    }

    pub fn transfer(&self) -> &Transfer<S, K> {
        &self.transfer
    }

    /// Where `obj` goes when the caller names no destination: the same key in the default bucket.
    pub fn default_destination(&self, obj: &ObjectRef) -> Result<Destination> {
        self.default_bucket
            .as_ref()
            .map(|b| Destination::new(b.clone(), obj.key.clone()))
            .ok_or_else(|| Error::new(ErrorKind::Config, format!("{obj}: no destination configured (XCR_DEST_BUCKET)")))
    }

    /// Copies `obj` to `dest` (or the default destination) and verifies the copy.
    pub async fn replicate(&self, obj: &ObjectRef, dest: Option<Destination>) -> Result<Replication> {
        let dest = match dest {
            Some(d) => d,
            None => self.default_destination(obj)?,
        };
        let span = tracing::info_span!("replicate", object = %obj, destination = %dest);
        async {
            validate_key(&obj.key)?;
            let report =
                self.transfer.copy(obj, &dest).await.map_err(|e| e.context(format_args!("{obj} -> {dest}")))?;
            tracing::info!(
                bytes = report.source.size,
                crc32c = %report.crc32c,
                generation = %report.stored.generation,
                method = ?report.method,
                chunks = report.chunks,
                resumed_chunks = report.resumed_chunks,
                elapsed_ms = report.elapsed.as_millis() as u64,
                "replicated"
            );
            Ok(Replication {
                outcome: Outcome::Replicated,
                source: SourceSummary {
                    bucket: obj.bucket.clone(),
                    key: obj.key.clone(),
                    version_id: report.source.version_id.clone(),
                    etag: report.source.etag.clone(),
                    size: report.source.size,
                    last_modified: report.source.last_modified.clone(),
                },
                destination: DestinationSummary {
                    bucket: report.stored.bucket.clone(),
                    name: report.stored.name.clone(),
                    generation: report.stored.generation.clone(),
                },
                bytes: report.source.size,
                crc32c: report.crc32c.clone(),
                duration_ms: report.elapsed.as_millis() as u64,
                report,
            })
        }
        .instrument(span)
        .await
    }
}

/// S3 keys and GCS object names are both 1 to 1,024 bytes of UTF-8.
pub fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > 1024 {
        return Err(Error::new(ErrorKind::Invalid, format!("key must be 1 to 1024 bytes, got {}", key.len())));
    }
    if key.contains(['\r', '\n']) {
        return Err(Error::new(ErrorKind::Invalid, "GCS object names cannot contain carriage returns or line feeds"));
    }
    Ok(())
}
