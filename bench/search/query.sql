-- The statement message:search runs on PostgreSQL (src/store/postgres.rs), for `searcher`, with a
-- one-word query drawn from bench/search/seed.sql's vocabulary:
-- pgbench -n -c 1 -t 300 -f bench/search/query.sql -l DB, then the p99 of the log's third column.
\set w random(1, 4999)
WITH hits AS MATERIALIZED (
  SELECT * FROM messages m
  WHERE m.conversation_id IN (SELECT conversation_id FROM members WHERE user_id = 'searcher')
    AND to_tsvector('simple'::regconfig, coalesce(m.body, '')) @@ websearch_to_tsquery('simple'::regconfig, 'w' || :w)
    AND m.deleted_at IS NULL
)
SELECT id FROM hits m ORDER BY m.id DESC LIMIT 21;
