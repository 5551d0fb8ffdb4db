//! Builds the real adapters from a [`Config`]: what every entry point does at cold start.

use crate::aws::s3::S3Source;
use crate::config::Config;
use crate::error::Result;
use crate::gcs::GcsClient;
use crate::gcs::auth::Auth;
use crate::replicate::Replicator;
use crate::transfer::Transfer;

/// The production replicator: S3 in, GCS out.
pub type S3ToGcs = Replicator<S3Source, GcsClient>;

/// Builds the GCS client (auth included) from configuration.
pub fn gcs_client(cfg: &Config) -> Result<GcsClient> {
    let auth = Auth::from_config(&cfg.gcs_credentials)?;
    GcsClient::new(cfg.gcs_emulator.as_deref(), auth, cfg.transfer.request_timeout)
}

/// Builds the replicator: loads the AWS configuration, builds both adapters.
pub async fn replicator(cfg: &Config) -> Result<S3ToGcs> {
    let sdk = crate::aws::sdk_config().await;
    let source = S3Source::new(&sdk);
    let sink = gcs_client(cfg)?;
    Ok(Replicator::new(Transfer::new(source, sink, cfg.transfer, cfg.retry), cfg.dest_bucket.clone()))
}
