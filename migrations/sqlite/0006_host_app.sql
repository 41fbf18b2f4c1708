-- See migrations/postgres/0006_host_app.sql.
CREATE TABLE external_ids (
    external_id      TEXT PRIMARY KEY,
    conversation_id  TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;

CREATE TABLE bans (
    user_id     TEXT PRIMARY KEY,
    until       INTEGER,
    reason      TEXT,
    created_at  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

ALTER TABLE users ADD COLUMN erased_at INTEGER;

CREATE TABLE blocks (
    blocker_id  TEXT NOT NULL,
    blocked_id  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (blocker_id, blocked_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX blocks_by_blocked ON blocks (blocked_id, blocker_id);

CREATE TABLE webhook_outbox (
    id               TEXT PRIMARY KEY,
    type             TEXT NOT NULL,
    data             TEXT NOT NULL,
    resolved         INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    locked_until     INTEGER,
    last_error       TEXT,
    failed_at        INTEGER
) STRICT;
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at) WHERE failed_at IS NULL;
