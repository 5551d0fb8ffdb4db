//! SQS for the local event source (`xcr pump`) and dead-letter redrive: receive, delete and
//! send in batches of up to ten, the SQS maximum.

use super::classify;
use crate::domain::error::{Error, ErrorKind, Result};
use crate::ports::{DeadLetters, TaskQueue};
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, MessageSystemAttributeName,
    SendMessageBatchRequestEntry,
};

/// A received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// SQS's message id: what a partial batch failure names.
    pub id: String,
    /// The handle that deletes the message or changes its visibility; valid for this receipt only.
    pub receipt_handle: String,
    /// The body as sent: an S3 notification, an SNS or EventBridge envelope, or a replicate command.
    pub body: String,
    /// `ApproximateReceiveCount`: how many times the message was delivered, which sets the
    /// retry clock ([`crate::domain::redelivery`]).
    pub receive_count: u32,
    /// `SentTimestamp`: when SQS received the message (epoch ms), a command's enqueue time for
    /// the replication-latency metric ([`crate::metrics`]).
    pub sent_ms: Option<i64>,
}

#[derive(Debug, Clone)]
/// One SQS queue (the replicate queue or its DLQ) by URL: receive, delete, change visibility,
/// send, and redrive.
pub struct Queue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl Queue {
    /// A queue at `url`, with the shared SDK configuration.
    pub fn new(sdk: &aws_config::SdkConfig, url: impl Into<String>) -> Self {
        Self { client: aws_sdk_sqs::Client::new(sdk), url: url.into() }
    }

    /// The queue URL, for logs and for the redrive's source and target.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The queue's ARN, as Lambda puts it in `eventSourceARN`.
    pub async fn arn(&self) -> Result<String> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| classify(e, "read queue attributes"))?;
        Ok(out
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
            .cloned()
            .unwrap_or_default())
    }

    /// The `maxReceiveCount` of the queue's redrive policy (None without one): the delivery
    /// after which a failing message moves to the dead-letter queue.
    pub async fn max_receive_count(&self) -> Result<Option<u32>> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(|e| classify(e, "read queue attributes"))?;
        let policy = out.attributes().and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy));
        Ok(policy.and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok()).and_then(|v| {
            // SQS writes it as a number; older policies hold a string.
            let n = &v["maxReceiveCount"];
            n.as_u64().or_else(|| n.as_str().and_then(|s| s.parse().ok())).and_then(|n| u32::try_from(n).ok())
        }))
    }

    /// The queue's visibility timeout in seconds: how long a received message stays hidden
    /// unless the handler sets otherwise ([`crate::domain::redelivery`]).
    pub async fn visibility_timeout(&self) -> Result<u64> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(A::VisibilityTimeout)
            .send()
            .await
            .map_err(|e| classify(e, "read queue attributes"))?;
        out.attributes()
            .and_then(|a| a.get(&A::VisibilityTimeout))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| Error::new(ErrorKind::Transient, "the queue did not report its visibility timeout"))
    }

    /// What is left to do: messages visible now, and those in flight or delayed.
    pub async fn depth(&self) -> Result<(u64, u64)> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(A::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(|e| classify(e, "read queue depth"))?;
        let get = |k: A| out.attributes().and_then(|a| a.get(&k)).and_then(|v| v.parse().ok()).unwrap_or(0);
        Ok((
            get(A::ApproximateNumberOfMessages),
            get(A::ApproximateNumberOfMessagesNotVisible) + get(A::ApproximateNumberOfMessagesDelayed),
        ))
    }

    /// Long-polls for up to `max` (1..=10) messages.
    pub async fn receive(&self, max: i32, wait_secs: i32, visibility_secs: Option<i32>) -> Result<Vec<Message>> {
        let mut req = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, 10))
            .wait_time_seconds(wait_secs.clamp(0, 20))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp);
        if let Some(v) = visibility_secs {
            req = req.visibility_timeout(v);
        }
        let out = req.send().await.map_err(|e| classify(e, "receive messages"))?;
        Ok(out
            .messages()
            .iter()
            .map(|m| Message {
                id: m.message_id().unwrap_or_default().to_string(),
                receipt_handle: m.receipt_handle().unwrap_or_default().to_string(),
                body: m.body().unwrap_or_default().to_string(),
                receive_count: m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1),
                sent_ms: m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
                    .and_then(|v| v.parse().ok()),
            })
            .collect())
    }

    /// Deletes messages; returns how many SQS confirmed.
    pub async fn delete(&self, messages: &[&Message]) -> Result<usize> {
        let mut deleted = 0;
        for batch in messages.chunks(10) {
            let entries = batch
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(&m.receipt_handle)
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Error::new(ErrorKind::Invalid, "bad delete entry").with_source(e))?;
            let out = self
                .client
                .delete_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| classify(e, "delete messages"))?;
            deleted += out.successful().len();
            for f in out.failed() {
                tracing::warn!(code = f.code(), message = f.message(), "SQS did not delete a message");
            }
        }
        Ok(deleted)
    }

    /// Makes received messages visible again at once (visibility timeout 0); returns how many
    /// SQS confirmed.
    pub async fn show_again(&self, messages: &[&Message]) -> Result<usize> {
        let mut shown = 0;
        for batch in messages.chunks(10) {
            let entries = batch
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(&m.receipt_handle)
                        .visibility_timeout(0)
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Error::new(ErrorKind::Invalid, "bad visibility entry").with_source(e))?;
            let out = self
                .client
                .change_message_visibility_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| classify(e, "show messages again"))?;
            shown += out.successful().len();
        }
        Ok(shown)
    }

    /// Sends bodies; returns the message ids SQS assigned, in order (None for a failed entry).
    pub async fn send(&self, bodies: &[&str]) -> Result<Vec<Option<String>>> {
        let mut ids = Vec::with_capacity(bodies.len());
        for batch in bodies.chunks(10) {
            let entries = batch
                .iter()
                .enumerate()
                .map(|(i, b)| SendMessageBatchRequestEntry::builder().id(i.to_string()).message_body(*b).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Error::new(ErrorKind::Invalid, "bad send entry").with_source(e))?;
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| classify(e, "send messages"))?;
            let mut slot = vec![None; batch.len()];
            for ok in out.successful() {
                if let Ok(i) = ok.id().parse::<usize>()
                    && i < slot.len()
                {
                    slot[i] = Some(ok.message_id().to_string());
                }
            }
            ids.extend(slot);
        }
        Ok(ids)
    }
}

impl TaskQueue for Queue {
    async fn send_delayed(&self, body: &str, delay_secs: u32) -> Result<()> {
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .delay_seconds(i32::try_from(delay_secs.min(900)).unwrap_or(900))
            .send()
            .await
            .map_err(|e| classify(e, "requeue a busy task"))?;
        Ok(())
    }

    async fn retry_after(&self, receipt_handle: &str, secs: u32) -> Result<()> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(i32::try_from(secs).unwrap_or(i32::MAX).min(43_200))
            .send()
            .await
            .map_err(|e| classify(e, "set when a failed record comes back"))?;
        Ok(())
    }

    async fn send_all(&self, bodies: &[String]) -> Result<()> {
        let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
        let ids = self.send(&refs).await?;
        let refused = ids.iter().filter(|id| id.is_none()).count();
        if refused > 0 {
            return Err(Error::new(
                ErrorKind::Transient,
                format!("SQS refused {refused} of {} messages", bodies.len()),
            ));
        }
        Ok(())
    }
}

/// How long a dead letter stays hidden while the sweep walks the queue: long enough that the
/// next receive of the same walk returns others, and it is shown again when the walk ends.
const PEEK_HIDE_SECS: i32 = 60;

impl DeadLetters for Queue {
    /// Walks the queue: each receive hides what it returned, so the next returns others, until a
    /// receive comes back empty or `max` are read; then everything read is shown again. A
    /// message is never deleted. Receives long-poll for a second, because a short poll samples
    /// only some of SQS's servers and may come back empty while messages wait.
    async fn peek_dead_letters(&self, max: usize) -> Result<Vec<String>> {
        let mut seen: Vec<Message> = Vec::new();
        let mut ids = std::collections::HashSet::new();
        let walked = async {
            while seen.len() < max {
                let want = i32::try_from((max - seen.len()).min(10)).unwrap_or(10);
                let got = self.receive(want, 1, Some(PEEK_HIDE_SECS)).await?;
                if got.is_empty() {
                    break;
                }
                seen.extend(got.into_iter().filter(|m| ids.insert(m.id.clone())));
            }
            Ok::<(), Error>(())
        }
        .await;
        let refs: Vec<&Message> = seen.iter().collect();
        match self.show_again(&refs).await {
            Ok(n) if n < refs.len() => {
                tracing::warn!(hidden = refs.len() - n, "some dead letters stay hidden for {PEEK_HIDE_SECS} s")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e.chain(), "dead letters read stay hidden for {PEEK_HIDE_SECS} s"),
        }
        walked?;
        Ok(seen.into_iter().map(|m| m.body).collect())
    }
}
