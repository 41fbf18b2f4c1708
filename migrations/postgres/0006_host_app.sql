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

-- Webhooks (`CONFAB_WEBHOOK_URL`): the outbox. A row is written in the transaction of what
-- caused it (a message stored, a conversation created, members changed), so an event is never
-- lost nor sent for something rolled back; a background sender on some node claims due rows
-- (`locked_until`: a lease, so a node that dies mid-send leaves its rows to the others), posts
-- them and deletes them once the receiver answered 2xx, or schedules the next attempt.
CREATE TABLE webhook_outbox (
    id               UUID PRIMARY KEY,
    type             TEXT NOT NULL,
    -- The event's `data` as JSON text. `message.created` rows are written without their
    -- recipients (`resolved` false) and completed by the sender's first claim, right after
    -- the commit: who of the members has no socket anywhere is known to the nodes, not the
    -- database. Once resolved, the body is the same on every attempt.
    data             TEXT NOT NULL,
    resolved         BOOLEAN NOT NULL,
    created_at       BIGINT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    locked_until     BIGINT,
    last_error       TEXT,
    -- Set when the sender gave up (CONFAB_WEBHOOK_RETRY_HOURS after `created_at`).
    failed_at        BIGINT
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at) WHERE failed_at IS NULL;
