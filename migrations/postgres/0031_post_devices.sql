-- A post's device data (its author's IP address and user agent) in a narrow table of its own:
-- minimizing it changed the whole post row (body included) three times per post, and pushed
-- nearly the whole posts table through the WAL. `user_id` is the post's author when it was
-- written; a post given to the deleted user loses its row here.
CREATE TABLE post_devices (
    post_id    BIGINT PRIMARY KEY REFERENCES posts(id) ON DELETE CASCADE,
    user_id    BIGINT NOT NULL REFERENCES users(id),
    ip         TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
-- Values sealed for `posts.ip` and `posts.user_agent` are marked `posts:`; the server seals
-- them again for their new place when it starts (Store::seal_plain_member_fields).
INSERT INTO post_devices (post_id, user_id, ip, user_agent, created_at)
SELECT id, user_id,
       CASE WHEN ip LIKE 's1:%' THEN 'posts:' || ip ELSE ip END,
       CASE WHEN user_agent LIKE 's1:%' THEN 'posts:' || user_agent ELSE user_agent END,
       created_at
FROM posts WHERE ip <> '' OR user_agent <> '';
CREATE INDEX post_devices_user ON post_devices(user_id, created_at);
ALTER TABLE posts DROP COLUMN ip;
ALTER TABLE posts DROP COLUMN user_agent;
