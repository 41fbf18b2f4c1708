-- The host app's side (server API, moderation, webhooks).

-- The host app's own ids for conversations (the server API's `external_id`, an order id say):
-- creating a conversation with an id already here returns the one it names. Several ids may
-- name one conversation (two orders between the same buyer and seller share their direct one).
CREATE TABLE external_ids (
    external_id      TEXT PRIMARY KEY,
    conversation_id  UUID NOT NULL REFERENCES conversations (id) ON DELETE CASCADE
);
