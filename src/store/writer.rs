//! Group commit: messages are written in batches, one transaction per batch.
//!
//! A round trip and a commit per message caps throughput at a few hundred messages a second.
//! Here, whatever queued up while the previous transaction was committing is written by the next
//! one, so batches grow with load by themselves and no artificial wait is added when idle.
//!
//! Order: jobs for one conversation always go to the same shard, each shard writes its batches
//! one after another, and replies run in batch order right after the commit. So messages one
//! socket sends are stored in the order it sent them, and each conversation's replies (which
//! ack and broadcast) run in seq order.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc};

use super::is_connection_lost;
use super::{NewMessage, SendOutcome, Store};
use crate::error::{Error, Result};

/// Called once with the outcome of a submitted message, after its transaction ended. It runs
/// on the writer's task, so it must be quick and must not block: ack and enqueue, nothing more.
pub type SendReply = Box<dyn FnOnce(Result<SendOutcome>) + Send>;

struct Job {
    message: NewMessage,
    reply: SendReply,
    /// When it was submitted: the writer's share of the ack's latency is measured from here.
    queued: Instant,
}

/// Jobs waiting beyond this per shard are refused as `unavailable`, which bounds memory when
/// the database falls behind and tells clients to retry later.
const QUEUE_PER_SHARD: usize = 16 * 1024;

/// A batch (or its replies) taking this long is logged at debug, to find stalls.
const SLOW_BATCH: Duration = Duration::from_millis(20);

/// A failed batch is retried this many times when the failure is transient (a deadlock or
/// serialization failure between nodes).
const RETRIES: usize = 3;

/// The handle to the writer tasks. Cheap to clone.
#[derive(Clone)]
pub struct Writer {
    shards: Vec<mpsc::Sender<Job>>,
    hasher: std::collections::hash_map::RandomState,
    /// Messages submitted and not yet answered, so shutdown can let them finish.
    in_flight: Arc<InFlight>,
}

impl Writer {
    /// Starts `shards` writer tasks, each committing at most `max_batch` messages at a time.
    pub fn start(store: Store, shards: usize, max_batch: usize) -> Self {
        let in_flight = Arc::new(InFlight::default());
        let shards = (0..shards.max(1))
            .map(|shard| {
                let (tx, rx) = mpsc::channel(QUEUE_PER_SHARD);
                let run = run(store.clone(), rx, max_batch, shard, in_flight.clone());
                tokio::spawn(crate::telemetry::runtime::WRITER.instrument(run));
                tx
            })
            .collect();
        Self {
            shards,
            hasher: Default::default(),
            in_flight,
        }
    }

    /// Waits until every message submitted so far has been answered, or `limit` passed.
    pub async fn drain(&self, limit: Duration) {
        let _ = tokio::time::timeout(limit, self.in_flight.idle()).await;
    }

    /// Queues a message. Synchronous, so callers submitting in arrival order get their messages
    /// written in that order. `reply` is always called exactly once.
    pub fn submit(&self, message: NewMessage, reply: SendReply) {
        self.in_flight.add(1);
        let hash = self.hasher.hash_one(message.conversation_id);
        let shard = &self.shards[(hash % self.shards.len() as u64) as usize];
        let job = Job {
            message,
            reply,
            queued: Instant::now(),
        };
        if let Err(e) = shard.try_send(job) {
            let job = match e {
                mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job) => {
                    job
                }
            };
            metrics::counter!("confab_writer_refused_total").increment(1);
            (job.reply)(Err(Error::Unavailable(
                anyhow::anyhow!("the message writer is overloaded").into(),
            )));
            self.in_flight.done(1);
        }
    }
}

/// Counts messages submitted and not yet answered, and wakes a drain when none is left.
#[derive(Default)]
struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

impl InFlight {
    fn add(&self, n: usize) {
        self.count.fetch_add(n, Ordering::AcqRel);
    }

    fn done(&self, n: usize) {
        if self.count.fetch_sub(n, Ordering::AcqRel) == n {
            self.idle.notify_waiters();
        }
    }

    /// Returns once the count is zero.
    async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            // Registered before the check, so a `done` in between isn't missed.
            notified.as_mut().enable();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

async fn run(
    store: Store,
    mut rx: mpsc::Receiver<Job>,
    max_batch: usize,
    shard: usize,
    in_flight: Arc<InFlight>,
) {
    let mut jobs = Vec::with_capacity(max_batch);
    let mut queued = Vec::with_capacity(max_batch);
    while rx.recv_many(&mut jobs, max_batch).await > 0 {
        let answered = jobs.len();
        queued.extend(jobs.iter().map(|j| j.queued));
        let (messages, replies): (Vec<NewMessage>, Vec<SendReply>) =
            jobs.drain(..).map(|j| (j.message, j.reply)).unzip();
        let started = Instant::now();
        let result = write_with_retries(&store, &messages).await;
        let took = started.elapsed();
        metrics::histogram!("confab_persist_seconds").record(took.as_secs_f64());
        metrics::histogram!("confab_persist_batch_size").record(messages.len() as f64);
        if took >= SLOW_BATCH {
            // For lining stalls up with the database's own events (checkpoints, vacuums):
            // `CONFAB_LOG=info,confab::store::writer=debug`.
            tracing::debug!(
                shard,
                batch = messages.len(),
                ms = took.as_millis() as u64,
                "slow batch"
            );
        }
        match result {
            Ok(outcomes) => {
                let replying = Instant::now();
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    reply(Ok(outcome));
                }
                // Acking and fanning out run on this task before the next batch: a slow
                // fan-out holds every later message of this shard back.
                let replied = replying.elapsed();
                if replied >= SLOW_BATCH {
                    tracing::debug!(
                        shard,
                        batch = answered,
                        ms = replied.as_millis() as u64,
                        "slow replies"
                    );
                }
            }
            Err(e) if messages.len() > 1 && !matches!(e, Error::Unavailable(_)) => {
                // Something in the batch fails that retrying didn't cure. Write the messages
                // one by one so that one bad message can't take its neighbours down with it.
                tracing::warn!(
                    shard,
                    error = e.cause_chain(),
                    "batch failed; writing singly"
                );
                for (message, reply) in messages.into_iter().zip(replies) {
                    let result = write_with_retries(&store, std::slice::from_ref(&message)).await;
                    reply(result.map(|mut o| o.remove(0)));
                }
            }
            Err(e) => {
                if !matches!(e, Error::Unavailable(_)) {
                    tracing::error!(shard, error = e.cause_chain(), "writing a message failed");
                }
                for reply in replies {
                    reply(Err(e.clone()));
                }
            }
        }
        // Each message's time in the writer, until its batch was answered: its wait in the queue,
        // the batch's commit, and the batch's replies (acks and broadcasts).
        let answered_at = Instant::now();
        let histogram = metrics::histogram!("confab_send_seconds");
        for at in queued.drain(..) {
            histogram.record(answered_at.saturating_duration_since(at).as_secs_f64());
        }
        in_flight.done(answered);
    }
}

async fn write_with_retries(store: &Store, messages: &[NewMessage]) -> Result<Vec<SendOutcome>> {
    let mut attempt = 0;
    loop {
        match store.insert_messages(messages).await {
            Err(e) if attempt < RETRIES && is_transient(&e) => {
                attempt += 1;
                metrics::counter!("confab_writer_retries_total").increment(1);
                tracing::debug!(attempt, error = e.cause_chain(), "retrying a batch");
            }
            result => return result,
        }
    }
}

/// Deadlocks, serialization failures and unique violations (a concurrent writer on another
/// node got there first) are resolved by running the batch again. So is a connection lost in
/// the middle of a batch (the database restarted, or ended that backend): the retry gets
/// another connection. Sends are idempotent, so a batch whose COMMIT went through before the
/// connection broke is answered from what it stored (as duplicates, so not broadcast: members
/// pick those up by the seq gap, as after any lost event).
fn is_transient(e: &Error) -> bool {
    let (Error::Internal(cause) | Error::Unavailable(cause)) = e else {
        return false;
    };
    cause
        .chain()
        .filter_map(|c| c.downcast_ref::<sqlx::Error>())
        .any(|e| {
            is_connection_lost(e)
                || matches!(e, sqlx::Error::Database(db)
                    if matches!(db.code().as_deref(), Some("40001" | "40P01" | "23505")))
        })
}
