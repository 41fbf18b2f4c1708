-- See migrations/postgres/0002_reads_and_presence.sql.
ALTER TABLE members ADD COLUMN last_read_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN last_seen_at INTEGER;
