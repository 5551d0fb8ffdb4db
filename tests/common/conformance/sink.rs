//! The sink port ([`ObjectSink`]): GCS's contract as the GCS adapter relies on it.

use super::{skipped, unique};
use bytes::Bytes;
use xcr::ErrorKind;
use xcr::domain::model::StoredObject;
use xcr::ports::{ObjectSink, UploadProgress, UploadSpec};

/// What GCS does that an emulator may not: each flag off skips the cases that need it, saying
/// so. The in-memory sink does all of it ([`Gaps::NONE`]).
#[derive(Debug, Clone, Copy)]
pub struct Gaps {
    /// `ifGenerationMatch` on one-request (multipart) uploads is ignored
    /// (gcp-storage-emulator).
    pub multipart_preconditions_ignored: Option<&'static str>,
    /// `ifGenerationMatch` on resumable uploads and on deletes is ignored (both emulators).
    pub other_preconditions_ignored: Option<&'static str>,
    /// A delete of one `generation` deletes the live object whatever its generation (both
    /// emulators); GCS deletes only that generation (404, success, when it is not there).
    pub delete_generation_ignored: Option<&'static str>,
    /// A status query of a session that holds no byte yet answers `Range: bytes=0-0` (one
    /// byte held), where GCS sends no `Range` (gcp-storage-emulator).
    pub empty_session_reports_a_byte: Option<&'static str>,
    /// A wrong `crc32c` / `md5Hash` in the object resource is accepted (fake-gcs-server).
    pub checksums_ignored: Option<&'static str>,
    /// A status query of a finalized session answers 404, where GCS answers with the object
    /// (both emulators).
    pub status_after_final_gone: Option<&'static str>,
    /// Resumable sessions misbehave on status queries and re-sent chunks (fake-gcs-server): the
    /// resumable cases run on the other emulator.
    pub resumable_broken: Option<&'static str>,
}

impl Gaps {
    pub const NONE: Self = Self {
        multipart_preconditions_ignored: None,
        other_preconditions_ignored: None,
        delete_generation_ignored: None,
        empty_session_reports_a_byte: None,
        checksums_ignored: None,
        status_after_final_gone: None,
        resumable_broken: None,
    };
}

fn spec(bucket: &str, name: &str, data: &[u8]) -> UploadSpec {
    UploadSpec {
        bucket: bucket.into(),
        name: name.into(),
        size: data.len() as u64,
        headers: xcr::domain::model::ContentHeaders { content_type: Some("text/plain".into()), ..Default::default() },
        metadata: [("xcr-source".to_string(), "s3://b/k".to_string())].into(),
        ..Default::default()
    }
}

fn generation(o: &StoredObject) -> u64 {
    o.generation.parse().unwrap_or_else(|_| panic!("a numeric generation: {o:?}"))
}

/// Every case, in turn, in `bucket`; `missing_bucket` names one that does not exist.
pub async fn run<K: ObjectSink>(k: &K, bucket: &str, gaps: Gaps) {
    an_upload_creates_a_new_generation_with_its_checksums(k, bucket).await;
    writes_to_a_missing_bucket_are_a_configuration_error(k).await;
    the_job_that_wrote_an_object_is_read_back_from_its_metadata(k, bucket).await;
    match gaps.multipart_preconditions_ignored {
        None => an_upload_is_refused_when_its_generation_precondition_fails(k, bucket).await,
        Some(why) => skipped("an_upload_is_refused_when_its_generation_precondition_fails", why),
    }
    match gaps.checksums_ignored {
        None => an_upload_whose_checksum_does_not_match_creates_nothing(k, bucket).await,
        Some(why) => skipped("an_upload_whose_checksum_does_not_match_creates_nothing", why),
    }
    deletes_remove_a_generation_or_the_live_object(k, bucket, gaps).await;
    match gaps.resumable_broken {
        None => {
            a_resumable_session_persists_chunks_and_finalizes_verified(k, bucket, gaps).await;
            match gaps.other_preconditions_ignored {
                None => a_resumable_session_is_refused_at_finalization_when_its_precondition_fails(k, bucket).await,
                Some(why) => skipped("a_resumable_session_is_refused_at_finalization_when_its_precondition_fails", why),
            }
        }
        Some(why) => skipped("the resumable cases", why),
    }
}

pub async fn an_upload_creates_a_new_generation_with_its_checksums<K: ObjectSink>(k: &K, bucket: &str) {
    let name = unique("sink/single/é");
    let data = crate::common::bytes_of(10_000, 3);
    let s = spec(bucket, &name, &data);
    let first = k.upload_single(&s, Bytes::from(data.clone())).await.expect("upload");
    assert_eq!((first.bucket.as_str(), first.name.as_str(), first.size), (bucket, name.as_str(), 10_000));
    assert_eq!(first.crc32c.as_deref(), Some(crate::common::crc32c_b64(&data).as_str()), "GCS reports the CRC32C");
    let stat = k.stat(bucket, &name).await.expect("stat").expect("the object exists");
    assert_eq!(
        (stat.generation.as_str(), stat.size, stat.crc32c.as_deref()),
        (first.generation.as_str(), 10_000, first.crc32c.as_deref())
    );
    let second = k.upload_single(&s, Bytes::from(data)).await.expect("upload again");
    assert!(generation(&second) > generation(&first), "every write is a new, later generation: {first:?} {second:?}");
    assert!(k.stat(bucket, &unique("sink/none")).await.expect("stat of a missing object").is_none());
}

/// The provenance key naming a migration job (`xcr-source-job-id`) comes back as the object's
/// `job_id` from the write's answer and from a metadata read; an object without it has none.
pub async fn the_job_that_wrote_an_object_is_read_back_from_its_metadata<K: ObjectSink>(k: &K, bucket: &str) {
    let name = unique("sink/job");
    let mut s = spec(bucket, &name, b"job");
    s.metadata.insert(xcr::transfer::metadata::PROV_JOB.into(), "job-7".into());
    let written = k.upload_single(&s, Bytes::from_static(b"job")).await.expect("upload");
    assert_eq!(written.job_id.as_deref(), Some("job-7"), "{written:?}");
    let stat = k.stat(bucket, &name).await.expect("stat").expect("the object exists");
    assert_eq!(stat.job_id.as_deref(), Some("job-7"), "{stat:?}");
    let plain = unique("sink/no-job");
    k.upload_single(&spec(bucket, &plain, b"x"), Bytes::from_static(b"x")).await.expect("upload");
    assert_eq!(k.stat(bucket, &plain).await.expect("stat").expect("exists").job_id, None);
}

pub async fn writes_to_a_missing_bucket_are_a_configuration_error<K: ObjectSink>(k: &K) {
    let s = spec(&unique("no-such-bucket"), "x", b"x");
    let e = k.upload_single(&s, Bytes::from_static(b"x")).await.expect_err("no bucket");
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    let e = k.start_session(&s).await.expect_err("no bucket");
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
}

pub async fn an_upload_is_refused_when_its_generation_precondition_fails<K: ObjectSink>(k: &K, bucket: &str) {
    let name = unique("sink/fenced");
    let mut s = spec(bucket, &name, b"one");
    s.if_generation_match = Some(0);
    let first = k.upload_single(&s, Bytes::from_static(b"one")).await.expect("0: created when there is none");
    let e = k.upload_single(&s, Bytes::from_static(b"two")).await.expect_err("0 with a live object");
    assert_eq!(e.kind(), ErrorKind::Conflict, "a failed precondition is a conflict: {e}");
    s.if_generation_match = Some(generation(&first) + 1);
    let e = k.upload_single(&s, Bytes::from_static(b"two")).await.expect_err("another generation");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert_eq!(
        k.stat(bucket, &name).await.expect("stat").map(|o| o.generation),
        Some(first.generation.clone()),
        "nothing was written"
    );
    s.if_generation_match = Some(generation(&first));
    let second = k.upload_single(&s, Bytes::from_static(b"two")).await.expect("the live generation");
    assert!(generation(&second) > generation(&first));
}

pub async fn an_upload_whose_checksum_does_not_match_creates_nothing<K: ObjectSink>(k: &K, bucket: &str) {
    let name = unique("sink/corrupt");
    let mut s = spec(bucket, &name, b"payload");
    s.crc32c = Some(crate::common::crc32c_b64(b"other"));
    let e = k.upload_single(&s, Bytes::from_static(b"payload")).await.expect_err("wrong crc32c");
    assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
    s.crc32c = Some(crate::common::crc32c_b64(b"payload"));
    s.md5 = Some(xcr::transfer::checksum::md5_b64(&[0; 16]));
    let e = k.upload_single(&s, Bytes::from_static(b"payload")).await.expect_err("wrong md5");
    assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
    assert!(k.stat(bucket, &name).await.expect("stat").is_none(), "no object was created");
}

pub async fn deletes_remove_a_generation_or_the_live_object<K: ObjectSink>(k: &K, bucket: &str, gaps: Gaps) {
    let name = unique("sink/delete");
    let s = spec(bucket, &name, b"v");
    k.delete(bucket, &name, None, None).await.expect("deleting what is not there is success");
    let old = k.upload_single(&s, Bytes::from_static(b"v")).await.expect("upload");
    let live = k.upload_single(&s, Bytes::from_static(b"v")).await.expect("upload again");
    match gaps.delete_generation_ignored {
        None => {
            k.delete(bucket, &name, Some(&old.generation), None).await.expect("delete an old generation");
            let stat = k.stat(bucket, &name).await.expect("stat");
            assert_eq!(stat.map(|o| o.generation), Some(live.generation.clone()), "the live one stays");
        }
        Some(why) => skipped("a delete of an old generation leaves the live one", why),
    }
    match gaps.other_preconditions_ignored {
        None => {
            let e =
                k.delete(bucket, &name, None, Some(generation(&old))).await.expect_err("fenced on a stale generation");
            assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
            assert!(k.stat(bucket, &name).await.expect("stat").is_some(), "a refused delete deletes nothing");
        }
        Some(why) => skipped("a delete is refused when its generation precondition fails", why),
    }
    k.delete(bucket, &name, None, Some(generation(&live))).await.expect("fenced on the live generation");
    assert!(k.stat(bucket, &name).await.expect("stat").is_none());
    let again = k.upload_single(&s, Bytes::from_static(b"v")).await.expect("upload");
    k.delete(bucket, &name, Some(&again.generation), None).await.expect("delete exactly the live generation");
    assert!(k.stat(bucket, &name).await.expect("stat").is_none());
}

const QUANTUM: usize = 256 * 1024;

pub async fn a_resumable_session_persists_chunks_and_finalizes_verified<K: ObjectSink>(
    k: &K,
    bucket: &str,
    gaps: Gaps,
) {
    let name = unique("sink/resumable");
    let data = Bytes::from(crate::common::bytes_of(QUANTUM + 1000, 4));
    let total = data.len() as u64;
    let mut s = spec(bucket, &name, &data);
    s.crc32c = Some(crate::common::crc32c_b64(&data));
    let session = k.start_session(&s).await.expect("start");
    match gaps.empty_session_reports_a_byte {
        None => assert_eq!(k.session_status(&session, total).await.expect("status"), UploadProgress::Persisted(0)),
        Some(why) => skipped("a new session holds no byte", why),
    }
    let p = k.upload_chunk(&session, 0, data.slice(..QUANTUM), total, None).await.expect("first chunk");
    assert_eq!(p, UploadProgress::Persisted(QUANTUM as u64), "a whole quantum is persisted");
    assert_eq!(k.session_status(&session, total).await.expect("status"), UploadProgress::Persisted(QUANTUM as u64));
    assert!(k.stat(bucket, &name).await.expect("stat").is_none(), "nothing exists before the last chunk");
    let done = match k
        .upload_chunk(&session, QUANTUM as u64, data.slice(QUANTUM..), total, s.crc32c.as_deref())
        .await
        .expect("last chunk")
    {
        UploadProgress::Done(o) => o,
        other => panic!("the last chunk finalizes: {other:?}"),
    };
    assert_eq!((done.size, done.crc32c.as_deref()), (total, s.crc32c.as_deref()));
    assert_eq!(k.stat(bucket, &name).await.expect("stat").map(|o| o.generation), Some(done.generation.clone()));
    match gaps.status_after_final_gone {
        None => assert_eq!(
            k.session_status(&session, total).await.expect("status after the end"),
            UploadProgress::Done(done)
        ),
        Some(why) => skipped("a finalized session's status is its object", why),
    }
    let e = k.upload_chunk(&unique("memory://no-such-session"), 0, Bytes::from_static(b"x"), 1, None).await;
    if gaps.status_after_final_gone.is_none() {
        // Only the in-memory sink accepts any text as a session URI; a real one needs an URL.
        assert_eq!(e.expect_err("an unknown session").kind(), ErrorKind::Transient, "a gone session is retried anew");
    }
    match gaps.checksums_ignored {
        None => {
            let name = unique("sink/resumable-corrupt");
            let mut s = spec(bucket, &name, &data);
            s.crc32c = Some(crate::common::crc32c_b64(b"other"));
            let session = k.start_session(&s).await.expect("start");
            let e =
                k.upload_chunk(&session, 0, data.clone(), total, None).await.expect_err("wrong crc32c at finalization");
            assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
            assert!(k.stat(bucket, &name).await.expect("stat").is_none(), "no object was created");
        }
        Some(why) => skipped("a resumable upload whose checksum does not match creates nothing", why),
    }
}

pub async fn a_resumable_session_is_refused_at_finalization_when_its_precondition_fails<K: ObjectSink>(
    k: &K,
    bucket: &str,
) {
    let name = unique("sink/resumable-fenced");
    let mut s = spec(bucket, &name, b"late");
    let live = k.upload_single(&s, Bytes::from_static(b"newer")).await.expect("a newer copy");
    s.if_generation_match = Some(0);
    let session = k.start_session(&s).await.expect("start");
    let e = k.upload_chunk(&session, 0, Bytes::from_static(b"late"), 4, None).await.expect_err("fenced");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert_eq!(k.stat(bucket, &name).await.expect("stat").map(|o| o.generation), Some(live.generation));
}
