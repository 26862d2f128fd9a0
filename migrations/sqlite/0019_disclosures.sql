-- Disclosures of a member's data to a third party or an authority (promise A3): the legal
-- basis (a word from a fixed list), who asked and their reference, the policy categories
-- disclosed (keys separated by spaces), the day, and the staff member who approved it. When
-- the law forbids telling the subject (notice_forbidden = 1), no notice is sent and the
-- record stays out of the subject's access export; otherwise notified_at says when the
-- notice was queued (NULL for an account that can no longer receive mail).
CREATE TABLE disclosures (
    id               INTEGER PRIMARY KEY,
    subject_user_id  BIGINT NOT NULL REFERENCES users(id),
    legal_basis      TEXT NOT NULL,
    requesting_body  TEXT NOT NULL,
    reference        TEXT NOT NULL,
    categories       TEXT NOT NULL,
    disclosed_on     TEXT NOT NULL,
    notice_forbidden BIGINT NOT NULL,
    approved_by      BIGINT NOT NULL REFERENCES users(id),
    created_at       BIGINT NOT NULL,
    notified_at      BIGINT
);

CREATE INDEX disclosures_subject ON disclosures (subject_user_id);
