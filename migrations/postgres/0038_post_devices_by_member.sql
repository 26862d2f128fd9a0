-- SQLite stores posts' device data in member order from here on (a table keyed by member and
-- post, so that the sweep's deletion of a member's rows touches few pages). PostgreSQL keeps
-- its layout: the table is a heap whatever its key, and its index by member
-- (`post_devices_user`) already finds a member's rows; nothing changes here.
SELECT 1;
