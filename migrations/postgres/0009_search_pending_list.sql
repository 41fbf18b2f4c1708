-- The search index's pending list (GIN's fast update: new entries wait in an unsorted list
-- until it is merged into the index) is read whole by every search, once per conversation
-- searched. At its default size, 4 MB, that was about 4 ms a conversation: 200 ms for a member
-- of 50 conversations, whatever the word. At 256 kB it costs a tenth of that, and is merged
-- into the index 16 times as often, in smaller steps, by the inserting transaction or by
-- autovacuum (docs/bench/notes.md, "Search"). Indexes for a search language get the same
-- setting when they are built (store/postgres.rs).
ALTER INDEX messages_search_simple SET (gin_pending_list_limit = 256);
