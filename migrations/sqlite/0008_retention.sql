-- Retention (promises T1–T4) and visitor statistics (F2).
-- Times are epoch seconds (BIGINT), days are ISO text (YYYY-MM-DD), booleans are BIGINT 0/1.

-- The relationship of each member (T1): last activity (written at most once per few minutes),
-- the product-news subscription, and the end of the account (when and why). The sweep marks
-- what it did: restricted_at (processing limited to storage and security) and anonymized_at
-- (every record removed or anonymized; nothing left to sweep). jurisdiction is NULL until the
-- member's residence is known; the configured default applies meanwhile.
ALTER TABLE users ADD COLUMN last_active_at BIGINT;
ALTER TABLE users ADD COLUMN news_subscribed_at BIGINT;
ALTER TABLE users ADD COLUMN news_ended_at BIGINT;
ALTER TABLE users ADD COLUMN closed_at BIGINT;
ALTER TABLE users ADD COLUMN closed_reason TEXT;
ALTER TABLE users ADD COLUMN jurisdiction TEXT;
ALTER TABLE users ADD COLUMN restricted_at BIGINT;
ALTER TABLE users ADD COLUMN anonymized_at BIGINT;
CREATE INDEX users_closed ON users(closed_at, id);

-- A post whose author's relationship ended is kept for storage and security only: pages and
-- the API show a placeholder instead of its text until it is anonymized.
ALTER TABLE posts ADD COLUMN restricted_at BIGINT;

-- Legal holds (T3): held data is neither restricted nor removed while the hold stands.
-- subject_user_id NULL holds everyone; categories is a space-separated list, '' for all;
-- created_from/created_until bound the records' creation days (inclusive), NULL for open.
CREATE TABLE legal_holds (
    id              INTEGER PRIMARY KEY,
    subject_user_id BIGINT REFERENCES users(id),
    categories      TEXT NOT NULL,
    created_from    TEXT,
    created_until   TEXT,
    reason          TEXT NOT NULL,
    created_by      BIGINT REFERENCES users(id),
    created_at      BIGINT NOT NULL,
    released_by     BIGINT REFERENCES users(id),
    released_at     BIGINT
);

-- Sweep runs (T4): one open run at a time (open = 1, NULL once finished; NULLs never clash).
-- Each batch of subjects commits its actions, their audit entries and the cursor together, so
-- a run cut short resumes after the last committed subject: nothing skipped, nothing twice.
CREATE TABLE sweep_runs (
    id            INTEGER PRIMARY KEY,
    open          BIGINT UNIQUE,
    as_of         BIGINT NOT NULL,
    started_at    BIGINT NOT NULL,
    after_user_id BIGINT NOT NULL DEFAULT 0,
    n_subjects    BIGINT NOT NULL DEFAULT 0,
    n_restricted  BIGINT NOT NULL DEFAULT 0,
    n_deleted     BIGINT NOT NULL DEFAULT 0,
    n_anonymized  BIGINT NOT NULL DEFAULT 0,
    n_held        BIGINT NOT NULL DEFAULT 0,
    finished_at   BIGINT
);

-- Visitor statistics (F2): daily totals only. No user id, IP address, cookie or raw user agent
-- is ever stored; a browser family, a language tag and a referring domain identify nobody.
CREATE TABLE visit_counts (
    day      TEXT NOT NULL,
    topic_id BIGINT NOT NULL,
    browser  TEXT NOT NULL,
    language TEXT NOT NULL,
    referrer TEXT NOT NULL,
    views    BIGINT NOT NULL,
    PRIMARY KEY (day, topic_id, browser, language, referrer)
);
CREATE INDEX visit_counts_topic ON visit_counts(topic_id, day);
