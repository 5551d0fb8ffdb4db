//! The ledger port ([`Ledger`]): DynamoDB's conditional writes as the DynamoDB ledger uses them.

use super::unique;
use std::future::Future;
use xcr::ports::{Claim, ClaimRequest, DoneRecord, FailureNote, Ledger, LedgerItem, UploadCheckpoint};

/// What the suite needs besides the port: reading an item back.
pub trait LedgerFixture {
    fn item(&self, key: &str) -> impl Future<Output = Option<LedgerItem>>;
}

const NOW: i64 = 1_800_000_000_000;

fn claim(key: &str, owner: &str, now_ms: i64, seq: Option<&str>, source: &str) -> ClaimRequest {
    ClaimRequest {
        key: key.into(),
        owner: owner.into(),
        now_ms,
        lease_until_ms: now_ms + 60_000,
        sequencer: seq.map(str::to_string),
        source_bucket: source.into(),
    }
}

fn done(seq: Option<&str>, generation: &str) -> DoneRecord {
    DoneRecord {
        action: "copy".into(),
        sequencer: seq.map(str::to_string),
        last_modified_ms: Some(NOW - 5_000),
        version_id: Some("v1".into()),
        etag: Some("e1".into()),
        generation: Some(generation.into()),
        size: Some(3),
        crc32c: Some("AAAAAA==".into()),
        source_bucket: "src".into(),
        source_key: "k".into(),
        done_at_ms: NOW,
        job_id: None,
        meta_digest: Some("d".into()),
    }
}

fn acquired(c: Claim) -> LedgerItem {
    match c {
        Claim::Acquired { previous } => previous,
        Claim::Rejected { current } => panic!("expected the claim to be acquired, rejected with {current:?}"),
    }
}

fn rejected(c: Claim) -> LedgerItem {
    match c {
        Claim::Rejected { current } => current,
        Claim::Acquired { previous } => panic!("expected the claim to be rejected, acquired over {previous:?}"),
    }
}

pub async fn run<L: Ledger + LedgerFixture>(l: &L) {
    a_live_lease_refuses_other_claims_until_it_expires(l).await;
    only_the_holder_completes_and_the_record_replaces_the_lease(l).await;
    sequencers_at_or_below_the_mark_of_their_bucket_are_refused(l).await;
    a_release_frees_the_key_and_may_raise_the_mark(l).await;
    checkpoints_and_failure_notes_are_written_only_by_the_holder(l).await;
}

pub async fn a_live_lease_refuses_other_claims_until_it_expires<L: Ledger + LedgerFixture>(l: &L) {
    let key = format!("gs://dst/{}", unique("ledger/lease"));
    let previous = acquired(l.claim(&claim(&key, "a", NOW, None, "src")).await.expect("claim"));
    assert_eq!(previous, LedgerItem::default(), "a new key has no history");
    let current = rejected(l.claim(&claim(&key, "b", NOW + 1_000, None, "src")).await.expect("claim"));
    assert_eq!(
        (current.lease_owner.as_deref(), current.lease_expires_ms),
        (Some("a"), Some(NOW + 60_000)),
        "the rejection says who holds it"
    );
    // The same owner again: its earlier request was applied and the answer lost.
    let previous = acquired(l.claim(&claim(&key, "a", NOW + 2_000, None, "src")).await.expect("claim again"));
    assert_eq!(previous.lease_owner, None, "the previous item, as the lost answer had it");
    let previous = acquired(l.claim(&claim(&key, "b", NOW + 60_001, None, "src")).await.expect("after expiry"));
    assert_eq!(previous.lease_owner.as_deref(), Some("a"), "an expired lease is taken over");
    assert_eq!(l.item(&key).await.and_then(|i| i.lease_owner).as_deref(), Some("b"));
}

pub async fn only_the_holder_completes_and_the_record_replaces_the_lease<L: Ledger + LedgerFixture>(l: &L) {
    let key = format!("gs://dst/{}", unique("ledger/complete"));
    acquired(l.claim(&claim(&key, "a", NOW, None, "src")).await.expect("claim"));
    assert!(!l.complete(&key, "b", &done(None, "7")).await.expect("complete"), "not the holder");
    assert!(!l.complete(&format!("{key}-none"), "a", &done(None, "7")).await.expect("complete"), "no such item");
    assert!(l.item(&format!("{key}-none")).await.is_none(), "a refused write creates nothing");
    assert!(l.complete(&key, "a", &done(None, "7")).await.expect("complete"));
    let item = l.item(&key).await.expect("item");
    assert_eq!((item.lease_owner, item.lease_expires_ms, item.done), (None, None, Some(done(None, "7"))));
    assert!(
        l.complete(&key, "a", &done(None, "7")).await.expect("repeat"),
        "a repeat of an applied completion is success"
    );
    assert!(!l.complete(&key, "a", &done(None, "8")).await.expect("another record"), "but not another record");
    let current = rejected(l.claim(&claim(&key, "a", NOW + 1, None, "src")).await.expect("claim"));
    assert_eq!(current.done, Some(done(None, "7")), "a finished owner cannot claim again (a late copy of its request)");
    let previous = acquired(l.claim(&claim(&key, "c", NOW + 1, None, "src")).await.expect("claim"));
    assert_eq!(previous.done, Some(done(None, "7")), "the next claim learns what was done");
    let mut next = done(None, "9");
    next.version_id = None;
    assert!(l.complete(&key, "c", &next).await.expect("complete"));
    assert_eq!(
        l.item(&key).await.and_then(|i| i.done).map(|d| (d.generation, d.version_id)),
        Some((Some("9".into()), None)),
        "fields the new record lacks do not survive"
    );
}

pub async fn sequencers_at_or_below_the_mark_of_their_bucket_are_refused<L: Ledger + LedgerFixture>(l: &L) {
    let key = format!("gs://dst/{}", unique("ledger/order"));
    acquired(l.claim(&claim(&key, "a", NOW, Some("0000000A"), "src")).await.expect("claim"));
    assert!(l.complete(&key, "a", &done(Some("0000000A"), "1")).await.expect("complete"));
    let item = l.item(&key).await.expect("item");
    assert_eq!((item.high_water.as_deref(), item.high_water_source.as_deref()), (Some("0000000A"), Some("src")));
    for seq in ["00000009", "0000000A"] {
        rejected(l.claim(&claim(&key, "b", NOW, Some(seq), "src")).await.expect("claim"));
    }
    // Another bucket's sequencers are not ordered by this mark.
    acquired(l.claim(&claim(&key, "b", NOW, Some("00000001"), "other")).await.expect("claim"));
    l.release(&key, "b", None).await.expect("release");
    // A copy without a sequencer (a job, the CLI) keeps the mark.
    acquired(l.claim(&claim(&key, "c", NOW, None, "src")).await.expect("claim"));
    assert!(l.complete(&key, "c", &done(None, "2")).await.expect("complete"));
    assert_eq!(l.item(&key).await.and_then(|i| i.high_water).as_deref(), Some("0000000A"), "the mark never falls");
    rejected(l.claim(&claim(&key, "d", NOW, Some("00000009"), "src")).await.expect("claim"));
    acquired(l.claim(&claim(&key, "d", NOW, Some("0000000B"), "src")).await.expect("a later event"));
}

pub async fn a_release_frees_the_key_and_may_raise_the_mark<L: Ledger + LedgerFixture>(l: &L) {
    let key = format!("gs://dst/{}", unique("ledger/release"));
    acquired(l.claim(&claim(&key, "a", NOW, Some("05"), "src")).await.expect("claim"));
    l.release(&key, "b", Some(("09", "src"))).await.expect("release by another is a no-op");
    let item = l.item(&key).await.expect("item");
    assert_eq!((item.lease_owner.as_deref(), item.high_water), (Some("a"), None));
    l.release(&key, "a", Some(("05", "src"))).await.expect("release");
    let item = l.item(&key).await.expect("item");
    assert_eq!(
        (item.lease_owner, item.high_water.as_deref(), item.done),
        (None, Some("05"), None),
        "free at once, marked, nothing recorded"
    );
    rejected(l.claim(&claim(&key, "b", NOW, Some("05"), "src")).await.expect("the same event again"));
    rejected(l.claim(&claim(&key, "a", NOW, None, "src")).await.expect("the released owner"));
    acquired(l.claim(&claim(&key, "b", NOW, None, "src")).await.expect("another owner at once"));
    l.release(&format!("{key}-none"), "a", None).await.expect("releasing a missing item is a no-op");
}

pub async fn checkpoints_and_failure_notes_are_written_only_by_the_holder<L: Ledger + LedgerFixture>(l: &L) {
    let key = format!("gs://dst/{}", unique("ledger/checkpoint"));
    let cp = UploadCheckpoint {
        session: "https://upload.example/session".into(),
        version_id: Some("v1".into()),
        etag: "e1".into(),
        size: 1 << 20,
        chunk_size: 256 * 1024,
        offset: 512 * 1024,
        crc32c: 42,
    };
    acquired(l.claim(&claim(&key, "a", NOW, None, "src")).await.expect("claim"));
    assert!(!l.checkpoint(&key, "b", Some(&cp), NOW + 90_000).await.expect("checkpoint"), "not the holder");
    assert!(l.checkpoint(&key, "a", Some(&cp), NOW + 90_000).await.expect("checkpoint"));
    let item = l.item(&key).await.expect("item");
    assert_eq!(
        (item.upload.as_ref(), item.lease_expires_ms),
        (Some(&cp), Some(NOW + 90_000)),
        "the upload and the renewed lease"
    );
    let note = FailureNote { kind: "transient".into(), message: "x".repeat(1_500), at_ms: NOW };
    l.note_failure(&key, "b", &note).await.expect("note by another is a no-op");
    assert_eq!(l.item(&key).await.and_then(|i| i.failure), None);
    l.note_failure(&key, "a", &note).await.expect("note");
    let failure = l.item(&key).await.and_then(|i| i.failure).expect("noted");
    assert_eq!(
        (failure.kind.as_str(), failure.message.len(), failure.at_ms),
        ("transient", 1_000, NOW),
        "long messages are cut"
    );
    // The lease expires; the next holder gets the unfinished upload back with the claim.
    let previous = acquired(l.claim(&claim(&key, "b", NOW + 90_001, None, "src")).await.expect("claim"));
    assert_eq!(previous.upload, Some(cp.clone()), "the next attempt continues the session");
    assert!(!l.checkpoint(&key, "a", None, NOW).await.expect("checkpoint"), "the old holder lost it");
    let mut moved = cp.clone();
    moved.version_id = None;
    assert!(l.checkpoint(&key, "b", Some(&moved), NOW + 200_000).await.expect("checkpoint"));
    assert_eq!(
        l.item(&key).await.and_then(|i| i.upload).map(|u| u.version_id),
        Some(None),
        "a version the new upload lacks is gone"
    );
    assert!(l.complete(&key, "b", &done(None, "3")).await.expect("complete"));
    let item = l.item(&key).await.expect("item");
    assert_eq!((item.upload, item.failure), (None, None), "completion forgets the upload and the failure");
    acquired(l.claim(&claim(&key, "c", NOW, None, "src")).await.expect("claim"));
    assert!(l.checkpoint(&key, "c", Some(&cp), NOW + 1).await.expect("checkpoint"));
    assert!(l.checkpoint(&key, "c", None, NOW + 2).await.expect("forget"));
    assert_eq!(l.item(&key).await.map(|i| (i.upload, i.lease_expires_ms)), Some((None, Some(NOW + 2))));
}
