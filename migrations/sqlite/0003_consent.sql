-- Consent evidence (promises C1–C4): every grant, refusal and withdrawal is a new row and is never
-- updated, so earlier lawful processing stays provable. GPC is recorded once per subject.
-- Subjects are `device:<random consent id>` or `account:<user id>`; times are epoch seconds.

CREATE TABLE consent_records (
    id             INTEGER PRIMARY KEY,
    receipt_id     TEXT NOT NULL UNIQUE,
    subject        TEXT NOT NULL,
    category       TEXT NOT NULL,
    choice         TEXT NOT NULL,
    method         TEXT NOT NULL,
    policy_version TEXT NOT NULL,
    text_hash      TEXT NOT NULL,
    recorded_at    BIGINT NOT NULL
);
CREATE INDEX consent_records_subject ON consent_records(subject, recorded_at, id);

CREATE TRIGGER consent_records_are_immutable BEFORE UPDATE ON consent_records
BEGIN
    SELECT RAISE(ABORT, 'consent records are immutable');
END;

CREATE TABLE consent_gpc (
    subject       TEXT PRIMARY KEY,
    record_id     BIGINT NOT NULL REFERENCES consent_records(id),
    first_seen_at BIGINT NOT NULL
);
