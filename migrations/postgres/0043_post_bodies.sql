-- Posts' text (Markdown and its HTML) in a table of its own: a post row with its body filled
-- its pages with text, so the sweep's anonymization of scattered posts wrote most of the table
-- (issue 7). Without the text a post row is some sixty bytes.
CREATE TABLE post_bodies (
    post_id   BIGINT PRIMARY KEY REFERENCES posts(id) ON DELETE CASCADE,
    body_md   TEXT NOT NULL,
    body_html TEXT NOT NULL
);
INSERT INTO post_bodies (post_id, body_md, body_html)
SELECT id, body_md, body_html FROM posts ORDER BY id;
ALTER TABLE posts DROP COLUMN body_md;
ALTER TABLE posts DROP COLUMN body_html;
-- Dropping a column leaves its values in the stored rows; rewriting the table (in the order of
-- its key) packs the narrow rows, as SQLite's new table does.
CLUSTER posts USING posts_pkey;
