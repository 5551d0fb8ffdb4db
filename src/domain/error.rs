//! One error type for the library, classified once.
//!
//! Every failure that leaves an adapter is an [`Error`] with an [`ErrorKind`]. The kind alone
//! decides what happens next, so the decision is made in one place instead of at every call
//! site: whether a retry can help ([`Error::is_retryable`]), which HTTP status the API answers
//! ([`ErrorKind::http_status`]), and whether an SQS record goes back to the queue.

use std::fmt;

/// What went wrong, in the terms a caller acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The source object or bucket does not exist (NoSuchKey, NoSuchBucket, 404). Not retried:
    /// a later event will bring a newer object if one appears.
    NotFound,
    /// The source changed while it was being copied (412 on a pinned read). Retried: the next
    /// attempt copies the new version as a whole.
    SourceChanged,
    /// Credentials were refused (401/403). Not retried: waiting does not grant permissions.
    AccessDenied,
    /// A request was malformed or a limit was exceeded (400, 411, 413...). Not retried.
    Invalid,
    /// Bytes did not match a checksum. Retried: corruption in transit is transient; a
    /// persistent mismatch ends in the dead-letter queue for a person to look at.
    Integrity,
    /// Throttling, 5xx, timeouts, resets: retried with backoff.
    Transient,
    /// Configuration is wrong; nothing will work until a person fixes it.
    Config,
    /// The destination object is not the generation the ledger expected (GCS answered 412 to
    /// an `ifGenerationMatch` precondition): someone else wrote or deleted it. Repeating the
    /// same request cannot help ([`crate::retry::RetryPolicy`] does not); the lease holder
    /// decides again from the ledger, the source and what GCS holds, and a delivery that
    /// still meets it is retried later.
    Conflict,
}

impl ErrorKind {
    /// Whether trying again later can succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::SourceChanged | Self::Integrity | Self::Transient | Self::Conflict)
    }

    /// The HTTP status an API answers with for this kind.
    pub fn http_status(self) -> u16 {
        match self {
            Self::NotFound => 404,
            Self::SourceChanged => 409,
            Self::AccessDenied => 403,
            Self::Invalid => 400,
            Self::Integrity => 502,
            Self::Transient => 503,
            Self::Config => 500,
            Self::Conflict => 409,
        }
    }

    /// A short stable name, for logs, metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::SourceChanged => "source_changed",
            Self::AccessDenied => "access_denied",
            Self::Invalid => "invalid",
            Self::Integrity => "integrity",
            Self::Transient => "transient",
            Self::Config => "config",
            Self::Conflict => "conflict",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A classified failure with a human-readable message that says what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
    /// The request was applied (the service answered with success) but its answer could not be
    /// read: see [`Error::applied`].
    applied: bool,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// An error of `kind`; `message` says what failed, in words for the log and the API answer.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), applied: false, source: None }
    }

    /// Marks a failure that happened after the service had applied the request: it answered
    /// with success, but the answer could not be read. Why it matters: repeating a write that
    /// already happened would write again (a second generation), so such an error is never
    /// retried as it is ([`crate::retry::RetryPolicy`] does not); the caller reads the
    /// outcome back instead (for an upload, the object's metadata).
    pub fn applied(mut self) -> Self {
        self.applied = true;
        self
    }

    /// Whether the request was applied although this error was returned ([`Error::applied`]).
    pub fn was_applied(&self) -> bool {
        self.applied
    }

    /// Whether the request certainly never reached the service: the connection itself was
    /// refused (nothing listens there: a stopped emulator, a stale endpoint). Why it matters:
    /// such a failure cannot have been applied, so nothing needs undoing (no lease to release),
    /// whereas a reset or a timeout may come after the service applied the request.
    pub fn never_sent(&self) -> bool {
        let mut next: Option<&(dyn std::error::Error + 'static)> =
            self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static));
        while let Some(e) = next {
            if let Some(io) = e.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::ConnectionRefused
            {
                return true;
            }
            next = e.source();
        }
        false
    }

    /// Keeps the underlying error as the `source()` chain, for logs.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The kind: what decides retry, HTTP status and DLQ fate.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message without the chain of causes ([`Error::chain`] has them).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether trying again can succeed ([`ErrorKind::is_retryable`]).
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }

    /// Prefixes the message with what the caller was doing, keeping the kind.
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    /// The message in words, for a person: the message and, when it adds something, the root
    /// cause (e.g. `Connection refused`), but none of the SDK's wrappers or debug dumps
    /// (`service error: unhandled error (X): Error { code: ... }`) that [`Error::chain`] keeps
    /// for the JSON log.
    pub fn summary(&self) -> String {
        let mut root = None;
        let mut cur = std::error::Error::source(self);
        while let Some(e) = cur {
            root = Some(e.to_string());
            cur = e.source();
        }
        // A root that only repeats the message's parts (`NoSuchKey: The specified key ...`
        // after `404 NoSuchKey The specified key ...`) adds nothing.
        let adds = |r: &str| !r.is_empty() && !r.split(": ").all(|part| self.message.contains(part.trim()));
        match root.map(|r| without_dumps(&r)) {
            Some(r) if adds(&r) => format!("{}: {r}", self.message),
            _ => self.message.clone(),
        }
    }

    /// The message followed by every cause in the chain, for one log line.
    pub fn chain(&self) -> String {
        let mut out = self.message.clone();
        let mut cur = std::error::Error::source(self);
        while let Some(e) = cur {
            let s = e.to_string();
            if !out.contains(&s) {
                out.push_str(": ");
                out.push_str(&s);
            }
            cur = e.source();
        }
        out
    }
}

/// The crate's result: [`Error`] unless said otherwise.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error chain (`a: b: c`) without the parts meant for a debugger: a `Type { field: ... }`
/// dump and what follows it, and the AWS SDK's `service error` / `unhandled error (CODE)`
/// wrappers (the code is in xcr's own message already). For lines a person reads; the JSON log
/// keeps the whole chain.
pub fn without_dumps(chain: &str) -> String {
    let cut = match chain.find(" { ") {
        Some(i) => chain[..i].rfind(": ").unwrap_or(0),
        None => chain.len(),
    };
    chain[..cut]
        .split(": ")
        .filter(|part| *part != "service error" && !part.starts_with("unhandled error ("))
        .collect::<Vec<_>>()
        .join(": ")
}

/// Classifies an HTTP status from either cloud. Shared by the S3 and GCS adapters so that a
/// 503 means the same thing everywhere.
pub fn kind_for_status(status: u16) -> ErrorKind {
    match status {
        404 | 410 => ErrorKind::NotFound,
        412 => ErrorKind::SourceChanged,
        401 | 403 => ErrorKind::AccessDenied,
        408 | 429 => ErrorKind::Transient,
        500..=599 => ErrorKind::Transient,
        _ => ErrorKind::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_classify_as_the_retry_rules_say() {
        assert_eq!(kind_for_status(404), ErrorKind::NotFound);
        assert_eq!(kind_for_status(412), ErrorKind::SourceChanged);
        assert_eq!(kind_for_status(403), ErrorKind::AccessDenied);
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(kind_for_status(s).is_retryable(), "{s} must be retried");
        }
        for s in [400, 401, 403, 404, 411, 413] {
            assert!(!kind_for_status(s).is_retryable(), "{s} must not be retried");
        }
    }

    #[test]
    fn context_keeps_kind_and_chain_lists_causes() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let e = Error::new(ErrorKind::Transient, "upload chunk").with_source(io).context("gs://b/k");
        assert_eq!(e.kind(), ErrorKind::Transient);
        assert_eq!(e.to_string(), "gs://b/k: upload chunk");
        assert_eq!(e.chain(), "gs://b/k: upload chunk: reset by peer");
    }

    /// What a person reads: the message and its root cause, never the SDK's debug dump.
    #[test]
    fn summary_keeps_the_root_cause_and_drops_dumps() {
        #[derive(Debug, thiserror::Error)]
        #[error("service error")]
        struct Wrapper(#[source] Dump);
        #[derive(Debug, thiserror::Error)]
        #[error("Error {{ code: Some(\"NoSuchBucket\"), aws_request_id: \"r-1\" }}")]
        struct Dump;
        let e = Error::new(ErrorKind::NotFound, "get object: 404 NoSuchBucket").with_source(Wrapper(Dump));
        assert_eq!(e.summary(), "get object: 404 NoSuchBucket");
        assert!(e.chain().contains("aws_request_id"), "the log keeps the whole chain: {}", e.chain());
        let said = std::io::Error::other("NoSuchKey: The specified key does not exist.");
        let e =
            Error::new(ErrorKind::NotFound, "read: 404 NoSuchKey The specified key does not exist.").with_source(said);
        assert_eq!(e.summary(), "read: 404 NoSuchKey The specified key does not exist.", "no repetition");
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused (os error 111)");
        let e = Error::new(ErrorKind::Transient, "claim: could not send the request").with_source(refused);
        assert_eq!(e.summary(), "claim: could not send the request: Connection refused (os error 111)");
        assert_eq!(
            without_dumps("a: service error: unhandled error (NoSuchKey): Error { code: Some(\"NoSuchKey\") }"),
            "a"
        );
    }
}
