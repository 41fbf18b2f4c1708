-- Search reads matches newest first straight from the FTS5 index (`ORDER BY rowid DESC`) and
-- stops at a page, instead of gathering every match and sorting them (a word in half of a
-- million messages took seconds), and the index knows each message's conversation, so a search
-- is narrowed to the caller's conversations inside the index (a word common elsewhere and rare
-- in the caller's conversations took seconds too). See SqliteStore::search.
--
-- A message's search rowid is its place in time and never changes:
-- - every message gets its rowid when stored, text or not (a message sent with only a file and
--   edited to have text later is found where it was sent);
-- - an edit re-indexes the new text under the same rowid (it used to take a new one, which
--   would have moved an edited message to the top);
-- - a deleted message leaves the index but keeps its rowid, so a page cursor (`before`, a
--   message id) always names a place, even if that message was deleted since.
DROP TRIGGER messages_search_insert;
DROP TRIGGER messages_search_update;
DROP TABLE messages_fts;

-- `conversation` holds one token per message, 'c' and the conversation id's hex digits
-- (store/sqlite.rs, `conversation_token`), matched only by the server's own filter: a
-- user's words are matched against `body` alone.
CREATE VIRTUAL TABLE messages_fts USING fts5(
    body,
    conversation,
    content = '',
    contentless_delete = 1,
    tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TRIGGER messages_search_insert AFTER INSERT ON messages
BEGIN
    INSERT INTO message_search_ids (message_id) VALUES (new.id);
    INSERT INTO messages_fts (rowid, body, conversation)
        SELECT last_insert_rowid(), new.body, 'c' || replace(new.conversation_id, '-', '')
        WHERE new.body IS NOT NULL AND new.body <> '';
END;

CREATE TRIGGER messages_search_update AFTER UPDATE OF body ON messages
BEGIN
    INSERT INTO message_search_ids (message_id) VALUES (old.id) ON CONFLICT DO NOTHING;
    DELETE FROM messages_fts
    WHERE rowid = (SELECT rowid FROM message_search_ids WHERE message_id = old.id);
    INSERT INTO messages_fts (rowid, body, conversation)
        SELECT rowid, new.body, 'c' || replace(new.conversation_id, '-', '') FROM message_search_ids
        WHERE message_id = old.id AND new.body IS NOT NULL AND new.body <> '';
END;

-- Messages stored before without a rowid (no text, or deleted), in the order they were sent.
INSERT INTO message_search_ids (message_id)
    SELECT id FROM messages
    WHERE id NOT IN (SELECT message_id FROM message_search_ids)
    ORDER BY id;

-- The index again, with the conversations (about 5 s a million messages).
INSERT INTO messages_fts (rowid, body, conversation)
    SELECT s.rowid, m.body, 'c' || replace(m.conversation_id, '-', '')
    FROM message_search_ids s JOIN messages m ON m.id = s.message_id
    WHERE m.body IS NOT NULL AND m.body <> '' AND m.deleted_at IS NULL;
