-- A profile page counts the member's public posts. Through posts_user that meant reading every
-- one of the member's post rows (32,415 for the busiest demo member, scattered over the file),
-- which only stayed fast while a large page cache held them. This index holds only public
-- posts and only the member, so the count reads the index alone.
CREATE INDEX posts_user_public ON posts(user_id)
    WHERE hidden_at IS NULL AND deleted_at IS NULL AND held_at IS NULL;
