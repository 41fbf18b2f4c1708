-- Search reads matches newest first straight from the FTS5 index (`ORDER BY rowid DESC`) and
-- stops at a page, instead of gathering every match and sorting them: a word in half of a
-- million messages took seconds the old way. For that, a message's search rowid is its place
-- in time and must never change:
-- - every message gets its rowid when stored, text or not (a message sent with only a file and
--   edited to have text later is found where it was sent);
-- - an edit re-indexes the new text under the same rowid (it used to take a new one, which
--   would have moved an edited message to the top);
-- - a deleted message leaves the index but keeps its rowid, so a page cursor (`before`, a
--   message id) always names a place, even if that message was deleted since.
DROP TRIGGER messages_search_insert;
DROP TRIGGER messages_search_update;

CREATE TRIGGER messages_search_insert AFTER INSERT ON messages
BEGIN
    INSERT INTO message_search_ids (message_id) VALUES (new.id);
    INSERT INTO messages_fts (rowid, body)
        SELECT last_insert_rowid(), new.body WHERE new.body IS NOT NULL AND new.body <> '';
END;

CREATE TRIGGER messages_search_update AFTER UPDATE OF body ON messages
BEGIN
    INSERT INTO message_search_ids (message_id) VALUES (old.id) ON CONFLICT DO NOTHING;
    DELETE FROM messages_fts
    WHERE rowid = (SELECT rowid FROM message_search_ids WHERE message_id = old.id);
    INSERT INTO messages_fts (rowid, body)
        SELECT rowid, new.body FROM message_search_ids
        WHERE message_id = old.id AND new.body IS NOT NULL AND new.body <> '';
END;

-- Messages stored before without a rowid (no text, or deleted), in the order they were sent.
INSERT INTO message_search_ids (message_id)
    SELECT id FROM messages
    WHERE id NOT IN (SELECT message_id FROM message_search_ids)
    ORDER BY id;
