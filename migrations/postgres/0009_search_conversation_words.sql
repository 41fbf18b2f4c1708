-- The search index holds each message's conversation as one more word ('c', a space and the id's
-- hex digits: no text a user searches for parses into a word with a space, so only the server's
-- filter can match it), beside the message's words, instead of as a first column (btree_gin). A search for a
-- member of n conversations was n index scans, each reading GIN's whole pending list of new
-- entries (up to 4 MB): 200 ms for a member of 50 conversations, seconds for a seller with a
-- thousand direct conversations, whatever the word. Now it is one scan, for the words and any
-- of the caller's conversations: the index intersects the lists itself, and reads the pending
-- list once (docs/bench/notes.md, "Search"). Another configuration (`search_language`) gets
-- the same index, `messages_words_<language>`, built at start.
DROP INDEX IF EXISTS messages_search_simple;
CREATE INDEX messages_words_simple ON messages USING GIN (
    (to_tsvector('simple'::regconfig, coalesce(body, ''))
     || array_to_tsvector(ARRAY['c ' || replace(conversation_id::text, '-', '')]))
);
