-- Attachments: files uploaded over HTTP (bytes in the data directory or object storage, under
-- `attachments/<id>`), then claimed by one message of their uploader's.

-- A message keeps a copy of its attachments' objects (a JSON array; NULL for none, and once
-- deleted). They never change after the upload, so history and sync read them with the
-- message, with no join; the table below stays the truth for who may download what.
ALTER TABLE messages ADD COLUMN attachments TEXT;

CREATE TABLE attachments (
    id               UUID PRIMARY KEY,
    uploader_id      TEXT NOT NULL,
    -- Read from the bytes at upload, from the allow-list.
    content_type     TEXT NOT NULL,
    size             BIGINT NOT NULL,
    name             TEXT,
    width            BIGINT,
    height           BIGINT,
    created_at       BIGINT NOT NULL,
    -- Set, in the transaction that stores the message, when a message claims it. Unclaimed
    -- uploads are swept after a while.
    conversation_id  UUID,
    message_id       UUID,
    -- Set when its message was deleted or it was left unclaimed too long: it is no longer
    -- served, and the sweeper deletes its bytes and then this row.
    deleted_at       BIGINT
);

-- Downloads look an attachment up by id and check its conversation's membership; deletes find
-- a message's attachments.
CREATE INDEX attachments_by_message ON attachments (message_id) WHERE message_id IS NOT NULL;
-- What the sweeper looks for, and the per-user bound on unclaimed uploads.
CREATE INDEX attachments_unclaimed ON attachments (uploader_id, created_at) WHERE message_id IS NULL;
CREATE INDEX attachments_doomed ON attachments (deleted_at) WHERE deleted_at IS NOT NULL;

-- Search: messages' words, in the `simple` configuration (lower-cased words, no stemming, no stop
-- words: it works for every language). An expression index rather than a stored tsvector column:
-- nothing more to store per message, and an edit or delete (body NULL) is re-indexed by the update
-- itself. The conversation comes first in the index (btree_gin lets a GIN index hold it), so a
-- search reads only the matches in the caller's conversations, not every match in the database
-- (measured on 1,000,000 messages: docs/BENCHMARKS.md, "Search"). btree_gin ships with
-- PostgreSQL and is a trusted extension: the database's owner may create it. Another
-- configuration (`search_language`) gets its own index, built at start.
CREATE EXTENSION IF NOT EXISTS btree_gin WITH SCHEMA public;
CREATE INDEX messages_search_simple ON messages
    USING GIN (conversation_id, to_tsvector('simple'::regconfig, coalesce(body, '')));
