-- Rate limits with backoff, shared by every node: failed sign-ins and 2-step codes,
-- registrations, password-reset emails and privacy-request attempts. `key` is an HMAC of the
-- limit's scope and a client address or login, under a key derived from the audit key file
-- (outside the database): the table never holds an address, and a copy of it cannot be
-- tested against guessed ones. A row is forgotten a day after its last event.
CREATE TABLE rate_limits (
    key           TEXT PRIMARY KEY,
    window_start  BIGINT NOT NULL,
    events        BIGINT NOT NULL,
    blocked_until BIGINT NOT NULL,
    next_wait     BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX rate_limits_updated ON rate_limits(updated_at);

-- The privacy-request throttle became one of these limits; its counters held unkeyed digests.
DROP TABLE privacy_request_throttle;
