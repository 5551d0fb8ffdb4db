//! xcr replicates S3 objects into Google Cloud Storage: streamed, verified, exactly once in effect.
//!
//! The code map, with the entry points and the invariants the whole code keeps, is
//! `docs/architecture.md`. The folders say the role, from the inside out:
//!
//! * [`domain`]: the data, the rules and the one use case, pure of SDK types and configuration:
//!   [`domain::names`] (`S3Url`, `GsUrl`, bucket-name rules, parsed once), [`domain::model`]
//!   (plain data), [`domain::error`] (one error type; its kind decides retry, HTTP status and
//!   DLQ fate), [`domain::events`] (payloads decoded into tasks), [`domain::routing`] (rules:
//!   bucket and key to destinations), [`domain::replicate`] (the use case every entry point
//!   shares), [`domain::budget`] (when a copy stops for a continuation),
//!   [`domain::redelivery`] (when a failed SQS record comes back), [`domain::status`]
//!   (per-object status from the ledger), [`domain::audit`] (drift audit of S3 against GCS).
//! * [`jobs`]: the job concept in one place: the spec, status machine and counters (pure),
//!   [`jobs::migrate`] (the driver and the sweep), [`jobs::audit_page`] (an audit job's page
//!   task), [`jobs::audit_report`] (an audit report as an object).
//! * [`ports`]: the traits the use cases talk through (source, sink, ledger, queue, job store).
//! * The streaming engine: [`transfer`] (chunking, pipelining, checksums, resumption) and
//!   [`retry`] (the one retry policy for what the AWS SDK does not retry).
//! * [`adapters`]: [`adapters::aws`] (S3, the DynamoDB ledger and job store, SQS, Lambda; SDK
//!   error classification), [`adapters::gcs`] (the GCS upload protocols and Google auth), and
//!   [`adapters::memory`] (every port in memory, held to the same conformance suites as the
//!   real ones: reference models for the fast test tier).
//! * [`entry`]: entry-point logic: [`entry::handler`] (the replicate function's answers to its
//!   triggers), [`entry::pump`] (the local event source and DLQ redrive), [`entry::api`] (the
//!   HTTP API Router), [`entry::copy`] (`xcr copy`: a bucket copied from one machine).
//! * Wiring and cross-cutting: [`config`] (the environment, read and validated once),
//!   [`wiring`] (adapters built from the config; [`wiring::ledger`], the ledger choice),
//!   [`telemetry`] (JSON logs), [`metrics`] (CloudWatch EMF lines).
//!
//! The crate root re-exports only [`Error`], [`ErrorKind`] and [`Result`]: every signature
//! in the crate uses them.
//!
//! Every public item is documented: `missing_docs` warns here, and clippy runs with
//! `-D warnings`.

#![warn(missing_docs)]

pub mod adapters;
pub mod config;
pub mod domain;
pub mod entry;
pub mod jobs;
pub mod metrics;
pub mod ports;
pub mod retry;
pub mod telemetry;
pub mod transfer;
pub mod wiring;

pub use domain::error::{Error, ErrorKind, Result};
