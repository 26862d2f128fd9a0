-- Posts' device data stored in member order: the sweep deletes a closed member's rows (when
-- their posts go to the deleted user), and with the post's id as the row's key those rows were
-- spread over nearly every page of the table, so each sweep wrote almost the whole table
-- through the WAL and back. Keyed by (member, post), a member's rows share a few pages; the
-- post's own index keeps lookups and the cascade from `posts` by post.
CREATE TABLE post_devices_by_member (
    post_id    INTEGER NOT NULL REFERENCES posts(id) ON DELETE CASCADE,
    user_id    BIGINT NOT NULL REFERENCES users(id),
    ip         TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, post_id)
) WITHOUT ROWID;
INSERT INTO post_devices_by_member (post_id, user_id, ip, user_agent, created_at)
SELECT post_id, user_id, ip, user_agent, created_at FROM post_devices ORDER BY user_id, post_id;
DROP TABLE post_devices;
ALTER TABLE post_devices_by_member RENAME TO post_devices;
CREATE UNIQUE INDEX post_devices_post ON post_devices(post_id);
