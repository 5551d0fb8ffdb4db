//! Google credentials: none for an emulator, otherwise google-cloud-auth, which caches tokens
//! and refreshes them before they expire.

use crate::config::GcsCredentials;
use crate::domain::error::{Error, ErrorKind, Result};
use google_cloud_auth::credentials::{self, CacheableResource, Credentials};
use http::{Extensions, HeaderMap};

/// The scope xcr needs: create and delete objects, nothing more.
const SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_write";

#[derive(Clone)]
/// How requests to GCS are authorized. Credentials are never logged: `Debug` is redacted.
pub enum Auth {
    /// Emulator: no Authorization header.
    Anonymous,
    /// google-cloud-auth credentials (a service account key or keyless Workload Identity
    /// Federation), whose tokens are refreshed before they expire.
    Google(Credentials),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Anonymous => "Anonymous",
            Self::Google(_) => "Google",
        })
    }
}

impl Auth {
    /// Builds credentials from configuration. Building reads no token yet; the first request does.
    pub fn from_config(creds: &GcsCredentials) -> Result<Self> {
        let built = match creds {
            GcsCredentials::Emulator => return Ok(Self::Anonymous),
            GcsCredentials::Json(json) => match json.get("type").and_then(|t| t.as_str()) {
                Some("service_account") => credentials::service_account::Builder::new(json.clone())
                    .with_access_specifier(credentials::service_account::AccessSpecifier::from_scopes([SCOPE]))
                    .build(),
                // Workload Identity Federation: the subject token is a signed AWS
                // GetCallerIdentity request made with the Lambda's own role credentials.
                Some("external_account") => {
                    credentials::external_account::Builder::new(json.clone()).with_scopes([SCOPE]).build()
                }
                _ => credentials::Builder::default().with_scopes([SCOPE]).build(),
            },
            GcsCredentials::ApplicationDefault => credentials::Builder::default().with_scopes([SCOPE]).build(),
        };
        built
            .map(Self::Google)
            .map_err(|e| Error::new(ErrorKind::Config, "cannot build Google credentials").with_source(e))
    }

    /// The headers to add to a request (Authorization and, for some credentials, a quota project).
    pub async fn headers(&self) -> Result<HeaderMap> {
        match self {
            Self::Anonymous => Ok(HeaderMap::new()),
            Self::Google(c) => match c.headers(Extensions::new()).await {
                Ok(CacheableResource::New { data, .. }) => Ok(data),
                Ok(CacheableResource::NotModified) => {
                    Err(Error::new(ErrorKind::Transient, "credentials returned no headers"))
                }
                Err(e) => {
                    let kind = if e.is_transient() { ErrorKind::Transient } else { ErrorKind::AccessDenied };
                    Err(Error::new(kind, "cannot get a Google access token").with_source(e))
                }
            },
        }
    }
}
