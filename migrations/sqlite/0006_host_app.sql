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
