-- See migrations/postgres/0003_changed_at.sql.
ALTER TABLE messages ADD COLUMN changed_at INTEGER;
CREATE INDEX messages_changed ON messages (conversation_id, changed_at) WHERE changed_at IS NOT NULL;
