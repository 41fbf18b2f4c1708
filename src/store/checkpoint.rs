//! SQLite's WAL checkpoints, kept off the writer's commits.
//!
//! In WAL mode a commit appends pages to the log; a checkpoint copies the log back into the
//! database file and fsyncs that file. By default SQLite runs the checkpoint inside whichever
//! COMMIT takes the log past 1,000 pages, on the committing connection: here the one writer,
//! so that commit and every message queued behind it wait for the copy and the fsync. Under
//! steady load that was most of the writer's slow commits (docs/bench/notes.md, "Stalls under steady load").
//!
//! So the writer's connection never checkpoints on its own (`wal_autocheckpoint = 0`), and this
//! task does, every [`INTERVAL`], in two steps:
//! 1. A PASSIVE checkpoint on a connection of its own. It takes no lock the writer needs and
//!    never waits: it copies what was in the log when it started, and fsyncs the database
//!    file, while the writer goes on appending. This is the bulk of the work.
//! 2. When the log is past [`RESTART_PAGES`], another PASSIVE checkpoint on the writer's
//!    connection, between two of its transactions. The log only starts over from its beginning
//!    when a write transaction begins with all of it copied, which step 1 alone never achieves
//!    under steady load (the writer appended more while it ran), so without step 2 the log
//!    grows by gigabytes. Step 2 copies only what was appended during step 1: a few pages and
//!    an fsync, where SQLite's own checkpoint copied a thousand pages.
//!
//! `journal_size_limit` then cuts a log file that grew in a burst back down. The log stays
//! around [`RESTART_PAGES`] plus one interval of writes, as long as no reader keeps an old
//! snapshot for long (ours are single queries).

use std::time::Duration;

use sqlx::SqlitePool;
use tokio::sync::oneshot;

/// How often the log is copied back. Longer means fewer fsyncs of the database file (each one
/// competes with the writer's own for the disk), shorter means a smaller log.
const INTERVAL: Duration = Duration::from_secs(1);

/// Past this many pages (16 MiB), the log is made to start over.
const RESTART_PAGES: i64 = 4096;

/// A log this large (256 MiB of 4 KiB pages) means it hasn't started over for a long time: a
/// reader holds an old snapshot. Worth a warning, since the log (and every reader's lookups in
/// it) grows until that reader lets go.
const LARGE_LOG_PAGES: i64 = 64 * 1024;

/// Stops the checkpoint task when the last clone of the store that started it is dropped.
pub(super) struct Checkpointer {
    _stop: oneshot::Receiver<()>,
}

/// Starts checkpointing the database behind `own` (one read-write connection, not the
/// writer's) and `writer` (the writer's pool) until the returned handle is dropped.
pub(super) fn start(own: SqlitePool, writer: SqlitePool) -> Checkpointer {
    let (mut stop, receiver) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(INTERVAL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut warned = false;
        loop {
            tokio::select! {
                // The receiver is dropped with the store.
                _ = stop.closed() => break,
                _ = every.tick() => {}
            }
            let mut result = checkpoint(&own, "checkpoint").await;
            if let Ok(log) = result
                && log > RESTART_PAGES
            {
                result = checkpoint(&writer, "checkpoint on the writer").await;
            }
            match result {
                Ok(log) => {
                    metrics::gauge!("confab_sqlite_wal_pages").set(log as f64);
                    if log > LARGE_LOG_PAGES && !warned {
                        tracing::warn!(
                            pages = log,
                            "the SQLite log keeps growing: a reader holds an old snapshot"
                        );
                    }
                    warned = log > LARGE_LOG_PAGES;
                }
                Err(e) => tracing::warn!(error = %e, "checkpointing the SQLite log failed"),
            }
        }
        own.close().await;
    });
    Checkpointer { _stop: receiver }
}

/// One PASSIVE checkpoint; the size of the log in pages (it starts over only once all of it
/// was copied back).
async fn checkpoint(pool: &SqlitePool, what: &'static str) -> sqlx::Result<i64> {
    let started = std::time::Instant::now();
    // (busy, pages in the log, pages copied so far).
    let (_busy, log, copied): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(pool)
        .await?;
    tracing::debug!(
        log,
        copied,
        ms = started.elapsed().as_millis() as u64,
        "{what}"
    );
    Ok(log)
}
