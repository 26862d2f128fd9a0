-- Social sign-in (promise F5). Times are epoch seconds (BIGINT), booleans BIGINT 0/1.

-- A sign-in or link started after the member authorized it on the consent page: used once, by
-- the provider's redirect carrying its state. Only the state's SHA-256 digest is stored; the PKCE
-- verifier and nonce are checked against what the provider returns. user_id is set when an
-- account is linking. policy_version and text_hash say what the member was shown.
CREATE TABLE social_flows (
    state_hash     TEXT PRIMARY KEY,
    provider       TEXT NOT NULL,
    pkce_verifier  TEXT NOT NULL,
    nonce          TEXT NOT NULL,
    user_id        BIGINT REFERENCES users(id) ON DELETE CASCADE,
    policy_version TEXT NOT NULL,
    text_hash      TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL
);

-- A provider account not yet tied to a member: it waits (briefly) for the person to complete
-- registration (username, residence, birth year), under a single-use token's digest.
CREATE TABLE social_pending (
    token_hash      TEXT PRIMARY KEY,
    provider        TEXT NOT NULL,
    subject         TEXT NOT NULL,
    email           TEXT NOT NULL,
    email_verified  BIGINT NOT NULL,
    fields_received TEXT NOT NULL,
    policy_version  TEXT NOT NULL,
    text_hash       TEXT NOT NULL,
    authorized_at   BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL
);

-- A member's link to a provider account: the data's source. fields_received names the claims
-- the provider gave (never their values); authorized_at, policy_version and text_hash are the
-- member's authorization on the consent page.
CREATE TABLE social_links (
    id              INTEGER PRIMARY KEY,
    user_id         BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    provider        TEXT NOT NULL,
    subject         TEXT NOT NULL,
    fields_received TEXT NOT NULL,
    policy_version  TEXT NOT NULL,
    text_hash       TEXT NOT NULL,
    authorized_at   BIGINT NOT NULL,
    linked_at       BIGINT NOT NULL,
    last_sign_in_at BIGINT
);
CREATE UNIQUE INDEX social_links_subject ON social_links(provider, subject);
CREATE UNIQUE INDEX social_links_member ON social_links(user_id, provider);
