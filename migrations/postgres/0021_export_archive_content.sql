-- Export archives are kept in the database rather than on one server's disk, so that a download
-- link works on whichever node serves it. The content is personal data: it is cleared when the
-- link is used or expires, and with its subject.
ALTER TABLE export_archives ADD COLUMN content BYTEA;
