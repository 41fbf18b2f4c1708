-- Large groups (issue 23); see migrations/postgres/0008_member_pages.sql.

ALTER TABLE conversations ADD COLUMN member_count INTEGER NOT NULL DEFAULT 0;
UPDATE conversations
SET member_count = (SELECT count(*) FROM members m WHERE m.conversation_id = conversations.id);

CREATE INDEX members_in_order ON members (
    conversation_id,
    (CASE role WHEN 'owner' THEN 0 WHEN 'admin' THEN 1 ELSE 2 END),
    joined_at,
    user_id
);
