-- Foundation schema: accounts, sessions, forum, mail outbox.
-- Times are epoch seconds (BIGINT), booleans are BIGINT 0/1, so that one SQL text runs on both stores.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE users (
    id                INTEGER PRIMARY KEY,
    username          TEXT NOT NULL,
    username_lower    TEXT NOT NULL UNIQUE,
    email             TEXT NOT NULL,
    email_lower       TEXT NOT NULL UNIQUE,
    password_hash     TEXT NOT NULL,
    birth_year        BIGINT NOT NULL,
    role              TEXT NOT NULL DEFAULT 'member',
    bio               TEXT NOT NULL DEFAULT '',
    email_verified_at BIGINT,
    created_at        BIGINT NOT NULL
);

CREATE TABLE sessions (
    token_hash   TEXT PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf_token   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    ip           TEXT NOT NULL,
    user_agent   TEXT NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE sign_ins (
    id         INTEGER PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    at         BIGINT NOT NULL,
    ip         TEXT NOT NULL,
    user_agent TEXT NOT NULL
);
CREATE INDEX sign_ins_user ON sign_ins(user_id, at);

CREATE TABLE account_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX account_tokens_user ON account_tokens(user_id);

CREATE TABLE categories (
    id          INTEGER PRIMARY KEY,
    slug        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    position    BIGINT NOT NULL
);

-- A new forum starts with one category; operators add more with `covenant category add`.
INSERT INTO categories (slug, name, description, position)
VALUES ('general', 'General', 'Anything about the community and its products.', 1);

CREATE TABLE topics (
    id             INTEGER PRIMARY KEY,
    kind           TEXT NOT NULL,
    category_id    BIGINT REFERENCES categories(id),
    user_id        BIGINT NOT NULL REFERENCES users(id),
    title          TEXT NOT NULL,
    slug           TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    last_posted_at BIGINT NOT NULL,
    n_posts        BIGINT NOT NULL DEFAULT 0,
    hidden         BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX topics_category_recent ON topics(category_id, last_posted_at);
CREATE INDEX topics_recent ON topics(kind, last_posted_at);
CREATE UNIQUE INDEX topics_blog_slug ON topics(slug) WHERE kind = 'blog';

CREATE TABLE posts (
    id          INTEGER PRIMARY KEY,
    topic_id    BIGINT NOT NULL REFERENCES topics(id) ON DELETE CASCADE,
    user_id     BIGINT NOT NULL REFERENCES users(id),
    post_number BIGINT NOT NULL,
    body_md     TEXT NOT NULL,
    body_html   TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    edited_at   BIGINT,
    hidden_at   BIGINT,
    hidden_by   BIGINT REFERENCES users(id),
    deleted_at  BIGINT,
    ip          TEXT NOT NULL,
    user_agent  TEXT NOT NULL
);
CREATE UNIQUE INDEX posts_topic_number ON posts(topic_id, post_number);
CREATE INDEX posts_user ON posts(user_id, created_at);

CREATE TABLE mail_outbox (
    id              INTEGER PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    recipient       TEXT NOT NULL,
    user_id         BIGINT REFERENCES users(id) ON DELETE SET NULL,
    subject         TEXT NOT NULL,
    body_text       TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    claimed_until   BIGINT,
    sent_at         BIGINT,
    last_error      TEXT
);
CREATE INDEX mail_outbox_due ON mail_outbox(sent_at, next_attempt_at);
