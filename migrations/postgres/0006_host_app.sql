-- The host app's side (server API, moderation, webhooks).

-- The host app's own ids for conversations (the server API's `external_id`, an order id say):
-- creating a conversation with an id already here returns the one it names. Several ids may
-- name one conversation (two orders between the same buyer and seller share their direct one).
CREATE TABLE external_ids (
    external_id      TEXT PRIMARY KEY,
    conversation_id  UUID NOT NULL REFERENCES conversations (id) ON DELETE CASCADE
);

-- Banned users (server API): their tokens are refused while `until` (NULL: for good) is ahead.
CREATE TABLE bans (
    user_id     TEXT PRIMARY KEY,
    until       BIGINT,
    reason      TEXT,
    created_at  BIGINT NOT NULL
);

-- When a user was erased (server API): their bodies deleted, memberships ended, name dropped.
ALTER TABLE users ADD COLUMN erased_at BIGINT;

-- Who blocked whom (`user:block`): the blocked user can't open or send in a direct conversation
-- with the blocker, and doesn't see the blocker's presence.
CREATE TABLE blocks (
    blocker_id  TEXT NOT NULL,
    blocked_id  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (blocker_id, blocked_id)
);
-- Every send asks "has someone blocked this sender?": one probe here, empty for nearly everyone.
CREATE INDEX blocks_by_blocked ON blocks (blocked_id, blocker_id);
