-- See migrations/postgres/0007_attachments.sql.
ALTER TABLE messages ADD COLUMN attachments TEXT;

CREATE TABLE attachments (
    id               TEXT PRIMARY KEY,
    uploader_id      TEXT NOT NULL,
    content_type     TEXT NOT NULL,
    size             INTEGER NOT NULL,
    name             TEXT,
    width            INTEGER,
    height           INTEGER,
    created_at       INTEGER NOT NULL,
    conversation_id  TEXT,
    message_id       TEXT,
    deleted_at       INTEGER
) STRICT;

CREATE INDEX attachments_by_message ON attachments (message_id) WHERE message_id IS NOT NULL;
CREATE INDEX attachments_unclaimed ON attachments (uploader_id, created_at) WHERE message_id IS NULL;
CREATE INDEX attachments_doomed ON attachments (deleted_at) WHERE deleted_at IS NOT NULL;
