-- Core schema. Timestamps are milliseconds since the Unix epoch (BIGINT), as on SQLite, so both
-- backends compare and index them alike.

CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    name        TEXT,
    created_at  BIGINT NOT NULL
);

CREATE TABLE conversations (
    id                UUID PRIMARY KEY,
    kind              TEXT NOT NULL CHECK (kind IN ('direct', 'group')),
    title             TEXT,
    -- For direct conversations: the two user ids, sorted, joined by a newline (user ids can't
    -- contain control characters). The unique index makes "one direct conversation per pair"
    -- hold under concurrency, across nodes.
    direct_key        TEXT UNIQUE,
    created_at        BIGINT NOT NULL,
    -- The highest seq handed out. Message writers lock this row, which is what keeps seqs
    -- gap-free and unique when several nodes write one conversation.
    last_seq          BIGINT NOT NULL DEFAULT 0,
    last_activity_at  BIGINT NOT NULL
);

CREATE TABLE members (
    conversation_id  UUID NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id          TEXT NOT NULL REFERENCES users (id),
    role             TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    joined_at        BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);

-- "Which conversations is this user in": every connect and conversation list.
CREATE INDEX members_by_user ON members (user_id, conversation_id);

CREATE TABLE messages (
    conversation_id  UUID NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq              BIGINT NOT NULL,
    id               UUID NOT NULL,
    -- No foreign key to users: membership is checked when the message is written, and a key
    -- check would lock the sender's row on every insert.
    sender_id        TEXT NOT NULL,
    client_id        TEXT NOT NULL,
    body             TEXT,
    created_at       BIGINT NOT NULL,
    edited_at        BIGINT,
    deleted_at       BIGINT,
    -- History, sync and unread counts all read a conversation by seq range.
    PRIMARY KEY (conversation_id, seq),
    -- The idempotency key of a send.
    UNIQUE (conversation_id, sender_id, client_id)
);

-- Edits and deletes name a message by id.
CREATE UNIQUE INDEX messages_by_id ON messages (id);
