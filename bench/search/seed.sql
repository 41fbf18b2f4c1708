-- 1,000,000 messages in 2,000 groups of 10 (500 each), 12 words each from a vocabulary of 5,000
-- skewed like real text (word wN has probability ~ N^(-2/3): w0 is in half the messages, w1000
-- in 2,300), and a user `searcher` in 50 of the groups. Run on a database confab has migrated:
-- psql -f bench/search/seed.sql DB. Then bench/search/query.sql with pgbench (see docs/BENCHMARKS.md).
\timing on
INSERT INTO users (id, created_at) SELECT 'u' || i, 0 FROM generate_series(0, 4999) i;
INSERT INTO users (id, created_at) VALUES ('searcher', 0);
INSERT INTO conversations (id, kind, title, created_at, last_seq, last_activity_at)
SELECT ('00000000-0000-7000-8000-' || lpad(to_hex(c), 12, '0'))::uuid, 'group', 'g' || c, 0, 500, 0
FROM generate_series(0, 1999) c;
INSERT INTO members (conversation_id, user_id, role, joined_at)
SELECT ('00000000-0000-7000-8000-' || lpad(to_hex(c), 12, '0'))::uuid, 'u' || ((c * 10 + k) % 5000), 'member', 0
FROM generate_series(0, 1999) c, generate_series(0, 9) k ON CONFLICT DO NOTHING;
INSERT INTO members (conversation_id, user_id, role, joined_at)
SELECT ('00000000-0000-7000-8000-' || lpad(to_hex(c), 12, '0'))::uuid, 'searcher', 'member', 0
FROM generate_series(0, 49) c;
INSERT INTO messages (conversation_id, seq, id, sender_id, client_id, body, created_at)
SELECT ('00000000-0000-7000-8000-' || lpad(to_hex(g % 2000), 12, '0'))::uuid,
       g / 2000 + 1,
       (lpad(to_hex(1700000000000 + g), 12, '0') || '7' || substr(md5(g::text), 1, 19))::uuid,
       'u' || (((g % 2000) * 10) % 5000),
       g::text,
       (SELECT string_agg('w' || floor(5000 * power(random(), 3))::int, ' ') FROM generate_series(1, 12 + (g % 1) * 0) AS x(k) WHERE g >= 0),
       1700000000000 + g
FROM generate_series(0, 999999) g;
ANALYZE messages; ANALYZE members;
SELECT count(*) FROM messages;
