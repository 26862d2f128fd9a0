-- Privacy requests (promises R2-R6, R10): one submission per intake (who asked, for whom, how
-- to reach them, how identity is proven) and one request per right asked, each with its own
-- life cycle, clock and decision. Times are epoch seconds, days are ISO text (YYYY-MM-DD).

-- Personal data: requester and subject contact facts, comments, an emailed message.
CREATE TABLE privacy_submissions (
    id                     INTEGER PRIMARY KEY,
    channel                TEXT NOT NULL,
    relationship           TEXT NOT NULL,
    requester_name         TEXT NOT NULL,
    requester_email        TEXT NOT NULL,
    subject_email          TEXT NOT NULL,
    subject_user_id        BIGINT REFERENCES users(id) ON DELETE SET NULL,
    requester_user_id      BIGINT REFERENCES users(id) ON DELETE SET NULL,
    region                 TEXT NOT NULL,
    postal_code            TEXT NOT NULL,
    jurisdiction           TEXT NOT NULL,
    comments               TEXT NOT NULL,
    emailed_message        TEXT,
    logged_by              BIGINT REFERENCES users(id) ON DELETE SET NULL,
    subject_token_digest   TEXT NOT NULL UNIQUE,
    requester_token_digest TEXT NOT NULL UNIQUE,
    code_digest            TEXT,
    code_expires_at        BIGINT,
    code_attempts          BIGINT NOT NULL DEFAULT 0,
    subject_confirmed_at   BIGINT,
    verification           TEXT NOT NULL DEFAULT 'none',
    created_at             BIGINT NOT NULL
);
CREATE INDEX privacy_submissions_subject ON privacy_submissions(subject_user_id);

CREATE TABLE privacy_requests (
    id                       INTEGER PRIMARY KEY,
    submission_id            BIGINT NOT NULL REFERENCES privacy_submissions(id) ON DELETE CASCADE,
    right_name               TEXT NOT NULL,
    jurisdiction             TEXT NOT NULL,
    written_opt_out          TEXT,
    state                    TEXT NOT NULL,
    verification             TEXT NOT NULL DEFAULT 'none',
    required_level           TEXT NOT NULL,
    status_json              TEXT NOT NULL,
    received_at              BIGINT NOT NULL,
    received_on              TEXT NOT NULL,
    due_on                   TEXT NOT NULL,
    extended_due_on          TEXT,
    extension_reason         TEXT,
    appeal_due_on            TEXT,
    assigned_to              BIGINT REFERENCES users(id) ON DELETE SET NULL,
    decline_code             TEXT,
    decision_text            TEXT,
    closed_at                BIGINT,
    handed_to_fulfilment_at  BIGINT,
    next_reminder_at         BIGINT,
    reminders_sent           BIGINT NOT NULL DEFAULT 0,
    nearly_due_alarm_at      BIGINT,
    overdue_alarm_at         BIGINT,
    updated_at               BIGINT NOT NULL
);
CREATE INDEX privacy_requests_queue ON privacy_requests(state, due_on);
CREATE INDEX privacy_requests_submission ON privacy_requests(submission_id);
CREATE INDEX privacy_requests_reminder ON privacy_requests(next_reminder_at);

-- Staff-only notes on a request.
CREATE TABLE privacy_request_notes (
    id         INTEGER PRIMARY KEY,
    request_id BIGINT NOT NULL REFERENCES privacy_requests(id) ON DELETE CASCADE,
    author_id  BIGINT REFERENCES users(id) ON DELETE SET NULL,
    body       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX privacy_request_notes_request ON privacy_request_notes(request_id);

-- An authorized agent's or parent's evidence (power of attorney, signed letter): personal data.
CREATE TABLE privacy_request_evidence (
    id            INTEGER PRIMARY KEY,
    submission_id BIGINT NOT NULL REFERENCES privacy_submissions(id) ON DELETE CASCADE,
    content_type  TEXT NOT NULL,
    size_bytes    BIGINT NOT NULL,
    sha256        TEXT NOT NULL,
    content       BLOB NOT NULL,
    uploaded_at   BIGINT NOT NULL
);
CREATE INDEX privacy_request_evidence_submission ON privacy_request_evidence(submission_id);

-- Fixed-window counters for intake and code attempts, keyed by a digest (never an address).
CREATE TABLE privacy_request_throttle (
    key          TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    hits         BIGINT NOT NULL
);

-- Further links to a submission's status page, minted for later messages (decisions,
-- extensions), since only digests of tokens are stored.
CREATE TABLE privacy_request_links (
    token_digest  TEXT PRIMARY KEY,
    submission_id BIGINT NOT NULL REFERENCES privacy_submissions(id) ON DELETE CASCADE,
    created_at    BIGINT NOT NULL
);
CREATE INDEX privacy_request_links_submission ON privacy_request_links(submission_id);
