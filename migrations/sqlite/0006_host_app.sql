-- See migrations/postgres/0006_host_app.sql.
CREATE TABLE external_ids (
    external_id      TEXT PRIMARY KEY,
    conversation_id  TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;
