//! xcr replicates S3 objects into Google Cloud Storage: streamed, verified, exactly once in effect.
//!
//! The map, from the inside out:
//! * [`model`]: plain data (object references, destinations, metadata).
//! * [`error`]: one error type, classified once into retryable or not and an HTTP status.
//! * [`ports`]: the traits the use cases talk through ([`ports::ObjectSource`], [`ports::ObjectSink`]).
//! * [`transfer`]: the streaming engine: chunking, pipelining, checksums, resumption; [`budget`]:
//!   when a copy stops for a continuation.
//! * [`events`]: notification payloads decoded into tasks (pure).
//! * [`replicate`]: the use case every entry point shares.
//! * [`handler`]: the replicate function's answers to its triggers; [`redelivery`]: when a failed
//!   SQS record comes back.
//! * [`aws`], [`gcs`]: adapters for S3 and the GCS upload APIs.
//! * [`config`]: the environment, read and validated once; [`wiring`] builds the adapters from it.
//! * [`copy`]: `xcr copy`, a bucket copied from one machine with the same engine and ledger.
//! * [`telemetry`]: JSON logs; [`metrics`]: CloudWatch EMF lines.

pub mod api;
pub mod audit;
pub mod aws;
pub mod budget;
pub mod config;
pub mod copy;
pub mod error;
pub mod events;
pub mod gcs;
pub mod handler;
pub mod jobs;
pub mod ledger;
pub mod metrics;
pub mod migrate;
pub mod model;
pub mod ports;
pub mod pump;
pub mod redelivery;
pub mod replicate;
pub mod retry;
pub mod routing;
pub mod status;
pub mod telemetry;
pub mod transfer;
pub mod wiring;

pub use error::{Error, ErrorKind, Result};
