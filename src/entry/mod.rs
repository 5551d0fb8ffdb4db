//! Entry-point logic in the library: what the Lambda functions and the CLI run, independent of
//! the Lambda runtime and of argument parsing (those stay in `functions/` and `src/bin/xcr/`).

pub mod api;
pub mod copy;
pub mod handler;
pub mod pump;
