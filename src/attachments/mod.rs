//! Attachments' bytes: where they are kept (the data directory, or S3-compatible object storage
//! for several nodes), how an upload is received (streamed to storage, its size bounded as it
//! arrives, its type read from its first bytes before anything is kept), and the signed links
//! that let an `<img src>` download one without a token.
//!
//! Storage goes through the `object_store` crate for both places: one interface for the local
//! file system and S3, with multipart uploads that write part by part (a file is never held
//! whole in memory) and ranged reads.

pub mod links;
pub mod sniff;

use std::ops::Range;
use std::path::Path as FsPath;
use std::sync::Arc;

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, WriteMultipart};

use crate::domain::AttachmentId;
use crate::error::{Error, Result};
pub use links::Links;
pub use sniff::Sniffed;

/// Where attachments' bytes live. Cheap to clone.
#[derive(Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    /// Bytes buffered before a part is written: small for files (each part is a write), 5 MiB
    /// for S3 (its least part size but the last).
    part_size: usize,
    /// Where, for logs and errors (no credentials).
    place: String,
}

impl std::fmt::Debug for Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.place)
    }
}

impl Blobs {
    /// Files in `dir`, created if missing.
    pub fn local(dir: &FsPath) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the attachments directory {}", dir.display()))?;
        let store = LocalFileSystem::new_with_prefix(dir)
            .with_context(|| format!("opening the attachments directory {}", dir.display()))?;
        Ok(Self {
            store: Arc::new(store),
            part_size: 64 * 1024,
            place: dir.display().to_string(),
        })
    }

    /// S3 or an S3-compatible server: `s3://BUCKET/PREFIX`, with `settings` the usual AWS
    /// variables (`AWS_ACCESS_KEY_ID`, `AWS_REGION`, `AWS_ENDPOINT`, …) by name.
    pub fn s3(url: &str, settings: &[(String, String)]) -> anyhow::Result<Self> {
        let rest = url
            .strip_prefix("s3://")
            .context("an S3 URL starts with s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            anyhow::bail!("{url:?} names no bucket: s3://BUCKET/PREFIX");
        }
        let mut builder = AmazonS3Builder::new().with_url(format!("s3://{bucket}"));
        for (name, value) in settings {
            let key: AmazonS3ConfigKey = name
                .to_ascii_lowercase()
                .parse()
                .with_context(|| format!("{name} is not an S3 setting"))?;
            builder = builder.with_config(key, value);
        }
        let s3 = builder.build().context("configuring S3")?;
        let prefix = prefix.trim_matches('/');
        let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
            Arc::new(s3)
        } else {
            Arc::new(PrefixStore::new(s3, prefix))
        };
        // S3's least part size (but for the last part).
        Ok(Self::with_store(store, 5 * 1024 * 1024, url.to_owned()))
    }

    /// Any object store, written in parts of `part_size` bytes.
    pub fn with_store(store: Arc<dyn ObjectStore>, part_size: usize, place: String) -> Self {
        Self {
            store,
            part_size,
            place,
        }
    }

    pub fn place(&self) -> &str {
        &self.place
    }

    fn path(id: AttachmentId) -> Path {
        Path::from(id.to_string())
    }

    /// Receives an upload: reads its first bytes and decides what it is ([`sniff::sniff`],
    /// against what the uploader `declared`) before storing anything, then streams the rest to
    /// storage, refusing it (and leaving nothing behind) as soon as it passes `max` bytes.
    /// Returns what it is and its size.
    pub async fn receive<S>(
        &self,
        id: AttachmentId,
        mut body: S,
        declared: Option<&str>,
        max: u64,
    ) -> Result<(Sniffed, u64)>
    where
        S: Stream<Item = Result<Bytes>> + Unpin + Send,
    {
        let too_large = || Error::too_large("file", format!("at most {max} bytes are accepted"));
        let mut head = BytesMut::new();
        let mut complete = false;
        while head.len() < sniff::SNIFF_BYTES {
            match body.next().await {
                Some(chunk) => head.extend_from_slice(&chunk?),
                None => {
                    complete = true;
                    break;
                }
            }
            if head.len() as u64 > max {
                return Err(too_large());
            }
        }
        let sniffed = sniff::sniff(&head, complete, declared)
            .map_err(|message| Error::invalid("content_type", message))?;
        let path = Self::path(id);
        let upload = self
            .store
            .put_multipart(&path)
            .await
            .map_err(|e| self.failed(e, "starting an upload"))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.part_size);
        let mut size = head.len() as u64;
        writer.put(head.freeze());
        let result: Result<()> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                size += chunk.len() as u64;
                if size > max {
                    return Err(too_large());
                }
                // At most two parts in flight: memory per upload stays a few parts, however
                // fast the client sends and however slow storage is.
                writer
                    .wait_for_capacity(2)
                    .await
                    .map_err(|e| self.failed(e, "writing an upload"))?;
                writer.put(chunk);
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                writer
                    .finish()
                    .await
                    .map_err(|e| self.failed(e, "finishing an upload"))?;
                Ok((sniffed, size))
            }
            Err(e) => {
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(error = %abort, place = %self.place, "aborting an upload");
                }
                Err(e)
            }
        }
    }

    /// The bytes of `id` (those in `range`, if given) as a stream.
    pub async fn read(
        &self,
        id: AttachmentId,
        range: Option<Range<u64>>,
    ) -> Result<BoxStream<'static, std::io::Result<Bytes>>> {
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        let result = self
            .store
            .get_opts(&Self::path(id), options)
            .await
            .map_err(|e| self.failed(e, "reading an attachment"))?;
        Ok(result.into_stream().map_err(std::io::Error::other).boxed())
    }

    /// Deletes the bytes of `id`; bytes already gone are fine.
    pub async fn delete(&self, id: AttachmentId) -> Result<()> {
        match self.store.delete(&Self::path(id)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.failed(e, "deleting an attachment")),
        }
    }

    fn failed(&self, e: object_store::Error, what: &'static str) -> Error {
        Error::Unavailable(
            anyhow::Error::new(e)
                .context(format!("{what} in {}", self.place))
                .into(),
        )
    }
}
