-- Erasure looks for mentions of a member's name in posts edited since the account was made;
-- only edited posts enter this index, so it stays small and costs nothing on new posts.
CREATE INDEX posts_edited ON posts(edited_at) WHERE edited_at IS NOT NULL;
