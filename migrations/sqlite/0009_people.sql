-- The people the policy names (promises M1, F6): where members live and how old they are, parents'
-- consent for minors, product-news subscriptions and the newsletters sent to them.
-- Times are epoch seconds (BIGINT), booleans are BIGINT 0/1, so that one SQL text runs on both stores.

-- Residence decides the jurisdiction (M1, J1; users.jurisdiction comes with 0008). NULL for
-- accounts made before it was asked. parent_consent_needed is 1 for a minor who may not post
-- until a parent consents.
ALTER TABLE users ADD COLUMN country TEXT;
ALTER TABLE users ADD COLUMN us_state TEXT;
ALTER TABLE users ADD COLUMN parent_consent_needed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN parent_consented_at BIGINT;
ALTER TABLE users ADD COLUMN parent_allows_news BIGINT NOT NULL DEFAULT 0;

-- A request to a parent and, once they follow the link and agree, the evidence of their consent:
-- when, under which policy version, and the hash of the exact text they were shown. The link's
-- token is stored as a SHA-256 digest only.
CREATE TABLE parental_consents (
    id             INTEGER PRIMARY KEY,
    user_id        BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    parent_email   TEXT NOT NULL,
    token_hash     TEXT NOT NULL UNIQUE,
    requested_at   BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    consented_at   BIGINT,
    policy_version TEXT,
    text_hash      TEXT,
    news_allowed   BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX parental_consents_user ON parental_consents(user_id);

-- Product-news subscription evidence: every opt-in and opt-out is a new row, never updated; the
-- latest row of a member is their standing choice (mirrored, for retention, in
-- users.news_subscribed_at and users.news_ended_at from 0008). method: registration, account_page,
-- one_click (RFC 8058), unsubscribe_page.
CREATE TABLE news_subscriptions (
    id             INTEGER PRIMARY KEY,
    user_id        BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    subscribed     BIGINT NOT NULL,
    method         TEXT NOT NULL,
    policy_version TEXT NOT NULL,
    text_hash      TEXT NOT NULL,
    recorded_at    BIGINT NOT NULL
);
CREATE INDEX news_subscriptions_user ON news_subscriptions(user_id, id);

-- One row per newsletter; its digest (of subject and body) makes `covenant news send` safe to
-- run again after a crash: the same newsletter is found, not created twice.
CREATE TABLE newsletters (
    id         INTEGER PRIMARY KEY,
    digest     TEXT NOT NULL UNIQUE,
    subject    TEXT NOT NULL,
    body_text  TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Non-essential mail carries a one-click unsubscribe address (RFC 8058); NULL for account mail.
ALTER TABLE mail_outbox ADD COLUMN list_unsubscribe TEXT;

-- Feedback and support messages from members (F6). may_publish and may_name are the sender's own
-- unticked boxes: staff can publish only what may_publish allows, and show the author's username
-- only when may_name allows too.
CREATE TABLE feedback (
    id           INTEGER PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    body         TEXT NOT NULL,
    may_publish  BIGINT NOT NULL,
    may_name     BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    published_at BIGINT,
    published_by BIGINT REFERENCES users(id) ON DELETE SET NULL
);
CREATE INDEX feedback_published ON feedback(published_at);
