-- Who left which group by their own choice. Others can't add them back: being added to a
-- group is not consented to, so leaving must stick (see docs/PROTOCOL.md, "Membership").
CREATE TABLE departures (
    conversation_id  UUID NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id          TEXT NOT NULL,
    left_at          BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);
