-- Read marks, for receipts and unread counts: everything up to this seq has been read by the member.
ALTER TABLE members ADD COLUMN last_read_seq BIGINT NOT NULL DEFAULT 0;

-- When the user was last seen online (their last socket closed); NULL if never, or online now.
ALTER TABLE users ADD COLUMN last_seen_at BIGINT;
