-- When a message was last edited or deleted, so `sync` can return the changes a client missed.
ALTER TABLE messages ADD COLUMN changed_at BIGINT;

-- Only changed messages are indexed: changes are rare, and `sync` asks for the recent ones.
CREATE INDEX messages_changed ON messages (conversation_id, changed_at) WHERE changed_at IS NOT NULL;
