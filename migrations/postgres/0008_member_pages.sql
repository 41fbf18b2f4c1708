-- Large groups (issue 23): member lists are paged, and a group's size is read without counting.

-- How many members the conversation has, kept by the transactions that add and remove them
-- (in the same statement order, under the conversation's row lock). Read on every connect
-- (presence and typing skip large groups) and in every conversation object.
ALTER TABLE conversations ADD COLUMN member_count INTEGER NOT NULL DEFAULT 0;
UPDATE conversations c
SET member_count = (SELECT count(*) FROM members m WHERE m.conversation_id = c.id);

-- The order members are listed and paged in: owner, admins, members, each by when they joined,
-- then by id (byte order, as the server sorts). A page is a range scan of this index from the
-- cursor, and the first page of every conversation in a list is one short scan each.
CREATE INDEX members_in_order ON members (
    conversation_id,
    (CASE role WHEN 'owner' THEN 0 WHEN 'admin' THEN 1 ELSE 2 END),
    joined_at,
    user_id COLLATE "C"
);
