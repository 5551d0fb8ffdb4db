//! xcr replicates S3 objects into Google Cloud Storage: streamed, verified, exactly once in effect.
//!
//! The code map, with the entry points and the invariants the whole code keeps, is
//! `docs/architecture.md`. Every module, from the inside out:
//!
//! * Domain: [`domain::names`] (`S3Url`, `GsUrl` and bucket-name rules, parsed once),
//!   [`model`] (plain data), [`error`] (one error type; its kind decides retry, HTTP
//!   status and DLQ fate), [`events`] (payloads decoded into tasks, pure), [`routing`] (rules:
//!   bucket and key to destinations), [`replicate`] (the use case every entry point shares),
//!   [`budget`] (when a copy stops for a continuation), [`redelivery`] (when a failed SQS record
//!   comes back), [`jobs`] (migration job rules, pure), [`migrate`] (the job driver and sweep),
//!   [`status`] (per-object status from the ledger), [`audit`] (drift audit of S3 against GCS),
//!   [`audit_job`] (an audit job's page task), [`audit_report`] (an audit report as an object).
//! * Ports: [`ports`] (the traits the use cases talk through: source, sink, ledger, queue,
//!   job store, ...).
//! * The streaming engine: [`transfer`] (chunking, pipelining, checksums, resumption) and
//!   [`retry`] (the one retry policy for what the AWS SDK does not retry).
//! * Adapters: [`aws`] (S3, the DynamoDB ledger and job store, SQS, Lambda; SDK error
//!   classification) and [`gcs`] (the GCS upload protocols and Google auth).
//! * Entry-point logic: [`handler`] (the replicate function's answers to its triggers),
//!   [`pump`] (the local event source and DLQ redrive), [`api`] (the HTTP API Router),
//!   [`copy`] (`xcr copy`: a bucket copied from one machine with the same engine and ledger).
//! * Wiring and cross-cutting: [`config`] (the environment, read and validated once),
//!   [`wiring`] (adapters built from the config), [`ledger`] (ledger choice), [`telemetry`]
//!   (JSON logs), [`metrics`] (CloudWatch EMF lines).

pub mod api;
pub mod audit;
pub mod audit_job;
pub mod audit_report;
pub mod aws;
pub mod budget;
pub mod config;
pub mod copy;
pub mod domain;
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
