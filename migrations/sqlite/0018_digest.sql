-- The digest of followed topics (promise F6): what a member follows, their digest choices as
-- evidence, and the digests sent. Times are epoch seconds (BIGINT), booleans BIGINT 0/1.

-- A member follows a topic; unfollowing deletes the row.
CREATE TABLE topic_follows (
    user_id    BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    topic_id   BIGINT NOT NULL REFERENCES topics(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, topic_id)
);
CREATE INDEX topic_follows_topic ON topic_follows(topic_id);

-- Digest choices, like news_subscriptions: every opt-in and opt-out is a new row, never
-- updated; the latest row of a member is their standing choice. No row means no digest.
-- method: account_page, one_click (RFC 8058), unsubscribe_page.
CREATE TABLE digest_subscriptions (
    id             INTEGER PRIMARY KEY,
    user_id        BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    subscribed     BIGINT NOT NULL,
    method         TEXT NOT NULL,
    policy_version TEXT NOT NULL,
    text_hash      TEXT NOT NULL,
    recorded_at    BIGINT NOT NULL
);
CREATE INDEX digest_subscriptions_user ON digest_subscriptions(user_id, id);

-- One row per digest sent: the period (a UTC day) makes a re-run send nothing twice, and
-- up_to_post_id is where the member's next digest starts.
CREATE TABLE digest_sends (
    user_id       BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    period        BIGINT NOT NULL,
    up_to_post_id BIGINT NOT NULL,
    sent_at       BIGINT NOT NULL,
    PRIMARY KEY (user_id, period)
);
