//! Attachments: upload (the bytes to storage, then the row), download (members only), signed
//! links, and the sweeper that deletes the bytes of unsent uploads and deleted messages.
//!
//! A message claims its attachments in the transaction that stores it (store/transactions.rs),
//! and a delete marks them deleted in the transaction that deletes it; the bytes go afterwards,
//! here, from what the database says is deleted: a crash in between leaves work for the next
//! sweep, never a file served after its message was deleted.

use std::ops::Range;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use futures::stream::BoxStream;
use tokio::sync::Notify;

use super::{Actor, Chat, policy};
use crate::attachments::{Blobs, Links};
use crate::domain::{Attachment, AttachmentId, AttachmentName, Timestamp, UserId};
use crate::error::{Error, Result};
use crate::store::Store;

/// Most uploads one user may have that no message has claimed yet: with the upload rate limit
/// and the sweep, this bounds the storage one user can fill with files never sent.
pub const MAX_UNSENT: i64 = 100;

/// Deleted attachments handled per sweep round.
const SWEEP_BATCH: u32 = 500;

/// Settings of attachments.
pub struct AttachmentSettings {
    pub blobs: Blobs,
    pub links: Links,
    /// Largest upload, in bytes.
    pub max_bytes: u64,
    /// How long an upload may wait for a message before it is deleted.
    pub unsent_ttl: Duration,
    /// How often the sweeper looks for bytes to delete.
    pub sweep_every: Duration,
}

/// What `Chat` keeps for attachments.
pub(super) struct Attachments {
    blobs: Blobs,
    links: Links,
    max_bytes: u64,
    unsent_ttl: Duration,
    /// Wakes the sweeper early (a message with attachments was deleted).
    sweep: Notify,
}

impl Attachments {
    /// Starts the sweeper, which stops once `Chat` is gone.
    pub(super) fn start(settings: AttachmentSettings, store: Store) -> Arc<Self> {
        let this = Arc::new(Self {
            blobs: settings.blobs,
            links: settings.links,
            max_bytes: settings.max_bytes,
            unsent_ttl: settings.unsent_ttl,
            sweep: Notify::new(),
        });
        tokio::spawn(sweeper(Arc::downgrade(&this), store, settings.sweep_every));
        this
    }
}

/// What the uploader says about a file: the type it claims and the name it gives.
#[derive(Debug, Clone, Default)]
pub struct Upload {
    pub declared_type: Option<String>,
    pub name: Option<String>,
}

/// An attachment's bytes, opened for download.
pub struct Download {
    pub attachment: Attachment,
    pub body: BoxStream<'static, std::io::Result<Bytes>>,
}

impl Chat {
    /// The largest upload accepted, in bytes.
    pub fn max_attachment_bytes(&self) -> u64 {
        self.attachments.max_bytes
    }

    /// Stores an upload for `actor`: its bytes first (checked and bounded as they arrive), then
    /// its row, unclaimed. A failure leaves nothing behind.
    pub async fn upload<S>(&self, actor: &Actor, upload: Upload, body: S) -> Result<Attachment>
    where
        S: Stream<Item = Result<Bytes>> + Unpin + Send,
    {
        let a = &self.attachments;
        if self.store.unclaimed_count(&actor.user).await? >= MAX_UNSENT {
            return Err(Error::Conflict(
                "too many uploads not sent yet: send them in a message, or wait for them to expire",
            ));
        }
        let id = AttachmentId::new();
        let (sniffed, size) = a
            .blobs
            .receive(id, body, upload.declared_type.as_deref(), a.max_bytes)
            .await?;
        let attachment = Attachment {
            id,
            content_type: sniffed.content_type.to_owned(),
            size: size as i64,
            name: upload
                .name
                .as_deref()
                .and_then(AttachmentName::sanitize)
                .map(AttachmentName::into_string),
            width: sniffed.width,
            height: sniffed.height,
        };
        if let Err(e) = self
            .store
            .insert_attachment(&actor.user, &attachment, Timestamp::now())
            .await
        {
            // No row, so no sweep would ever find these bytes.
            let _ = a.blobs.delete(id).await;
            return Err(e);
        }
        metrics::counter!("confab_attachments_uploaded_total").increment(1);
        metrics::counter!("confab_attachment_bytes_uploaded_total").increment(size);
        Ok(attachment)
    }

    /// The attachment, if `viewer` may see it (its uploader until it is sent, the members of
    /// its conversation after); `not_found` otherwise, whether or not it exists.
    pub async fn visible_attachment(
        &self,
        viewer: &UserId,
        id: AttachmentId,
    ) -> Result<Attachment> {
        self.store
            .visible_attachment(viewer, id)
            .await?
            .ok_or(Error::NotFound(policy::ATTACHMENT_NOT_FOUND))
    }

    /// Opens the bytes of an attachment the caller may see (`range`: only those bytes).
    pub async fn open_attachment(
        &self,
        attachment: Attachment,
        range: Option<Range<u64>>,
    ) -> Result<Download> {
        let body = self.attachments.blobs.read(attachment.id, range).await?;
        Ok(Download { attachment, body })
    }

    /// A signed link for `viewer` to an attachment they may see: the query string to add to
    /// its URL, and when it expires.
    pub async fn attachment_link(
        &self,
        viewer: &UserId,
        id: AttachmentId,
    ) -> Result<(String, Timestamp)> {
        self.visible_attachment(viewer, id).await?;
        let (query, expires) =
            self.attachments
                .links
                .sign(id, viewer, Timestamp::now().millis() / 1000);
        Ok((query, Timestamp::from_secs(expires)))
    }

    /// Whether a link's signature is good: the user it was made for, if so.
    pub fn check_attachment_link(
        &self,
        id: AttachmentId,
        user: &str,
        expires: i64,
        sig: &str,
    ) -> Option<UserId> {
        let user = UserId::parse(user).ok()?;
        let now = Timestamp::now().millis() / 1000;
        self.attachments
            .links
            .verify(id, &user, expires, sig, now)
            .then_some(user)
    }

    /// A message was deleted: its attachments' bytes can go now rather than at the next sweep.
    pub(super) fn attachments_discarded(&self) {
        self.attachments.sweep.notify_one();
    }
}

/// Deletes the bytes of deleted attachments (unsent too long, or their message deleted), then
/// their rows, every `every` or when woken.
async fn sweeper(service: Weak<Attachments>, store: Store, every: Duration) {
    loop {
        {
            let Some(service) = service.upgrade() else {
                return;
            };
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = service.sweep.notified() => {}
            }
        }
        let Some(service) = service.upgrade() else {
            return;
        };
        if let Err(e) = sweep(&service, &store).await {
            e.log();
        }
    }
}

async fn sweep(service: &Attachments, store: &Store) -> Result<()> {
    loop {
        let now = Timestamp::now();
        let cutoff = Timestamp(now.millis() - service.unsent_ttl.as_millis() as i64);
        let doomed = store.doomed_attachments(cutoff, now, SWEEP_BATCH).await?;
        let mut gone = Vec::with_capacity(doomed.len());
        for id in &doomed {
            match service.blobs.delete(*id).await {
                Ok(()) => gone.push(*id),
                // Kept for the next sweep.
                Err(e) => e.log(),
            }
        }
        if !gone.is_empty() {
            store.forget_attachments(&gone).await?;
            metrics::counter!("confab_attachments_deleted_total").increment(gone.len() as u64);
        }
        if doomed.len() < SWEEP_BATCH as usize || gone.len() < doomed.len() {
            return Ok(());
        }
    }
}
