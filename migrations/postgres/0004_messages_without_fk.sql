-- Messages lose their foreign key to conversations. Its check ran a trigger per inserted row (a
-- lookup and a KEY SHARE lock on the conversation) that the writer makes redundant: a batch
-- locks each conversation's row FOR UPDATE before it inserts, and inserts a message only when
-- its sender is a member, whose row references the conversation. In a bulk insert the check
-- was about a third of the time spent per row (docs/bench/notes.md). Conversations are never
-- deleted; code that one day deletes one deletes its messages in the same transaction.
ALTER TABLE messages DROP CONSTRAINT IF EXISTS messages_conversation_id_fkey;
