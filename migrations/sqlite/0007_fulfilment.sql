-- Fulfilment of access and erasure (promises R7, R8): download links of export archives, the
-- erasure ledger that a restored backup is re-erased from, and the mark of an erased account.
-- Times are epoch seconds (BIGINT), so that one SQL text runs on both stores.

-- One row per archive built for a subject. The archive itself is a file under the data folder
-- (it is personal data); only the SHA-256 digest of the link's token is kept here. A link is
-- used once (downloaded_at) and expires; the file goes with either.
CREATE TABLE export_archives (
    id            INTEGER PRIMARY KEY,
    user_id       BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash    TEXT NOT NULL UNIQUE,
    file_name     TEXT NOT NULL,
    jurisdiction  TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    downloaded_at BIGINT,
    purged_at     BIGINT
);
CREATE INDEX export_archives_open ON export_archives(purged_at, expires_at);

-- Who was erased and when: ids and times only, never a personal value. It is copied to a file
-- outside the database too, so that a backup restored from before an erasure is erased again.
CREATE TABLE erasure_ledger (
    id        INTEGER PRIMARY KEY,
    user_id   BIGINT NOT NULL,
    erased_at BIGINT NOT NULL,
    content   TEXT NOT NULL
);
CREATE INDEX erasure_ledger_user ON erasure_ledger(user_id);

-- An erased account stays as the "deleted user" its kept posts point at; it cannot sign in and
-- has no profile.
ALTER TABLE users ADD COLUMN erased_at BIGINT;
