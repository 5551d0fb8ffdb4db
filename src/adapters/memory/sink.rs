//! GCS in memory: [`ObjectSink`] over buckets of live objects.
//!
//! What it keeps of GCS's contract, as [`crate::adapters::gcs::GcsClient`] relies on it:
//! * every write creates a new generation, greater than any before (GCS's are microsecond
//!   timestamps); a write to a bucket that does not exist is `config` (the adapter's 404);
//! * `ifGenerationMatch` (`0`: only if no live object) is checked when the object would be
//!   created (a single upload, the last chunk of a resumable session: a session's precondition
//!   given at initiation holds when it completes, which is what the fence relies on; whether GCS
//!   also checks it at initiation is not) and when deleting; a failed one is `conflict` (412),
//!   and nothing is written;
//! * `crc32c` / `md5Hash` given with the object, and the `X-Goog-Hash` CRC32C of the last chunk,
//!   are checked when the object is created: a mismatch is `integrity` (400) and nothing is
//!   created;
//! * a resumable session persists non-final chunks in multiples of 256 KiB, answers a chunk
//!   that starts past what it holds with what it holds, skips bytes it already has, and after
//!   finalization answers a status query with the object (real GCS; gcp-storage-emulator answers
//!   404 instead); an unknown session is gone (`transient`, as the adapter reads 404/410);
//! * a delete of an object already gone succeeds.

use super::{Faults, lock};
use crate::domain::error::{Error, ErrorKind, Result};
use crate::domain::model::{ContentHeaders, StoredObject};
use crate::ports::{ObjectSink, UploadProgress, UploadSpec};
use crate::transfer::checksum::{crc32c_b64, md5_b64};
use bytes::{Bytes, BytesMut};
use md5::{Digest, Md5};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// GCS persists a resumable session's non-final chunks in multiples of this.
const CHUNK_QUANTUM: u64 = 256 * 1024;

/// An object as the in-memory GCS holds it: bytes, metadata and what GCS reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCopy {
    /// The object's bytes.
    pub data: Bytes,
    /// Its content headers, as the upload gave them.
    pub headers: ContentHeaders,
    /// Its custom metadata (the source's user metadata plus provenance).
    pub metadata: BTreeMap<String, String>,
    /// The storage class asked for, if any.
    pub storage_class: Option<String>,
    /// What GCS reports about it (generation, size, checksums).
    pub object: StoredObject,
}

#[derive(Debug)]
struct Session {
    spec: UploadSpec,
    data: BytesMut,
    /// The object once the last chunk created it.
    done: Option<StoredObject>,
}

#[derive(Debug, Default)]
struct State {
    buckets: HashSet<String>,
    objects: HashMap<(String, String), StoredCopy>,
    sessions: HashMap<String, Session>,
}

/// GCS in memory (see the module doc). A clone is another client of the same GCS: it sees and
/// changes the same objects.
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    state: Mutex<State>,
    generations: AtomicU64,
    sessions: AtomicU64,
    faults: Faults,
    writes: AtomicU64,
    refused: AtomicU64,
}

impl MemorySink {
    /// A sink without buckets: every write is a configuration error until one is created.
    pub fn new() -> Self {
        let inner = Inner { generations: AtomicU64::new(1_700_000_000_000_000), ..Inner::default() };
        Self { inner: Arc::new(inner) }
    }

    /// A sink with these buckets.
    pub fn with_buckets(buckets: &[&str]) -> Self {
        let sink = Self::new();
        for b in buckets {
            sink.create_bucket(b);
        }
        sink
    }

    /// Creates a bucket (an existing one keeps its objects).
    pub fn create_bucket(&self, bucket: &str) {
        lock(&self.inner.state).buckets.insert(bucket.to_string());
    }

    /// The live object, as GCS holds it.
    pub fn object(&self, bucket: &str, name: &str) -> Option<StoredCopy> {
        lock(&self.inner.state).objects.get(&(bucket.to_string(), name.to_string())).cloned()
    }

    /// Names of the live objects of `bucket`, in order.
    pub fn names(&self, bucket: &str) -> Vec<String> {
        let mut names: Vec<String> =
            lock(&self.inner.state).objects.keys().filter(|(b, _)| b == bucket).map(|(_, n)| n.clone()).collect();
        names.sort();
        names
    }

    /// Objects created so far (single uploads and finalized sessions): a test counts uploads.
    pub fn writes(&self) -> u64 {
        self.inner.writes.load(Ordering::Relaxed)
    }

    /// Writes and deletes refused for a failed `ifGenerationMatch` so far: a test sees a fence
    /// at work.
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    /// The next request that writes (an upload, a chunk, a session start, a delete) fails with
    /// `kind` before it reaches the store; calls add up, each taken once.
    pub fn fail_next(&self, kind: ErrorKind) {
        self.inner.faults.push(kind);
    }

    /// Checks the precondition and checksums, then creates the object: what GCS does when an
    /// upload is complete.
    fn create(
        &self,
        state: &mut State,
        spec: &UploadSpec,
        data: Bytes,
        hash_header: Option<&str>,
    ) -> Result<StoredObject> {
        let what = format!("upload gs://{}/{}", spec.bucket, spec.name);
        let key = (spec.bucket.clone(), spec.name.clone());
        if let Some(expected) = spec.if_generation_match {
            let live = state.objects.get(&key).map_or(Ok(0), |o| o.object.generation.parse::<u64>());
            if live != Ok(expected) {
                self.inner.refused.fetch_add(1, Ordering::Relaxed);
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!("{what}: GCS answered 412 Precondition Failed: ifGenerationMatch={expected}"),
                ));
            }
        }
        let crc = crc32c_b64(crc32c::crc32c(&data));
        let md5 = md5_b64(&Md5::digest(&data).into());
        for (field, given, actual) in [
            ("crc32c", spec.crc32c.as_deref(), &crc),
            ("md5Hash", spec.md5.as_deref(), &md5),
            ("x-goog-hash crc32c", hash_header, &crc),
        ] {
            if let Some(given) = given
                && given != actual
            {
                return Err(Error::new(
                    ErrorKind::Integrity,
                    format!(
                        "{what}: GCS answered 400 Bad Request: provided {field} {given} does not match the data ({actual})"
                    ),
                ));
            }
        }
        let generation = self.inner.generations.fetch_add(1, Ordering::Relaxed) + 1;
        let object = StoredObject {
            bucket: spec.bucket.clone(),
            name: spec.name.clone(),
            generation: generation.to_string(),
            size: data.len() as u64,
            crc32c: Some(crc),
            md5: Some(md5),
            job_id: spec.metadata.get(crate::transfer::metadata::PROV_JOB).cloned(),
        };
        let copy = StoredCopy {
            data,
            headers: spec.headers.clone(),
            metadata: spec.metadata.clone(),
            storage_class: spec.storage_class.clone(),
            object: object.clone(),
        };
        state.objects.insert(key, copy);
        self.inner.writes.fetch_add(1, Ordering::Relaxed);
        Ok(object)
    }

    fn bucket_exists(state: &State, bucket: &str, what: &str) -> Result<()> {
        if state.buckets.contains(bucket) {
            Ok(())
        } else {
            Err(Error::new(ErrorKind::Config, format!("{what}: destination bucket gs://{bucket} does not exist")))
        }
    }
}

fn session_gone(what: &str) -> Error {
    Error::new(ErrorKind::Transient, format!("{what}: the upload session is gone (404 Not Found)"))
}

impl ObjectSink for MemorySink {
    async fn upload_single(&self, spec: &UploadSpec, data: Bytes) -> Result<StoredObject> {
        self.inner.faults.take("upload object")?;
        let mut state = lock(&self.inner.state);
        Self::bucket_exists(&state, &spec.bucket, "upload object")?;
        self.create(&mut state, spec, data, None)
    }

    async fn start_session(&self, spec: &UploadSpec) -> Result<String> {
        self.inner.faults.take("start resumable upload")?;
        let mut state = lock(&self.inner.state);
        Self::bucket_exists(&state, &spec.bucket, "start resumable upload")?;
        let n = self.inner.sessions.fetch_add(1, Ordering::Relaxed);
        let uri = format!("memory://upload/{}/{n}-{:016x}", spec.bucket, fastrand::u64(..));
        state.sessions.insert(uri.clone(), Session { spec: spec.clone(), data: BytesMut::new(), done: None });
        Ok(uri)
    }

    async fn upload_chunk(
        &self,
        session: &str,
        offset: u64,
        data: Bytes,
        total: u64,
        final_crc32c: Option<&str>,
    ) -> Result<UploadProgress> {
        self.inner.faults.take("upload chunk")?;
        let mut state = lock(&self.inner.state);
        let s = state.sessions.get_mut(session).ok_or_else(|| session_gone("upload chunk"))?;
        if let Some(done) = &s.done {
            return Ok(UploadProgress::Done(done.clone()));
        }
        let held = s.data.len() as u64;
        let len = data.len() as u64;
        if offset + len > total {
            return Err(Error::new(
                ErrorKind::Invalid,
                "upload chunk: GCS answered 400: more bytes than the object's size",
            ));
        }
        if offset > held {
            // A gap: GCS keeps what it has and says how much that is.
            return Ok(UploadProgress::Persisted(held));
        }
        let is_final = offset + len == total;
        // Bytes it already holds are skipped; the rest is appended (non-final: whole quanta only).
        let skip = usize::try_from(held - offset).unwrap_or(usize::MAX).min(data.len());
        let mut new = data.slice(skip..);
        if !is_final {
            let keep = ((held + new.len() as u64) / CHUNK_QUANTUM * CHUNK_QUANTUM).saturating_sub(held);
            new = new.slice(..usize::try_from(keep).unwrap_or(0).min(new.len()));
        }
        if !is_final {
            s.data.extend_from_slice(&new);
            return Ok(UploadProgress::Persisted(s.data.len() as u64));
        }
        let mut whole = s.data.clone();
        whole.extend_from_slice(&new);
        let spec = s.spec.clone();
        let hash = final_crc32c.map(str::to_string);
        let object = self.create(&mut state, &spec, whole.freeze(), hash.as_deref())?;
        if let Some(s) = state.sessions.get_mut(session) {
            s.done = Some(object.clone());
            s.data.clear();
        }
        Ok(UploadProgress::Done(object))
    }

    async fn session_status(&self, session: &str, _total: u64) -> Result<UploadProgress> {
        let state = lock(&self.inner.state);
        let s = state.sessions.get(session).ok_or_else(|| session_gone("query upload status"))?;
        Ok(match &s.done {
            Some(o) => UploadProgress::Done(o.clone()),
            None => UploadProgress::Persisted(s.data.len() as u64),
        })
    }

    async fn delete(
        &self,
        bucket: &str,
        name: &str,
        generation: Option<&str>,
        if_generation_match: Option<u64>,
    ) -> Result<()> {
        self.inner.faults.take("delete object")?;
        let mut state = lock(&self.inner.state);
        let key = (bucket.to_string(), name.to_string());
        let Some(live) = state.objects.get(&key) else { return Ok(()) };
        let live_generation = live.object.generation.clone();
        if let Some(g) = generation {
            // Exactly that generation; another one (or none) is "not found", which is success.
            if g == live_generation {
                state.objects.remove(&key);
            }
            return Ok(());
        }
        if let Some(expected) = if_generation_match
            && live_generation.parse::<u64>() != Ok(expected)
        {
            self.inner.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("delete object: GCS answered 412 Precondition Failed: ifGenerationMatch={expected}"),
            ));
        }
        state.objects.remove(&key);
        Ok(())
    }

    async fn stat(&self, bucket: &str, name: &str) -> Result<Option<StoredObject>> {
        Ok(lock(&self.inner.state).objects.get(&(bucket.to_string(), name.to_string())).map(|o| o.object.clone()))
    }
}
