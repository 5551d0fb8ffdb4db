//! The domain: values and rules with no I/O, no SDK type and no configuration.

pub mod names;
