//! SQS in memory: [`TaskQueue`] and [`DeadLetters`], plus the receive and delete a consumer
//! (the pump, a test) needs.
//!
//! What it keeps of SQS's contract, as [`crate::adapters::aws::sqs::Queue`] relies on it:
//! * a delayed message is invisible until its delay (at most 900 s) has passed;
//! * a receive hides what it returns for the visibility timeout, counts the receive and gives a
//!   new receipt handle; only the latest handle of a message changes its visibility or deletes
//!   it, and an unknown or outdated handle is refused (`invalid`, SQS's 400
//!   `ReceiptHandleIsInvalid`);
//! * changing the visibility makes the message visible that many seconds from now (at most
//!   12 hours);
//! * a peek of the dead letters receives and shows them again: they stay, their receive count
//!   grows.
//!
//! Time is the machine's plus what [`MemoryQueue::advance`] added, so a test can let a delay
//! or a visibility timeout pass without sleeping.

use super::lock;
use crate::domain::error::{Error, ErrorKind, Result};
use crate::ports::{DeadLetters, TaskQueue};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The message's id, the same on every receive.
    pub id: String,
    /// This receive's handle: only the latest one deletes the message or changes its visibility.
    pub receipt_handle: String,
    /// The body as sent.
    pub body: String,
    /// How many times it was received, this time included (SQS's `ApproximateReceiveCount`).
    pub receive_count: u32,
}

#[derive(Debug)]
struct Message {
    id: String,
    body: String,
    visible_at: Instant,
    receive_count: u32,
    /// The handle of the latest receive.
    receipt: Option<String>,
}

#[derive(Debug)]
struct State {
    messages: Vec<Message>,
    skew: Duration,
    next_id: u64,
    visibility: Duration,
}

/// SQS in memory (see the module doc). A clone is another client of the same queue.
#[derive(Debug, Clone)]
pub struct MemoryQueue {
    state: Arc<Mutex<State>>,
}

impl Default for MemoryQueue {
    fn default() -> Self {
        Self::new(Duration::from_secs(30))
    }
}

impl MemoryQueue {
    /// A queue whose messages stay hidden `visibility` after a receive (SQS's default is 30 s).
    pub fn new(visibility: Duration) -> Self {
        Self {
            state: Arc::new(Mutex::new(State { messages: Vec::new(), skew: Duration::ZERO, next_id: 0, visibility })),
        }
    }

    /// Moves the queue's clock forward.
    pub fn advance(&self, by: Duration) {
        lock(&self.state).skew += by;
    }

    fn now(state: &State) -> Instant {
        Instant::now() + state.skew
    }

    fn push(state: &mut State, body: &str, delay: Duration) {
        state.next_id += 1;
        let visible_at = Self::now(state) + delay;
        state.messages.push(Message {
            id: format!("m-{}", state.next_id),
            body: body.to_string(),
            visible_at,
            receive_count: 0,
            receipt: None,
        });
    }

    /// Receives up to `max` (1..=10) visible messages, oldest first, hiding them for
    /// `visibility` (the queue's own when `None`).
    pub fn receive(&self, max: usize, visibility: Option<Duration>) -> Vec<Received> {
        let mut state = lock(&self.state);
        let now = Self::now(&state);
        let hide = visibility.unwrap_or(state.visibility);
        let mut out = Vec::new();
        for m in state.messages.iter_mut().filter(|m| m.visible_at <= now).take(max.clamp(1, 10)) {
            m.receive_count += 1;
            m.visible_at = now + hide;
            let handle = format!("{}#{}#{:016x}", m.id, m.receive_count, fastrand::u64(..));
            m.receipt = Some(handle.clone());
            out.push(Received {
                id: m.id.clone(),
                receipt_handle: handle,
                body: m.body.clone(),
                receive_count: m.receive_count,
            });
        }
        out
    }

    /// Deletes a received message by its latest receipt handle.
    pub fn delete(&self, receipt_handle: &str) -> Result<()> {
        let mut state = lock(&self.state);
        let i = Self::by_handle(&state, receipt_handle, "delete message")?;
        state.messages.remove(i);
        Ok(())
    }

    /// How many messages the queue holds, visible or not.
    pub fn len(&self) -> usize {
        lock(&self.state).messages.len()
    }

    /// Whether the queue holds no message at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn by_handle(state: &State, receipt_handle: &str, what: &str) -> Result<usize> {
        state.messages.iter().position(|m| m.receipt.as_deref() == Some(receipt_handle)).ok_or_else(|| {
            Error::new(
                ErrorKind::Invalid,
                format!("{what}: 400 ReceiptHandleIsInvalid: the receipt handle is not current"),
            )
        })
    }
}

impl TaskQueue for MemoryQueue {
    async fn send_delayed(&self, body: &str, delay_secs: u32) -> Result<()> {
        let mut state = lock(&self.state);
        Self::push(&mut state, body, Duration::from_secs(u64::from(delay_secs.min(900))));
        Ok(())
    }

    async fn send_all(&self, bodies: &[String]) -> Result<()> {
        let mut state = lock(&self.state);
        for b in bodies {
            Self::push(&mut state, b, Duration::ZERO);
        }
        Ok(())
    }

    async fn retry_after(&self, receipt_handle: &str, secs: u32) -> Result<()> {
        let mut state = lock(&self.state);
        let i = Self::by_handle(&state, receipt_handle, "set when a failed record comes back")?;
        let at = Self::now(&state) + Duration::from_secs(u64::from(secs.min(43_200)));
        state.messages[i].visible_at = at;
        Ok(())
    }
}

impl DeadLetters for MemoryQueue {
    async fn peek_dead_letters(&self, max: usize) -> Result<Vec<String>> {
        let mut state = lock(&self.state);
        let now = Self::now(&state);
        let mut out = Vec::new();
        for m in state.messages.iter_mut().filter(|m| m.visible_at <= now).take(max) {
            // Received and shown again at once: visible, one receive more, a new handle.
            m.receive_count += 1;
            m.receipt = Some(format!("{}#{}#{:016x}", m.id, m.receive_count, fastrand::u64(..)));
            out.push(m.body.clone());
        }
        Ok(out)
    }
}
