-- Security: the tamper-evident audit log, 2-step verification, and the password's age.
-- Times are epoch seconds (BIGINT), so that one SQL text runs on both stores.

-- Append-only. Each entry's hash covers the previous entry's hash and its own fields; its mac is
-- an HMAC of that hash under a key kept outside the database (audit_key_file). Details hold
-- identifiers only, never personal values. seq is given by the appender (audit_head), not by an
-- identity, so that a deleted entry leaves a gap.
CREATE TABLE audit_log (
    seq        BIGINT PRIMARY KEY,
    at         BIGINT NOT NULL,
    actor_id   BIGINT,
    subject_id BIGINT,
    kind       TEXT NOT NULL,
    details    TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    entry_hash TEXT NOT NULL,
    mac        TEXT NOT NULL
);
CREATE INDEX audit_log_subject ON audit_log(subject_id, seq);
CREATE INDEX audit_log_actor ON audit_log(actor_id, seq);
CREATE INDEX audit_log_at ON audit_log(at);

-- The chain's head: one row, locked by every append so that appends are serialized on
-- PostgreSQL (SQLite's BEGIN IMMEDIATE already serializes writers).
CREATE TABLE audit_head (
    id   BIGINT PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- TOTP (RFC 6238). enabled_at is NULL while enrolment waits for the first code.
-- last_used_step keeps a code from being used twice within its time window.
-- The secret is stored as base32 text, not encrypted (see ARCHITECTURE.md).
CREATE TABLE two_factor (
    user_id        BIGINT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    secret         TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    enabled_at     BIGINT,
    last_used_step BIGINT NOT NULL DEFAULT 0
);

-- Single-use recovery codes: SHA-256 digests of random 80-bit codes.
CREATE TABLE recovery_codes (
    id         INTEGER PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    code_hash  TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX recovery_codes_user ON recovery_codes(user_id);

ALTER TABLE users ADD COLUMN password_changed_at BIGINT;
UPDATE users SET password_changed_at = created_at;
