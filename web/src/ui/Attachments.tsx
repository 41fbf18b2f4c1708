// Files in the chat: picking, pasting or dropping them into the composer (each uploaded at once,
// with its progress), and showing them in the timeline: images as previews, the rest as chips
// that download. Their URLs are signed links (client.attachmentUrl), so the token never goes
// into an address.

import { ConfabError, type Attachment } from "@confab/client";
import { useConfab } from "@confab/client/react";
import { useEffect, useRef, useState } from "preact/hooks";

import { humanError } from "../errors.js";

/** A file on its way into the next message. */
export interface Upload {
  key: number;
  name: string;
  /** 0–1. */
  progress: number;
  attachment?: Attachment;
  error?: string;
  /** Offline or refused for now: tried again shortly. */
  waiting?: boolean;
}

/** How long an upload that failed for a passing reason (offline, busy) waits before its retry. */
const RETRY_MS = 2_000;

let nextKey = 1;

/** The composer's uploads: add files, drop one, and the attachments ready to send. */
export function useUploads() {
  const client = useConfab();
  const [uploads, setUploads] = useState<Upload[]>([]);
  // Uploads still wanted (removed ones are not retried) and the retries' timers.
  const wanted = useRef(new Set<number>());
  const timers = useRef(new Set<ReturnType<typeof setTimeout>>());
  useEffect(() => () => timers.current.forEach(clearTimeout), []);
  const update = (key: number, change: Partial<Upload>) =>
    setUploads((all) => all.map((u) => (u.key === key ? { ...u, ...change } : u)));

  // Offline (or the server busy for a moment), an upload is tried again until it goes through,
  // and the message waits for it: the send is queued like any other once its files are stored.
  function upload(key: number, file: File) {
    client
      .uploadAttachment(file, { onProgress: (loaded, total) => update(key, { progress: total > 0 ? loaded / total : 1 }) })
      .then(
        (attachment) => update(key, { attachment, progress: 1, waiting: false }),
        (error: unknown) => {
          if (!wanted.current.has(key)) return;
          // A TypeError is a fetch that didn't reach the server (the token's, offline).
          if ((error instanceof ConfabError && error.retryable) || error instanceof TypeError) {
            update(key, { waiting: true, progress: 0 });
            const timer = setTimeout(() => {
              timers.current.delete(timer);
              if (wanted.current.has(key)) upload(key, file);
            }, RETRY_MS);
            timers.current.add(timer);
          } else {
            update(key, { error: humanError(error), waiting: false });
          }
        },
      );
  }

  function add(files: Iterable<File>) {
    for (const file of files) {
      const key = nextKey++;
      wanted.current.add(key);
      setUploads((all) => [...all, { key, name: file.name || "pasted file", progress: 0 }]);
      upload(key, file);
    }
  }

  return {
    uploads,
    add,
    remove: (key: number) => {
      wanted.current.delete(key);
      setUploads((all) => all.filter((u) => u.key !== key));
    },
    clear: () => {
      wanted.current.clear();
      setUploads([]);
    },
    ready: uploads.flatMap((u) => (u.attachment ? [u.attachment] : [])),
    busy: uploads.some((u) => !u.attachment && !u.error),
  };
}

/** The chips above the composer's text box. */
export function UploadChips({ uploads, onRemove }: { uploads: Upload[]; onRemove: (key: number) => void }) {
  if (uploads.length === 0) return null;
  return (
    <ul class="upload-chips" aria-label="Attachments">
      {uploads.map((u) => (
        <li key={u.key} class={`file-chip${u.error ? " failed" : ""}`}>
          <span class="file-name">{u.name}</span>
          {u.error ? (
            <span class="error small" role="alert">
              {u.error}
            </span>
          ) : u.attachment ? null : u.waiting ? (
            <span class="muted small">Waiting for the connection…</span>
          ) : (
            <progress max={1} value={u.progress} aria-label={`Uploading ${u.name}`} />
          )}
          <button type="button" class="link" aria-label={`Remove ${u.name}`} onClick={() => onRemove(u.key)}>
            ×
          </button>
        </li>
      ))}
    </ul>
  );
}

/** A signed link to an attachment, fetched when shown. */
function useAttachmentUrl(id: string): string | undefined {
  const client = useConfab();
  const [url, setUrl] = useState<string>();
  useEffect(() => {
    const abort = new AbortController();
    client.attachmentUrl(id, { signal: abort.signal }).then(setUrl, () => {});
    return () => abort.abort();
  }, [client, id]);
  return url;
}

function size(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/** A message's attachments in the timeline. */
export function MessageAttachments({ attachments }: { attachments: Attachment[] | undefined }) {
  if (!attachments || attachments.length === 0) return null;
  return (
    <ul class="attachments">
      {attachments.map((a) => (
        <li key={a.id}>{a.content_type.startsWith("image/") ? <ImagePreview attachment={a} /> : <FileChip attachment={a} />}</li>
      ))}
    </ul>
  );
}

function ImagePreview({ attachment }: { attachment: Attachment }) {
  const url = useAttachmentUrl(attachment.id);
  // The box keeps its size before the image arrives, so the timeline doesn't jump.
  const ratio = attachment.width && attachment.height ? `${attachment.width} / ${attachment.height}` : undefined;
  return (
    <a href={url} target="_blank" rel="noopener noreferrer" class="image-preview" style={ratio ? { aspectRatio: ratio } : undefined}>
      {url && <img src={url} alt={attachment.name ?? "image"} width={attachment.width} height={attachment.height} loading="lazy" />}
    </a>
  );
}

function FileChip({ attachment }: { attachment: Attachment }) {
  const url = useAttachmentUrl(attachment.id);
  return (
    <a class="file-chip" href={url} download={attachment.name ?? true}>
      <span class="file-name">{attachment.name ?? "file"}</span> <span class="muted small">{size(attachment.size)}</span>
    </a>
  );
}
