//! Webhooks: events for the host app's backend (docs/PROTOCOL.md, "Webhooks"), so it can email
//! or push a member who is away and mirror conversations.
//!
//! Events are recorded in the outbox by the transaction of what caused them (store); a sender
//! task on every node claims due rows with a lease (so each event is sent by one node, and rows
//! of a node that died are taken over), posts them signed, and deletes them once the receiver
//! answered 2xx. A failure (a network error, a non-2xx answer) is retried with exponential
//! backoff until `retry_for` has passed since the event, then the row is kept, marked failed,
//! for the operator. Delivery is at least once: the receiver drops repeats by `id`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::value::RawValue;
use sha2::Sha256;
use tokio::sync::Notify;

use super::Chat;
use super::presence::Presence;
use crate::domain::{ConversationId, Timestamp, UserId};
use crate::store::{OutboxRow, OutboxSettle, Store};

/// Most events sent at once by one node (each claim leases this many).
const BATCH: usize = 32;
/// How often an idle sender looks for due retries (a commit wakes it at once).
const POLL: Duration = Duration::from_millis(500);
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// How much of a failing receiver's answer is kept (`last_error`).
const ERROR_CHARS: usize = 300;

/// Where and how to send webhooks.
#[derive(Clone)]
pub struct WebhookSettings {
    pub url: String,
    pub secret: String,
    /// `message.created` for every message, not only those with a recipient away.
    pub all_messages: bool,
    /// How long after an event its delivery is retried before it is given up.
    pub retry_for: Duration,
    /// The wait before the first retry; each next one doubles, up to an hour.
    pub backoff: Duration,
    /// How long one attempt may take.
    pub timeout: Duration,
}

impl Chat {
    /// Starts this node's webhook sender: it runs until `stop` is set (shutdown).
    pub fn start_webhooks(
        &self,
        settings: WebhookSettings,
        away_after: Duration,
        written: Arc<Notify>,
        stop: Arc<AtomicBool>,
    ) -> anyhow::Result<()> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .user_agent(concat!("confab-webhooks/", env!("CARGO_PKG_VERSION")))
            // A receiver's redirect is a misconfiguration to fix, not to follow with the body.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let sender = Sender {
            store: self.store.clone(),
            presence: self.presence.clone(),
            away_after,
            client,
            settings,
        };
        tokio::spawn(sender.run(written, stop));
        Ok(())
    }
}

#[derive(Clone)]
struct Sender {
    store: Store,
    presence: Presence,
    /// The presence grace period: who is away is judged this long after a message, so that a
    /// member who closed the app just before it counts as away, and one reloading the page
    /// doesn't.
    away_after: Duration,
    client: reqwest::Client,
    settings: WebhookSettings,
}

/// The body of a webhook request.
#[derive(Serialize)]
struct Envelope<'a> {
    id: uuid::Uuid,
    #[serde(rename = "type")]
    kind: &'a str,
    created_at: Timestamp,
    data: &'a RawValue,
}

/// A `message.created` row as the transaction wrote it: the message alone.
#[derive(serde::Deserialize)]
struct Unresolved {
    message: UnresolvedMessage,
}

#[derive(serde::Deserialize)]
struct UnresolvedMessage {
    conversation_id: String,
    sender_id: Option<String>,
}

impl Sender {
    async fn run(self, written: Arc<Notify>, stop: Arc<AtomicBool>) {
        // Long enough for every attempt of a batch (they run at once), so a live node's rows
        // are never taken over while it sends them.
        let lease = 2 * self.settings.timeout + Duration::from_secs(1);
        while !stop.load(Ordering::Relaxed) {
            let now = Timestamp::now().millis();
            let rows = match self
                .store
                .claim_outbox(
                    now,
                    now - self.away_after.as_millis() as i64,
                    now + lease.as_millis() as i64,
                    BATCH as i64,
                )
                .await
            {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(error = e.cause_chain(), "webhooks: claiming events");
                    tokio::time::sleep(POLL).await;
                    continue;
                }
            };
            if rows.is_empty() {
                self.measure_depth().await;
                let _ = tokio::time::timeout(POLL, written.notified()).await;
                continue;
            }
            futures::future::join_all(rows.into_iter().map(|row| self.deliver(row))).await;
            self.measure_depth().await;
        }
    }

    async fn measure_depth(&self) {
        if let Ok(depth) = self.store.outbox_depth().await {
            metrics::gauge!("confab_webhook_queue_depth").set(depth as f64);
        }
    }

    async fn deliver(&self, mut row: OutboxRow) {
        if !row.resolved {
            match self.resolve(&row).await {
                Ok(Some(data)) => row.data = data,
                Ok(None) => return,
                Err(e) => {
                    // Left leased: claimed again once the lease ends.
                    tracing::warn!(error = e.cause_chain(), "webhooks: resolving recipients");
                    return;
                }
            }
        }
        let settle = match self.post(&row).await {
            Ok(()) => {
                metrics::counter!("confab_webhook_attempts_total", "result" => "ok").increment(1);
                OutboxSettle::Done
            }
            Err(error) => {
                metrics::counter!("confab_webhook_attempts_total", "result" => "error")
                    .increment(1);
                let now = Timestamp::now().millis();
                let age = Duration::from_millis((now - row.created_at).max(0) as u64);
                if age >= self.settings.retry_for {
                    metrics::counter!("confab_webhook_failures_total").increment(1);
                    tracing::error!(id = %row.id, kind = row.kind, attempts = row.attempts + 1, error, "webhooks: giving up on an event");
                    OutboxSettle::Failed { error }
                } else {
                    let wait = backoff(self.settings.backoff, row.attempts as u32 + 1);
                    tracing::info!(id = %row.id, kind = row.kind, attempts = row.attempts + 1, retry_in_ms = wait.as_millis() as u64, error, "webhooks: delivery failed");
                    OutboxSettle::Retry {
                        at: now + wait.as_millis() as i64,
                        error,
                    }
                }
            }
        };
        if let Err(e) = self.store.settle_outbox(row.id, &settle).await {
            // Left leased: sent again once the lease ends (at least once).
            tracing::warn!(error = e.cause_chain(), "webhooks: recording a delivery");
        }
    }

    /// Completes a `message.created` event with the recipients who have no socket anywhere in
    /// the cluster now (the presence grace period after the commit), and the
    /// conversation's kind. `None`: nobody is away (and not every message is wanted), so there
    /// is nothing to send; the row is gone.
    async fn resolve(&self, row: &OutboxRow) -> crate::error::Result<Option<String>> {
        let unresolved: Unresolved = serde_json::from_str(&row.data)
            .map_err(|e| crate::error::Error::internal(anyhow::anyhow!("outbox data: {e}")))?;
        let full: serde_json::Value = serde_json::from_str(&row.data)
            .map_err(|e| crate::error::Error::internal(anyhow::anyhow!("outbox data: {e}")))?;
        let conversation = ConversationId::parse(&unresolved.message.conversation_id)
            .ok_or_else(|| crate::error::Error::internal(anyhow::anyhow!("outbox data: id")))?;
        let Some((kind, count, members)) = self.store.kind_and_members(conversation).await? else {
            self.store.resolve_outbox(row.id, None).await?;
            return Ok(None);
        };
        if crate::domain::is_large(count) && !self.settings.all_messages {
            // Who of 100,000 members is away would be a presence lookup per member per
            // message, and an email to each of them no notification anyone wants: a large
            // group's messages are not announced as missed (docs/PROTOCOL.md, "Webhooks").
            self.store.resolve_outbox(row.id, None).await?;
            return Ok(None);
        }
        let sender = unresolved.message.sender_id;
        let recipients: Vec<UserId> = members
            .into_iter()
            .filter(|m| Some(m.as_str()) != sender.as_deref())
            .collect();
        let online = self.presence.online(&recipients).await;
        let offline: Vec<&UserId> = recipients
            .iter()
            .filter(|u| !online.get(*u).copied().unwrap_or(false))
            .collect();
        if offline.is_empty() && !self.settings.all_messages {
            self.store.resolve_outbox(row.id, None).await?;
            return Ok(None);
        }
        let data = serde_json::json!({
            "conversation_id": conversation,
            "conversation_kind": kind,
            "message": full["message"],
            "offline_member_ids": offline,
        })
        .to_string();
        self.store.resolve_outbox(row.id, Some(&data)).await?;
        Ok(Some(data))
    }

    /// One attempt: `Err` with what went wrong, for `last_error` and the log.
    async fn post(&self, row: &OutboxRow) -> Result<(), String> {
        let data = RawValue::from_string(row.data.clone()).map_err(|e| e.to_string())?;
        let body = serde_json::to_string(&Envelope {
            id: row.id,
            kind: &row.kind,
            created_at: Timestamp(row.created_at),
            data: &data,
        })
        .map_err(|e| e.to_string())?;
        let t = Timestamp::now().millis() / 1000;
        let response = self
            .client
            .post(&self.settings.url)
            .header("content-type", "application/json")
            .header(
                "confab-signature",
                signature(&self.settings.secret, t, &body),
            )
            .header("confab-event-id", row.id.to_string())
            .header("confab-event-type", row.kind.as_str())
            .body(body)
            .send()
            .await
            .map_err(|e| shorten(&format!("{e:#}")))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        Err(shorten(&format!("HTTP {status}: {text}")))
    }
}

fn shorten(text: &str) -> String {
    text.chars().take(ERROR_CHARS).collect()
}

/// The `Confab-Signature` header: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, the
/// scheme Stripe uses, so receivers know how to check it (and reject old `t`, against replays).
pub fn signature(secret: &str, t: i64, body: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any size");
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The wait before attempt `attempt + 1`: `first`, doubling each time, at most an hour, with a
/// tenth of jitter so receivers coming back aren't hit by every node's retries at once.
fn backoff(first: Duration, attempt: u32) -> Duration {
    let doubled = first.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let wait = doubled.min(MAX_BACKOFF);
    wait + wait.mul_f64(rand::random::<f64>() / 10.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_the_stripe_scheme() {
        // Checked against: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac whsec_test
        assert_eq!(
            signature("whsec_test", 1_700_000_000, r#"{"a":1}"#),
            "t=1700000000,v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789"
        );
    }

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        let first = Duration::from_secs(1);
        let b1 = backoff(first, 1);
        assert!(b1 >= first && b1 <= first.mul_f64(1.1));
        let b5 = backoff(first, 5);
        assert!(b5 >= Duration::from_secs(16) && b5 <= Duration::from_secs(18));
        let late = backoff(first, 40);
        assert!(late >= MAX_BACKOFF && late <= MAX_BACKOFF.mul_f64(1.1));
    }
}
