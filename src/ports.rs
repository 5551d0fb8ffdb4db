//! The traits the use cases talk through. Adapters (S3, GCS, and test doubles) implement them;
//! domain code never sees an SDK type.

use crate::error::Result;
use crate::model::{ContentHeaders, Destination, ObjectRef, SourceMeta, StoredObject};
use bytes::Bytes;
use futures::Stream;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

/// A body being read from the source: frames of whatever size the transport delivers.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// Which version of an object a read must return. A read that cannot return exactly that
/// version fails with [`crate::ErrorKind::SourceChanged`] instead of mixing two versions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadPin {
    pub version_id: Option<String>,
    /// Without quotes; the adapter adds them for `If-Match`.
    pub etag: Option<String>,
}

/// An open read: the object's metadata and its body from the requested offset.
pub struct SourceRead {
    pub meta: SourceMeta,
    pub body: ByteStream,
}

/// Where objects come from (S3).
pub trait ObjectSource: Send + Sync {
    /// Opens `obj` at byte `offset`, pinned to `pin` when it names a version or ETag. One
    /// request: metadata comes from the same response as the bytes.
    fn read(&self, obj: &ObjectRef, pin: &ReadPin, offset: u64) -> impl Future<Output = Result<SourceRead>> + Send;
}

/// Everything GCS needs to create an object, besides its bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadSpec {
    pub bucket: String,
    pub name: String,
    pub size: u64,
    pub headers: ContentHeaders,
    /// Custom metadata: the source's user metadata plus provenance.
    pub metadata: BTreeMap<String, String>,
    pub storage_class: Option<String>,
    /// Expected CRC32C (base64, big-endian). GCS refuses to create the object on a mismatch.
    pub crc32c: Option<String>,
    /// Expected MD5 (base64). GCS refuses to create the object on a mismatch.
    pub md5: Option<String>,
}

impl UploadSpec {
    pub fn destination(&self) -> Destination {
        Destination { bucket: self.bucket.clone(), name: self.name.clone(), storage_class: self.storage_class.clone() }
    }
}

/// What GCS says after a chunk or a status query of a resumable session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadProgress {
    /// The session is open and GCS holds this many bytes (the next chunk starts here).
    Persisted(u64),
    /// The object is finalized.
    Done(StoredObject),
}

/// Where objects go (GCS): the upload protocol's primitives. The transfer engine decides how to
/// use them (single request or resumable, resume offsets, pipelining).
pub trait ObjectSink: Send + Sync {
    /// Uploads a whole object in one request.
    fn upload_single(&self, spec: &UploadSpec, data: Bytes) -> impl Future<Output = Result<StoredObject>> + Send;
    /// Opens a resumable session and returns its URI. Checksums in `spec` are checked by GCS
    /// when the session is finalized.
    fn start_session(&self, spec: &UploadSpec) -> impl Future<Output = Result<String>> + Send;
    /// Sends `data` at `offset` of a `total`-byte object. `final_crc32c` goes with the last
    /// chunk so that GCS can verify the whole object.
    fn upload_chunk(
        &self,
        session: &str,
        offset: u64,
        data: Bytes,
        total: u64,
        final_crc32c: Option<&str>,
    ) -> impl Future<Output = Result<UploadProgress>> + Send;
    /// Asks GCS how much of the session it holds.
    fn session_status(&self, session: &str, total: u64) -> impl Future<Output = Result<UploadProgress>> + Send;
    /// Deletes one generation of an object (used to withdraw an object that failed verification).
    fn delete(&self, bucket: &str, name: &str, generation: Option<&str>) -> impl Future<Output = Result<()>> + Send;
}
