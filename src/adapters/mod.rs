//! Adapters: the ports implemented against real services. Each speaks one protocol and
//! classifies its failures into [`crate::ErrorKind`] where they are first seen.

pub mod aws;
pub mod gcs;
