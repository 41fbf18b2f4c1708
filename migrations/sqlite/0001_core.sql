-- Core schema; see migrations/postgres for the reasoning behind each column and index.
-- Ids are UUID text, timestamps milliseconds since the Unix epoch.

CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    name        TEXT,
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE conversations (
    id                TEXT PRIMARY KEY,
    kind              TEXT NOT NULL CHECK (kind IN ('direct', 'group')),
    title             TEXT,
    direct_key        TEXT UNIQUE,
    created_at        INTEGER NOT NULL,
    last_seq          INTEGER NOT NULL DEFAULT 0,
    last_activity_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE members (
    conversation_id  TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id          TEXT NOT NULL REFERENCES users (id),
    role             TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    joined_at        INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
) STRICT, WITHOUT ROWID;

CREATE INDEX members_by_user ON members (user_id, conversation_id);

CREATE TABLE messages (
    conversation_id  TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq              INTEGER NOT NULL,
    id               TEXT NOT NULL,
    sender_id        TEXT NOT NULL,
    client_id        TEXT NOT NULL,
    body             TEXT,
    created_at       INTEGER NOT NULL,
    edited_at        INTEGER,
    deleted_at       INTEGER,
    PRIMARY KEY (conversation_id, seq),
    UNIQUE (conversation_id, sender_id, client_id)
) STRICT, WITHOUT ROWID;

CREATE UNIQUE INDEX messages_by_id ON messages (id);
