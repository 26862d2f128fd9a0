-- Posts the spam and unsafe-link check holds for a moderator (promises A4, A6). A held post is
-- seen only by its author and by moderators until one of them releases it (held_at back to
-- NULL) or hides it (held_at back to NULL, hidden_at and hidden_by set as for any hidden post),
-- so a held post stays distinguishable from one a moderator hid. held_reason is a word from a
-- fixed list (unsafe_link, spam_pattern), never the text that matched.
ALTER TABLE posts ADD COLUMN held_at BIGINT;
ALTER TABLE posts ADD COLUMN held_reason TEXT;

-- The moderators' queue reads the held posts only.
CREATE INDEX posts_held ON posts(held_at) WHERE held_at IS NOT NULL;
