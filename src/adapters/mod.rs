//! Adapters: the ports implemented against real services (`aws`, `gcs`), each speaking one
//! protocol and classifying its failures into [`crate::ErrorKind`] where they are first seen;
//! and in memory (`memory`), as reference models of the same contracts for fast tests.

pub mod aws;
pub mod gcs;
pub mod memory;
