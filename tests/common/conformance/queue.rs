//! The queue ports ([`TaskQueue`], [`DeadLetters`]): SQS's delays, visibility and receipt handles
//! as the SQS adapter uses them. Each case leaves the queue empty.

use super::unique;
use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;
use xcr::ErrorKind;
use xcr::ports::{DeadLetters, TaskQueue};

/// What the suite needs besides the ports: a consumer's side of the queue, and time passing.
pub trait QueueFixture {
    /// Receives what is visible now (up to ten), hidden for `visibility_secs`: (handle, body).
    fn receive(&self, visibility_secs: u32) -> impl Future<Output = Vec<(String, String)>>;
    fn delete(&self, receipt_handle: &str) -> impl Future<Output = ()>;
    /// Lets `by` pass (a real queue sleeps; the in-memory one moves its clock).
    fn wait(&self, by: Duration) -> impl Future<Output = ()>;
}

async fn drain<F: QueueFixture>(f: &F) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    loop {
        let got = f.receive(30).await;
        if got.is_empty() {
            return seen;
        }
        for (handle, body) in got {
            f.delete(&handle).await;
            seen.insert(body);
        }
    }
}

pub async fn run<Q: TaskQueue + DeadLetters + QueueFixture>(q: &Q) {
    every_body_sent_is_received_once(q).await;
    a_delayed_message_is_invisible_until_its_delay_passed(q).await;
    retry_after_sets_when_a_received_message_comes_back(q).await;
    a_peek_at_dead_letters_leaves_them_in_the_queue(q).await;
}

pub async fn every_body_sent_is_received_once<Q: TaskQueue + QueueFixture>(q: &Q) {
    let bodies: Vec<String> = (0..23).map(|i| unique(&format!("body-{i}"))).collect();
    q.send_all(&bodies).await.expect("send more than one batch");
    assert_eq!(drain(q).await, bodies.iter().cloned().collect(), "each body, once");
    q.send_all(&[]).await.expect("nothing to send");
}

pub async fn a_delayed_message_is_invisible_until_its_delay_passed<Q: TaskQueue + QueueFixture>(q: &Q) {
    let body = unique("delayed");
    q.send_delayed(&body, 1).await.expect("send");
    assert!(q.receive(30).await.is_empty(), "not visible before its delay");
    q.wait(Duration::from_millis(1_500)).await;
    assert_eq!(drain(q).await, BTreeSet::from([body]), "visible once the delay passed");
}

pub async fn retry_after_sets_when_a_received_message_comes_back<Q: TaskQueue + QueueFixture>(q: &Q) {
    let body = unique("retried");
    q.send_all(std::slice::from_ref(&body)).await.expect("send");
    let got = q.receive(30).await;
    assert_eq!(got.iter().map(|(_, b)| b.as_str()).collect::<Vec<_>>(), [body.as_str()]);
    assert!(q.receive(30).await.is_empty(), "a received message is hidden");
    q.retry_after(&got[0].0, 0).await.expect("show it again");
    let again = q.receive(30).await;
    assert_eq!(again.len(), 1, "visible at once after a zero timeout");
    q.retry_after(&again[0].0, 1).await.expect("in a second");
    assert!(q.receive(30).await.is_empty(), "hidden until its new timeout");
    q.wait(Duration::from_millis(1_500)).await;
    assert_eq!(drain(q).await, BTreeSet::from([body]), "back after its new timeout");
    let e = q.retry_after("not-a-receipt-handle", 0).await.expect_err("an unknown handle");
    assert_eq!(e.kind(), ErrorKind::Invalid, "SQS's ReceiptHandleIsInvalid: {e}");
}

pub async fn a_peek_at_dead_letters_leaves_them_in_the_queue<Q: TaskQueue + DeadLetters + QueueFixture>(q: &Q) {
    let bodies: BTreeSet<String> = (0..3).map(|i| unique(&format!("dead-{i}"))).collect();
    q.send_all(&bodies.iter().cloned().collect::<Vec<_>>()).await.expect("send");
    let peeked: BTreeSet<String> = q.peek_dead_letters(100).await.expect("peek").into_iter().collect();
    assert_eq!(peeked, bodies, "every dead letter, once");
    let one = q.peek_dead_letters(1).await.expect("peek one");
    assert_eq!(one.len(), 1, "at most `max`");
    assert_eq!(drain(q).await, bodies, "still there and visible after the peeks");
}
