-- Restriction of processing by request (promise R9): while a member's restriction stands
-- (lifted_at IS NULL), their data is only stored. Rows are never deleted while the account
-- lives, so each restriction and its lifting stay on record: lifted_by is the member of staff
-- or the subject who lifted it, lifted_how says which ('staff' or 'subject').
CREATE TABLE processing_restrictions (
    id         INTEGER PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    request_id BIGINT,
    started_at BIGINT NOT NULL,
    lifted_at  BIGINT,
    lifted_by  BIGINT,
    lifted_how TEXT
);
-- At most one standing restriction per member.
CREATE UNIQUE INDEX processing_restrictions_standing ON processing_restrictions(user_id)
    WHERE lifted_at IS NULL;

-- A queued message the purpose gate refused (its recipient restricted processing): kept as
-- the record that it was not sent, never delivered.
ALTER TABLE mail_outbox ADD COLUMN withheld_at BIGINT;
