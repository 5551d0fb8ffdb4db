//! The domain: the data, the rules and the one use case, with no SDK type and no configuration.
//! Adapters are reached only through [`crate::ports`].

pub mod audit;
pub mod budget;
pub mod error;
pub mod events;
pub mod model;
pub mod names;
pub mod redelivery;
pub mod replicate;
pub mod routing;
pub mod status;
