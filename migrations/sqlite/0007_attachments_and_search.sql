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

-- Search: an FTS5 index of messages' bodies, kept in step by triggers, so in the writer's own
-- transaction. `messages` is WITHOUT ROWID, which FTS5's external content needs, so the index is
-- contentless (it keeps no second copy of the text; results are read from `messages`) with
-- deletes allowed, and `message_search_ids` gives each indexed message the integer rowid FTS5
-- wants. Deleted messages (body NULL) and empty bodies are not indexed.
CREATE TABLE message_search_ids (
    rowid       INTEGER PRIMARY KEY,
    message_id  TEXT NOT NULL UNIQUE
) STRICT;

CREATE VIRTUAL TABLE messages_fts USING fts5(
    body,
    content = '',
    contentless_delete = 1,
    tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TRIGGER messages_search_insert AFTER INSERT ON messages
WHEN new.body IS NOT NULL AND new.body <> ''
BEGIN
    INSERT INTO message_search_ids (message_id) VALUES (new.id);
    INSERT INTO messages_fts (rowid, body) VALUES (last_insert_rowid(), new.body);
END;

CREATE TRIGGER messages_search_update AFTER UPDATE OF body ON messages
BEGIN
    DELETE FROM messages_fts
    WHERE rowid = (SELECT rowid FROM message_search_ids WHERE message_id = old.id);
    DELETE FROM message_search_ids WHERE message_id = old.id;
    INSERT INTO message_search_ids (message_id)
        SELECT new.id WHERE new.body IS NOT NULL AND new.body <> '';
    INSERT INTO messages_fts (rowid, body)
        SELECT last_insert_rowid(), new.body WHERE new.body IS NOT NULL AND new.body <> '';
END;

-- Messages stored before this migration.
INSERT INTO message_search_ids (message_id)
    SELECT id FROM messages WHERE body IS NOT NULL AND body <> '';
INSERT INTO messages_fts (rowid, body)
    SELECT s.rowid, m.body FROM message_search_ids s JOIN messages m ON m.id = s.message_id;
