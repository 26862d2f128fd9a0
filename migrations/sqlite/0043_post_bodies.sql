-- Posts' text (Markdown and its HTML) in a table of its own. A post row with its body held
-- about seven posts per page, so giving a closed member's scattered posts to the deleted user
-- rewrote most pages of the whole table, text included, through the WAL (issue 7). Without the
-- text a post row is some sixty bytes: the sweep's writes to `posts` touch a tenth of the
-- pages, and the text it keeps as written is not written again.
-- `posts` is built again without the two columns rather than altered: SQLite's DROP COLUMN
-- rewrites each row in place and leaves every page as sparse as the text left it, which would
-- keep the sweep writing as many pages as before. Renaming the old table aside carries the
-- references of `post_devices` to it, so `post_devices` is built again too (same layout as
-- 0038: member order), naming the new `posts`; the old table is dropped last, when nothing
-- refers to it, so that dropping it deletes no row of theirs.
ALTER TABLE posts RENAME TO posts_with_bodies;
CREATE TABLE posts (
    id            INTEGER PRIMARY KEY,
    topic_id      BIGINT NOT NULL REFERENCES topics(id) ON DELETE CASCADE,
    user_id       BIGINT NOT NULL REFERENCES users(id),
    post_number   BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    edited_at     BIGINT,
    hidden_at     BIGINT,
    hidden_by     BIGINT REFERENCES users(id),
    deleted_at    BIGINT,
    restricted_at BIGINT,
    held_at       BIGINT,
    held_reason   TEXT
);
INSERT INTO posts (id, topic_id, user_id, post_number, created_at, edited_at, hidden_at,
                   hidden_by, deleted_at, restricted_at, held_at, held_reason)
SELECT id, topic_id, user_id, post_number, created_at, edited_at, hidden_at,
       hidden_by, deleted_at, restricted_at, held_at, held_reason
FROM posts_with_bodies ORDER BY id;

CREATE TABLE post_bodies (
    post_id   INTEGER PRIMARY KEY REFERENCES posts(id) ON DELETE CASCADE,
    body_md   TEXT NOT NULL,
    body_html TEXT NOT NULL
);
INSERT INTO post_bodies (post_id, body_md, body_html)
SELECT id, body_md, body_html FROM posts_with_bodies ORDER BY id;

CREATE TABLE post_devices_again (
    post_id    INTEGER NOT NULL REFERENCES posts(id) ON DELETE CASCADE,
    user_id    BIGINT NOT NULL REFERENCES users(id),
    ip         TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, post_id)
) WITHOUT ROWID;
INSERT INTO post_devices_again (post_id, user_id, ip, user_agent, created_at)
SELECT post_id, user_id, ip, user_agent, created_at FROM post_devices ORDER BY user_id, post_id;
DROP TABLE post_devices;
ALTER TABLE post_devices_again RENAME TO post_devices;
CREATE UNIQUE INDEX post_devices_post ON post_devices(post_id);

DROP TABLE posts_with_bodies;
CREATE UNIQUE INDEX posts_topic_number ON posts(topic_id, post_number);
CREATE INDEX posts_user ON posts(user_id, created_at);
CREATE INDEX posts_held ON posts(held_at) WHERE held_at IS NOT NULL;
CREATE INDEX posts_edited ON posts(edited_at) WHERE edited_at IS NOT NULL;
CREATE INDEX posts_user_public ON posts(user_id)
    WHERE hidden_at IS NULL AND deleted_at IS NULL AND held_at IS NULL;
