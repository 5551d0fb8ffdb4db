//! Object keys: the rule every key meets before anything is read, and the ledger key of a
//! destination object.

use crate::domain::error::{Error, ErrorKind, Result};
use crate::domain::model::Destination;

/// The ledger key of a destination object.
pub fn ledger_key(dest: &Destination) -> String {
    format!("gs://{}/{}", dest.bucket, dest.name)
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
